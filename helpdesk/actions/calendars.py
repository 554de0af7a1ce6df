"""Business calendars: saved and deleted by admins (permissions.settings_policy).

A calendar is not part of any ticket's history, so saving one writes no TicketEvent; the row
keeps when it last changed (`updated_at`), which is also the version helpdesk.calendars caches
its Schedule by — so a save reaches every process without any cache to bump.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from helpdesk.calendars import InvalidCalendar, check_name, validate_calendar
from helpdesk.models import BusinessCalendar, SlaPolicy
from helpdesk.permissions import require_settings_admin

if TYPE_CHECKING:
    from helpdesk.models import User


def _name_taken(name: str, calendar: BusinessCalendar | None) -> bool:
    others = BusinessCalendar.objects.filter(name__iexact=name)
    if calendar is not None and calendar.pk is not None:
        others = others.exclude(pk=calendar.pk)
    return others.exists()


def do_save_calendar(
    calendar: BusinessCalendar | None,
    *,
    name: str,
    time_zone: str,
    hours: Any,
    holidays: Any,
    is_default: bool,
    actor: User,
) -> BusinessCalendar:
    """Create (calendar None) or change a calendar, all or nothing.

    Raises PermissionDenied for anyone but an admin and InvalidCalendar listing every problem
    (validate_calendar's, plus a name another calendar has — names are compared ignoring case).
    `is_default=True` takes the default from the previous default calendar in the same
    transaction; `is_default=False` on the default calendar leaves the workspace without one.
    """
    require_settings_admin(actor)
    clean_name, name_errors = check_name(name)
    try:
        zone, clean_hours, clean_holidays = validate_calendar(
            name=name, time_zone=time_zone, hours=hours, holidays=holidays
        )
        errors: list[str] = []
    except InvalidCalendar as invalid:
        errors = list(invalid.errors)
    if not name_errors and _name_taken(clean_name, calendar):
        errors.insert(0, f"A calendar named “{clean_name}” already exists.")
    if errors:
        raise InvalidCalendar(errors)
    try:
        with transaction.atomic():
            if is_default:
                previous = BusinessCalendar.objects.select_for_update().filter(is_default=True)
                if calendar is not None and calendar.pk is not None:
                    previous = previous.exclude(pk=calendar.pk)
                # Locked first, so two admins making different calendars default do not both win.
                previous_ids = list(previous.values_list("pk", flat=True))
                if previous_ids:
                    BusinessCalendar.objects.filter(pk__in=previous_ids).update(is_default=False)
            if calendar is None or calendar.pk is None:
                calendar = BusinessCalendar.objects.create(
                    name=clean_name, time_zone=zone, hours=clean_hours, holidays=clean_holidays, is_default=is_default
                )
            else:
                calendar.name = clean_name
                calendar.time_zone = zone
                calendar.hours = clean_hours
                calendar.holidays = clean_holidays
                calendar.is_default = is_default
                calendar.save(update_fields=["name", "time_zone", "hours", "holidays", "is_default", "updated_at"])
            # The cached SLA policies carry their calendar (and the default one stands in for none).
            _policies_changed()
    except IntegrityError as error:
        # A concurrent save took the name (or the default) between the check and the write.
        if _name_taken(clean_name, calendar):
            raise InvalidCalendar([f"A calendar named “{clean_name}” already exists."]) from error
        raise InvalidCalendar(["Another calendar was made the default at the same moment; try again."]) from error
    return calendar


def _in_use_message(calendar: BusinessCalendar, names: list[str]) -> str:
    quoted = ", ".join(f"“{name}”" for name in names)
    noun = "SLA policy" if len(names) == 1 else "SLA policies"
    return f"“{calendar.name}” is used by {noun} {quoted}; give them another calendar first."


def do_delete_calendar(calendar: BusinessCalendar, *, actor: User) -> None:
    """Delete a calendar no SLA policy uses (PermissionDenied for non-admins; ValueError naming
    the policies otherwise). Clocks that still point at it (their policy has since moved to
    another calendar) lose the reference (SlaClock.calendar is SET_NULL); helpdesk/sla.py says
    what such a clock counts in from then on."""
    require_settings_admin(actor)
    with transaction.atomic():
        names = list(
            SlaPolicy.objects.filter(calendar=calendar).order_by("position", "id").values_list("name", flat=True)
        )
        if names:
            raise ValueError(_in_use_message(calendar, names))
        try:
            calendar.delete()
            _policies_changed()
        except ProtectedError as error:  # a policy took it up meanwhile
            names = sorted(str(obj) for obj in error.protected_objects)
            raise ValueError(_in_use_message(calendar, names)) from error


def _policies_changed() -> None:
    from helpdesk.actions.sla import policies_changed

    policies_changed()
