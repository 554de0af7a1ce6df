"""Processing a stored inbound event: customer, ticket, message — exactly once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from channels_inbox.actions.delivery import do_apply_delivery_status
from channels_inbox.actions.receive import retry_delay
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelEvent,
    DeliveryStatusUpdate,
    IdentityRef,
    InboundMessage,
    InboundSender,
)
from channels_inbox.models import InboundEvent, InboundEventStatus, Inbox
from customers.actions.resolve import do_resolve_customers, find_customers
from customers.models import Customer
from helpdesk.actions.ingest import IngestItem, IngestResult, agents_by_email, do_ingest_messages
from helpdesk.bulk import update_rows
from helpdesk.models import Direction, Message

logger = logging.getLogger(__name__)

# People copied on one message who become CCs of its ticket (a mass mailing's Cc is not a team).
MAX_CCS = 20


def do_process_inbound_event(event_id: int, *, batch_size: int | None = None) -> str:
    """Turn an InboundEvent into a message on a ticket. Safe to run twice, even at once.

    The event row (only that row: `of=("self",)`, not the inbox it joins) is locked for the
    whole transaction: a second worker waits, then sees it processed and does nothing.
    Other events of the same inbox are received and processed in parallel.

    Batches: with the event, up to `INGEST_BATCH_SIZE` − 1 further due events of its inbox
    that no other worker holds (`SKIP LOCKED`) are processed in the same transaction, in
    the order they arrived, with a constant number of statements; their own tasks then find
    them processed. Under a backlog this is what keeps the per-message cost down; with no
    backlog a batch is the one event.

    A failure rolls the batch back; its events are then processed one at a time, so one
    bad event never holds up the others. A failing event is retried with backoff and, after
    INBOUND_MAX_ATTEMPTS, marked failed with its payload kept.
    Returns what happened to this event: processed, ignored, already, missing, retry or failed.
    """
    size = max(1, batch_size if batch_size is not None else settings.INGEST_BATCH_SIZE)
    claimed: list[int] = []
    try:
        return _process_batch(event_id, size, claimed)
    except Exception as exc:
        if len(claimed) > 1:
            logger.warning("batch of %d inbound events failed (%s); processing them one by one", len(claimed), exc)
            outcomes = {pk: do_process_inbound_event(pk, batch_size=1) for pk in claimed}
            return outcomes[event_id]
        logger.exception("processing inbound event %s failed", event_id)
        return _record_failure(event_id, exc)


def _process_batch(event_id: int, size: int, claimed: list[int]) -> str:
    # Without a lock first: under a backlog most tasks find their event done by an earlier
    # batch, and one plain read is a third of a locking transaction. Pending ones are
    # checked again under the lock below.
    status = InboundEvent.objects.filter(pk=event_id).values_list("status", flat=True).first()
    if status is None:
        return "missing"
    if status != InboundEventStatus.PENDING:
        return "already"
    with transaction.atomic():
        events = InboundEvent.objects.select_for_update(of=("self",)).select_related("inbox")
        first = events.filter(pk=event_id).first()
        if first is None:
            return "missing"
        if first.status != InboundEventStatus.PENDING:
            return "already"
        now = timezone.now()
        batch = [first]
        if size > 1:
            batch += (
                events.select_for_update(of=("self",), skip_locked=True)
                .filter(inbox_id=first.inbox_id, status=InboundEventStatus.PENDING, next_attempt_at__lte=now)
                .exclude(pk=first.pk)
                .order_by("pk")[: size - 1]
            )
        batch.sort(key=lambda event: event.pk)
        claimed.extend(event.pk for event in batch)
        inbox = first.inbox
        adapter = inbox.adapter

        messages: list[tuple[InboundEvent, InboundMessage]] = []
        for event in batch:
            event.attempts += 1
            event.processed_at = now
            event.last_error = ""
            event.status = InboundEventStatus.PROCESSED
            try:
                parsed = adapter.parse(inbox, bytes(event.payload), event.headers)
            except BadPayload as exc:
                # Stored payloads were validated on receipt; one that no longer parses will
                # not parse on a retry either. Kept, marked, for a person to look at.
                event.status = InboundEventStatus.FAILED
                event.processed_at = None
                event.next_attempt_at = None
                event.last_error = f"{exc.__class__.__name__}: {exc}"[:2000]
                continue
            if isinstance(parsed, InboundMessage):
                messages.append((event, parsed))
            elif isinstance(parsed, DeliveryStatusUpdate):
                if not do_apply_delivery_status(inbox, parsed):
                    # About a message we never sent, or not a step forward: kept, changes nothing.
                    event.status = InboundEventStatus.IGNORED
            elif isinstance(parsed, ChannelEvent):
                if not parsed.apply(inbox, event):
                    event.status = InboundEventStatus.IGNORED
            else:
                event.status = InboundEventStatus.IGNORED

        messages = _hold_over_rate_limit(inbox, messages, now)
        if messages:
            results = _ingest(inbox, messages, now)
            for (event, _), result in zip(messages, results, strict=True):
                event.message = result.message
                if result.skipped:
                    event.status = InboundEventStatus.IGNORED
            adapter.after_ingest(inbox, results)
        fields = ["message", "status", "processed_at", "attempts", "last_error", "next_attempt_at"]
        update_rows(batch, fields)
        return str(first.status)


def _ingest(inbox: Inbox, messages: list[tuple[InboundEvent, InboundMessage]], now: datetime) -> list[IngestResult]:
    """Resolve senders and CCs to customers, then thread and write the messages.

    An automatic message (auto-reply, list mail) never creates a customer: from an unknown
    sender it is skipped here, kept as an ignored event.
    """
    parsed = [inbound for _, inbound in messages]
    automatic = [i for i, inbound in enumerate(parsed) if inbound.automatic]
    known: dict[int, Customer | None] = {}
    if automatic:
        found = find_customers([parsed[i].sender for i in automatic])
        known = dict(zip(automatic, found, strict=True))
    resolve = [i for i, inbound in enumerate(parsed) if not inbound.automatic]
    senders = [parsed[i].sender for i in resolve]
    seen = [parsed[i].sent_at or now for i in resolve]
    cc_of = {i: parsed[i].cc[:MAX_CCS] for i in resolve if parsed[i].cc}
    if cc_of:
        # Agents on Cc are colleagues, not customers: they see the ticket in the desk anyway.
        addresses = {r.value for ccs in cc_of.values() for cc in ccs for r in cc.identities if r.kind == "email"}
        agents = agents_by_email(addresses)
        if agents:
            cc_of = {
                i: [cc for cc in ccs if not any(r.value in agents for r in cc.identities)] for i, ccs in cc_of.items()
            }
    for ccs in cc_of.values():
        senders += ccs
        seen += [now] * len(ccs)
    customers = iter(do_resolve_customers(senders, seen_at=seen) if senders else [])
    resolved: dict[int, Customer] = {i: next(customers) for i in resolve}
    cc_customers = {i: [next(customers) for _ in ccs] for i, ccs in cc_of.items()}
    results: list[IngestResult | None] = [None] * len(parsed)
    items: list[IngestItem] = []
    places: list[int] = []
    for i, inbound in enumerate(parsed):
        customer = resolved.get(i) or known.get(i)
        if customer is None:
            results[i] = IngestResult(None, None, created_ticket=False)
            continue
        items.append(IngestItem(inbound, customer, cc_customers.get(i, [])))
        places.append(i)
    if items:
        for i, result in zip(places, do_ingest_messages(inbox=inbox, items=items), strict=True):
            results[i] = result
    return [result for result in results if result is not None]


def _hold_over_rate_limit(
    inbox: Inbox, messages: list[tuple[InboundEvent, InboundMessage]], now: datetime
) -> list[tuple[InboundEvent, InboundMessage]]:
    """Events of senders over the inbox's hourly limit are held for review, never dropped.

    Counted per sender identity (the channel's own, the first one): the messages stored in
    the last hour plus the earlier ones of this batch. A released event passes.
    """
    limit = inbox.adapter.sender_rate_limit(inbox)
    if not limit:
        return messages
    candidates = [(e, m) for e, m in messages if not m.automatic and e.released_at is None and m.sender.identities]
    if candidates:
        # Copies of stored messages (a folder read again after a UIDVALIDITY change) are no burst.
        ids = [m.external_id for _, m in candidates if m.external_id]
        stored = set(Message.objects.filter(inbox=inbox, external_id__in=ids).values_list("external_id", flat=True))
        candidates = [(e, m) for e, m in candidates if m.external_id not in stored]
    if not candidates:
        return messages
    keys = {(m.sender.identities[0].kind, m.sender.identities[0].value) for _, m in candidates}
    # Two statements per batch: the known senders' customers, then their messages of the hour.
    owners = find_customers([InboundSender(identities=[IdentityRef(kind, value)]) for kind, value in keys])
    customer_of = {key: c.pk for key, c in zip(keys, owners, strict=True) if c is not None}
    recent: dict[int, int] = {}
    if customer_of:
        rows = (
            Message.objects.filter(
                inbox=inbox,
                direction=Direction.INBOUND,
                author_customer_id__in=set(customer_of.values()),
                created_at__gte=now - timedelta(hours=1),
            )
            .values("author_customer_id")
            .annotate(n=Count("id"))
        )
        recent = {row["author_customer_id"]: row["n"] for row in rows}
    counts = {key: recent.get(customer_of.get(key, 0), 0) for key in keys}
    limited = {id(event) for event, _ in candidates}
    kept = []
    for event, inbound in messages:
        if id(event) not in limited:
            kept.append((event, inbound))
            continue
        key = (inbound.sender.identities[0].kind, inbound.sender.identities[0].value)
        counts[key] += 1
        if counts[key] > limit:
            event.status = InboundEventStatus.HELD
            event.processed_at = None
            event.next_attempt_at = None
            event.last_error = f"held for review: {key[1]} sent more than {limit} messages within an hour"
        else:
            kept.append((event, inbound))
    return kept


def _record_failure(event_id: int, exc: Exception) -> str:
    """A retry with backoff, or `failed` after INBOUND_MAX_ATTEMPTS (payloads that no longer
    parse are marked failed inside the batch, without retries)."""
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None or event.status != InboundEventStatus.PENDING:
            return "already"
        event.attempts += 1
        event.last_error = f"{exc.__class__.__name__}: {exc}"[:2000]
        if event.attempts < settings.INBOUND_MAX_ATTEMPTS:
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
