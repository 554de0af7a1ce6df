"""Settings: SLA policies (helpdesk/actions/sla.py).

`GET  settings/sla/` the policies in order (the first active match applies), with up/down;
`GET  settings/sla/new/`, `GET settings/sla/<id>/` the form: conditions, calendar, the targets
     grid (priority × metric: minutes and business hours), warning, escalations on warning or
     breach (steps of the action runner); `POST` saves (`action=save`) or tests the form as it
     stands against a ticket (`action=preview`): each condition true or false and the deadlines
     the ticket would get; nothing is written;
`POST settings/sla/<id>/move/`, `GET|POST settings/sla/<id>/delete/`.
Admins only. Targets post as `t-<priority>-<metric>-minutes` and `t-<priority>-<metric>-bh`;
escalation blocks as `esc-<i>-on`, `esc-<i>-metric` and step rows `esc-<i>-type|value|value2`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from helpdesk.models import BusinessCalendar, Priority, SlaMetric, SlaPolicy
from helpdesk.views.settings_common import (
    Errors,
    about,
    checked,
    clip,
    condition_rows,
    conditions_from_post,
    json_fields,
    keep_webhook_secrets,
    new_position,
    parse_id,
    preview_ticket,
    preview_view,
    settings_admin,
    step_kinds,
    step_rows,
    steps_from_post,
)

MAX_ESCALATIONS = 10
PRIORITIES = sorted(Priority, key=lambda p: -p.value)


def _policy(policy_id: int) -> SlaPolicy:
    policy = (
        SlaPolicy.objects.select_related("calendar").filter(pk=policy_id).first() if 0 < policy_id < 2**63 else None
    )
    if policy is None:
        raise Http404("no such SLA policy")
    return policy


@require_http_methods(["GET"])
@settings_admin
def sla_list(request: HttpRequest) -> HttpResponse:
    policies = list(SlaPolicy.objects.select_related("calendar").order_by("position", "id"))
    for policy in policies:
        policy.target_count = sum(len(m) for m in (policy.targets or {}).values() if isinstance(m, dict))  # type: ignore[attr-defined]
    return render(request, "desk/settings/sla_list.html", {"policies": policies, "area": "sla"})


def _stored(policy: SlaPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {
            "name": "",
            "description": "",
            "conditions": {},
            "calendar": "",
            "targets": {},
            "warn_before_minutes": "0",
            "escalations": [],
            "is_active": True,
        }
    return {
        "name": policy.name,
        "description": policy.description,
        "conditions": policy.conditions,
        "calendar": str(policy.calendar_id or ""),
        "targets": policy.targets,
        "warn_before_minutes": str(policy.warn_before_minutes),
        "escalations": policy.escalations,
        "is_active": policy.is_active,
    }


def _grid(targets: Any, cell_errors: dict[str, str]) -> list[dict[str, Any]]:
    """The targets grid's rows (one per priority, urgent first), each cell's minutes and checkbox."""
    targets = targets if isinstance(targets, dict) else {}
    rows = []
    for priority in PRIORITIES:
        metrics = targets.get(str(priority.value)) or {}
        cells = []
        for metric in SlaMetric:
            target = metrics.get(metric.value) if isinstance(metrics, dict) else None
            target = target if isinstance(target, dict) else {}
            key = f"t-{priority.value}-{metric.value}"
            cells.append(
                {
                    "key": key,
                    "metric": metric,
                    "minutes": "" if target.get("minutes") is None else str(target.get("minutes")),
                    "business_hours": bool(target.get("business_hours")),
                    "error": cell_errors.get(key, ""),
                }
            )
        rows.append({"priority": priority, "cells": cells})
    return rows


def _escalation_blocks(escalations: Any, kinds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    blocks = []
    items = escalations if isinstance(escalations, list) else []
    for i, item in enumerate([*items, {}]):
        item = item if isinstance(item, dict) else {}
        blocks.append(
            {
                "index": i,
                "prefix": f"esc-{i}",
                "on": str(item.get("on", "")),
                "metric": str(item.get("metric", "")),
                "rows": step_rows(item.get("actions"), kinds, blank=1),
            }
        )
    return blocks


def _context(
    policy: SlaPolicy | None, values: dict[str, Any], errors: Errors, cell_errors: dict[str, str], **extra: Any
) -> dict[str, Any]:
    from helpdesk.conditions import describe_fields
    from helpdesk.runner import describe_steps

    fields = json_fields(describe_fields())
    kinds = step_kinds(describe_steps(), context="sla")
    return {
        "area": "sla",
        "policy": policy,
        "values": values,
        "errors": errors.by_field,
        "error_count": errors.count(),
        "fields": fields,
        "step_kinds": kinds,
        "condition_rows": condition_rows(values.get("conditions"), fields),
        "grid": _grid(values.get("targets"), cell_errors),
        "metrics": list(SlaMetric),
        "calendars": list(BusinessCalendar.objects.order_by("name", "id").only("pk", "name", "is_default")),
        "escalation_blocks": _escalation_blocks(values.get("escalations"), kinds),
        **extra,
    }


def _targets_from_post(post: Any) -> dict[str, Any]:
    """The grid's filled cells as targets, minutes as typed (helpdesk/sla.py validate_targets
    says what is wrong with them, and the message is placed in its cell)."""
    targets: dict[str, dict[str, Any]] = {}
    for priority in PRIORITIES:
        for metric in SlaMetric:
            key = f"t-{priority.value}-{metric.value}"
            raw = clip(post.get(f"{key}-minutes", ""), 40).strip()
            if raw:
                cell = {"minutes": raw, "business_hours": checked(post, f"{key}-bh")}
                targets.setdefault(str(priority.value), {})[metric.value] = cell
    return targets


def _place_target_errors(messages: list[str], cell_errors: dict[str, str]) -> set[str]:
    """Put each message about one cell ("The first reply target of urgent priority …") in that
    cell; the messages placed are returned."""
    placed: set[str] = set()
    for message in messages:
        lower = message.lower()
        for priority in PRIORITIES:
            for metric in SlaMetric:
                if f"{metric.label.lower()} target of {priority.label.lower()} priority" in lower:
                    key = f"t-{priority.value}-{metric.value}"
                    cell_errors[key] = (cell_errors.get(key, "") + " " + message).strip()
                    placed.add(message)
    return placed


def _escalations_from_post(post: Any, errors: Errors, stored: Any) -> list[dict[str, Any]]:
    escalations = []
    stored_steps = [
        s for e in (stored if isinstance(stored, list) else []) if isinstance(e, dict) for s in e.get("actions") or []
    ]
    for i in range(MAX_ESCALATIONS + 1):
        on = clip(post.get(f"esc-{i}-on", ""), 40).strip()
        steps, problems = steps_from_post(post, prefix=f"esc-{i}")
        errors.add("escalations", *problems)
        if not on and not steps:
            continue
        if i == MAX_ESCALATIONS:
            errors.add("escalations", f"At most {MAX_ESCALATIONS} escalations.")
            break
        keep_webhook_secrets(steps, stored_steps)
        escalations.append(
            {"on": on, "metric": clip(post.get(f"esc-{i}-metric", ""), 40).strip() or "any", "actions": steps}
        )
    return escalations


@require_http_methods(["GET", "POST"])
@settings_admin
def sla_form(request: HttpRequest, policy_id: int | None = None) -> HttpResponse:
    policy = _policy(policy_id) if policy_id is not None else None
    if request.method == "GET":
        return render(request, "desk/settings/sla_form.html", _context(policy, _stored(policy), Errors(), {}))
    return _post(request, policy)


_PLACEMENT = [
    ("name", about("name")),
    ("description", about("description")),
    ("escalations", about("escalat", "step")),
    ("warn_before_minutes", about("warn")),
    ("calendar", about("calendar")),
    ("targets", about("target", "minute", "priority", "metric")),
]


def _post(request: HttpRequest, policy: SlaPolicy | None) -> HttpResponse:
    from helpdesk.actions.sla import InvalidPolicy, do_save_sla_policy, preview_policy
    from helpdesk.conditions import InvalidConditions, describe_fields, validate_conditions

    post = request.POST
    errors = Errors()
    cell_errors: dict[str, str] = {}
    conditions, problems = conditions_from_post(post, describe_fields())
    errors.add("conditions", *problems)
    targets = _targets_from_post(post)
    escalations = _escalations_from_post(post, errors, policy.escalations if policy else [])
    raw_calendar = clip(post.get("calendar", ""), 40).strip()
    calendar = None
    if raw_calendar:
        calendar_id = parse_id(raw_calendar)
        calendar = BusinessCalendar.objects.filter(pk=calendar_id).first() if calendar_id else None
        if calendar is None:
            errors.add("calendar", f"There is no business calendar {raw_calendar[:20]!r}; choose one from the list.")
    raw_warn = clip(post.get("warn_before_minutes", ""), 40).strip() or "0"
    warn = int(raw_warn) if raw_warn.isascii() and raw_warn.isdigit() and len(raw_warn) < 7 else None
    if warn is None:
        errors.add(
            "warn_before_minutes",
            f"Warn before: {raw_warn[:20]!r} is not a whole number of minutes (0 for no warning).",
        )
    values: dict[str, Any] = {
        "name": clip(post.get("name", ""), 1000),
        "description": clip(post.get("description", ""), 2000),
        "conditions": conditions,
        "calendar": raw_calendar,
        "targets": targets,
        "warn_before_minutes": raw_warn,
        "escalations": escalations,
        "is_active": checked(post, "is_active"),
    }
    known: dict[str, set[str]] = {"conditions": set()}
    try:
        validate_conditions(conditions, for_query=True)
    except InvalidConditions as exc:
        known["conditions"].update(exc.errors)

    def refused(exc: InvalidPolicy) -> None:
        placed = _place_target_errors(exc.errors, cell_errors)
        errors.place(exc.errors, _PLACEMENT, known={**known, "targets": placed})

    if post.get("action") == "preview":
        ticket = preview_ticket(request, errors)
        preview = None
        if ticket is not None and not errors:
            try:
                preview = preview_view(
                    preview_policy(conditions=conditions, targets=targets, calendar=calendar, ticket=ticket)
                )
            except InvalidPolicy as exc:
                refused(exc)
        context = _context(policy, values, errors, cell_errors, preview=preview, preview_for=ticket)
        return render(request, "desk/settings/sla_form.html", context)

    if not errors:
        try:
            saved = do_save_sla_policy(
                policy,
                name=values["name"],
                description=values["description"],
                conditions=conditions,
                calendar=calendar,
                targets=targets,
                warn_before_minutes=warn or 0,
                escalations=escalations,
                is_active=values["is_active"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except InvalidPolicy as exc:
            refused(exc)
        else:
            messages.success(request, f"{'Saved' if policy else 'Created'} SLA policy “{saved.name}”.")
            return HttpResponseRedirect(reverse("desk:settings_sla"))
    else:
        errors.add("conditions", *known["conditions"])
    return render(request, "desk/settings/sla_form.html", _context(policy, values, errors, cell_errors), status=400)


@require_POST
@settings_admin
def sla_move(request: HttpRequest, policy_id: int) -> HttpResponse:
    from helpdesk.actions.sla import do_move_sla_policy

    policy = _policy(policy_id)
    ordered = list(SlaPolicy.objects.order_by("position", "id").values_list("pk", flat=True))
    position = new_position(ordered, policy.pk, request.POST.get("direction", ""))
    if position is not None:
        do_move_sla_policy(policy, position=position, actor=request.user)  # type: ignore[arg-type]
    return HttpResponseRedirect(reverse("desk:settings_sla"))


@require_http_methods(["GET", "POST"])
@settings_admin
def sla_delete(request: HttpRequest, policy_id: int) -> HttpResponse:
    from helpdesk.actions.sla import do_delete_sla_policy

    policy = _policy(policy_id)
    if request.method == "POST":
        try:
            do_delete_sla_policy(policy, actor=request.user)  # type: ignore[arg-type]
        except ValueError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("desk:settings_sla_edit", args=[policy.pk]))
        messages.success(request, f"Deleted SLA policy “{policy.name}”.")
        return HttpResponseRedirect(reverse("desk:settings_sla"))
    return render(
        request,
        "desk/settings/confirm_delete.html",
        {
            "area": "sla",
            "what": f"SLA policy “{policy.name}”",
            "consequence": "Tickets no longer get this policy, and its escalations no longer run.",
            "cancel": reverse("desk:settings_sla_edit", args=[policy.pk]),
        },
    )
