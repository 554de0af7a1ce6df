"""The sweeper re-queues work whose Celery message was lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels_inbox.actions.sweep import do_sweep
from channels_inbox.models import InboundEvent, InboundEventStatus, OutboundDelivery
from channels_inbox.tasks import sweep
from conftest import api_payload, post_signed
from helpdesk.actions.replies import do_reply
from helpdesk.models import DeliveryStatus, Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)


def test_lost_inbound_event_is_processed_by_the_sweeper(
    client: Any, api_inbox: Any, lost_tasks: Any, monkeypatch: Any
) -> None:
    # given: a stored event whose processing task was lost
    assert post_signed(client, api_inbox, api_payload()).status_code == 200
    event = InboundEvent.objects.get()
    assert event.status == InboundEventStatus.PENDING
    assert lost_tasks == [("channels_inbox.tasks.process_inbound", (event.pk,))]
    # when: a sweep within the grace period leaves it alone
    assert do_sweep().inbound == 0
    # when: a sweep after the grace period, with tasks running again
    InboundEvent.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    monkeypatch.undo()
    result = sweep()
    # then
    assert result == {"inbound": 1, "deliveries": 0}
    event.refresh_from_db()
    assert event.status == InboundEventStatus.PROCESSED
    assert Message.objects.count() == 1


def test_lost_delivery_is_sent_by_the_sweeper(
    client: Any, api_inbox: Any, admin_agent: Any, httpserver: Any, monkeypatch: Any
) -> None:
    # given: a reply whose deliver task was lost
    post_signed(client, api_inbox, api_payload())
    api_inbox.settings = {"callback_url": httpserver.url_for("/hook")}
    api_inbox.save()
    httpserver.expect_request("/hook").respond_with_json({"id": "x"})
    with monkeypatch.context() as patch:
        patch.setattr("celery.app.task.Task.apply_async", lambda *a, **k: None)
        message = do_reply(Ticket.objects.get(), actor=admin_agent, text="Hi")
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.QUEUED
    # when
    OutboundDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert do_sweep().deliveries == 1
    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


def test_delivery_held_by_a_worker_is_left_alone_until_its_lease_ends(
    client: Any, api_inbox: Any, admin_agent: Any, settings: Any, monkeypatch: Any
) -> None:
    # given: a worker claimed the delivery (attempts 1, lease in next_attempt_at) and died
    post_signed(client, api_inbox, api_payload())
    monkeypatch.setattr("celery.app.task.Task.apply_async", lambda *a, **k: None)
    delivery = OutboundDelivery.objects.get(message=do_reply(Ticket.objects.get(), actor=admin_agent, text="Hi"))
    lease_end = timezone.now() + timedelta(seconds=settings.WORK_LEASE_SECONDS)
    OutboundDelivery.objects.filter(pk=delivery.pk).update(attempts=1, next_attempt_at=lease_end)
    # then: not swept during the lease, swept after it
    assert do_sweep().deliveries == 0
    later = lease_end + timedelta(seconds=settings.SWEEP_GRACE_SECONDS + 1)
    assert do_sweep(now=later).deliveries == 1


def test_sweeper_does_not_queue_the_same_work_twice(client: Any, api_inbox: Any, lost_tasks: Any) -> None:
    post_signed(client, api_inbox, api_payload())
    InboundEvent.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert do_sweep().inbound == 1
    assert do_sweep().inbound == 0


def test_processed_and_failed_events_are_never_swept(api_inbox: Any, lost_tasks: Any) -> None:
    old = timezone.now() - timedelta(days=1)
    for status in (InboundEventStatus.PROCESSED, InboundEventStatus.FAILED, InboundEventStatus.IGNORED):
        InboundEvent.objects.create(
            inbox=api_inbox, dedupe_key=status, payload=b"{}", status=status, next_attempt_at=old
        )
    assert do_sweep().inbound == 0
