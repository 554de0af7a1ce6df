"""The change processor (helpdesk/changes.py): a failing step rolls the whole run back and is
retried (a transient error loses nothing), a step that keeps failing on the same change is
skipped after MAX_STEP_FAILURES, breaches the SLA step records wake the SLA triggers,
`status_changed_at` follows the status changes the steps made, and the cost of a change when
nothing is configured.

The processor is called directly (`process_ticket_changes(ticket_id)`): in tests the actions'
after-commit callbacks do not run, so nothing processes a change behind the test's back.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from helpdesk import changes
from helpdesk.actions import sla as sla_actions
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.actions.rules import do_save_rule
from helpdesk.changes import MAX_STEP_FAILURES, process_ticket_changes
from helpdesk.models import Rule, SlaClockState, Ticket, TicketEvent, TicketEventType
from helpdesk.tests.conftest import ingest
from helpdesk.tests.test_sla import clock, make_policy, targets

pytestmark = pytest.mark.django_db
CREATED = {"all": [{"field": "event", "op": "is", "value": "created"}]}


def trigger(admin: Any, name: str, actions: list[dict[str, Any]], conditions: Any = None, **fields: Any) -> Rule:
    return do_save_rule(
        None,
        kind="trigger",
        name=name,
        conditions=conditions if conditions is not None else CREATED,
        actions=actions,
        actor=admin,
        **fields,
    )


def fresh(ticket: Ticket) -> Ticket:
    return Ticket.objects.get(pk=ticket.pk)


def tags(ticket: Ticket) -> list[str]:
    return sorted(ticket.tags.values_list("name", flat=True))


def types(ticket: Ticket) -> list[str]:
    return list(TicketEvent.objects.filter(ticket=ticket).order_by("seq").values_list("type", flat=True))


class Flaky:
    """A step that raises its first `failures` calls (None: every call), then does the real work."""

    def __init__(self, real: Any, failures: int | None) -> None:
        self.real, self.failures, self.calls = real, failures, 0

    def __call__(self, ticket: Ticket, events: list[TicketEvent], **kwargs: Any) -> Ticket:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise OperationalError("deadlock detected")
        return self.real(ticket, events, **kwargs)


# --- a failing step --------------------------------------------------------------------------


def test_a_transient_failure_loses_nothing_and_the_retry_processes_the_change(
    admin_agent: Any, api_inbox: Any, monkeypatch: Any
) -> None:
    # given: a trigger that tags new tickets, a policy, and an SLA step that fails once (a deadlock)
    trigger(admin_agent, "Tag", [{"type": "add_tags", "value": ["new"]}])
    make_policy(targets=targets(first_reply=60))
    flaky = Flaky(sla_actions.update_ticket_sla, failures=1)
    monkeypatch.setattr(sla_actions, "update_ticket_sla", flaky)
    ticket = ingest(api_inbox)
    # when: the processor runs
    with pytest.raises(OperationalError):
        process_ticket_changes(ticket.pk)
    # then: the whole run was rolled back: nothing is marked processed, the trigger's work is gone
    ticket = fresh(ticket)
    assert ticket.changes_seq < ticket.last_event_seq
    assert tags(ticket) == []
    assert not ticket.sla_clocks.exists()
    # when: it runs again (the task's retry, or the sweeper)
    assert process_ticket_changes(ticket.pk) > 0
    # then: every step did its work once
    ticket = fresh(ticket)
    assert ticket.changes_seq == ticket.last_event_seq
    assert tags(ticket) == ["new"]
    assert clock(ticket, "first_reply").state == SlaClockState.RUNNING
    assert types(ticket).count(TicketEventType.RULE_FIRED) == 1


def test_the_task_retries_a_failed_run(api_inbox: Any, monkeypatch: Any) -> None:
    # given: a policy and an SLA step that fails twice; Celery runs tasks inline (eager), and
    # retries inline too once an error no longer propagates to the caller (as on a worker)
    from helpdesk.celery import app as celery_app
    from helpdesk.tasks import process_ticket_changes as task

    make_policy(targets=targets(first_reply=60))
    flaky = Flaky(sla_actions.update_ticket_sla, failures=2)
    monkeypatch.setattr(sla_actions, "update_ticket_sla", flaky)
    ticket = ingest(api_inbox)
    # when: the task runs once
    celery_app.conf.task_eager_propagates = False
    try:
        task.apply(args=(ticket.pk,))
    finally:
        celery_app.conf.task_eager_propagates = True
    # then: it retried until the step went through
    assert flaky.calls == 3
    ticket = fresh(ticket)
    assert ticket.changes_seq == ticket.last_event_seq
    assert clock(ticket, "first_reply").state == SlaClockState.RUNNING
    assert getattr(task, "autoretry_for", None) == (Exception,)
    assert getattr(task, "retry_backoff", None)


def test_a_step_that_always_fails_is_skipped_after_five_failures(
    admin_agent: Any, api_inbox: Any, monkeypatch: Any, caplog: Any
) -> None:
    # given: a trigger that tags new tickets, a policy, and an SLA step with a deterministic bug
    trigger(admin_agent, "Tag", [{"type": "add_tags", "value": ["new"]}])
    make_policy(targets=targets(first_reply=60))
    broken = Flaky(sla_actions.update_ticket_sla, failures=None)
    monkeypatch.setattr(sla_actions, "update_ticket_sla", broken)
    ticket = ingest(api_inbox)
    # when: the processor runs five times
    for _ in range(MAX_STEP_FAILURES):
        with pytest.raises(OperationalError):
            process_ticket_changes(ticket.pk)
        assert fresh(ticket).changes_seq < fresh(ticket).last_event_seq
    # and once more
    caplog.set_level(logging.ERROR, logger="helpdesk.changes")
    assert process_ticket_changes(ticket.pk) > 0
    # then: the SLA step was skipped (not called a sixth time), the other steps ran, the change is done
    assert broken.calls == MAX_STEP_FAILURES
    ticket = fresh(ticket)
    assert ticket.changes_seq == ticket.last_event_seq
    assert tags(ticket) == ["new"]
    assert not ticket.sla_clocks.exists()
    [skipped] = [r for r in caplog.records if r.levelno == logging.ERROR and "skipped" in r.getMessage()]
    assert f"ticket {ticket.pk} (#{ticket.number})" in skipped.getMessage()
    assert "the SLA step failed 5 times" in skipped.getMessage()
    # when: the ticket changes again (a new change: its own count), and the bug is fixed
    monkeypatch.setattr(sla_actions, "update_ticket_sla", broken.real)
    do_add_note(ticket, actor=admin_agent, text="x")
    process_ticket_changes(ticket.pk)
    # then: the SLA step runs for it
    assert clock(fresh(ticket), "first_reply").state == SlaClockState.RUNNING


# --- SLA breaches recorded by the processor wake the SLA triggers ----------------------------


def overdue_first_reply(api_inbox: Any) -> Ticket:
    """A ticket whose 60-minute first reply was due an hour ago, and whose timer never ran."""
    make_policy(targets=targets(first_reply=60))
    ticket = ingest(api_inbox)
    past = timezone.now() - timedelta(hours=2)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=past)
    TicketEvent.objects.filter(ticket=ticket).update(created_at=past)
    process_ticket_changes(ticket.pk)
    ticket = fresh(ticket)
    assert clock(ticket, "first_reply").due_at == past + timedelta(hours=1)
    assert TicketEventType.SLA_BREACHED not in types(ticket)
    return ticket


def test_a_breach_the_sla_step_records_wakes_the_breach_triggers(admin_agent: Any, agent: Any, api_inbox: Any) -> None:
    # given: a trigger "on SLA breach: urgent, tag", and an overdue first reply whose timer never ran
    trigger(
        admin_agent,
        "Escalate",
        [{"type": "priority", "value": 4}, {"type": "add_tags", "value": ["missed"]}],
        {},
        events=["sla_breach"],
    )
    ticket = overdue_first_reply(api_inbox)
    # when: the agent replies late; the SLA step records the breach, then the fulfilment
    do_reply(ticket, actor=agent, text="Sorry for the wait.")
    process_ticket_changes(ticket.pk)
    # then: the trigger saw the breach, once, and the processor does not wake itself
    ticket = fresh(ticket)
    assert (ticket.priority, tags(ticket)) == (4, ["missed"])
    seen = types(ticket)
    assert seen.count(TicketEventType.SLA_BREACHED) == 1
    assert seen.count(TicketEventType.RULE_FIRED) == 1
    assert seen.index(TicketEventType.SLA_BREACHED) < seen.index(TicketEventType.RULE_FIRED)
    assert ticket.changes_seq == ticket.last_event_seq
    assert process_ticket_changes(ticket.pk) == 0


def test_the_breach_triggers_run_once_even_if_what_they_do_breaches_again(
    admin_agent: Any, agent: Any, api_inbox: Any
) -> None:
    # given: a trigger on breaches that sets pending (which would settle the other clocks again)
    trigger(admin_agent, "Park", [{"type": "status", "value": "pending"}], {}, events=["sla_breach"])
    ticket = overdue_first_reply(api_inbox)
    do_reply(ticket, actor=agent, text="Late.")
    # when
    process_ticket_changes(ticket.pk)
    # then: it fired once; the run ended
    ticket = fresh(ticket)
    assert ticket.status == "pending"
    assert types(ticket).count(TicketEventType.RULE_FIRED) == 1
    assert ticket.changes_seq == ticket.last_event_seq


# --- status_changed_at ------------------------------------------------------------------------


def test_status_changed_at_follows_a_status_change_made_by_a_trigger(admin_agent: Any, api_inbox: Any) -> None:
    # given: a trigger that sets new tickets to pending
    trigger(admin_agent, "Park", [{"type": "status", "value": "pending"}])
    ticket = ingest(api_inbox)
    assert ticket.status_changed_at is None
    # when: the processor runs the trigger
    process_ticket_changes(ticket.pk)
    # then: the moment of the trigger's status change is on the ticket
    ticket = fresh(ticket)
    [changed] = TicketEvent.objects.filter(ticket=ticket, type=TicketEventType.STATUS_CHANGED)
    assert changed.data["new"] == "pending"
    assert ticket.status_changed_at == changed.created_at


# --- cost -------------------------------------------------------------------------------------


def test_a_change_with_nothing_configured_costs_four_queries(agent: Any, api_inbox: Any, support_team: Any) -> None:
    # given: no rules, no policies, no routing; a processed ticket in a (manual) team; the lists cached
    ticket = ingest(api_inbox)
    Ticket.objects.filter(pk=ticket.pk).update(team=support_team)
    process_ticket_changes(ticket.pk)
    do_add_note(fresh(ticket), actor=agent, text="warm")
    process_ticket_changes(ticket.pk)
    # when: the next change is processed
    do_add_note(fresh(ticket), actor=agent, text="checking")
    with CaptureQueriesContext(connection) as queries:
        assert process_ticket_changes(ticket.pk) == 1
    # then: the lock, the change's events, the team's routing mode, the final update; no step
    # runs in a savepoint (the one pair here is the processor's transaction inside the test's)
    sql = [q["sql"] for q in queries.captured_queries]
    statements = [s for s in sql if "SAVEPOINT" not in s.upper()]
    assert len(statements) <= 4, "\n".join(sql)
    assert len(sql) - len(statements) == 2
    assert fresh(ticket).changes_seq == fresh(ticket).last_event_seq


def test_events_are_read_again_only_when_a_step_appended_some(
    admin_agent: Any, api_inbox: Any, monkeypatch: Any
) -> None:
    # given: a trigger that tags new tickets; a spy on what the routing queue step sees
    trigger(admin_agent, "Tag", [{"type": "add_tags", "value": ["new"]}])
    seen: list[list[str]] = []
    from helpdesk.actions import routing

    real = routing.queue_for_routing

    def spy(ticket: Ticket, events: list[TicketEvent]) -> Ticket:
        seen.append([e.type for e in events])
        return real(ticket, events)

    monkeypatch.setattr(routing, "queue_for_routing", spy)
    ticket = ingest(api_inbox)
    # when
    process_ticket_changes(ticket.pk)
    # then: the last step saw the trigger's events too
    assert TicketEventType.RULE_FIRED in seen[0]
    assert TicketEventType.TAGS_CHANGED in seen[0]
    assert changes._touched.get() is None
