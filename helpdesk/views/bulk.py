"""Bulk actions from the ticket lists: one form post over the selected rows, back to the same list.

The list's toolbar (templates/desk/ticket_list.html) posts `ticket` (each selected number),
`action` (assign, status, add_tags, remove_tags, merge), its value (`assignee`, `status`, `tag`)
and `next` (the list it came from). Assigning to "another agent" without JavaScript, and every
merge, first answer a page to choose on (desk/bulk_confirm.html), which posts again.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from helpdesk.actions.bulk import (
    MAX_BULK_TICKETS,
    BulkChange,
    BulkRefused,
    check_selection,
    do_bulk_edit,
    do_bulk_merge,
    merge_candidates,
)
from helpdesk.models import User
from helpdesk.views.desk import staff_required

# Values the form may post for one field at most (the cap plus one, to say "too many").
_MAX_POSTED = MAX_BULK_TICKETS + 1
_MAX_NEXT_CHARS = 2000


def _number(raw: str) -> int | None:
    raw = raw.strip().removeprefix("#")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 19 else None


def _numbers(request: HttpRequest) -> list[int]:
    """The posted ticket numbers; BulkRefused names the first that is not one."""
    posted = request.POST.getlist("ticket")
    if len(posted) > MAX_BULK_TICKETS * 2:
        # Far over the cap: not worth reading.
        raise BulkRefused(f"At most {MAX_BULK_TICKETS} tickets at a time ({len(posted)} were selected).")
    numbers = []
    for raw in posted:
        number = _number(raw)
        if number is None:
            raise BulkRefused(f"Not a ticket number: {raw[:40]!r}.")
        numbers.append(number)
    return check_selection(numbers)


def _next(request: HttpRequest) -> str:
    """Where to go back to: the posted list URL when it is one of the desk's own, else the list."""
    target = request.POST.get("next", "")[:_MAX_NEXT_CHARS]
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False)
    if safe and target.startswith("/desk/") and not target.startswith("//"):
        return target
    return reverse("desk:ticket_list")


def _agents() -> Any:
    return User.objects.filter(agent__isnull=False, is_active=True).order_by("first_name", "username")


def _assignee(raw: str, actor: Any) -> tuple[bool, Any]:
    """(known, agent or None): "me", "nobody", or an active agent's id."""
    if raw == "me":
        return True, actor
    if raw == "nobody":
        return True, None
    pk = _number(raw)
    agent = _agents().filter(pk=pk).first() if pk is not None else None
    return agent is not None, agent


def _step(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, "desk/bulk_confirm.html", {"next": _next(request), **context}, status=status)


@require_POST
@staff_required
def bulk_edit(request: HttpRequest) -> HttpResponse:
    back = HttpResponseRedirect(_next(request))
    actor: Any = request.user
    action = request.POST.get("action", "")
    try:
        numbers = _numbers(request)
        if action == "merge":
            return _merge(request, numbers)
        if action == "assign":
            raw = request.POST.get("assignee", "").strip()
            if raw in ("", "choose"):
                # Without JavaScript the toolbar offers me / nobody / another agent: choose here.
                return _step(request, {"step": "assign", "numbers": numbers, "agents": list(_agents())})
            known, agent = _assignee(raw, actor)
            if not known:
                raise BulkRefused(f"No such agent: {raw[:40]!r}.")
            change = BulkChange("assign", agent)
            verb = f"Assigned to {agent.display_name}:" if agent else "Unassigned:"
        elif action == "status":
            change = BulkChange("status", request.POST.get("status", ""))
            verb = "Status changed:"
        elif action in ("add_tags", "remove_tags"):
            tags = request.POST.getlist("tag")[:_MAX_POSTED]
            change = BulkChange(action, tags)
            verb = "Tagged:" if action == "add_tags" else "Untagged:"
        else:
            raise BulkRefused(f"Unknown bulk action {action[:40]!r}.")
        result = do_bulk_edit(numbers, change=change, actor=actor)
    except BulkRefused as exc:
        messages.error(request, str(exc))
        return back
    (messages.success if not (result.not_allowed or result.failed) else messages.warning)(request, result.summary(verb))
    return back


def _merge(request: HttpRequest, numbers: list[int]) -> HttpResponse:
    """First post: a page listing the selected tickets to choose the one to keep; with confirm=1
    and `into`: the merge."""
    actor: Any = request.user
    into = _number(request.POST.get("into", ""))
    if request.POST.get("confirm") != "1" or into is None:
        tickets, missing = merge_candidates(numbers, actor)
        if len(tickets) < 2:
            raise BulkRefused("Select at least two tickets you can see to merge.")
        return _step(request, {"step": "merge", "tickets": tickets, "missing": missing, "into": into})
    result = do_bulk_merge(numbers, into=into, actor=actor)
    (messages.success if not (result.not_allowed or result.failed) else messages.warning)(
        request, result.summary(f"Merged into #{into}:")
    )
    return HttpResponseRedirect(_next(request))


@require_GET
@staff_required
def bulk_agents(request: HttpRequest) -> HttpResponse:
    """The toolbar's assignee options with every agent (loaded by htmx, so the list page itself
    runs no query for them)."""
    response = render(request, "desk/_bulk_agents.html", {"agents": _agents()})
    response["Cache-Control"] = "private, max-age=60"
    return response
