"""Outgoing mail: agent replies and auto-acknowledgements, through the inbox's email backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels_inbox.adapters.base import DeliveryError, SendResult

if TYPE_CHECKING:
    from channels_inbox.models import Inbox, OutboundDelivery


def send_delivery(inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
    raise DeliveryError("email sending is not configured yet", retryable=False)


def queue_auto_acks(inbox: Inbox, results: list[Any]) -> None:
    return None
