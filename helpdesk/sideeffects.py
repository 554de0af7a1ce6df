"""Side effects after commit (ARCHITECTURE.md rule 2).

Tasks, websocket messages, webhooks and email leave only once the transaction that
caused them has committed, so no worker ever sees a row that is not there yet and no
customer gets a message that was rolled back. What must not be lost is a row written
in the transaction itself (InboundEvent, OutboundDelivery), which the sweeper finds
again if the task queued here never runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def after_commit(fn: Callable[[], Any]) -> None:
    """Run fn once the current transaction commits (now, outside a transaction)."""
    transaction.on_commit(fn, robust=True)


def enqueue(task: Any, *args: Any, countdown: float | None = None) -> None:
    """Queue a Celery task after commit. A broker outage is logged, not raised: the
    sweeper re-queues the work from the database."""

    def send() -> None:
        try:
            task.apply_async(args=args, countdown=countdown)
        except Exception:
            logger.exception("could not queue %s%r; the sweeper will pick it up", task.name, args)

    after_commit(send)
