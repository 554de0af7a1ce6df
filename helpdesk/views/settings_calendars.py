"""Settings: business calendars (helpdesk/actions/calendars.py).

`GET  settings/calendars/` the list; `GET settings/calendars/new/`, `GET settings/calendars/<id>/`
     the form: name, time zone, per weekday its opening periods (`hours-<day>-start`,
     `hours-<day>-end`, several rows a day), holidays (`holiday-date`, `holiday-name`), default;
`POST` the same URL saves; `GET|POST settings/calendars/<id>/delete/` confirm, then delete
     (refused with the reason while an SLA policy uses it). Admins only.
"""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from helpdesk.models import BusinessCalendar
from helpdesk.views.settings_common import MAX_ROWS, Errors, about, checked, clip, settings_admin

WEEKDAYS = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
]
MAX_HOLIDAYS = 366


@cache
def time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _calendar(calendar_id: int) -> BusinessCalendar:
    calendar = BusinessCalendar.objects.filter(pk=calendar_id).first() if 0 < calendar_id < 2**63 else None
    if calendar is None:
        raise Http404("no such calendar")
    return calendar


@require_http_methods(["GET"])
@settings_admin
def calendar_list(request: HttpRequest) -> HttpResponse:
    calendars = list(BusinessCalendar.objects.order_by("name", "id"))
    for calendar in calendars:
        hours = calendar.hours if isinstance(calendar.hours, dict) else {}
        calendar.open_days = [label for key, label in WEEKDAYS if hours.get(key)]  # type: ignore[attr-defined]
    return render(request, "desk/settings/calendar_list.html", {"calendars": calendars, "area": "calendars"})


def _context(calendar: BusinessCalendar | None, values: dict[str, Any], errors: Errors) -> dict[str, Any]:
    hours = values["hours"] if isinstance(values["hours"], dict) else {}
    days = []
    for key, label in WEEKDAYS:
        periods = [p for p in hours.get(key) or [] if isinstance(p, list | tuple) and len(p) == 2]
        days.append(
            {
                "key": key,
                "label": label,
                "periods": [{"start": str(p[0]), "end": str(p[1])} for p in periods] + [{"start": "", "end": ""}],
                "errors": errors.by_field.get(f"hours-{key}", []),
            }
        )
    holidays = [h for h in values["holidays"] if isinstance(h, dict)] + [{"date": "", "name": ""}]
    return {
        "area": "calendars",
        "calendar": calendar,
        "values": values,
        "days": days,
        "holidays": holidays,
        "time_zones": time_zones(),
        "errors": errors.by_field,
        "error_count": errors.count(),
    }


def _stored(calendar: BusinessCalendar | None) -> dict[str, Any]:
    if calendar is None:
        return {"name": "", "time_zone": "UTC", "hours": {}, "holidays": [], "is_default": False}
    return {
        "name": calendar.name,
        "time_zone": calendar.time_zone,
        "hours": calendar.hours,
        "holidays": calendar.holidays if isinstance(calendar.holidays, list) else [],
        "is_default": calendar.is_default,
    }


def _from_post(post: Any, errors: Errors) -> dict[str, Any]:
    hours: dict[str, list[list[str]]] = {}
    for key, label in WEEKDAYS:
        starts = post.getlist(f"hours-{key}-start")[: MAX_ROWS + 1]
        ends = post.getlist(f"hours-{key}-end")[: MAX_ROWS + 1]
        if len(starts) > MAX_ROWS:
            errors.add(f"hours-{key}", f"{label}: at most {MAX_ROWS} periods.")
        periods = []
        for i in range(min(max(len(starts), len(ends)), MAX_ROWS)):
            start = clip(starts[i] if i < len(starts) else "", 10).strip()
            end = clip(ends[i] if i < len(ends) else "", 10).strip()
            if start or end:
                periods.append([start, end])
        if periods:
            hours[key] = periods
    dates = post.getlist("holiday-date")[: MAX_HOLIDAYS + 1]
    names = post.getlist("holiday-name")[: MAX_HOLIDAYS + 1]
    if len(dates) > MAX_HOLIDAYS:
        errors.add("holidays", f"At most {MAX_HOLIDAYS} holidays.")
    holidays = []
    for i in range(min(len(dates), MAX_HOLIDAYS)):
        date = clip(dates[i], 20).strip()
        name = clip(names[i] if i < len(names) else "", 200).strip()
        if date or name:
            holidays.append({"date": date, "name": name})
    return {
        "name": clip(post.get("name", ""), 1000),
        "time_zone": clip(post.get("time_zone", ""), 100).strip(),
        "hours": hours,
        "holidays": holidays,
        "is_default": checked(post, "is_default"),
    }


def _placement() -> list[tuple[str, Any]]:
    rules: list[tuple[str, Any]] = [
        (f"hours-{key}", about(label.lower(), f"{key}:", f"'{key}'", f'"{key}"')) for key, label in WEEKDAYS
    ]
    return [
        ("time_zone", about("time zone", "timezone", "time_zone")),
        ("holidays", about("holiday")),
        *rules,
        ("hours", about("hour", "period", "weekday", "day")),
        ("name", about("name")),
    ]


@require_http_methods(["GET", "POST"])
@settings_admin
def calendar_form(request: HttpRequest, calendar_id: int | None = None) -> HttpResponse:
    from helpdesk.actions.calendars import do_save_calendar
    from helpdesk.calendars import InvalidCalendar

    calendar = _calendar(calendar_id) if calendar_id is not None else None
    if request.method == "GET":
        return render(request, "desk/settings/calendar_form.html", _context(calendar, _stored(calendar), Errors()))
    errors = Errors()
    values = _from_post(request.POST, errors)
    if not errors:
        try:
            saved = do_save_calendar(
                calendar,
                name=values["name"],
                time_zone=values["time_zone"],
                hours=values["hours"],
                holidays=values["holidays"],
                is_default=values["is_default"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except InvalidCalendar as exc:
            errors.place(exc.errors, _placement())
        else:
            messages.success(request, f"{'Saved' if calendar else 'Created'} calendar “{saved.name}”.")
            return HttpResponseRedirect(reverse("desk:settings_calendars"))
    return render(request, "desk/settings/calendar_form.html", _context(calendar, values, errors), status=400)


@require_http_methods(["GET", "POST"])
@settings_admin
def calendar_delete(request: HttpRequest, calendar_id: int) -> HttpResponse:
    from helpdesk.actions.calendars import do_delete_calendar

    calendar = _calendar(calendar_id)
    if request.method == "POST":
        try:
            do_delete_calendar(calendar, actor=request.user)  # type: ignore[arg-type]
        except ValueError as exc:
            messages.error(request, f"“{calendar.name}” was not deleted: {exc}")
            return HttpResponseRedirect(reverse("desk:settings_calendar", args=[calendar.pk]))
        messages.success(request, f"Deleted calendar “{calendar.name}”.")
        return HttpResponseRedirect(reverse("desk:settings_calendars"))
    return render(
        request,
        "desk/settings/confirm_delete.html",
        {
            "area": "calendars",
            "what": f"calendar “{calendar.name}”",
            "consequence": "A calendar an SLA policy uses cannot be deleted: give the policy another one first.",
            "cancel": reverse("desk:settings_calendar", args=[calendar.pk]),
        },
    )
