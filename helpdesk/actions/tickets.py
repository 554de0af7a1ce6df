"""Edits of a ticket's own fields: status, priority, assignee, team."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from helpdesk.events import Assigned, PriorityChanged, StatusChanged, TeamChanged, append_event
from helpdesk.models import Ticket, TicketStatus
from helpdesk.permissions import ticket_policy

if TYPE_CHECKING:
    from helpdesk.models import Team, User


def _locked_for_edit(ticket: Ticket, actor: User) -> Ticket:
    if not ticket_policy.can_edit(actor, ticket):
        raise PermissionDenied("you may not edit this ticket")
    return Ticket.objects.select_for_update().get(pk=ticket.pk)


def do_change_status(ticket: Ticket, *, status: str, actor: User) -> Ticket:
    status = TicketStatus(status)
    with transaction.atomic():
        ticket = _locked_for_edit(ticket, actor)
        old = ticket.status
        if old == status:
            return ticket
        if old == TicketStatus.CLOSED:
            raise ValueError("a closed ticket stays closed; the customer's next message opens a follow-up")
        now = timezone.now()
        ticket.status = status
        if status == TicketStatus.SOLVED:
            ticket.solved_at = now
        elif status == TicketStatus.CLOSED:
            ticket.closed_at = now
            ticket.solved_at = ticket.solved_at or now
        else:
            ticket.solved_at = None
        ticket.last_activity_at = now
        append_event(ticket, StatusChanged(old=old, new=status), actor=actor)
        ticket.save(update_fields=["status", "solved_at", "closed_at", "last_activity_at", "updated_at"])
    return ticket


def do_change_priority(ticket: Ticket, *, priority: int, actor: User) -> Ticket:
    with transaction.atomic():
        ticket = _locked_for_edit(ticket, actor)
        old = ticket.priority
        if old == priority:
            return ticket
        ticket.priority = priority
        append_event(ticket, PriorityChanged(old=old, new=priority), actor=actor)
        ticket.save(update_fields=["priority", "updated_at"])
    return ticket


def do_assign_ticket(ticket: Ticket, *, assignee: User | None, actor: User) -> Ticket:
    with transaction.atomic():
        ticket = _locked_for_edit(ticket, actor)
        old = ticket.assignee_id
        new = assignee.pk if assignee else None
        if old == new:
            return ticket
        ticket.assignee = assignee
        append_event(ticket, Assigned(old_assignee_id=old, new_assignee_id=new), actor=actor)
        ticket.save(update_fields=["assignee", "updated_at"])
    return ticket


def do_change_team(ticket: Ticket, *, team: Team | None, actor: User) -> Ticket:
    with transaction.atomic():
        ticket = _locked_for_edit(ticket, actor)
        old = ticket.team_id
        new = team.pk if team else None
        if old == new:
            return ticket
        ticket.team = team
        append_event(ticket, TeamChanged(old_team_id=old, new_team_id=new), actor=actor)
        ticket.save(update_fields=["team", "updated_at"])
    return ticket
