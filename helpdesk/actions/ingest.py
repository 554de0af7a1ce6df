"""Threading an inbound message into a ticket: the helpdesk half of the ingest spine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.utils import timezone

from helpdesk.attachments import store_attachment
from helpdesk.events import Created, FollowupCreated, MessageReceived, PendingEvents, StatusChanged, append_event
from helpdesk.html import json_without_nul, sanitize_html, without_nul
from helpdesk.models import Direction, Message, Ticket, TicketStatus
from helpdesk.numbers import next_ticket_number

if TYPE_CHECKING:
    from channels_inbox.adapters.base import InboundMessage
    from channels_inbox.models import Inbox
    from customers.models import Customer

# A customer message puts a ticket waiting on the customer back into the agents' hands.
_REOPENS = (TicketStatus.PENDING, TicketStatus.ON_HOLD, TicketStatus.SOLVED)


@dataclass
class IngestResult:
    message: Message
    ticket: Ticket
    created_ticket: bool
    duplicate: bool = False


def do_ingest_message(*, inbox: Inbox, inbound: InboundMessage, customer: Customer) -> IngestResult:
    """Write one inbound message onto the right ticket, with its events, in one transaction.

    Threading, in order: the adapter's thread key; the provider ids the message replies
    to (only on this customer's tickets); the customer's latest ticket in this inbox.
    A message for a closed ticket opens a follow-up ticket linked to it; a pending, on-hold
    or solved ticket is reopened. Idempotent on (inbox, external_id).
    """
    # No savepoint when called inside a transaction (process_inbound's): an error here
    # aborts that whole transaction anyway, so a savepoint would only cost two statements.
    with transaction.atomic(savepoint=False):
        if inbound.external_id:
            existing = (
                Message.objects.filter(inbox=inbox, external_id=inbound.external_id).select_related("ticket").first()
            )
            if existing is not None:
                return IngestResult(existing, existing.ticket, created_ticket=False, duplicate=True)

        now = timezone.now()
        ticket = _find_ticket(inbox, inbound, customer)
        created = ticket is None or ticket.status == TicketStatus.CLOSED
        if created:
            previous = ticket
            ticket = _create_ticket(inbox, inbound, customer, followup_of=previous, now=now)
            if previous is not None:
                append_event(previous, FollowupCreated(followup_ticket_id=ticket.pk, followup_number=ticket.number))
        assert ticket is not None
        events = PendingEvents(ticket)
        if created:
            events.add(
                Created(channel=inbox.kind, inbox_id=inbox.pk, followup_of=ticket.followup_of_id),
                customer=customer,
            )

        message = Message.objects.create(
            ticket=ticket,
            direction=Direction.INBOUND,
            author_customer=customer,
            inbox=inbox,
            channel=inbox.kind,
            text=without_nul(inbound.text),
            html=sanitize_html(inbound.html),
            external_id=inbound.external_id,
            sent_at=inbound.sent_at,
            metadata=json_without_nul(inbound.metadata),
        )
        for item in inbound.attachments:
            store_attachment(message, item.filename, item.content, item.declared_type)

        if not created and ticket.status in _REOPENS:
            old = ticket.status
            ticket.status = TicketStatus.OPEN
            ticket.solved_at = None
            events.add(StatusChanged(old=old, new=TicketStatus.OPEN), customer=customer)
        events.add(MessageReceived(message_id=message.pk, channel=inbox.kind), customer=customer, message=message)
        # All events in one INSERT; their sequence number is saved with the ticket below.
        events.write(save_seq=False)

        ticket.last_customer_message_at = now
        ticket.last_activity_at = now
        if ticket.waiting_since is None:
            ticket.waiting_since = now
        # One UPDATE of the ticket, with the sequence number of the events appended above.
        ticket.save(
            update_fields=[
                "last_event_seq",
                "status",
                "solved_at",
                "last_customer_message_at",
                "last_activity_at",
                "waiting_since",
                "updated_at",
            ]
        )
    return IngestResult(message, ticket, created_ticket=created)


def _find_ticket(inbox: Inbox, inbound: InboundMessage, customer: Customer) -> Ticket | None:
    """The ticket this message belongs to, row-locked; None when it starts a new one.

    Two workers must not both decide "new ticket" for one conversation. Within a customer
    that cannot happen: resolving the customer updated (so locked) the customer's row, so a
    second message of the same customer waits here until the first one's ticket is
    committed and visible. A thread key may be shared by several customers, so it is
    serialized on its own, with a transaction-scoped advisory lock (SQLite serializes every
    writer anyway).
    """
    tickets = Ticket.objects.select_for_update()
    if inbound.thread_key:
        _lock_thread_key(inbox, inbound.thread_key)
        # An explicit conversation key decides alone: an unknown key starts a new ticket.
        return tickets.filter(inbox=inbox, thread_key=inbound.thread_key).order_by("-created_at", "-id").first()
    if inbound.in_reply_to:
        ticket_id = (
            Message.objects.filter(inbox=inbox, external_id__in=inbound.in_reply_to[-50:], ticket__customer=customer)
            .order_by("-created_at")
            .values_list("ticket_id", flat=True)
            .first()
        )
        if ticket_id is not None:
            return tickets.get(pk=ticket_id)
    return tickets.filter(inbox=inbox, customer=customer).order_by("-created_at", "-id").first()


def _lock_thread_key(inbox: Inbox, thread_key: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"thread:{inbox.pk}:{thread_key}"])


def _create_ticket(
    inbox: Inbox, inbound: InboundMessage, customer: Customer, *, followup_of: Ticket | None, now: datetime
) -> Ticket:
    return Ticket.objects.create(
        number=next_ticket_number(),
        subject=without_nul(inbound.subject or _subject_from_text(inbound.text))[:300]
        or (followup_of.subject if followup_of else ""),
        status=TicketStatus.NEW,
        customer=customer,
        inbox=inbox,
        channel=inbox.kind,
        team_id=inbox.team_id,
        thread_key=inbound.thread_key,
        followup_of=followup_of,
        last_activity_at=now,
    )


def _subject_from_text(text: str) -> str:
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first_line if len(first_line) <= 80 else first_line[:79].rstrip() + "…"
