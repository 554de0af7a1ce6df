"""Receiving a webhook: verify, store raw and durable, then acknowledge."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels_inbox.adapters.base import WebhookRequest
from channels_inbox.models import InboundEvent, InboundEventStatus, Inbox

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
            event_id, created = insert_inbound_event(
                inbox, dedupe_key=item.dedupe_key, payload=item.raw, headers=headers, due=due
            )
            if created:
                stored += 1
                enqueue(process_inbound, event_id)
            else:
                duplicates += 1
    return ReceiveResult(stored=stored, duplicates=duplicates)


def insert_inbound_event(
    inbox: Inbox, *, dedupe_key: str, payload: bytes, headers: dict[str, Any], due: datetime
) -> tuple[int, bool]:
    """Store one raw item unless its dedupe key is stored already; (event id, created).

    Inside the caller's transaction. On PostgreSQL one `INSERT … ON CONFLICT DO NOTHING
    RETURNING` (a redelivery costs one more SELECT); `get_or_create` needs a SELECT, a
    savepoint and the INSERT for every new item.
    """
    key = dedupe_key[:255]
    if connection.vendor != "postgresql":
        event, created = InboundEvent.objects.get_or_create(
            inbox=inbox, dedupe_key=key, defaults={"payload": payload, "headers": headers, "next_attempt_at": due}
        )
        return event.pk, created
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {InboundEvent._meta.db_table}"  # noqa: S608 - the model's own table name
            " (inbox_id, dedupe_key, payload, headers, status, received_at, attempts, next_attempt_at, last_error)"
            " VALUES (%s, %s, %s, %s::jsonb, %s, %s, 0, %s, '')"
            " ON CONFLICT (inbox_id, dedupe_key) DO NOTHING RETURNING id",
            [inbox.pk, key, payload, json.dumps(headers), InboundEventStatus.PENDING, timezone.now(), due],
        )
        row = cursor.fetchone()
    if row is not None:
        return int(row[0]), True
    existing = InboundEvent.objects.filter(inbox=inbox, dedupe_key=key).values_list("pk", flat=True).get()
    return int(existing), False


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: base × 2^(attempts−1), capped."""
    seconds = settings.DELIVERY_BACKOFF_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    return timedelta(seconds=min(seconds, settings.DELIVERY_BACKOFF_MAX_SECONDS))
