"""Settings: routing (helpdesk/actions/routing.py).

`GET  settings/routing/` routing rules in order (up/down), each team's routing mode, and each
     agent's capacities;
`GET|POST settings/routing/rules/new/`, `…/rules/<id>/` the rule form (inbox, conditions, team);
     `action=preview` tests it against a ticket: each condition true or false and the team the
     ticket would go to; nothing is written;
`POST …/rules/<id>/move/`, `GET|POST …/rules/<id>/delete/`;
`GET|POST settings/routing/teams/<id>/` a team's mode, reassignment when an agent goes offline
     and the skills timeout;
`GET|POST settings/routing/agents/<user id>/` an agent's capacity per channel (`cap-<kind>`,
     `cap-*` for the others), chats at once and languages. Admins only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from channels_inbox.models import Inbox
from helpdesk.models import AgentProfile, RoutingMode, RoutingRule, Team
from helpdesk.views.settings_common import (
    Errors,
    about,
    checked,
    clip,
    condition_rows,
    conditions_from_post,
    json_fields,
    new_position,
    parse_id,
    preview_ticket,
    preview_view,
    settings_admin,
)

# More than this is refused before the action looks (which holds to its own, smaller limit).
MAX_LANGUAGES = 100
MAX_CAPACITY = 1000


def _rule(rule_id: int) -> RoutingRule:
    rule = RoutingRule.objects.filter(pk=rule_id).first() if 0 < rule_id < 2**63 else None
    if rule is None:
        raise Http404("no such routing rule")
    return rule


def channel_kinds() -> list[str]:
    """The channel kinds capacities are set for: every channel adapter's (no query)."""
    from channels_inbox.adapters import adapter_kinds

    return list(adapter_kinds())


@require_http_methods(["GET"])
@settings_admin
def routing_overview(request: HttpRequest) -> HttpResponse:
    rules = list(RoutingRule.objects.select_related("inbox", "team").order_by("position", "id"))
    teams = list(Team.objects.annotate(agent_count=Count("agents")).order_by("name"))
    profiles = list(
        AgentProfile.objects.select_related("user").order_by("user__first_name", "user__last_name", "user_id")
    )
    kinds = channel_kinds()
    for profile in profiles:
        capacity = profile.capacity if isinstance(profile.capacity, dict) else {}
        profile.capacity_text = ", ".join(f"{k} {v}" for k, v in sorted(capacity.items())) or "default"  # type: ignore[attr-defined]
    return render(
        request,
        "desk/settings/routing.html",
        {"area": "routing", "rules": rules, "teams": teams, "profiles": profiles, "kinds": kinds},
    )


def _rule_context(rule: RoutingRule | None, values: dict[str, Any], errors: Errors, **extra: Any) -> dict[str, Any]:
    from helpdesk.conditions import describe_fields

    fields = json_fields(describe_fields())
    return {
        "area": "routing",
        "rule": rule,
        "values": values,
        "errors": errors.by_field,
        "error_count": errors.count(),
        "fields": fields,
        "condition_rows": condition_rows(values.get("conditions"), fields),
        "inboxes": list(Inbox.objects.order_by("name").only("pk", "name", "kind")),
        "teams": list(Team.objects.order_by("name").only("pk", "name")),
        **extra,
    }


def _stored(rule: RoutingRule | None) -> dict[str, Any]:
    if rule is None:
        return {"name": "", "inbox": "", "team": "", "conditions": {}, "is_active": True}
    return {
        "name": rule.name,
        "inbox": str(rule.inbox_id or ""),
        "team": str(rule.team_id),
        "conditions": rule.conditions,
        "is_active": rule.is_active,
    }


def _routing_preview(conditions: dict[str, Any], inbox: Inbox | None, team: Team, ticket: Any) -> dict[str, Any]:
    """What the rule would do to this ticket were it new: reads only."""
    from helpdesk.conditions import explain, matches

    checks: list[tuple[str, bool]] = []
    inbox_ok = inbox is None or ticket.inbox_id == inbox.pk
    if inbox is not None:
        checks.append((f"Inbox is {inbox.name}", inbox_ok))
    checks.extend(explain(conditions, ticket))
    matched = inbox_ok and matches(conditions, ticket)
    current = ticket.team.name if ticket.team_id else "no team"
    effects = [f"Team: {current} → {team.name}"] if matched and ticket.team_id != team.pk else []
    if matched and not effects:
        effects = [f"Team stays {team.name}"]
    return {"matches": matched, "conditions": checks, "effects": effects}


