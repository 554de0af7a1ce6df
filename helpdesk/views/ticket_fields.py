"""The ticket page's edit panel: priority, team, tags, merge into another ticket, link as a follow-up."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from helpdesk.actions.merge import MergeRefused, do_link_followup, do_merge_tickets, merge_refusal
from helpdesk.actions.ticket_fields import (
    MAX_TAGS_PER_EDIT,
    InvalidTag,
    do_change_priority,
    do_change_team,
    do_set_tags,
)
from helpdesk.models import Priority, Team, Ticket
from helpdesk.permissions import access_ticket, ticket_policy
from helpdesk.views.desk import staff_required


def _back(number: int) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("desk:ticket_detail", args=[number]))


def _id(raw: str) -> int | None:
    """A posted id or ticket number: ASCII digits that fit a bigint (a leading # allowed), else None."""
    raw = raw.strip().removeprefix("#")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


@require_POST
@staff_required
def ticket_priority(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number, for_="edit")
    raw = request.POST.get("priority", "")
    priority = _id(raw)
    if priority is None or priority not in Priority.values:
        messages.error(request, f"Unknown priority {raw[:40]!r}.")
        return _back(number)
    do_change_priority(ticket, priority=priority, actor=request.user)  # type: ignore[arg-type]
    return _back(number)


@require_POST
@staff_required
def ticket_team(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number, for_="edit")
    raw = request.POST.get("team", "").strip()
    team = None
    if raw:
        pk = _id(raw)
        team = Team.objects.filter(pk=pk).first() if pk is not None else None
        if team is None:
            messages.error(request, f"No such team: {raw[:40]!r}.")
            return _back(number)
    ticket = do_change_team(ticket, team=team, actor=request.user)  # type: ignore[arg-type]
    if not ticket_policy.can_view(request.user, ticket):
        # Moved to a team the agent is not in: the page would be a 404 now.
        messages.success(request, f"#{number} moved to {team}.")
        return HttpResponseRedirect(reverse("desk:ticket_list"))
    return _back(number)


@require_POST
@staff_required
def ticket_tags(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number, for_="edit")
    add = request.POST.getlist("add")[: MAX_TAGS_PER_EDIT + 1]
    remove = request.POST.getlist("remove")[: MAX_TAGS_PER_EDIT + 1]
    if not add and not remove:
        messages.error(request, "A tag needs a name.")
        return _back(number)
    try:
        do_set_tags(ticket, add=add, remove=remove, actor=request.user)  # type: ignore[arg-type]
    except InvalidTag as exc:
        messages.error(request, str(exc))
    return _back(number)


def _other_ticket(request: HttpRequest, field: str, number: int) -> Ticket | None:
    """The ticket a form names by number, fetched for editing (404 if the agent cannot see it)."""
    raw = request.POST.get(field, "")
    other = _id(raw)
    if other is None:
        messages.error(request, f"Not a ticket number: {raw[:40]!r}.")
        return None
    return access_ticket(request.user, other, for_="edit")


@require_POST
@staff_required
def ticket_merge(request: HttpRequest, number: int) -> HttpResponse:
    """First post: a confirmation page showing both tickets; with confirm=1: the merge."""
    source = access_ticket(request.user, number, for_="edit")
    target = _other_ticket(request, "into", number)
    if target is None:
        return _back(number)
    refusal = merge_refusal(source, target)
    if refusal:
        messages.error(request, refusal)
        return _back(number)
    if request.POST.get("confirm") != "1":
        return render(request, "desk/merge_confirm.html", {"source": source, "target": target})
    try:
        do_merge_tickets(source, into=target, actor=request.user)  # type: ignore[arg-type]
    except MergeRefused as exc:
        messages.error(request, str(exc))
        return _back(number)
    messages.success(request, f"#{source.number} was merged into #{target.number}.")
    return _back(target.number)


@require_POST
@staff_required
def ticket_followup(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number, for_="edit")
    previous = _other_ticket(request, "previous", number)
    if previous is None:
        return _back(number)
    try:
        do_link_followup(ticket, previous=previous, actor=request.user)  # type: ignore[arg-type]
    except MergeRefused as exc:
        messages.error(request, str(exc))
    return _back(number)
