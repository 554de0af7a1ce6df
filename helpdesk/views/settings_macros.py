"""Settings: macros (helpdesk/actions/macros.py) and canned responses (helpdesk/actions/canned.py).

Every staff member opens these: the list shows what they may use (admins: every one;
supervisors also every shared one), with edit and delete where they manage the row
(permissions.MacroPolicy / CannedPolicy `can_manage`: anyone their personal ones, supervisors
and admins the shared ones). The scope posts as `scope`: `all` (everyone), `team:<id>`, `me`, or
`owner:<id>` (an admin keeping another agent's personal row personal).

`GET|POST settings/macros/new/`, `…/macros/<id>/` the form, steps as rows (`act-type`,
`act-value`); `GET|POST …/macros/<id>/delete/`; the same under `settings/canned/`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from helpdesk.actions.canned import do_delete_canned_response, do_save_canned_response
from helpdesk.actions.macros import do_delete_macro, do_save_macro
from helpdesk.canned import MAX_BODY_CHARS, PLACEHOLDERS
from helpdesk.macros import MACRO_STATUSES, STEP_TYPES, InvalidMacro
from helpdesk.models import CannedResponse, Macro, Priority, Role, Team, TicketStatus, User
from helpdesk.permissions import ScopedPolicy, canned_policy, macro_policy, role_of
from helpdesk.views.settings_common import (
    Errors,
    about,
    clip,
    db_step_choices,
    parse_id,
    settings_staff,
    step_rows,
    steps_from_post,
)

STEP_LABELS = {
    "reply": "Reply to the customer",
    "note": "Add an internal note",
    "status": "Set status",
    "priority": "Set priority",
    "team": "Set team",
    "assignee": "Assign to",
    "add_tags": "Add tags",
    "remove_tags": "Remove tags",
}


def manageable_list(user: Any, policy: ScopedPolicy) -> QuerySet[Any]:
    """The rows the settings list shows: admins every row; supervisors the shared ones and their
    own; everyone else what they may use."""
    role = role_of(user)
    if role == Role.ADMIN:
        qs = policy.model.objects.all()
    elif role == Role.SUPERVISOR:
        qs = policy.model.objects.filter(Q(owner__isnull=True) | Q(owner=user))
    else:
        qs = policy.usable(user)
    return qs.select_related("team", "owner")


def _row(policy: ScopedPolicy, user: Any, model: Any, row_id: int) -> Any:
    """A row the user may manage; 404 for one they may not even use, 403 for one they only use."""
    row = model.objects.select_related("team", "owner").filter(pk=row_id).first() if 0 < row_id < 2**63 else None
    if row is None or not (
        policy.can_use(user, row) or policy.can_manage(user, team_id=row.team_id, owner_id=row.owner_id)
    ):
        raise Http404("no such row")
    if not policy.can_manage(user, team_id=row.team_id, owner_id=row.owner_id):
        raise PermissionDenied("you may not change this one")
    return row


def scope_choices(user: Any, policy: ScopedPolicy, row: Any = None) -> list[tuple[str, str]]:
    """The scopes the user may give a row (and the row's current one, for an admin)."""
    choices: list[tuple[str, str]] = [("me", "Only me")]
    if row is not None and row.owner_id is not None and row.owner_id != user.pk:
        choices.insert(0, (f"owner:{row.owner_id}", f"Personal to {row.owner.display_name}"))
    if policy.can_manage(user, team_id=None, owner_id=None):
        choices.append(("all", "Everyone"))
        choices.extend((f"team:{t.pk}", f"Team {t.name}") for t in Team.objects.order_by("name").only("pk", "name"))
    return choices


def scope_of(row: Any, user: Any) -> str:
    if row is None:
        return "me"
    if row.owner_id is not None:
        return "me" if row.owner_id == user.pk else f"owner:{row.owner_id}"
    return f"team:{row.team_id}" if row.team_id else "all"


def parse_scope(raw: str, user: Any, errors: Errors) -> tuple[Team | None, Any]:
    """(team, owner) for a posted scope; an unknown one is an error next to the field."""
    raw = raw.strip()
    if raw == "me":
        return None, user
    if raw == "all":
        return None, None
    kind, _, rest = raw.partition(":")
    pk = parse_id(rest)
    if kind == "team" and pk:
        team = Team.objects.filter(pk=pk).first()
        if team is not None:
            return team, None
    if kind == "owner" and pk:
        owner = User.objects.filter(pk=pk).first()
        if owner is not None:
            return None, owner
    errors.add("scope", f"Unknown scope {raw[:40]!r}; choose who may use it from the list.")
    return None, user


# --- macros ---------------------------------------------------------------------------------------


def macro_step_kinds() -> list[dict[str, Any]]:
    """The macro editor's step types (helpdesk/macros.py) with the choices of those that have them."""
    choices: dict[str, list[list[str]]] = {
        "status": [[s, TicketStatus(s).label] for s in MACRO_STATUSES],
        "priority": [[str(p.value), p.label] for p in Priority],
        **db_step_choices(context="macro"),
    }
    return [
        {"type": kind, "label": STEP_LABELS[kind], "choices": choices.get(kind), "second": None, "help": ""}
        for kind in STEP_TYPES
    ]


@require_http_methods(["GET"])
@settings_staff
def macro_list(request: HttpRequest) -> HttpResponse:
    rows = list(manageable_list(request.user, macro_policy))
    for row in rows:
        row.may_manage = macro_policy.can_manage(request.user, team_id=row.team_id, owner_id=row.owner_id)
        row.step_count = len(row.actions) if isinstance(row.actions, list) else 0
    return render(request, "desk/settings/macro_list.html", {"area": "macros", "macros": rows})


def _macro_context(request: HttpRequest, macro: Macro | None, values: dict[str, Any], errors: Errors) -> dict[str, Any]:
    kinds = macro_step_kinds()
    return {
        "area": "macros",
        "macro": macro,
        "values": values,
        "errors": errors.by_field,
        "error_count": errors.count(),
        "scopes": scope_choices(request.user, macro_policy, macro),
        "step_kinds": kinds,
        "step_rows": step_rows(values.get("actions"), kinds),
        "placeholders": PLACEHOLDERS,
    }


@require_http_methods(["GET", "POST"])
@settings_staff
def macro_form(request: HttpRequest, macro_id: int | None = None) -> HttpResponse:
    macro = _row(macro_policy, request.user, Macro, macro_id) if macro_id is not None else None
    if request.method == "GET":
        values: dict[str, Any] = {
            "name": macro.name if macro else "",
            "description": macro.description if macro else "",
            "scope": scope_of(macro, request.user),
            "actions": macro.actions if macro else [],
        }
        return render(request, "desk/settings/macro_form.html", _macro_context(request, macro, values, Errors()))
    post = request.POST
    errors = Errors()
    steps, problems = steps_from_post(post)
    errors.add("actions", *problems)
    values = {
        "name": clip(post.get("name", ""), 1000),
        "description": clip(post.get("description", ""), 2000),
        "scope": clip(post.get("scope", ""), 60),
        "actions": steps,
    }
    team, owner = parse_scope(values["scope"], request.user, errors)
    if not errors:
        try:
            saved = do_save_macro(
                macro,
                name=values["name"],
                description=values["description"],
                actions=steps,
                team=team,
                owner=owner,
                actor=request.user,  # type: ignore[arg-type]
            )
        except InvalidMacro as exc:
            errors.place(
                exc.errors,
                [("actions", about("step", "tag")), ("name", about("name")), ("description", about("description"))],
            )
        except PermissionDenied:
            errors.add("scope", "You may not share a macro that way; choose another scope.")
        except ValueError as exc:
            errors.add("scope", str(exc))
        else:
            messages.success(request, f"{'Saved' if macro else 'Created'} macro “{saved.name}”.")
            return HttpResponseRedirect(reverse("desk:settings_macros"))
    return render(request, "desk/settings/macro_form.html", _macro_context(request, macro, values, errors), status=400)


@require_http_methods(["GET", "POST"])
@settings_staff
def macro_delete(request: HttpRequest, macro_id: int) -> HttpResponse:
    macro = _row(macro_policy, request.user, Macro, macro_id)
    if request.method == "POST":
        do_delete_macro(macro, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Deleted macro “{macro.name}”.")
        return HttpResponseRedirect(reverse("desk:settings_macros"))
    return render(
        request,
        "desk/settings/confirm_delete.html",
        {
            "area": "macros",
            "what": f"macro “{macro.name}”",
            "consequence": "Agents can no longer apply it. Tickets it changed keep those changes.",
            "cancel": reverse("desk:settings_macro", args=[macro.pk]),
        },
    )


# --- canned responses -------------------------------------------------------------------------


@require_http_methods(["GET"])
@settings_staff
def canned_list(request: HttpRequest) -> HttpResponse:
    rows = list(manageable_list(request.user, canned_policy).defer("body"))
    for row in rows:
        row.may_manage = canned_policy.can_manage(request.user, team_id=row.team_id, owner_id=row.owner_id)
    return render(request, "desk/settings/canned_list.html", {"area": "canned", "responses": rows})


def _canned_context(
    request: HttpRequest, canned: CannedResponse | None, values: dict[str, Any], errors: Errors
) -> dict[str, Any]:
    return {
        "area": "canned",
        "canned": canned,
        "values": values,
        "errors": errors.by_field,
        "error_count": errors.count(),
        "scopes": scope_choices(request.user, canned_policy, canned),
        "placeholders": PLACEHOLDERS,
        "max_body": MAX_BODY_CHARS,
    }


@require_http_methods(["GET", "POST"])
@settings_staff
def canned_form(request: HttpRequest, canned_id: int | None = None) -> HttpResponse:
    canned = _row(canned_policy, request.user, CannedResponse, canned_id) if canned_id is not None else None
    if request.method == "GET":
        values: dict[str, Any] = {
            "title": canned.title if canned else "",
            "body": canned.body if canned else "",
            "scope": scope_of(canned, request.user),
        }
        return render(request, "desk/settings/canned_form.html", _canned_context(request, canned, values, Errors()))
    post = request.POST
    errors = Errors()
    values = {
        "title": clip(post.get("title", ""), 1000),
        "body": clip(post.get("body", ""), MAX_BODY_CHARS + 10),
        "scope": clip(post.get("scope", ""), 60),
    }
    team, owner = parse_scope(values["scope"], request.user, errors)
    if not errors:
        try:
            saved = do_save_canned_response(
                canned,
                title=values["title"],
                body=values["body"],
                team=team,
                owner=owner,
                actor=request.user,  # type: ignore[arg-type]
            )
        except PermissionDenied:
            errors.add("scope", "You may not share a canned response that way; choose another scope.")
        except ValueError as exc:
            errors.place(
                [str(exc)], [("title", about("title")), ("body", about("text")), ("scope", about("team", "personal"))]
            )
        else:
            messages.success(request, f"{'Saved' if canned else 'Created'} canned response “{saved.title}”.")
            return HttpResponseRedirect(reverse("desk:settings_canned"))
    return render(
        request, "desk/settings/canned_form.html", _canned_context(request, canned, values, errors), status=400
    )


@require_http_methods(["GET", "POST"])
@settings_staff
def canned_delete(request: HttpRequest, canned_id: int) -> HttpResponse:
    canned = _row(canned_policy, request.user, CannedResponse, canned_id)
    if request.method == "POST":
        do_delete_canned_response(canned, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Deleted canned response “{canned.title}”.")
        return HttpResponseRedirect(reverse("desk:settings_canned"))
    return render(
        request,
        "desk/settings/confirm_delete.html",
        {
            "area": "canned",
            "what": f"canned response “{canned.title}”",
            "consequence": "Agents can no longer insert it. Replies already sent with it are not changed.",
            "cancel": reverse("desk:settings_canned_edit", args=[canned.pk]),
        },
    )
