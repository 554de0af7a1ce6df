"""SLA timers (helpdesk/actions/sla.py): the eta task queued after commit, the beat scheduler
that queues the clocks coming into the window once, the firing (early, twice, busy), and the
sweeper that fires what a lost task missed, at a cost that depends only on the clocks due."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from helpdesk.actions.sla import (
    do_fire_sla_clock,
    do_schedule_sla_timers,
    do_sweep_sla_clocks,
)
from helpdesk.models import SlaClock, SlaClockState, Ticket, TicketEvent, TicketEventType
from helpdesk.tests.conftest import ingest
from helpdesk.tests.test_sla import HOUR, MIN, T0, clock, customer_writes, make_policy, step, targets

pytestmark = pytest.mark.django_db

FIRE = "helpdesk.tasks.fire_sla_clock"


def breaches(ticket: Ticket) -> int:
    return TicketEvent.objects.filter(ticket=ticket, type=TicketEventType.SLA_BREACHED).count()


def test_a_timer_that_fires_early_does_nothing(api_inbox: Any) -> None:
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    assert do_fire_sla_clock(first.pk, now=T0 + 59 * MIN) == "early"
    assert breaches(ticket) == 0
    assert clock(ticket, "first_reply").next_fire_at == T0 + 60 * MIN


def test_a_timer_that_fires_twice_records_one_breach(api_inbox: Any) -> None:
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    results = [do_fire_sla_clock(first.pk, now=T0 + 60 * MIN + timedelta(seconds=s)) for s in (0, 1)]
    assert results == ["breached", "nothing"]
    assert breaches(ticket) == 1
    assert clock(ticket, "first_reply").next_fire_at is None


def test_a_clock_stopped_before_its_timer_fires_nothing(api_inbox: Any, agent: Any) -> None:
    from helpdesk.tests.test_sla import agent_replies

    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    agent_replies(ticket, agent, T0 + 10 * MIN)
    assert do_fire_sla_clock(first.pk, now=T0 + 60 * MIN) == "nothing"
    assert do_fire_sla_clock(10**9) == "gone"
    assert breaches(ticket) == 0


def test_the_sweeper_fires_what_a_lost_task_missed(
    api_inbox: Any, lost_tasks: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # given: a deadline in 30 seconds; its timer task is queued after commit, and the broker loses it
    make_policy(targets=targets(first_reply=0.5))
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        ticket = customer_writes(api_inbox, now)
    assert (FIRE, (clock(ticket, "first_reply").pk,)) in lost_tasks
    assert breaches(ticket) == 0
    # when: the sweeper runs before and after the deadline
    assert do_sweep_sla_clocks(now=now + timedelta(seconds=29)) == 0
    assert do_sweep_sla_clocks(now=now + timedelta(seconds=31)) == 1
    # then: the breach is recorded once; later sweeps find nothing
    assert breaches(ticket) == 1
    assert do_sweep_sla_clocks(now=now + timedelta(seconds=33)) == 0


def test_a_clock_far_ahead_is_not_queued_until_the_scheduler_sees_it_coming(
    api_inbox: Any, lost_tasks: list[Any], django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    # given: a window of 5 minutes, a deadline an hour away
    settings.SLA_SCHEDULE_AHEAD_SECONDS = 300
    make_policy(targets=targets(first_reply=60))
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        ticket = customer_writes(api_inbox, now)
    assert [t for t in lost_tasks if t[0] == FIRE] == []
    first = clock(ticket, "first_reply")
    # when: the beat scheduler runs while the deadline is still far, then twice once it is near
    assert do_schedule_sla_timers(now=now) == 0
    assert do_schedule_sla_timers(now=now + 56 * MIN) == 1
    assert do_schedule_sla_timers(now=now + 57 * MIN) == 0
    # then: exactly one timer was queued for it
    assert lost_tasks.count((FIRE, (first.pk,))) == 1


def test_the_timer_is_queued_with_the_deadline_as_its_eta(
    api_inbox: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from helpdesk.tasks import fire_sla_clock

    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(fire_sla_clock, "apply_async", lambda **kw: queued.append(kw))
    make_policy(targets=targets(first_reply=1))
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        ticket = customer_writes(api_inbox, now)
    first = clock(ticket, "first_reply")
    assert queued == [{"args": (first.pk,), "eta": first.due_at}]


def test_a_warning_timer_queues_the_breach_timer(
    api_inbox: Any, lost_tasks: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    make_policy(targets=targets(first_reply=3), warn_before_minutes=1)
    now = timezone.now()
    ticket = customer_writes(api_inbox, now)
    first = clock(ticket, "first_reply")
    with django_capture_on_commit_callbacks(execute=True):
        assert do_fire_sla_clock(first.pk, now=first.warn_at) == "warned"
    assert lost_tasks.count((FIRE, (first.pk,))) == 1


def test_the_real_change_processor_starts_the_clocks_and_queues_their_timers(
    api_inbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a policy; Celery runs tasks inline (eager), after commit
    make_policy(targets=targets(first_reply=60))
    # when: a message arrives through ingest; the change processor runs as a task
    with django_capture_on_commit_callbacks(execute=True):
        ticket = ingest(api_inbox)
    # then: the clocks started (the timer fired inline, early, and did nothing)
    ticket.refresh_from_db()
    assert ticket.changes_seq == ticket.last_event_seq
    assert clock(ticket, "first_reply").state == SlaClockState.RUNNING
    assert ticket.sla_due_at == clock(ticket, "first_reply").due_at
    assert breaches(ticket) == 0


def test_one_sweep_costs_one_query_when_nothing_is_due(api_inbox: Any) -> None:
    # given: clocks due later
    make_policy(targets=targets(first_reply=60))
    customer_writes(api_inbox, T0)
    assert SlaClock.objects.filter(next_fire_at__isnull=False).count() == 1
    # when / then: the sweeper reads the due clocks only
    with CaptureQueriesContext(connection) as queries:
        assert do_sweep_sla_clocks(now=T0 + MIN) == 0
    assert len(queries.captured_queries) == 1
    assert "next_fire_at" in queries.captured_queries[0]["sql"]


def test_the_sweeper_fires_at_most_a_batch_earliest_first(api_inbox: Any, settings: Any) -> None:
    settings.SLA_SWEEP_BATCH = 2
    make_policy(targets=targets(first_reply=60))
    tickets = [customer_writes(api_inbox, T0)]
    for n in range(2):
        t = ingest(api_inbox, identifier=f"user-{n}", thread_key=f"k{n}")
        Ticket.objects.filter(pk=t.pk).update(created_at=T0 + (n + 1) * MIN)
        TicketEvent.objects.filter(ticket=t).update(created_at=T0 + (n + 1) * MIN)
        tickets.append(step(t, T0 + (n + 1) * MIN))
    assert do_sweep_sla_clocks(now=T0 + 2 * HOUR) == 2
    assert [breaches(t) for t in tickets] == [1, 1, 0]
    assert do_sweep_sla_clocks(now=T0 + 2 * HOUR) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_clock_whose_ticket_is_locked_is_busy_and_the_next_sweep_fires_it(api_inbox: Any) -> None:
    # given: a due clock whose ticket another transaction holds (the change processor, say)
    # (the change processor runs for real here: the commits are real)
    make_policy(targets=targets(first_reply=60))
    ticket = ingest(api_inbox)
    first = clock(ticket, "first_reply")
    assert first.due_at is not None
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Ticket.objects.select_for_update().get(pk=ticket.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        # when: its timer fires
        assert do_fire_sla_clock(first.pk, now=first.due_at) == "busy"
        assert breaches(ticket) == 0
    finally:
        release.set()
        holder.join()
    # then: the next sweep fires it
    assert do_sweep_sla_clocks(now=first.due_at + timedelta(seconds=2)) == 1
    assert breaches(ticket) == 1


# --- a change not processed yet when the timer fires ------------------------------------------


def test_a_reply_made_before_the_deadline_but_not_processed_yet_is_no_breach(api_inbox: Any, agent: Any) -> None:
    from helpdesk.actions.replies import do_reply

    # given: a 30-minute first reply; the agent replies at 29:58, and the change processor has not
    # run yet (its task waits behind a backlog, or was lost)
    make_policy(targets=targets(first_reply=30))
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    before = TicketEvent.objects.filter(ticket=ticket).count()
    do_reply(Ticket.objects.get(pk=ticket.pk), actor=agent, text="On it.")
    TicketEvent.objects.filter(ticket=ticket, seq__gt=before).update(created_at=T0 + 29 * MIN + timedelta(seconds=58))
    ticket = Ticket.objects.get(pk=ticket.pk)
    assert ticket.changes_seq < ticket.last_event_seq
    # when: the timer fires at the deadline
    result = do_fire_sla_clock(first.pk, now=T0 + 30 * MIN)
    # then: it processed the reply first, under the same lock: fulfilled in time, no breach
    assert result == "nothing"
    assert breaches(ticket) == 0
    first = clock(ticket, "first_reply")
    assert (first.state, first.fulfilled_at, first.breached_at) == (
        SlaClockState.FULFILLED,
        T0 + 29 * MIN + timedelta(seconds=58),
        None,
    )
    ticket = Ticket.objects.get(pk=ticket.pk)
    assert ticket.changes_seq == ticket.last_event_seq


def test_an_unprocessed_change_that_leaves_the_clock_running_still_breaches(api_inbox: Any, agent: Any) -> None:
    from helpdesk.actions.replies import do_add_note

    # given: an internal note not processed yet (it stops no clock)
    make_policy(targets=targets(first_reply=30))
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    do_add_note(Ticket.objects.get(pk=ticket.pk), actor=agent, text="looking")
    # when: the timer fires at the deadline / then: the change is processed and the breach recorded
    assert do_fire_sla_clock(first.pk, now=T0 + 30 * MIN) == "breached"
    assert breaches(ticket) == 1
    ticket = Ticket.objects.get(pk=ticket.pk)
    assert ticket.changes_seq < ticket.last_event_seq  # the breach itself waits for the processor (triggers)


def test_a_timer_whose_unprocessed_change_fails_is_busy_and_records_nothing(
    api_inbox: Any, agent: Any, monkeypatch: Any
) -> None:
    from helpdesk.actions import sla as sla_actions
    from helpdesk.actions.replies import do_reply

    # given: an unprocessed reply, and a change processor whose SLA step fails (say, a deadlock)
    make_policy(targets=targets(first_reply=30))
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    do_reply(Ticket.objects.get(pk=ticket.pk), actor=agent, text="On it.")

    def broken(*args: Any, **kwargs: Any) -> Ticket:
        raise RuntimeError("deadlock detected")

    monkeypatch.setattr(sla_actions, "update_ticket_sla", broken)
    # when: the timer fires / then: it leaves the clock for the sweeper rather than judge it stale
    assert do_fire_sla_clock(first.pk, now=T0 + 30 * MIN) == "busy"
    assert breaches(ticket) == 0
    assert clock(ticket, "first_reply").state == SlaClockState.RUNNING
