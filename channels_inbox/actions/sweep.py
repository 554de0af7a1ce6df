"""The sweeper: finds work that a lost Celery message left behind and queues it again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_inbox.models import InboundEvent, InboundEventStatus, OutboundDelivery
from helpdesk.models import DeliveryStatus

BATCH = 500


@dataclass
class SweepResult:
    inbound: int
    deliveries: int


def do_sweep(now: datetime | None = None) -> SweepResult:
    """Re-queue inbound events and deliveries overdue by more than SWEEP_GRACE_SECONDS.

    Work is due at `next_attempt_at`; the task queued for it normally runs then. Anything
    still waiting a grace period later lost its task (broker restart, worker crash,
    process stopped in the embedded mode) and is queued again. Re-queuing pushes the due
    time to now, so the next sweep does not queue it twice; the tasks are idempotent.
    """
    from channels_inbox.tasks import deliver, process_inbound
    from helpdesk.sideeffects import enqueue

    now = now or timezone.now()
    overdue = now - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    with transaction.atomic():
        event_ids = list(
            InboundEvent.objects.filter(status=InboundEventStatus.PENDING, next_attempt_at__lte=overdue)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:BATCH]
        )
        InboundEvent.objects.filter(pk__in=event_ids).update(next_attempt_at=now)
        delivery_ids = list(
            OutboundDelivery.objects.filter(status=DeliveryStatus.QUEUED, next_attempt_at__lte=overdue)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:BATCH]
        )
        OutboundDelivery.objects.filter(pk__in=delivery_ids).update(next_attempt_at=now)
        for event_id in event_ids:
            enqueue(process_inbound, event_id)
        for delivery_id in delivery_ids:
            enqueue(deliver, delivery_id)
    return SweepResult(inbound=len(event_ids), deliveries=len(delivery_ids))
