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

    monkeypatch.setattr(process_module, "do_ingest_messages", broken)
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
    monkeypatch.setattr(process_module, "do_ingest_messages", lambda **kw: 1 / 0)
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
    real = process_module.do_ingest_messages

    def slow(**kwargs: Any) -> Any:
        time.sleep(0.3)
        return real(**kwargs)

    monkeypatch.setattr(process_module, "do_ingest_messages", slow)
    # when
    outcomes = _in_threads(2, lambda i: do_process_inbound_event(event.pk))
    # then
    assert sorted(outcomes) == ["already", "processed"]
    assert Message.objects.count() == 1
    assert Ticket.objects.count() == 1
    assert Ticket.objects.get().events.count() == 2


@pytest.mark.postgres
def test_new_sender_in_two_events_at_once_is_one_customer(api_inbox: Any, no_inline_tasks: Any, settings: Any) -> None:
    settings.INGEST_BATCH_SIZE = 1  # the race between two workers, one event each
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
def test_ticket_numbers_are_unique_under_concurrency(api_inbox: Any, no_inline_tasks: Any, settings: Any) -> None:
    settings.INGEST_BATCH_SIZE = 1  # the race between two workers, one event each
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
    real = process_module.do_ingest_messages

    def held(**kwargs: Any) -> Any:
        result = real(**kwargs)
        inside.set()
        release.wait(timeout=10)
        return result

    monkeypatch.setattr(process_module, "do_ingest_messages", held)

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
    api_inbox: Any, no_inline_tasks: Any, monkeypatch: Any, settings: Any
) -> None:
    settings.INGEST_BATCH_SIZE = 1  # the race between two workers, one event each
    # given: two different senders open the same new conversation key at the same moment
    events = [
        receive(api_inbox, api_payload(external_id=f"m{i}", sender={"identifier": f"u{i}"}, thread_key="group-7"))
        for i in range(2)
    ]
    real = process_module.do_ingest_messages

    def slow(**kwargs: Any) -> Any:
        time.sleep(0.2)
        return real(**kwargs)

    monkeypatch.setattr(process_module, "do_ingest_messages", slow)
    # when
    _in_threads(2, lambda i: do_process_inbound_event(events[i].pk))
    # then
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2


def test_a_backlog_is_processed_in_batches_with_the_same_threading(
    api_inbox: Any, no_inline_tasks: Any, settings: Any
) -> None:
    from django.test.utils import CaptureQueriesContext

    from channels_inbox.models import InboundEvent as Event
    from helpdesk.models import TicketEventType

    # given: a backlog where threading inside the batch matters
    settings.INGEST_BATCH_SIZE = 50
    payloads = [
        api_payload(external_id="a1", sender={"identifier": "ana", "email": "ana@example.com"}),
        api_payload(external_id="b1", sender={"identifier": "bob"}, thread_key="order-7"),
        api_payload(external_id="a2", sender={"identifier": "ana"}),
        api_payload(external_id="c1", sender={"identifier": "cyd"}, thread_key="order-7"),
        api_payload(external_id="a3", sender={"identifier": "ana-2", "email": "ana@example.com"}),
    ] + [api_payload(external_id=f"n{i}", sender={"identifier": f"new-{i}"}) for i in range(40)]
    events = [receive(api_inbox, payload) for payload in payloads]
    # when: one task processes the whole backlog
    with CaptureQueriesContext(connection) as queries:
        assert do_process_inbound_event(events[0].pk) == "processed"
    # then: everything processed, in one transaction of a few statements
    assert Event.objects.filter(status=InboundEventStatus.PROCESSED).count() == 45
    assert len(queries) <= 25, [q["sql"][:80] for q in queries]
    assert [do_process_inbound_event(e.pk) for e in events[1:3]] == ["already", "already"]
    # and the tickets are the ones one-at-a-time processing gives
    ticket_of = {m.external_id: m.ticket_id for m in Message.objects.all()}
    assert ticket_of["a1"] == ticket_of["a2"] == ticket_of["a3"]  # one customer (shared email), one ticket
    assert ticket_of["b1"] == ticket_of["c1"] != ticket_of["a1"]  # one thread key, two customers
    assert len(set(ticket_of.values())) == 2 + 40
    assert Customer.objects.count() == 3 + 40
    for ticket in Ticket.objects.all():
        seqs = list(ticket.events.order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, ticket.last_event_seq + 1))
    shared = Ticket.objects.get(pk=ticket_of["a1"])
    assert list(shared.events.order_by("seq").values_list("type", flat=True)) == [
        TicketEventType.CREATED,
        TicketEventType.MESSAGE_RECEIVED,
        TicketEventType.MESSAGE_RECEIVED,
        TicketEventType.MESSAGE_RECEIVED,
    ]


def test_a_failing_event_in_a_batch_does_not_hold_up_the_others(
    api_inbox: Any, no_inline_tasks: Any, monkeypatch: Any, settings: Any
) -> None:
    # given: a backlog in which one message cannot be written
    settings.INGEST_BATCH_SIZE = 50
    events = [receive(api_inbox, api_payload(external_id=f"m{i}", sender={"identifier": f"u{i}"})) for i in range(5)]
    real = process_module.do_ingest_messages

    def fails_on_m2(**kwargs: Any) -> Any:
        if any(item.inbound.external_id == "m2" for item in kwargs["items"]):
            raise RuntimeError("m2 cannot be written")
        return real(**kwargs)

    monkeypatch.setattr(process_module, "do_ingest_messages", fails_on_m2)
    # when
    outcome = do_process_inbound_event(events[0].pk)
    # then: the batch fell back to one event at a time
    assert outcome == "processed"
    statuses = {e.dedupe_key: (e.status, e.attempts) for e in InboundEvent.objects.all()}
    assert statuses.pop("m2") == (InboundEventStatus.PENDING, 1)
    assert set(statuses.values()) == {(InboundEventStatus.PROCESSED, 1)}
    assert Message.objects.count() == 4


@pytest.mark.postgres
def test_two_workers_with_batches_of_the_same_customers_keep_one_ticket_each(
    api_inbox: Any, no_inline_tasks: Any, settings: Any
) -> None:
    # given: a backlog of 40 messages from 4 customers, and two workers starting at once
    settings.INGEST_BATCH_SIZE = 25
    events = [
        receive(api_inbox, api_payload(external_id=f"m{i}", sender={"identifier": f"u{i % 4}"})) for i in range(40)
    ]
    # when: each takes a batch (SKIP LOCKED gives them different events)
    outcomes = _in_threads(2, lambda i: do_process_inbound_event(events[i * 20].pk))
    for event in events:  # the tasks of any event left over
        do_process_inbound_event(event.pk)
    # then
    assert set(outcomes) <= {"processed", "already"}
    assert InboundEvent.objects.exclude(status=InboundEventStatus.PROCESSED).count() == 0
    assert Message.objects.count() == 40
    assert Customer.objects.count() == 4
    assert Ticket.objects.count() == 4
    for ticket in Ticket.objects.all():
        assert ticket.messages.count() == 10
        seqs = list(ticket.events.order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, ticket.last_event_seq + 1))
