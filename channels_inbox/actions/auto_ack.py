"""Automatic replies: an acknowledgement of a new ticket, written as an outbox row.

Channel work kept out of the ticketing core: it is not an agent's reply, so it does not
count as the first response, change the ticket's status or whose turn it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from channels_inbox.models import OutboundDelivery
from helpdesk.events import AutoReplySent, append_event
from helpdesk.models import DeliveryStatus, Direction, Message, Ticket

if TYPE_CHECKING:
    from channels_inbox.models import Inbox


def do_queue_auto_ack(ticket: Ticket, *, inbox: Inbox, recipient: str, subject: str, text: str) -> Message:
    """Queue an acknowledgement to `recipient`: the message, its delivery and an
    AutoReplySent event in one transaction; sent after commit (`deliver`)."""
    from channels_inbox.tasks import deliver
    from helpdesk.sideeffects import enqueue

    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        message = Message.objects.create(
            ticket=locked,
            direction=Direction.OUTBOUND,
            author_agent=None,
            inbox=inbox,
            channel=inbox.kind,
            text=text,
            # The subject travels with the message: send_delivery uses it instead of "Re: …".
            metadata={"auto_ack": True, "email": {"subject": subject}},
            delivery_status=DeliveryStatus.QUEUED,
        )
        delivery = OutboundDelivery.objects.create(
            message=message, inbox=inbox, recipient=recipient, next_attempt_at=timezone.now()
        )
        append_event(locked, AutoReplySent(message_id=message.pk, channel=inbox.kind), message=message)
        enqueue(deliver, delivery.pk)
    # The caller's instance stays in step with the event numbering it may append to next.
    ticket.last_event_seq = locked.last_event_seq
    return message
