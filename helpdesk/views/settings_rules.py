"""Settings: triggers and time rules (helpdesk/actions/rules.py), one set of views for both kinds.

`GET  settings/triggers/` (or `time-rules/`) the list in running order, with up/down buttons;
`GET  …/new/`, `GET …/<id>/` the form; `POST` the same URL saves (`action=save`) or tests the
     form as it stands against a ticket (`action=preview`, `preview_ticket=<n>`: each condition
     true or false and what would change; nothing is written);
`POST …/<id>/move/` (`direction=up|down`), `GET|POST …/<id>/delete/` confirm, then delete.
Admins only (settings_policy.can_manage).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from helpdesk.models import Rule, RuleKind
from helpdesk.views.settings_common import (
    MAX_ROWS,
    Errors,
    about,
    checked,
    clip,
    condition_rows,
    conditions_from_post,
    count_conditions,
    json_fields,
    keep_webhook_secrets,
    new_position,
    preview_ticket,
    preview_view,
    settings_admin,
    step_kinds,
    step_rows,
    steps_from_post,
)

KINDS: dict[str, str] = {"triggers": RuleKind.TRIGGER, "time-rules": RuleKind.TIME}
TITLES: dict[str, tuple[str, str]] = {
    RuleKind.TRIGGER: ("Triggers", "trigger"),
    RuleKind.TIME: ("Time rules", "time rule"),
}


def _kind(slug: str) -> str:
    if slug not in KINDS:
        raise Http404("no such settings page")
    return KINDS[slug]


def _rule(kind: str, rule_id: int | str) -> Rule:
    pk = int(rule_id)  # the URL allows 1–18 digits
    rule = Rule.objects.filter(kind=kind, pk=pk).first() if pk > 0 else None
    if rule is None:
        raise Http404("no such rule")
    return rule


def _list_url(slug: str) -> str:
    return reverse("desk:settings_rules", args=[slug])


@require_http_methods(["GET"])
@settings_admin
def rule_list(request: HttpRequest, slug: str) -> HttpResponse:
    kind = _kind(slug)
    rules = list(Rule.objects.filter(kind=kind).order_by("position", "id"))
    for rule in rules:
        rule.condition_count = count_conditions(rule.conditions)  # type: ignore[attr-defined]
        rule.step_count = len(rule.actions) if isinstance(rule.actions, list) else 0  # type: ignore[attr-defined]
    title, noun = TITLES[kind]
    return render(
        request,
        "desk/settings/rule_list.html",
        {"rules": rules, "slug": slug, "kind": kind, "title": title, "noun": noun, "area": slug},
    )


def _form_context(
    kind: str, slug: str, rule: Rule | None, values: dict[str, Any], errors: Errors, **extra: Any
) -> dict[str, Any]:
    from helpdesk.actions.rules import TRIGGER_EVENTS
    from helpdesk.conditions import describe_fields
    from helpdesk.runner import describe_steps

    title, noun = TITLES[kind]
    fields = json_fields(describe_fields())
    kinds = step_kinds(describe_steps(), context=kind)
    return {
        "slug": slug,
        "area": slug,
        "kind": kind,
        "title": title,
        "noun": noun,
        "rule": rule,
        "values": values,
        "errors": errors.by_field,
        "error_count": errors.count(),
        "fields": fields,
        "step_kinds": kinds,
        "trigger_events": TRIGGER_EVENTS,
        "condition_rows": condition_rows(values.get("conditions"), fields),
        "step_rows": step_rows(values.get("actions"), kinds),
        "max_rows": MAX_ROWS,
        **extra,
    }


def _stored_values(rule: Rule | None) -> dict[str, Any]:
    if rule is None:
        return {"name": "", "description": "", "events": [], "conditions": {}, "actions": [], "is_active": True}
    return {
        "name": rule.name,
        "description": rule.description,
        "events": list(rule.events or []),
        "conditions": rule.conditions,
        "actions": rule.actions,
        "is_active": rule.is_active,
    }


@require_http_methods(["GET", "POST"])
@settings_admin
def rule_form(request: HttpRequest, slug: str, rule_id: str | None = None) -> HttpResponse:
    kind = _kind(slug)
    rule = _rule(kind, rule_id) if rule_id is not None else None
    if request.method == "GET":
        return render(
            request, "desk/settings/rule_form.html", _form_context(kind, slug, rule, _stored_values(rule), Errors())
        )
    return _post(request, kind, slug, rule)


def _post(request: HttpRequest, kind: str, slug: str, rule: Rule | None) -> HttpResponse:
    from helpdesk.actions.rules import InvalidRule, do_save_rule, preview_rule
    from helpdesk.conditions import InvalidConditions, describe_fields, validate_conditions
    from helpdesk.runner import InvalidActions, validate_actions

    post = request.POST
    errors = Errors()
    conditions, condition_problems = conditions_from_post(post, describe_fields())
    actions, step_problems = steps_from_post(post)
    keep_webhook_secrets(actions, rule.actions if rule else [])
    errors.add("conditions", *condition_problems)
    errors.add("actions", *step_problems)
    values: dict[str, Any] = {
        "name": clip(post.get("name", ""), 1000),
        "description": clip(post.get("description", ""), 2000),
        "events": [clip(e, 100) for e in post.getlist("events")[:MAX_ROWS]],
        "conditions": conditions,
        "actions": actions,
        "is_active": checked(post, "is_active"),
    }
    # Which messages are about the conditions and which about the steps (for placing them).
    known: dict[str, set[str]] = {"conditions": set(), "actions": set()}
    normalized_conditions: dict[str, Any] = {}
    normalized_actions: list[dict[str, Any]] = []
    try:
        normalized_conditions = validate_conditions(conditions, for_query=kind == RuleKind.TIME)
    except InvalidConditions as exc:
        known["conditions"].update(exc.errors)
    try:
        normalized_actions = validate_actions(actions, context=kind)
    except InvalidActions as exc:
        known["actions"].update(exc.errors)

    if post.get("action") == "preview":
        errors.add("conditions", *known["conditions"])
        errors.add("actions", *known["actions"])
        ticket = preview_ticket(request, errors)
        preview = None
        if ticket is not None and not errors:
            preview = preview_view(
                preview_rule(kind=kind, conditions=normalized_conditions, actions=normalized_actions, ticket=ticket)
            )
        context = _form_context(kind, slug, rule, values, errors, preview=preview, preview_for=ticket)
        return render(request, "desk/settings/rule_form.html", context)

    if not condition_problems and not step_problems:
        try:
            saved = do_save_rule(
                rule,
                kind=kind,
                name=values["name"],
                description=values["description"],
                events=values["events"],
                conditions=conditions,
                actions=actions,
                is_active=values["is_active"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except InvalidRule as exc:
            errors.place(
                exc.errors,
                [("name", about("name")), ("description", about("description")), ("events", about("event"))],
                known=known,
            )
        except PermissionDenied:
            raise
        else:
            verb = "Saved" if rule else "Created"
            messages.success(request, f"{verb} {TITLES[kind][1]} “{saved.name}”.")
            return HttpResponseRedirect(_list_url(slug))
    context = _form_context(kind, slug, rule, values, errors)
    return render(request, "desk/settings/rule_form.html", context, status=400)


@require_POST
@settings_admin
def rule_move(request: HttpRequest, slug: str, rule_id: str) -> HttpResponse:
    from helpdesk.actions.rules import do_move_rule

    kind = _kind(slug)
    rule = _rule(kind, rule_id)
    ordered = list(Rule.objects.filter(kind=kind).order_by("position", "id").values_list("pk", flat=True))
    position = new_position(ordered, rule.pk, request.POST.get("direction", ""))
    if position is not None:
        do_move_rule(rule, position=position, actor=request.user)  # type: ignore[arg-type]
    return HttpResponseRedirect(_list_url(slug))


@require_http_methods(["GET", "POST"])
@settings_admin
def rule_delete(request: HttpRequest, slug: str, rule_id: str) -> HttpResponse:
    from helpdesk.actions.rules import do_delete_rule

    kind = _kind(slug)
    rule = _rule(kind, rule_id)
    if request.method == "POST":
        do_delete_rule(rule, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Deleted {TITLES[kind][1]} “{rule.name}”.")
        return HttpResponseRedirect(_list_url(slug))
    return render(
        request,
        "desk/settings/confirm_delete.html",
        {
            "area": slug,
            "what": f"{TITLES[kind][1]} “{rule.name}”",
            "consequence": "It stops running at once. Tickets it already changed keep those changes.",
            "cancel": reverse("desk:settings_rule", args=[slug, rule.pk]),
        },
    )