@require_http_methods(["GET", "POST"])
@settings_admin
def routing_rule_form(request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
    from helpdesk.actions.routing import InvalidRoutingRule, do_save_routing_rule
    from helpdesk.conditions import InvalidConditions, describe_fields, validate_conditions

    rule = _rule(rule_id) if rule_id is not None else None
    if request.method == "GET":
        return render(request, "desk/settings/routing_rule_form.html", _rule_context(rule, _stored(rule), Errors()))
    post = request.POST
    errors = Errors()
    conditions, problems = conditions_from_post(post, describe_fields())
    errors.add("conditions", *problems)
    raw_inbox = clip(post.get("inbox", ""), 40).strip()
    raw_team = clip(post.get("team", ""), 40).strip()
    inbox = None
    if raw_inbox:
        inbox_id = parse_id(raw_inbox)
        inbox = Inbox.objects.filter(pk=inbox_id).first() if inbox_id else None
        if inbox is None:
            errors.add("inbox", f"There is no inbox {raw_inbox[:20]!r}; choose one from the list, or any inbox.")
    team_id = parse_id(raw_team)
    team = Team.objects.filter(pk=team_id).first() if team_id else None
    if team is None:
        errors.add(
            "team", "Choose the team the tickets go to." if not raw_team else f"There is no team {raw_team[:20]!r}."
        )
    values: dict[str, Any] = {
        "name": clip(post.get("name", ""), 1000),
        "inbox": raw_inbox,
        "team": raw_team,
        "conditions": conditions,
        "is_active": checked(post, "is_active"),
    }
    known: dict[str, set[str]] = {"conditions": set()}
    normalized: dict[str, Any] = {}
    try:
        normalized = validate_conditions(conditions)
    except InvalidConditions as exc:
        known["conditions"].update(exc.errors)

    if post.get("action") == "preview":
        errors.add("conditions", *known["conditions"])
        ticket = preview_ticket(request, errors)
        preview = None
        if ticket is not None and not errors and team is not None:
            preview = preview_view(_routing_preview(normalized, inbox, team, ticket))
        context = _rule_context(rule, values, errors, preview=preview, preview_for=ticket)
        return render(request, "desk/settings/routing_rule_form.html", context)

    if not errors and team is not None:
        try:
            saved = do_save_routing_rule(
                rule,
                name=values["name"],
                inbox=inbox,
                conditions=conditions,
                team=team,
                is_active=values["is_active"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except InvalidRoutingRule as exc:
            errors.place(
                exc.errors,
                [("name", about("name")), ("inbox", about("inbox")), ("team", about("team"))],
                known=known,
            )
        else:
            messages.success(request, f"{'Saved' if rule else 'Created'} routing rule “{saved.name}”.")
            return HttpResponseRedirect(reverse("desk:settings_routing"))
    else:
        errors.add("conditions", *known["conditions"])
    return render(request, "desk/settings/routing_rule_form.html", _rule_context(rule, values, errors), status=400)


@require_POST
@settings_admin
def routing_rule_move(request: HttpRequest, rule_id: int) -> HttpResponse:
    from helpdesk.actions.routing import do_move_routing_rule

    rule = _rule(rule_id)
    ordered = list(RoutingRule.objects.order_by("position", "id").values_list("pk", flat=True))
    position = new_position(ordered, rule.pk, request.POST.get("direction", ""))
    if position is not None:
        do_move_routing_rule(rule, position=position, actor=request.user)  # type: ignore[arg-type]
    return HttpResponseRedirect(reverse("desk:settings_routing"))


@require_http_methods(["GET", "POST"])
@settings_admin
def routing_rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    from helpdesk.actions.routing import do_delete_routing_rule

    rule = _rule(rule_id)
    if request.method == "POST":
        do_delete_routing_rule(rule, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Deleted routing rule “{rule.name}”.")
        return HttpResponseRedirect(reverse("desk:settings_routing"))
    return render(
        request,
        "desk/settings/confirm_delete.html",
        {
            "area": "routing",
            "what": f"routing rule “{rule.name}”",
            "consequence": "New tickets it would have sent to a team go to their inbox's team (or a later rule's).",
            "cancel": reverse("desk:settings_routing_rule", args=[rule.pk]),
        },
    )


# --- a team's routing ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@settings_admin
def team_routing(request: HttpRequest, team_id: int) -> HttpResponse:
    from helpdesk.actions.routing import do_set_team_routing

    team = Team.objects.filter(pk=team_id).first() if 0 < team_id < 2**63 else None
    if team is None:
        raise Http404("no such team")
    errors = Errors()
    values: dict[str, Any] = {
        "routing": team.routing,
        "reassign_offline": team.reassign_offline,
        "skills_timeout_minutes": "" if team.skills_timeout_minutes is None else str(team.skills_timeout_minutes),
    }
    status = 200
    if request.method == "POST":
        post = request.POST
        values = {
            "routing": clip(post.get("routing", ""), 40).strip(),
            "reassign_offline": checked(post, "reassign_offline"),
            "skills_timeout_minutes": clip(post.get("skills_timeout_minutes", ""), 40).strip(),
        }
        if values["routing"] not in RoutingMode.values:
            errors.add(
                "routing", f"Unknown routing mode {values['routing'][:20]!r}; one of: {', '.join(RoutingMode.labels)}."
            )
        timeout: int | None = None
        raw = values["skills_timeout_minutes"]
        if raw:
            if raw.isascii() and raw.isdigit() and len(raw) < 7:
                timeout = int(raw)
            else:
                errors.add(
                    "skills_timeout_minutes",
                    f"Skills timeout: {raw[:20]!r} is not a whole number of minutes"
                    " (empty: the language is never required).",
                )
        if not errors:
            try:
                do_set_team_routing(
                    team,
                    routing=values["routing"],
                    reassign_offline=values["reassign_offline"],
                    skills_timeout_minutes=timeout,
                    actor=request.user,  # type: ignore[arg-type]
                )
            except ValueError as exc:
                errors.place(
                    getattr(exc, "errors", None) or [str(exc)],
                    [("skills_timeout_minutes", about("timeout", "skill")), ("routing", about("mode", "routing"))],
                )
            else:
                messages.success(request, f"Saved routing of team {team.name}.")
                return HttpResponseRedirect(reverse("desk:settings_routing"))
        status = 400
    return render(
        request,
        "desk/settings/team_routing.html",
        {
            "area": "routing",
            "team": team,
            "values": values,
            "modes": RoutingMode.choices,
            "errors": errors.by_field,
            "error_count": errors.count(),
        },
        status=status,
    )


# --- an agent's capacities ------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@settings_admin
def agent_routing(request: HttpRequest, user_id: int) -> HttpResponse:
    from helpdesk.actions.routing import do_set_agent_routing

    profile = (
        AgentProfile.objects.select_related("user").filter(user_id=user_id).first() if 0 < user_id < 2**63 else None
    )
    if profile is None:
        raise Http404("no such agent")
    kinds = channel_kinds()
    capacity = profile.capacity if isinstance(profile.capacity, dict) else {}
    kinds = sorted(set(kinds) | {k for k in capacity if k != "*"})
    errors = Errors()
    values: dict[str, Any] = {
        "capacity": {k: str(v) for k, v in capacity.items()},
        "chat_capacity": str(profile.chat_capacity),
        "languages": ", ".join(str(lang) for lang in profile.languages or []),
    }
    status = 200
    if request.method == "POST":
        post = request.POST
        parsed: dict[str, int] = {}
        shown: dict[str, str] = {}
        for kind in [*kinds, "*"]:
            raw = clip(post.get(f"cap-{kind}", ""), 40).strip()
            if not raw:
                continue
            shown[kind] = raw
            if raw.isascii() and raw.isdigit() and int(raw) <= MAX_CAPACITY:
                parsed[kind] = int(raw)
            else:
                label = "other channels" if kind == "*" else kind
                errors.add(
                    f"cap-{kind}", f"Capacity for {label}: {raw[:20]!r} is not a whole number from 0 to {MAX_CAPACITY}."
                )
        raw_chat = clip(post.get("chat_capacity", ""), 40).strip()
        chat = int(raw_chat) if raw_chat.isascii() and raw_chat.isdigit() and len(raw_chat) < 6 else None
        if chat is None:
            errors.add("chat_capacity", f"Chats at once: {raw_chat[:20]!r} is not a whole number.")
        raw_languages = clip(post.get("languages", ""), 1000)
        languages = [p.strip() for p in raw_languages.replace(";", ",").split(",") if p.strip()]
        if len(languages) > MAX_LANGUAGES:
            errors.add("languages", f"At most {MAX_LANGUAGES} languages; {len(languages)} were given.")
        values = {"capacity": shown, "chat_capacity": raw_chat, "languages": raw_languages}
        if not errors and chat is not None:
            try:
                do_set_agent_routing(
                    profile,
                    capacity=parsed,
                    chat_capacity=chat,
                    languages=languages,
                    actor=request.user,  # type: ignore[arg-type]
                )
            except ValueError as exc:
                errors.place(
                    getattr(exc, "errors", None) or [str(exc)],
                    [
                        ("chat_capacity", about("chat")),
                        ("languages", about("language")),
                        ("capacity", about("capacity")),
                    ],
                )
            else:
                messages.success(request, f"Saved routing of {profile.user.display_name}.")
                return HttpResponseRedirect(reverse("desk:settings_routing"))
        status = 400
    return render(
        request,
        "desk/settings/agent_routing.html",
        {
            "area": "routing",
            "profile": profile,
            "capacities": [
                {"kind": k, "value": values["capacity"].get(k, ""), "errors": errors.by_field.get(f"cap-{k}", [])}
                for k in [*kinds, "*"]
            ],
            "values": values,
            "errors": errors.by_field,
            "error_count": errors.count(),
        },
        status=status,
    )
