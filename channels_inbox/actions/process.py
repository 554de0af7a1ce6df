"""Processing a stored inbound event: customer, ticket, message — exactly once."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_inbox.actions.delivery import do_apply_delivery_status
from channels_inbox.actions.receive import retry_delay
from channels_inbox.adapters.base import BadPayload, DeliveryStatusUpdate, InboundMessage
from channels_inbox.models import InboundEvent, InboundEventStatus
from customers.actions.resolve import do_resolve_customer
from helpdesk.actions.ingest import do_ingest_message

logger = logging.getLogger(__name__)


def do_process_inbound_event(event_id: int) -> str:
    """Turn one InboundEvent into a message on a ticket. Safe to run twice, even at once.

    The event row (only that row: `of=("self",)`, not the inbox it joins) is locked for the
    whole transaction: a second worker waits, then sees it processed and does nothing.
    Other events of the same inbox are received and processed in parallel. A failure rolls
    everything back and schedules a retry with backoff; after INBOUND_MAX_ATTEMPTS the
    event is marked failed, its payload kept.
    Returns what happened: processed, ignored, already, missing, retry or failed.
    """
    try:
        with transaction.atomic():
            event = (
                InboundEvent.objects.select_for_update(of=("self",)).select_related("inbox").filter(pk=event_id).first()
            )
            if event is None:
                return "missing"
            if event.status != InboundEventStatus.PENDING:
                return "already"
            inbox = event.inbox
            parsed = inbox.adapter.parse(inbox, bytes(event.payload), event.headers)
            now = timezone.now()
            if isinstance(parsed, InboundMessage):
                customer = do_resolve_customer(parsed.sender, seen_at=parsed.sent_at or now)
                result = do_ingest_message(inbox=inbox, inbound=parsed, customer=customer)
                event.message = result.message
                event.status = InboundEventStatus.PROCESSED
            elif isinstance(parsed, DeliveryStatusUpdate):
                do_apply_delivery_status(inbox, parsed)
                event.status = InboundEventStatus.PROCESSED
            else:
                event.status = InboundEventStatus.IGNORED
            event.processed_at = now
            event.attempts += 1
            event.last_error = ""
            event.save(update_fields=["message", "status", "processed_at", "attempts", "last_error"])
            return str(event.status)
    except BadPayload as exc:
        # Stored payloads were validated on receipt; one that no longer parses will not
        # parse on a retry either. Keep it, marked, for a person to look at.
        return _record_failure(event_id, exc, retryable=False)
    except Exception as exc:
        logger.exception("processing inbound event %s failed", event_id)
        return _record_failure(event_id, exc, retryable=True)


def _record_failure(event_id: int, exc: Exception, *, retryable: bool) -> str:
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None or event.status != InboundEventStatus.PENDING:
            return "already"
        event.attempts += 1
        event.last_error = f"{exc.__class__.__name__}: {exc}"[:2000]
        if retryable and event.attempts < settings.INBOUND_MAX_ATTEMPTS:
            event.next_attempt_at = timezone.now() + retry_delay(event.attempts)
            outcome = "retry"
        else:
            event.status = InboundEventStatus.FAILED
            event.next_attempt_at = None
            outcome = "failed"
        event.save(update_fields=["attempts", "last_error", "next_attempt_at", "status"])
    if outcome == "retry":
        from channels_inbox.tasks import process_inbound

        assert event.next_attempt_at is not None
        countdown = (event.next_attempt_at - timezone.now()).total_seconds()
        from helpdesk.sideeffects import enqueue

        enqueue(process_inbound, event_id, countdown=max(countdown, 0))
    return outcome
