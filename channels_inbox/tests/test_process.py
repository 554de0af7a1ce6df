"""Processing stored inbound events: exactly once, retried on failure, never lost."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from channels_inbox.actions import process as process_module
from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.receive import do_receive_webhook
from channels_inbox.adapters.api import sign
from channels_inbox.adapters.base import WebhookRequest
from channels_inbox.models import InboundEvent, InboundEventStatus
from conftest import api_payload
from customers.models import Customer
from helpdesk.models import Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)


def receive(inbox: Any, payload: dict[str, Any]) -> InboundEvent:
    body = json.dumps(payload).encode()
    request = WebhookRequest(
        method="POST",
        url="http://testserver/",
        body=body,
        headers={"x-switchboard-signature": sign(inbox.secret("signing_secret"), body)},
    )
    do_receive_webhook(inbox, request)
    return InboundEvent.objects.get(inbox=inbox, dedupe_key=payload["external_id"])


@pytest.fixture
def no_inline_tasks(lost_tasks: Any) -> Any:
    """The test runs the processing itself."""
    return lost_tasks


def test_processing_twice_changes_nothing(api_inbox: Any, no_inline_tasks: Any) -> None:
    event = receive(api_inbox, api_payload())
    assert do_process_inbound_event(event.pk) == "processed"
    assert do_process_inbound_event(event.pk) == "already"
    assert Message.objects.count() == 1
    assert Ticket.objects.get().events.count() == 2


def test_unknown_event_id(db: Any) -> None:
    assert do_process_inbound_event(999_999) == "missing"


def test_failure_rolls_back_and_schedules_a_retry(api_inbox: Any, no_inline_tasks: Any, monkeypatch: Any) -> None:
    # given: the database write fails half-way
    event = receive(api_inbox, api_payload())

    def broken(**kwargs: Any) -> Any:
        Customer.objects.create(name="half-written")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(process_module, "do_ingest_message", broken)
    # when
    outcome = do_process_inbound_event(event.pk)
    # then: nothing half-written remains, the event waits for its retry
    assert outcome == "retry"
    event.refresh_from_db()
    assert event.status == InboundEventStatus.PENDING
    assert event.attempts == 1
    assert "disk on fire" in event.last_error
    assert event.next_attempt_at is not None
    assert event.next_attempt_at > timezone.now()
    assert not Customer.objects.filter(name="half-written").exists()
    assert Message.objects.count() == 0
    # when: the cause is gone
    monkeypatch.undo()
    assert do_process_inbound_event(event.pk) == "processed"
    event.refresh_from_db()
    assert event.attempts == 2
    assert event.last_error == ""


def test_gives_up_after_the_last_attempt_and_keeps_the_payload(
    api_inbox: Any, no_inline_tasks: Any, monkeypatch: Any, settings: Any
) -> None:
    settings.INBOUND_MAX_ATTEMPTS = 2
    event = receive(api_inbox, api_payload())
    monkeypatch.setattr(process_module, "do_ingest_message", lambda **kw: 1 / 0)
    assert do_process_inbound_event(event.pk) == "retry"
    assert do_process_inbound_event(event.pk) == "failed"
    event.refresh_from_db()
    assert event.status == InboundEventStatus.FAILED
    assert "ZeroDivisionError" in event.last_error
    assert json.loads(bytes(event.payload))["external_id"] == "msg-1"


def test_payload_that_no_longer_parses_fails_without_retries(api_inbox: Any, no_inline_tasks: Any) -> None:
    event = InboundEvent.objects.create(
        inbox=api_inbox, dedupe_key="x", payload=b"{broken", next_attempt_at=timezone.now()
    )
    assert do_process_inbound_event(event.pk) == "failed"
    event.refresh_from_db()
    assert event.status == InboundEventStatus.FAILED
    assert "not JSON" in event.last_error


def _in_threads(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


@pytest.mark.postgres
def test_two_workers_processing_the_same_event_at_once_make_one_message(
    api_inbox: Any, no_inline_tasks: Any, monkeypatch: Any
) -> None:
    # given: processing is slow enough that both workers are inside it together
    event = receive(api_inbox, api_payload())
    real = process_module.do_ingest_message

    def slow(**kwargs: Any) -> Any:
        time.sleep(0.3)
        return real(**kwargs)

    monkeypatch.setattr(process_module, "do_ingest_message", slow)
    # when
    outcomes = _in_threads(2, lambda i: do_process_inbound_event(event.pk))
    # then
    assert sorted(outcomes) == ["already", "processed"]
    assert Message.objects.count() == 1
    assert Ticket.objects.count() == 1
    assert Ticket.objects.get().events.count() == 2


@pytest.mark.postgres
def test_new_sender_in_two_events_at_once_is_one_customer(api_inbox: Any, no_inline_tasks: Any) -> None:
    # given: two messages of a brand-new sender, processed by two workers at the same moment
    events = [receive(api_inbox, api_payload(external_id=f"m{i}", thread_key=f"t{i}")) for i in range(2)]
    # when
    outcomes = _in_threads(2, lambda i: do_process_inbound_event(events[i].pk))
    # then
    assert outcomes == ["processed", "processed"]
    assert Customer.objects.count() == 1
    assert Message.objects.count() == 2


@pytest.mark.postgres
def test_concurrent_redelivery_is_stored_once(api_inbox: Any, no_inline_tasks: Any) -> None:
    payload = api_payload()
    _in_threads(4, lambda i: receive(api_inbox, payload))
    assert InboundEvent.objects.count() == 1


@pytest.mark.postgres
def test_ticket_numbers_are_unique_under_concurrency(api_inbox: Any, no_inline_tasks: Any) -> None:
    events = [receive(api_inbox, api_payload(external_id=f"m{i}", sender={"identifier": f"u{i}"})) for i in range(6)]
    _in_threads(6, lambda i: do_process_inbound_event(events[i].pk))
    numbers = list(Ticket.objects.values_list("number", flat=True))
    assert len(numbers) == 6
    assert len(set(numbers)) == 6


def test_retry_delay_is_capped(settings: Any) -> None:
    from channels_inbox.actions.receive import retry_delay

    settings.DELIVERY_BACKOFF_MAX_SECONDS = 600
    assert retry_delay(1) == timedelta(seconds=30)
    assert retry_delay(3) == timedelta(seconds=120)
    assert retry_delay(30) == timedelta(seconds=600)


@pytest.mark.postgres
def test_receiving_does_not_wait_for_processing_of_the_same_inbox(
    client: Any, api_inbox: Any, no_inline_tasks: Any, monkeypatch: Any
) -> None:
    # given: a worker is in the middle of processing an event of this inbox
    event = receive(api_inbox, api_payload())
    inside = threading.Event()
    release = threading.Event()
    real = process_module.do_ingest_message

    def held(**kwargs: Any) -> Any:
        result = real(**kwargs)
        inside.set()
        release.wait(timeout=10)
        return result

    monkeypatch.setattr(process_module, "do_ingest_message", held)

    def work() -> None:
        try:
            do_process_inbound_event(event.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert inside.wait(timeout=10)
        # when: the provider delivers another message to the same inbox
        started = time.monotonic()
        other = _in_threads(1, lambda i: receive(api_inbox, api_payload(external_id="m-2")))[0]
        # then: it is stored at once, not after the processing commits
        assert time.monotonic() - started < 2
        assert other.status == InboundEventStatus.PENDING
    finally:
        release.set()
        worker.join(timeout=10)


@pytest.mark.postgres
def test_two_customers_starting_one_thread_key_at_once_share_one_ticket(
    api_inbox: Any, no_inline_tasks: Any, monkeypatch: Any
) -> None:
    # given: two different senders open the same new conversation key at the same moment
    events = [
        receive(api_inbox, api_payload(external_id=f"m{i}", sender={"identifier": f"u{i}"}, thread_key="group-7"))
        for i in range(2)
    ]
    real = process_module.do_ingest_message

    def slow(**kwargs: Any) -> Any:
        time.sleep(0.2)
        return real(**kwargs)

    monkeypatch.setattr(process_module, "do_ingest_message", slow)
    # when
    _in_threads(2, lambda i: do_process_inbound_event(events[i].pk))
    # then
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2
