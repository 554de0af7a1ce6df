"""Reads for the desk: lists and the ticket page, prefetched for the whole page."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from helpdesk.models import Attachment, Message, Ticket, TicketEvent, TicketStatus
from helpdesk.models.ticket import UNSOLVED_STATUSES
from helpdesk.permissions import team_ids_of, ticket_policy

PAGE_SIZE = 50

VIEWS: dict[str, str] = {
    "open": "All open",
    "mine": "Mine",
    "unassigned": "Unassigned",
    "my_teams": "My teams",
    "pending": "Pending",
    "solved": "Solved",
    "all": "All",
}


def view_queryset(user: Any, view: str) -> QuerySet[Ticket]:
    tickets = ticket_policy.visible(user)
    open_statuses = [TicketStatus.NEW, TicketStatus.OPEN]
    if view == "mine":
        return tickets.filter(assignee=user, status__in=UNSOLVED_STATUSES)
    if view == "unassigned":
        return tickets.filter(assignee__isnull=True, status__in=open_statuses)
    if view == "my_teams":
        return tickets.filter(team_id__in=team_ids_of(user), status__in=UNSOLVED_STATUSES)
    if view == "pending":
        return tickets.filter(status__in=[TicketStatus.PENDING, TicketStatus.ON_HOLD])
    if view == "solved":
        return tickets.filter(status__in=[TicketStatus.SOLVED, TicketStatus.CLOSED])
    if view == "all":
        return tickets
    return tickets.filter(status__in=open_statuses)


@dataclass
class Page:
    tickets: list[Ticket]
    next_cursor: str | None


def encode_cursor(ticket: Ticket) -> str:
    raw = f"{ticket.last_activity_at.isoformat()}|{ticket.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    """The position a cursor names, or None for anything this module did not write."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, pk = raw.partition("|")
        parsed = parse_datetime(when)
        position = int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # Our cursors always carry an offset; a naive time would be compared in the wrong zone.
    if parsed is None or timezone.is_naive(parsed):
        return None
    return parsed, position


def ticket_page(user: Any, view: str, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """One page of a view, newest activity first, by cursor (last_activity_at, id)."""
    tickets = view_queryset(user, view).select_related("customer", "assignee", "team", "inbox")
    position = decode_cursor(cursor) if cursor else None
    if position is not None:
        when, pk = position
        tickets = tickets.filter(Q(last_activity_at__lt=when) | Q(last_activity_at=when, id__lt=pk))
    rows = list(tickets.order_by("-last_activity_at", "-id")[: size + 1])
    next_cursor = encode_cursor(rows[size - 1]) if len(rows) > size else None
    return Page(tickets=rows[:size], next_cursor=next_cursor)


def ticket_timeline(ticket: Ticket) -> list[Message | TicketEvent]:
    """Messages and the events worth showing between them, in order."""
    messages = list(
        ticket.messages.select_related("author_customer", "author_agent", "inbox").prefetch_related(
            Prefetch("attachments", queryset=Attachment.objects.order_by("id")), "deliveries"
        )
    )
    shown = ["status_changed", "assigned", "team_changed", "priority_changed", "followup_created", "created"]
    events = list(ticket.events.filter(type__in=shown).select_related("actor", "actor_customer"))
    timeline: list[Message | TicketEvent] = [*messages, *events]
    timeline.sort(key=lambda item: (item.created_at, 0 if isinstance(item, TicketEvent) else 1))
    return timeline


def events_after(ticket: Ticket, seq: int, limit: int = 500) -> list[TicketEvent]:
    return list(ticket.events.filter(seq__gt=seq).order_by("seq")[:limit])
