"""The customer-service window of messaging channels (WhatsApp, Messenger, Instagram).

A business may send free-form messages to a user only within a time after that user's last
message to it on that channel (24 h; Messenger and Instagram allow human agents 7 days with the
HUMAN_AGENT tag). The window is per customer and inbox, not per ticket: a customer who wrote
yesterday on another ticket of the same WhatsApp number opened it too. Computed from the
stored messages (index message_window_idx), so it is always what the provider
sees, never a cached flag that drifts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

if TYPE_CHECKING:
    from channels_inbox.models import Inbox
    from helpdesk.models import Ticket


def last_customer_message_at(inbox: Inbox, ticket: Ticket) -> datetime | None:
    """When the ticket's customer last wrote to this inbox (any of their tickets)."""
    from helpdesk.models import Direction, Message

    if ticket.customer_id is None:
        return None
    return (
        Message.objects.filter(inbox=inbox, author_customer_id=ticket.customer_id, direction=Direction.INBOUND)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )


def window_closes_at(inbox: Inbox, ticket: Ticket, hours: float = 24) -> datetime | None:
    """The end of the window (None: the customer never wrote to this inbox)."""
    last = last_customer_message_at(inbox, ticket)
    return last + timedelta(hours=hours) if last is not None else None


def is_open(closes_at: datetime | None, now: datetime | None = None) -> bool:
    return closes_at is not None and (now or timezone.now()) < closes_at
