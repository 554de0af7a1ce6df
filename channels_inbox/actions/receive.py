"""Receiving a webhook: verify, store raw and durable, then acknowledge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_inbox.adapters.base import WebhookRequest
from channels_inbox.models import InboundEvent, Inbox

# Request headers worth keeping with the raw payload (never auth or signature headers).
KEPT_HEADERS = ("content-type", "user-agent")


@dataclass
class ReceiveResult:
    stored: int
    duplicates: int


def do_receive_webhook(inbox: Inbox, request: WebhookRequest) -> ReceiveResult:
    """Store each item of a verified request as an InboundEvent; queue processing after commit.

    Raises SignatureError (nothing stored) or BadPayload (nothing stored). A redelivered
    item (same dedupe key) is counted as a duplicate and not processed again.
    """
    from channels_inbox.tasks import process_inbound
    from helpdesk.sideeffects import enqueue

    adapter = inbox.adapter
    adapter.verify(inbox, request)
    items = adapter.split(inbox, request)
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    stored = duplicates = 0
    due = timezone.now()
    with transaction.atomic():
        for item in items:
            event, created = InboundEvent.objects.get_or_create(
                inbox=inbox,
                dedupe_key=item.dedupe_key[:255],
                defaults={"payload": item.raw, "headers": headers, "next_attempt_at": due},
            )
            if created:
                stored += 1
                enqueue(process_inbound, event.pk)
            else:
                duplicates += 1
    return ReceiveResult(stored=stored, duplicates=duplicates)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: base × 2^(attempts−1), capped."""
    seconds = settings.DELIVERY_BACKOFF_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    return timedelta(seconds=min(seconds, settings.DELIVERY_BACKOFF_MAX_SECONDS))
