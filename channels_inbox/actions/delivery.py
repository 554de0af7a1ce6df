"""Delivering outbound messages, and moving their state as providers report it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_inbox.adapters.base import DeliveryDeferred, DeliveryError, DeliveryStatusUpdate
from channels_inbox.models import OutboundDelivery
from helpdesk.events import DeliveryChanged, append_event
from helpdesk.models import DELIVERY_RANK, DeliveryStatus, Message, Ticket

if TYPE_CHECKING:
    from channels_inbox.models import Inbox
    from helpdesk.models import User

logger = logging.getLogger(__name__)

_TIMESTAMP_FIELD = {
    DeliveryStatus.SENT: "sent_at",
    DeliveryStatus.DELIVERED: "delivered_at",
    DeliveryStatus.READ: "read_at",
    DeliveryStatus.FAILED: "failed_at",
}


def do_attempt_delivery(delivery_id: int) -> str:
    """Try to send one queued delivery. Returns sent, retry, failed, deferred, not_due or done.

    The delivery is first claimed (attempts + 1, a lease in next_attempt_at) and committed,
    then sent outside any transaction; if this worker dies while sending, the lease runs
    out and the sweeper hands the delivery to another worker. Receivers dedupe retries
    by the delivery id the adapter sends along.
    """
    with transaction.atomic():
        delivery = OutboundDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.status != DeliveryStatus.QUEUED:
            return "done"
        now = timezone.now()
        if delivery.next_attempt_at and delivery.next_attempt_at > now:
            return "not_due"
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=settings.WORK_LEASE_SECONDS)
        delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])

    delivery = OutboundDelivery.objects.select_related("inbox", "message__ticket", "message__author_agent").get(
        pk=delivery_id
    )
    try:
        result = delivery.inbox.adapter.send(delivery.inbox, delivery)
    except DeliveryDeferred as exc:
        return _record_deferral(delivery_id, exc.seconds)
    except DeliveryError as exc:
        return _record_failure(delivery_id, str(exc), retryable=exc.retryable)
    except Exception as exc:
        logger.exception("delivery %s raised", delivery_id)
        return _record_failure(delivery_id, f"{exc.__class__.__name__}: {exc}", retryable=True)
    with transaction.atomic():
        delivery = OutboundDelivery.objects.select_for_update().get(pk=delivery_id)
        if result.provider_id:
            delivery.provider_id = result.provider_id
            delivery.save(update_fields=["provider_id", "updated_at"])
        _move(delivery, DeliveryStatus.SENT, error="")
    return "sent"


def _record_failure(delivery_id: int, error: str, *, retryable: bool) -> str:
    from channels_inbox.actions.receive import retry_delay
    from channels_inbox.tasks import deliver
    from helpdesk.sideeffects import enqueue

    with transaction.atomic():
        delivery = OutboundDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != DeliveryStatus.QUEUED:
            return "done"
        delivery.last_error = error[:2000]
        if retryable and delivery.attempts < settings.DELIVERY_MAX_ATTEMPTS:
            delay = retry_delay(delivery.attempts)
            delivery.next_attempt_at = timezone.now() + delay
            delivery.save(update_fields=["last_error", "next_attempt_at", "updated_at"])
            enqueue(deliver, delivery_id, countdown=delay.total_seconds())
            return "retry"
        delivery.save(update_fields=["last_error", "updated_at"])
        _move(delivery, DeliveryStatus.FAILED, error=error)
    return "failed"


def _record_deferral(delivery_id: int, seconds: float) -> str:
    """The adapter asked to try again later: due then, queued for then, the attempt given back
    (a deferral never counts towards DELIVERY_MAX_ATTEMPTS)."""
    from channels_inbox.tasks import deliver
    from helpdesk.sideeffects import enqueue

    with transaction.atomic():
        delivery = OutboundDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != DeliveryStatus.QUEUED:
            return "done"
        delivery.attempts = max(delivery.attempts - 1, 0)
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=seconds)
        delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
        enqueue(deliver, delivery_id, countdown=seconds)
    return "deferred"


def do_apply_delivery_status(inbox: Inbox, update: DeliveryStatusUpdate) -> bool:
    """Apply a provider's status callback; only forward moves count (queued < sent < delivered < read)."""
    with transaction.atomic():
        delivery = (
            OutboundDelivery.objects.select_for_update()
            .filter(inbox=inbox, provider_id=update.provider_id)
            .order_by("-id")
            .first()
        )
        if delivery is None:
            logger.info("status %s for unknown provider id on inbox %s", update.status, inbox.pk)
            return False
        return _move(delivery, DeliveryStatus(update.status), error=update.error, at=update.occurred_at)


def do_record_delivery_status(
    delivery_id: int, status: str, *, error: str = "", at: datetime | None = None, actor: User | None = None
) -> bool:
    """Record a delivery state reported outside a provider callback (e.g. imported history).

    The same forward-only step as every other state change; False if it would go back.
    """
    with transaction.atomic():
        delivery = OutboundDelivery.objects.select_for_update().get(pk=delivery_id)
        return _move(delivery, DeliveryStatus(status), error=error, at=at)


def do_retry_delivery(delivery: OutboundDelivery, *, actor: User) -> OutboundDelivery:
    """An agent's retry of a failed delivery: queued again with a fresh set of attempts."""
    from channels_inbox.tasks import deliver
    from helpdesk.permissions import ticket_policy
    from helpdesk.sideeffects import enqueue

    if not ticket_policy.can_reply(actor, delivery.message.ticket):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("you may not resend on this ticket")
    with transaction.atomic():
        delivery = OutboundDelivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status != DeliveryStatus.FAILED:
            return delivery
        ticket = Ticket.objects.select_for_update().get(pk=delivery.message.ticket_id)
        delivery.status = DeliveryStatus.QUEUED
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.failed_at = None
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "failed_at", "updated_at"])
        Message.objects.filter(pk=delivery.message_id).update(delivery_status=DeliveryStatus.QUEUED, delivery_error="")
        append_event(
            ticket,
            DeliveryChanged(delivery_id=delivery.pk, message_id=delivery.message_id, status=DeliveryStatus.QUEUED),
            actor=actor,
        )
        enqueue(deliver, delivery.pk)
    return delivery


def _move(delivery: OutboundDelivery, status: DeliveryStatus, *, error: str, at: datetime | None = None) -> bool:
    """Move a locked delivery forward to `status`; record it on the ticket. False if not forward."""
    current = DeliveryStatus(delivery.status)
    if DELIVERY_RANK[status] <= DELIVERY_RANK[current]:
        return False
    if current == DeliveryStatus.FAILED and status != DeliveryStatus.FAILED:
        # A provider reporting success after a failure: the message did arrive after all.
        error = ""
    now = at or timezone.now()
    delivery.status = status
    fields = ["status", "updated_at"]
    field = _TIMESTAMP_FIELD.get(status)
    if field:
        setattr(delivery, field, now)
        fields.append(field)
    if status == DeliveryStatus.FAILED:
        delivery.last_error = error[:2000]
        delivery.next_attempt_at = None
        fields += ["last_error", "next_attempt_at"]
    delivery.save(update_fields=fields)
    Message.objects.filter(pk=delivery.message_id).update(delivery_status=status, delivery_error=error[:2000])
    ticket = Ticket.objects.select_for_update().get(pk=delivery.message.ticket_id)
    append_event(
        ticket,
        DeliveryChanged(delivery_id=delivery.pk, message_id=delivery.message_id, status=status, error=error[:500]),
        message=delivery.message,
    )
    return True
