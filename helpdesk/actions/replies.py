"""Agent replies and internal notes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from helpdesk.events import NoteAdded, ReplyAdded, StatusChanged, append_event
from helpdesk.html import sanitize_html
from helpdesk.models import DeliveryStatus, Direction, Message, Ticket, TicketStatus
from helpdesk.permissions import ticket_policy

if TYPE_CHECKING:
    from channels_inbox.models import Inbox
    from helpdesk.models import User


class NoRecipient(ValueError):
    """The customer has no address on the chosen channel."""


def do_reply(
    ticket: Ticket,
    *,
    actor: User,
    text: str,
    html: str = "",
    inbox: Inbox | None = None,
) -> Message:
    """A public reply: the message and its delivery (outbox) in one transaction; sent after commit."""
    from channels_inbox.adapters.base import IdentityRef
    from channels_inbox.models import OutboundDelivery
    from channels_inbox.tasks import deliver
    from helpdesk.sideeffects import enqueue

    if not ticket_policy.can_reply(actor, ticket):
        raise PermissionDenied("you may not reply on this ticket")
    if not text.strip() and not html.strip():
        raise ValueError("a reply needs text")
    inbox = inbox or ticket.inbox
    identities = [IdentityRef(i.kind, i.value) for i in ticket.customer.identities.all()]
    recipient = inbox.adapter.recipient_for(inbox, identities)
    if not recipient:
        raise NoRecipient(f"the customer has no address on {inbox.name}")
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        now = timezone.now()
        message = Message.objects.create(
            ticket=ticket,
            direction=Direction.OUTBOUND,
            author_agent=actor,
            inbox=inbox,
            channel=inbox.kind,
            text=text,
            html=sanitize_html(html),
            delivery_status=DeliveryStatus.QUEUED,
        )
        delivery = OutboundDelivery.objects.create(
            message=message, inbox=inbox, recipient=recipient, next_attempt_at=now
        )
        append_event(ticket, ReplyAdded(message_id=message.pk, channel=inbox.kind), actor=actor, message=message)
        if ticket.status == TicketStatus.NEW:
            ticket.status = TicketStatus.OPEN
            append_event(ticket, StatusChanged(old=TicketStatus.NEW, new=TicketStatus.OPEN), actor=actor)
        if ticket.first_reply_at is None:
            ticket.first_reply_at = now
        ticket.last_agent_message_at = now
        ticket.last_activity_at = now
        ticket.waiting_since = None
        ticket.save(
            update_fields=[
                "status",
                "first_reply_at",
                "last_agent_message_at",
                "last_activity_at",
                "waiting_since",
                "updated_at",
            ]
        )
        enqueue(deliver, delivery.pk)
    return message


def do_add_note(ticket: Ticket, *, actor: User, text: str) -> Message:
    """An internal note: seen by agents only, never sent anywhere."""
    if not ticket_policy.can_add_note(actor, ticket):
        raise PermissionDenied("you may not add notes on this ticket")
    if not text.strip():
        raise ValueError("a note needs text")
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        message = Message.objects.create(ticket=ticket, direction=Direction.NOTE, author_agent=actor, text=text)
        append_event(ticket, NoteAdded(message_id=message.pk), actor=actor, message=message)
        ticket.last_activity_at = timezone.now()
        ticket.save(update_fields=["last_activity_at", "updated_at"])
    return message
