"""Edits of a ticket's status and assignee (priority, team and tags: actions/ticket_fields.py).

`actor` None is the system itself (live-chat routing, a visitor ending a chat): no permission
check, and the event has no acting agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from helpdesk.actions.ticket_fields import locked_for_edit
from helpdesk.events import Assigned, StatusChanged, append_event
from helpdesk.models import Ticket, TicketStatus

if TYPE_CHECKING:
    from helpdesk.models import User


def _locked(ticket: Ticket, actor: User | None) -> Ticket:
    """The ticket's row, locked; checked against the actor's permission unless the system acts."""
    if actor is None:
        return Ticket.objects.select_for_update().get(pk=ticket.pk)
    return locked_for_edit(ticket, actor)


def do_change_status(ticket: Ticket, *, status: str, actor: User | None) -> Ticket:
    status = TicketStatus(status)
    with transaction.atomic():
        ticket = _locked(ticket, actor)
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


def do_assign_ticket(ticket: Ticket, *, assignee: User | None, actor: User | None, via: str = "") -> Ticket:
    """Give the ticket to `assignee` (None: unassign). `via` names what chose the assignee when no
    agent did ("routing", "rule", "chat"); it goes into the Assigned event."""
    with transaction.atomic():
        ticket = _locked(ticket, actor)
        old = ticket.assignee_id
        new = assignee.pk if assignee else None
        if old == new:
            return ticket
        ticket.assignee = assignee
        append_event(ticket, Assigned(old_assignee_id=old, new_assignee_id=new, via=via), actor=actor)
        ticket.save(update_fields=["assignee", "updated_at"])
        # The new assignee hears of it, unless they took the ticket themselves.
        from helpdesk.actions.notifications import do_notify_assignment

        do_notify_assignment(ticket, assignee=assignee, actor=actor)
    return ticket
