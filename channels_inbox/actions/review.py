"""A person's review of held inbound events (e.g. a sender over the rate limit): release or discard.

Held events are never lost: releasing one hands it back to processing, which then skips
the limits that held it (`released_at`); discarding marks it ignored, with the payload kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from channels_inbox.models import InboundEvent, InboundEventStatus

if TYPE_CHECKING:
    from helpdesk.models import User

logger = logging.getLogger(__name__)


def _held(event_ids: Iterable[int]) -> list[int]:
    """Lock the events of `event_ids` that are held, in id order; their ids."""
    ids = sorted({int(pk) for pk in event_ids})
    if not ids:
        return []
    return list(
        InboundEvent.objects.select_for_update()
        .filter(pk__in=ids, status=InboundEventStatus.HELD)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def do_release_held_events(event_ids: Iterable[int], *, actor: User | None) -> int:
    """Hand held events back to processing (pending, due now); returns how many were held.

    Events that are not held (already released, processed, discarded) are left alone, so
    two people releasing the same events at once release each of them once.
    """
    from channels_inbox.tasks import process_inbound
    from helpdesk.sideeffects import enqueue

    with transaction.atomic():
        ids = _held(event_ids)
        if not ids:
            return 0
        now = timezone.now()
        InboundEvent.objects.filter(pk__in=ids).update(
            status=InboundEventStatus.PENDING, released_at=now, next_attempt_at=now, last_error=""
        )
        for pk in ids:
            enqueue(process_inbound, pk)
    logger.info("%s released %d held inbound events: %s", _who(actor), len(ids), ids)
    return len(ids)


def do_discard_held_events(event_ids: Iterable[int], *, actor: User | None) -> int:
    """Mark held events ignored (kept with their payload, never deleted); returns how many."""
    with transaction.atomic():
        ids = _held(event_ids)
        if not ids:
            return 0
        now = timezone.now()
        InboundEvent.objects.filter(pk__in=ids).update(
            status=InboundEventStatus.IGNORED,
            processed_at=now,
            next_attempt_at=None,
            last_error=f"discarded after review by {_who(actor)} at {now.isoformat(timespec='seconds')}",
        )
    logger.info("%s discarded %d held inbound events: %s", _who(actor), len(ids), ids)
    return len(ids)


def _who(actor: User | None) -> str:
    if actor is None:
        return "the system"
    return str(actor.email or actor.get_username())
