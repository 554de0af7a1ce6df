"""Celery tasks: thin, idempotent wrappers around the actions."""

from __future__ import annotations

from celery import shared_task

from channels_inbox.actions.delivery import do_attempt_delivery
from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.sweep import do_sweep


@shared_task(name="channels_inbox.tasks.process_inbound")
def process_inbound(event_id: int) -> str:
    return do_process_inbound_event(event_id)


@shared_task(name="channels_inbox.tasks.deliver")
def deliver(delivery_id: int) -> str:
    return do_attempt_delivery(delivery_id)


@shared_task(name="channels_inbox.tasks.sweep")
def sweep() -> dict[str, int]:
    result = do_sweep()
    return {"inbound": result.inbound, "deliveries": result.deliveries}
