"""SLA policies and clocks (helpdesk/sla.py, helpdesk/actions/sla.py): every rule of the pause
table in docs/sla.md, policy selection and pinning, re-targeting, business hours, breach and
escalation, the query cost of a change, and the policy form's validation messages.

Time is never waited for: each change is stamped with the moment it happens (its events'
`created_at`) and the SLA step (the change processor's step 3) runs with that moment as "now".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db.models import F, Max

from helpdesk.actions import sla as sla_actions
from helpdesk.actions.replies import do_add_note, do_reply, do_send_auto_reply
from helpdesk.actions.sla import (
    InvalidPolicy,
    apply_policy,
    do_delete_sla_policy,
    do_fire_sla_clock,
    do_move_sla_policy,
    do_save_sla_policy,
    policy_for,
    preview_policy,
    update_ticket_sla,
)
from helpdesk.actions.ticket_fields import do_change_priority
from helpdesk.actions.tickets import do_assign_ticket, do_change_status
from helpdesk.events import Created, append_event
from helpdesk.models import (
    BusinessCalendar,
    Notification,
    NotificationKind,
    SlaClock,
    SlaClockState,
    SlaPolicy,
    Team,
    Ticket,
    TicketEvent,
    TicketEventType,
)
from helpdesk.sla import METRIC_TARGET_KEYS, PAUSE_TABLE
from helpdesk.tests.conftest import ingest, new_ticket

pytestmark = pytest.mark.django_db

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# A Monday morning, UTC.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- helpers ----------------------------------------------------------------------------------


def targets(**metrics: Any) -> dict[str, Any]:
    """Normal-priority targets in minutes, e.g. targets(first_reply=60); a tuple (minutes, True)
    is in business hours."""
    row = {}
    for metric, spec in metrics.items():
        minutes, business = spec if isinstance(spec, tuple) else (spec, False)
        row[metric] = {"minutes": minutes, "business_hours": business}
    return {"2": row}


def make_policy(name: str = "Standard", *, position: int | None = None, **fields: Any) -> SlaPolicy:
    """A policy stored as the form stores it (straight into the table; the list version bumped)."""
    fields.setdefault("targets", targets(first_reply=60, resolution=480))
    if position is None:
        position = (SlaPolicy.objects.aggregate(top=Max("position"))["top"] or 0) + 1
    policy = SlaPolicy.objects.create(name=name, position=position, **fields)
    sla_actions.policies_changed()
    return policy


def step(ticket: Ticket, now: datetime) -> Ticket:
    """What the change processor does for the SLA: step 3 on the events not yet processed."""
    ticket = Ticket.objects.get(pk=ticket.pk)
    events = list(TicketEvent.objects.filter(ticket=ticket, seq__gt=ticket.changes_seq).order_by("seq"))
    update_ticket_sla(ticket, events, now=now)
    Ticket.objects.filter(pk=ticket.pk).update(changes_seq=F("last_event_seq"))
    return Ticket.objects.get(pk=ticket.pk)


def at(when: datetime, change: Callable[[], Any], ticket: Ticket | None = None) -> Ticket:
    """Make a change at `when`: its events are stamped with that moment, then the SLA step runs."""
    before = TicketEvent.objects.aggregate(top=Max("id"))["top"] or 0
    result = change()
    ticket = ticket or (result if isinstance(result, Ticket) else result.ticket)
    TicketEvent.objects.filter(id__gt=before).update(created_at=when)
    return step(ticket, when)


def customer_writes(inbox: Any, when: datetime, text: str = "Where is my order?") -> Ticket:
    ticket = at(when, lambda: ingest(inbox, text, thread_key="order-881"))
    if ticket.created_at > when:
        Ticket.objects.filter(pk=ticket.pk).update(created_at=when)
    return Ticket.objects.get(pk=ticket.pk)


def agent_replies(ticket: Ticket, agent: Any, when: datetime) -> Ticket:
    return at(when, lambda: do_reply(ticket, actor=agent, text="We are on it."), ticket)


def set_status(ticket: Ticket, status: str, when: datetime, actor: Any = None) -> Ticket:
    return at(when, lambda: do_change_status(ticket, status=status, actor=actor), ticket)


def clock(ticket: Ticket, metric: str, instance: int = 1) -> SlaClock:
    return SlaClock.objects.get(ticket=ticket, metric=metric, instance=instance)


def events_of(ticket: Ticket, type_: str) -> list[TicketEvent]:
    return list(TicketEvent.objects.filter(ticket=ticket, type=type_).order_by("seq"))


# --- the table --------------------------------------------------------------------------------


def test_the_pause_table_names_every_metric() -> None:
    assert [row["metric"] for row in PAUSE_TABLE] == list(METRIC_TARGET_KEYS)
    assert sla_actions.PAUSE_TABLE is PAUSE_TABLE


def test_first_reply_starts_when_the_customer_writes_and_an_agent_reply_fulfils_it(api_inbox: Any, agent: Any) -> None:
    # given: a policy with a 60-minute first reply and an 8-hour resolution
    make_policy()
    # when: a customer opens a ticket
    ticket = customer_writes(api_inbox, T0)
    # then: both clocks run, and the ticket shows the earliest deadline
    first = clock(ticket, "first_reply")
    assert (first.state, first.started_at, first.due_at) == (SlaClockState.RUNNING, T0, T0 + 60 * MIN)
    assert clock(ticket, "resolution").due_at == T0 + 8 * HOUR
    assert ticket.sla_due_at == T0 + 60 * MIN
    assert ticket.sla_policy is not None
    assert events_of(ticket, TicketEventType.SLA_APPLIED)[0].data["name"] == "Standard"
    # when: an agent replies publicly 10 minutes later
    ticket = agent_replies(ticket, agent, T0 + 10 * MIN)
    # then: the first reply is fulfilled in time, and the deadline is the resolution's
    first = clock(ticket, "first_reply")
    assert (first.state, first.fulfilled_at, first.next_fire_at) == (SlaClockState.FULFILLED, T0 + 10 * MIN, None)
    [fulfilled] = events_of(ticket, TicketEventType.SLA_FULFILLED)
    assert fulfilled.data == {
        "clock_id": first.pk,
        "metric": "first_reply",
        "instance": 1,
        "breached": False,
        "seconds": 600.0,
    }
    assert ticket.sla_due_at == T0 + 8 * HOUR


def test_notes_automatic_replies_and_rule_replies_never_count_as_a_reply(api_inbox: Any, agent: Any) -> None:
    # given: a running first-reply clock
    make_policy()
    ticket = customer_writes(api_inbox, T0)
    # when: an internal note, then an automatic reply (what a rule's reply step sends)
    ticket = at(T0 + MIN, lambda: do_add_note(ticket, actor=agent, text="looking"), ticket)
    ticket = at(T0 + 2 * MIN, lambda: do_send_auto_reply(ticket, text="We got your message."), ticket)
    # then: the clock still runs
    assert events_of(ticket, TicketEventType.AUTO_REPLY_SENT)
    assert clock(ticket, "first_reply").state == SlaClockState.RUNNING
    assert not events_of(ticket, TicketEventType.SLA_FULFILLED)


def test_a_ticket_an_agent_opened_has_no_first_reply_clock(agent: Any) -> None:
    # given: a policy; a ticket an agent started (its Created event has an acting agent)
    make_policy()
    ticket = new_ticket(status="new")
    ticket = at(T0, lambda: append_event(ticket, Created(channel="api", inbox_id=ticket.inbox_id), actor=agent), ticket)
    # then: only the resolution clock runs
    assert list(SlaClock.objects.filter(ticket=ticket).values_list("metric", flat=True)) == ["resolution"]


def test_next_reply_starts_at_the_oldest_unanswered_customer_message(api_inbox: Any, agent: Any) -> None:
    # given: first reply 60 min, next reply 30 min
    make_policy(targets=targets(first_reply=60, next_reply=30))
    ticket = customer_writes(api_inbox, T0)
    ticket = agent_replies(ticket, agent, T0 + 5 * MIN)
    # when: the customer writes twice before anyone answers
    ticket = customer_writes(api_inbox, T0 + 20 * MIN, "Any news?")
    ticket = customer_writes(api_inbox, T0 + 40 * MIN, "Hello??")
    # then: one next-reply clock, started at the first of the two
    nxt = clock(ticket, "next_reply")
    assert SlaClock.objects.filter(ticket=ticket, metric="next_reply").count() == 1
    assert (nxt.started_at, nxt.due_at) == (T0 + 20 * MIN, T0 + 50 * MIN)
    # when: the agent answers, then the customer writes again
    ticket = agent_replies(ticket, agent, T0 + 45 * MIN)
    ticket = customer_writes(api_inbox, T0 + 60 * MIN, "Thanks, one more thing")
    # then: the first cycle was met; a second one runs from the new message
    assert clock(ticket, "next_reply").state == SlaClockState.FULFILLED
    second = clock(ticket, "next_reply", 2)
    assert (second.state, second.started_at, second.due_at) == (SlaClockState.RUNNING, T0 + 60 * MIN, T0 + 90 * MIN)


def test_customer_messages_before_the_first_reply_start_no_next_reply(api_inbox: Any) -> None:
    make_policy(targets=targets(first_reply=60, next_reply=30))
    ticket = customer_writes(api_inbox, T0)
    ticket = customer_writes(api_inbox, T0 + 10 * MIN, "Hello?")
    assert not SlaClock.objects.filter(ticket=ticket, metric="next_reply").exists()


def test_periodic_updates_start_at_each_agent_reply_and_pause_while_pending(api_inbox: Any, agent: Any) -> None:
    # given: a periodic update every 120 minutes
    make_policy(targets=targets(periodic_update=120))
    ticket = customer_writes(api_inbox, T0)
    # when: an agent replies, then sets the ticket pending for an hour, then it is open again
    ticket = agent_replies(ticket, agent, T0 + 10 * MIN)
    first = clock(ticket, "periodic_update")
    assert first.due_at == T0 + 130 * MIN
    ticket = set_status(ticket, "pending", T0 + 40 * MIN, agent)
    paused = clock(ticket, "periodic_update")
    assert (paused.state, paused.elapsed_seconds, paused.due_at) == (SlaClockState.PAUSED, 1800.0, None)
    ticket = set_status(ticket, "open", T0 + 100 * MIN, agent)
    # then: the pending hour did not count
    assert clock(ticket, "periodic_update").due_at == T0 + 190 * MIN
    # when: the next agent reply
    ticket = agent_replies(ticket, agent, T0 + 150 * MIN)
    # then: that cycle is met and a new one starts
    assert clock(ticket, "periodic_update").state == SlaClockState.FULFILLED
    assert clock(ticket, "periodic_update", 2).due_at == T0 + 270 * MIN


def test_resolution_pauses_in_pending_and_on_hold_and_a_reopen_adds_to_its_total(api_inbox: Any, agent: Any) -> None:
    # given: resolution in 8 hours
    make_policy(targets=targets(resolution=480))
    ticket = customer_writes(api_inbox, T0)
    # when: open 1 h, pending 2 h, on hold 1 h, open 1 h, solved
    ticket = set_status(ticket, "pending", T0 + HOUR, agent)
    ticket = set_status(ticket, "on_hold", T0 + 3 * HOUR, agent)
    assert clock(ticket, "resolution").state == SlaClockState.PAUSED
    assert ticket.sla_due_at is None
    ticket = set_status(ticket, "open", T0 + 4 * HOUR, agent)
    assert clock(ticket, "resolution").due_at == T0 + 11 * HOUR
    ticket = set_status(ticket, "solved", T0 + 5 * HOUR, agent)
    # then: fulfilled after 2 counted hours
    res = clock(ticket, "resolution")
    assert (res.state, res.elapsed_seconds) == (SlaClockState.FULFILLED, 7200.0)
    assert events_of(ticket, TicketEventType.SLA_FULFILLED)[-1].data["seconds"] == 7200.0
    # when: the customer writes again a day later (the ticket reopens)
    ticket = customer_writes(api_inbox, T0 + 29 * HOUR, "It broke again")
    # then: the same clock resumes with the 2 hours already counted
    res = clock(ticket, "resolution")
    assert ticket.status == "open"
    assert (res.state, res.instance, res.due_at) == (SlaClockState.RUNNING, 1, T0 + 35 * HOUR)


def test_solved_stops_the_reply_clocks_and_a_reopen_resumes_them(api_inbox: Any, agent: Any) -> None:
    # given: a first-reply clock of 60 minutes
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    # when: solved without a reply after 20 minutes, reopened by the customer 3 hours later
    ticket = set_status(ticket, "solved", T0 + 20 * MIN, agent)
    stopped = clock(ticket, "first_reply")
    assert (stopped.state, stopped.elapsed_seconds, stopped.next_fire_at) == (SlaClockState.PAUSED, 1200.0, None)
    ticket = customer_writes(api_inbox, T0 + 200 * MIN, "Not solved")
    # then: it resumes with 40 minutes left
    assert clock(ticket, "first_reply").due_at == T0 + 240 * MIN


def test_closed_cancels_the_reply_clocks_and_fulfils_resolution(api_inbox: Any, agent: Any) -> None:
    make_policy(targets=targets(first_reply=60, resolution=480))
    ticket = customer_writes(api_inbox, T0)
    ticket = set_status(ticket, "closed", T0 + 30 * MIN, agent)
    assert clock(ticket, "first_reply").state == SlaClockState.CANCELLED
    assert clock(ticket, "resolution").state == SlaClockState.FULFILLED
    assert ticket.sla_due_at is None
    assert not SlaClock.objects.filter(ticket=ticket, next_fire_at__isnull=False).exists()


# --- breach, warning, escalation --------------------------------------------------------------


def test_a_breach_is_recorded_once_and_never_undone(api_inbox: Any, agent: Any) -> None:
    # given: a first reply due at T0 + 60 min
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    # when: its timer fires at the deadline (twice, as a timer and the sweeper may)
    assert do_fire_sla_clock(first.pk, now=T0 + 60 * MIN) == "breached"
    assert do_fire_sla_clock(first.pk, now=T0 + 61 * MIN) == "nothing"
    # then: one breach
    [breach] = events_of(ticket, TicketEventType.SLA_BREACHED)
    assert breach.data == {
        "clock_id": first.pk,
        "metric": "first_reply",
        "instance": 1,
        "due_at": (T0 + 60 * MIN).isoformat(),
    }
    assert clock(ticket, "first_reply").breached_at == T0 + 60 * MIN
    # when: the agent replies late, and the priority changes afterwards
    ticket = agent_replies(ticket, agent, T0 + 90 * MIN)
    ticket = at(T0 + 95 * MIN, lambda: do_change_priority(ticket, priority=4, actor=agent), ticket)
    # then: fulfilled late; the breach stays on record
    first = clock(ticket, "first_reply")
    assert (first.state, first.breached_at) == (SlaClockState.FULFILLED, T0 + 60 * MIN)
    assert events_of(ticket, TicketEventType.SLA_FULFILLED)[0].data["breached"] is True
    assert len(events_of(ticket, TicketEventType.SLA_BREACHED)) == 1


def test_a_reply_after_an_unfired_deadline_records_the_breach_first(api_inbox: Any, agent: Any) -> None:
    # given: a first-reply deadline whose timer never ran
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    # when: the agent replies after the deadline
    ticket = agent_replies(ticket, agent, T0 + 70 * MIN)
    # then: the breach, then the late fulfilment
    types = [e.type for e in TicketEvent.objects.filter(ticket=ticket, type__startswith="sla_").order_by("seq")]
    assert types == ["sla_applied", "sla_breached", "sla_fulfilled"]
    assert events_of(ticket, TicketEventType.SLA_FULFILLED)[0].data["breached"] is True


def test_a_warning_goes_out_once_to_the_assignee_then_the_breach(api_inbox: Any, agent: Any) -> None:
    # given: warn 10 minutes before a 60-minute first reply; the ticket assigned to Ada
    make_policy(targets=targets(first_reply=60), warn_before_minutes=10)
    ticket = customer_writes(api_inbox, T0)
    do_assign_ticket(ticket, assignee=agent, actor=None)
    first = clock(ticket, "first_reply")
    assert (first.warn_at, first.next_fire_at) == (T0 + 50 * MIN, T0 + 50 * MIN)
    # when: the warning's moment comes (and its timer runs again)
    assert do_fire_sla_clock(first.pk, now=T0 + 49 * MIN) == "early"
    assert do_fire_sla_clock(first.pk, now=T0 + 50 * MIN) == "warned"
    assert do_fire_sla_clock(first.pk, now=T0 + 51 * MIN) == "early"
    # then: one warning; the next moment is the deadline
    assert len(events_of(ticket, TicketEventType.SLA_WARNING)) == 1
    assert clock(ticket, "first_reply").next_fire_at == T0 + 60 * MIN
    warned = Notification.objects.get(kind=NotificationKind.SLA_WARNING)
    assert (warned.recipient, warned.ticket_id) == (agent, ticket.pk)
    assert "first reply" in warned.text
    # when: the deadline passes
    assert do_fire_sla_clock(first.pk, now=T0 + 60 * MIN) == "breached"
    # then: the breach notification; no second warning
    assert Notification.objects.filter(kind=NotificationKind.SLA_BREACH, recipient=agent).count() == 1
    assert len(events_of(ticket, TicketEventType.SLA_WARNING)) == 1


def test_an_unassigned_ticket_notifies_its_team(api_inbox: Any, agent: Any, billing_agent: Any) -> None:
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    Ticket.objects.filter(pk=ticket.pk).update(team=Team.objects.get(slug="support"))
    do_fire_sla_clock(clock(ticket, "first_reply").pk, now=T0 + HOUR)
    assert list(Notification.objects.values_list("recipient__email", "kind")) == [
        ("agent@example.com", NotificationKind.SLA_BREACH)
    ]


def test_escalation_steps_run_through_the_action_runner(api_inbox: Any, agent: Any) -> None:
    # given: a policy that, on a missed first reply, raises the priority and tags the ticket
    make_policy(
        targets={"2": {"first_reply": {"minutes": 60}}, "4": {"first_reply": {"minutes": 30}}},
        warn_before_minutes=10,
        escalations=[
            {"on": "breach", "metric": "first_reply", "actions": [{"type": "priority", "value": 4}]},
            {"on": "breach", "metric": "any", "actions": [{"type": "add_tags", "value": ["sla-missed"]}]},
            {"on": "warning", "metric": "resolution", "actions": [{"type": "add_tags", "value": ["never"]}]},
        ],
    )
    ticket = customer_writes(api_inbox, T0)
    first = clock(ticket, "first_reply")
    # when: the warning, then the breach
    do_fire_sla_clock(first.pk, now=T0 + 50 * MIN)
    assert not events_of(ticket, TicketEventType.RULE_FIRED)
    do_fire_sla_clock(first.pk, now=T0 + 60 * MIN)
    # then: both breach escalations ran as SLA rules, after the breach
    ticket.refresh_from_db()
    assert ticket.priority == 4
    assert list(ticket.tags.values_list("name", flat=True)) == ["sla-missed"]
    fired = events_of(ticket, TicketEventType.RULE_FIRED)
    assert [(e.data["kind"], e.data["name"]) for e in fired] == [("sla", "Standard"), ("sla", "Standard")]
    assert fired[0].seq > events_of(ticket, TicketEventType.SLA_BREACHED)[0].seq


# --- targets ---------------------------------------------------------------------------------


def test_a_priority_change_retargets_running_clocks_keeping_their_time(api_inbox: Any, agent: Any) -> None:
    # given: normal 4 h / urgent 1 h first reply; resolution 8 h / 2 h; on hold after 30 min
    make_policy(
        targets={
            "2": {"first_reply": {"minutes": 240}, "resolution": {"minutes": 480}},
            "4": {"first_reply": {"minutes": 60}, "resolution": {"minutes": 120}},
        }
    )
    ticket = customer_writes(api_inbox, T0)
    ticket = set_status(ticket, "on_hold", T0 + 30 * MIN, agent)
    # when: the priority becomes urgent 15 minutes later
    ticket = at(T0 + 45 * MIN, lambda: do_change_priority(ticket, priority=4, actor=agent), ticket)
    # then: the running first reply is due an hour after it started; the paused resolution
    # keeps its 30 minutes and takes the new target when it resumes
    assert clock(ticket, "first_reply").due_at == T0 + 60 * MIN
    res = clock(ticket, "resolution")
    assert (res.target_seconds, res.elapsed_seconds, res.due_at) == (7200, 1800.0, None)
    ticket = set_status(ticket, "open", T0 + 2 * HOUR, agent)
    assert clock(ticket, "resolution").due_at == T0 + 2 * HOUR + 90 * MIN
    assert ticket.sla_due_at == T0 + 60 * MIN


def test_a_priority_change_after_a_missed_deadline_records_the_breach_before_moving_it(
    api_inbox: Any, agent: Any
) -> None:
    # given: urgent first reply in 60 minutes, low in 8 hours; the timer at the deadline found the
    # ticket busy, so the breach was not recorded yet
    make_policy(
        targets={"4": {"first_reply": {"minutes": 60}}, "1": {"first_reply": {"minutes": 480}}},
    )
    ticket = customer_writes(api_inbox, T0)
    ticket = at(T0, lambda: do_change_priority(ticket, priority=4, actor=agent), ticket)
    assert clock(ticket, "first_reply").due_at == T0 + 60 * MIN
    # when: a second after the deadline the priority becomes low (processed later still)
    before = TicketEvent.objects.aggregate(top=Max("id"))["top"]
    do_change_priority(ticket, priority=1, actor=agent)
    TicketEvent.objects.filter(id__gt=before).update(created_at=T0 + 60 * MIN + timedelta(seconds=1))
    ticket = step(ticket, T0 + 70 * MIN)
    # then: the missed deadline is on record, at that deadline, and the clock runs on to the new one
    first = clock(ticket, "first_reply")
    [breach] = events_of(ticket, TicketEventType.SLA_BREACHED)
    assert breach.data["due_at"] == (T0 + 60 * MIN).isoformat()
    assert (first.state, first.breached_at) == (SlaClockState.RUNNING, T0 + 60 * MIN)
    assert (first.due_at, first.next_fire_at) == (T0 + 480 * MIN, None)
    # and the timer records nothing more
    assert do_fire_sla_clock(first.pk, now=T0 + 480 * MIN) == "nothing"
    assert len(events_of(ticket, TicketEventType.SLA_BREACHED)) == 1


def test_a_priority_change_before_the_deadline_processed_after_it_is_no_breach(api_inbox: Any, agent: Any) -> None:
    # given: urgent first reply due at T0 + 60 min
    make_policy(
        targets={"4": {"first_reply": {"minutes": 60}}, "1": {"first_reply": {"minutes": 480}}},
    )
    ticket = customer_writes(api_inbox, T0)
    ticket = at(T0, lambda: do_change_priority(ticket, priority=4, actor=agent), ticket)
    # when: the priority becomes low at T0 + 59 min, and the processor gets to it at T0 + 61 min
    before = TicketEvent.objects.aggregate(top=Max("id"))["top"]
    do_change_priority(ticket, priority=1, actor=agent)
    TicketEvent.objects.filter(id__gt=before).update(created_at=T0 + 59 * MIN)
    ticket = step(ticket, T0 + 61 * MIN)
    # then: the deadline moved in time: no breach
    assert not events_of(ticket, TicketEventType.SLA_BREACHED)
    first = clock(ticket, "first_reply")
    assert (first.breached_at, first.due_at) == (None, T0 + 480 * MIN)


def test_a_priority_without_targets_cancels_its_clocks(api_inbox: Any, agent: Any) -> None:
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    ticket = at(T0 + MIN, lambda: do_change_priority(ticket, priority=1, actor=agent), ticket)
    assert clock(ticket, "first_reply").state == SlaClockState.CANCELLED
    assert ticket.sla_due_at is None


def test_business_hours_targets_skip_the_weekend(api_inbox: Any) -> None:
    # given: Prague office hours Mon–Fri 9–17 and a 4 business-hour first reply
    office = BusinessCalendar.objects.create(
        name="Prague office",
        time_zone="Europe/Prague",
        hours={day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    )
    make_policy(calendar=office, targets=targets(first_reply=(240, True), resolution=(60 * 24, False)))
    # when: a customer writes on Friday at 15:00 Prague time (14:00 UTC)
    friday = datetime(2026, 3, 6, 14, 0, tzinfo=UTC)
    ticket = customer_writes(api_inbox, friday)
    # then: 2 hours count on Friday, 2 on Monday: due Monday 11:00 Prague (10:00 UTC);
    # the calendar-time resolution is due a day later regardless
    first = clock(ticket, "first_reply")
    assert (first.business_hours, first.calendar_id) == (True, office.pk)
    assert first.due_at == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
    assert clock(ticket, "resolution").due_at == friday + 24 * HOUR


def test_a_policy_edit_retargets_at_the_next_change(api_inbox: Any, agent: Any, admin_agent: Any) -> None:
    policy = make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    # when: the admin shortens the target, then the ticket changes
    do_save_sla_policy(
        policy,
        name=policy.name,
        description="",
        conditions={},
        calendar=None,
        targets=targets(first_reply=30, resolution=120),
        warn_before_minutes=0,
        escalations=[],
        is_active=True,
        actor=admin_agent,
    )
    ticket = at(T0 + 5 * MIN, lambda: do_add_note(ticket, actor=agent, text="checking"), ticket)
    # then: the running clock takes the new target; the new metric starts from the ticket's creation
    assert clock(ticket, "first_reply").due_at == T0 + 30 * MIN
    assert clock(ticket, "resolution").due_at == T0 + 120 * MIN


# --- policy selection and pinning -------------------------------------------------------------


def vip_conditions() -> dict[str, Any]:
    return {"all": [{"field": "priority", "op": "is", "value": 4}], "any": []}


def test_the_first_matching_active_policy_applies(api_inbox: Any, agent: Any) -> None:
    # given: a VIP policy for urgent tickets first, a catch-all second, an inactive one before both
    make_policy("Off", position=0, is_active=False)
    vip = make_policy("Urgent", position=1, conditions=vip_conditions(), targets=targets(first_reply=15))
    standard = make_policy("Standard", position=2)
    ticket = customer_writes(api_inbox, T0)
    assert ticket.sla_policy_id == standard.pk
    assert policy_for(ticket) == standard
    # when: the ticket becomes urgent
    ticket = at(T0 + MIN, lambda: do_change_priority(ticket, priority=4, actor=agent), ticket)
    # then: the VIP policy applies (its targets for urgent: none here, so the clocks are cancelled)
    assert ticket.sla_policy_id == vip.pk
    applied = events_of(ticket, TicketEventType.SLA_APPLIED)[-1]
    assert (applied.data["policy_id"], applied.data["old_policy_id"]) == (vip.pk, standard.pk)


def test_a_pinned_policy_is_not_replaced_by_the_selection(api_inbox: Any, agent: Any) -> None:
    # given: the ticket's automatic policy, and a second policy applied by hand (a rule step)
    make_policy("Standard", targets=targets(first_reply=60))
    gold = make_policy("Gold", conditions=vip_conditions(), targets=targets(first_reply=20))
    ticket = customer_writes(api_inbox, T0)
    ticket = at(T0 + MIN, lambda: apply_policy(Ticket.objects.get(pk=ticket.pk), gold), ticket)
    # then: the clock takes Gold's target
    assert ticket.sla_policy_id == gold.pk
    assert clock(ticket, "first_reply").due_at == T0 + 20 * MIN
    # when: the ticket changes again (Gold's conditions do not match it)
    ticket = at(T0 + 2 * MIN, lambda: do_add_note(ticket, actor=agent, text="x"), ticket)
    # then: Gold stays
    assert ticket.sla_policy_id == gold.pk


def test_apply_policy_none_pins_no_policy(api_inbox: Any, agent: Any) -> None:
    make_policy(targets=targets(first_reply=60))
    ticket = customer_writes(api_inbox, T0)
    ticket = at(T0 + MIN, lambda: apply_policy(Ticket.objects.get(pk=ticket.pk), None), ticket)
    ticket = at(T0 + 2 * MIN, lambda: do_add_note(ticket, actor=agent, text="x"), ticket)
    assert ticket.sla_policy_id is None
    assert clock(ticket, "first_reply").state == SlaClockState.CANCELLED


def test_a_policy_saved_later_reaches_a_ticket_at_its_next_change(api_inbox: Any, agent: Any) -> None:
    # given: a ticket that arrived and was answered before any policy existed
    ticket = customer_writes(api_inbox, T0)
    ticket = agent_replies(ticket, agent, T0 + 5 * MIN)
    ticket = customer_writes(api_inbox, T0 + 10 * MIN, "More")
    # when: a policy is created, then the ticket changes
    make_policy(targets=targets(first_reply=60, next_reply=30, resolution=480))
    ticket = at(T0 + 20 * MIN, lambda: do_add_note(ticket, actor=agent, text="x"), ticket)
    # then: its clocks start from the ticket's state (no first reply: it was answered)
    metrics = set(SlaClock.objects.filter(ticket=ticket).values_list("metric", flat=True))
    assert metrics == {"next_reply", "resolution"}
    assert clock(ticket, "resolution").due_at == T0 + 480 * MIN


# --- cost ------------------------------------------------------------------------------------


def test_a_change_without_policies_costs_at_most_one_query(
    api_inbox: Any, django_assert_max_num_queries: Any, django_assert_num_queries: Any
) -> None:
    ticket = ingest(api_inbox)
    events = list(TicketEvent.objects.filter(ticket=ticket))
    # when: the first change in this process reads the (empty) policy list
    with django_assert_max_num_queries(1):
        update_ticket_sla(ticket, events)
    # then: later changes read it from the per-process cache
    with django_assert_num_queries(0):
        update_ticket_sla(ticket, events)
    # when: a policy is saved (the version moves), the list is read again once
    make_policy()
    with django_assert_max_num_queries(12):
        update_ticket_sla(ticket, events)
    assert Ticket.objects.get(pk=ticket.pk).sla_policy is not None


def test_a_ticket_change_with_a_policy_costs_a_bounded_number_of_queries(
    api_inbox: Any, agent: Any, django_assert_max_num_queries: Any
) -> None:
    make_policy(targets=targets(first_reply=60, next_reply=30, periodic_update=120, resolution=480))
    ticket = customer_writes(api_inbox, T0)
    ticket = agent_replies(ticket, agent, T0 + 5 * MIN)
    before = TicketEvent.objects.aggregate(top=Max("id"))["top"]
    do_add_note(ticket, actor=agent, text="x")
    TicketEvent.objects.filter(id__gt=before).update(created_at=T0 + 6 * MIN)
    ticket = Ticket.objects.get(pk=ticket.pk)
    events = list(TicketEvent.objects.filter(ticket=ticket, seq__gt=ticket.changes_seq))
    # a note changes no clock: the pin check and the clocks' read
    with django_assert_max_num_queries(3):
        update_ticket_sla(ticket, events, now=T0 + 6 * MIN)


# --- policies: validation, order, preview ----------------------------------------------------


def save(actor: Any, policy: SlaPolicy | None = None, **overrides: Any) -> SlaPolicy:
    fields: dict[str, Any] = {
        "name": "Standard",
        "description": "",
        "conditions": {},
        "calendar": None,
        "targets": targets(first_reply=60),
        "warn_before_minutes": 0,
        "escalations": [],
        "is_active": True,
    }
    fields.update(overrides)
    return do_save_sla_policy(policy, actor=actor, **fields)


def errors_of(actor: Any, **overrides: Any) -> list[str]:
    with pytest.raises(InvalidPolicy) as caught:
        save(actor, **overrides)
    return caught.value.errors


def test_only_admins_save_policies(agent: Any, admin_agent: Any) -> None:
    with pytest.raises(PermissionDenied):
        save(agent)
    policy = save(admin_agent)
    with pytest.raises(PermissionDenied):
        do_delete_sla_policy(policy, actor=agent)
    with pytest.raises(PermissionDenied):
        do_move_sla_policy(policy, position=0, actor=agent)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": " "}, "The policy needs a name."),
        ({"targets": {}}, "Set at least one target (a priority and a metric with its minutes)."),
        (
            {"targets": targets(first_reply=0.2)},
            "The first reply target of normal priority is shorter than the minimum of 15 seconds (0.25 minutes).",
        ),
        (
            {"targets": {"9": {"first_reply": 5}}},
            "“9” is not a priority; use 1 (low), 2 (normal), 3 (high) or 4 (urgent).",
        ),
        (
            {"targets": {"2": {"first_response": 5}}},
            "“first_response” is not an SLA metric; use one of first_reply, next_reply, periodic_update, resolution.",
        ),
        (
            {"targets": {"2": {"resolution": {"minutes": "soon"}}}},
            "The resolution target of normal priority must be a number of minutes, not “soon”.",
        ),
        ({"warn_before_minutes": -5}, "“Warn before” cannot be negative."),
        (
            {"escalations": [{"on": "warning", "metric": "any", "actions": [{"type": "priority", "value": 4}]}]},
            "Escalation 1 runs on a warning, but the policy sends no warning (set “warn before”).",
        ),
        (
            {"escalations": [{"on": "late", "metric": "any", "actions": []}]},
            "Escalation 1: “on” must be “warning” or “breach”, not “late”.",
        ),
    ],
)
def test_policy_validation_says_what_is_wrong(admin_agent: Any, overrides: dict[str, Any], message: str) -> None:
    assert message in errors_of(admin_agent, **overrides)


@pytest.mark.parametrize("steps", [[{"type": "explode"}], []])
def test_escalation_steps_are_checked_by_the_runner(admin_agent: Any, steps: list[Any]) -> None:
    errors = errors_of(admin_agent, escalations=[{"on": "breach", "actions": steps}])
    assert errors
    assert all(e.startswith("Escalation 1: ") for e in errors)


def test_conditions_are_checked(admin_agent: Any) -> None:
    errors = errors_of(admin_agent, conditions={"all": [{"field": "nonsense", "op": "is", "value": 1}]})
    assert errors


def test_a_duplicate_name_is_refused(admin_agent: Any) -> None:
    save(admin_agent)
    assert "Another policy is already called “standard”." in errors_of(admin_agent, name="standard")


def test_policies_are_ordered_moved_and_deleted(admin_agent: Any, api_inbox: Any) -> None:
    a = save(admin_agent, name="A")
    b = save(admin_agent, name="B")
    c = save(admin_agent, name="C")
    assert [p.name for p in SlaPolicy.objects.all()] == ["A", "B", "C"]
    do_move_sla_policy(c, position=0, actor=admin_agent)
    assert [p.name for p in SlaPolicy.objects.all()] == ["C", "A", "B"]
    ticket = customer_writes(api_inbox, T0)
    assert ticket.sla_policy_id == c.pk
    # when: the policy in use is deleted
    do_delete_sla_policy(c, actor=admin_agent)
    # then: its clocks stop; the list is renumbered; the next change picks A
    assert not SlaClock.objects.filter(ticket=ticket, next_fire_at__isnull=False).exists()
    assert list(SlaPolicy.objects.values_list("name", "position")) == [("A", 0), ("B", 1)]
    ticket = customer_writes(api_inbox, T0 + MIN, "still there?")
    assert ticket.sla_policy_id == a.pk
    assert b.pk


def test_deleting_a_pinned_policy_lets_its_tickets_choose_again(admin_agent: Any, api_inbox: Any, agent: Any) -> None:
    # given: a catch-all policy, and "VIP" pinned on a ticket by a rule step
    standard = make_policy("Standard", targets=targets(first_reply=60))
    vip = make_policy("VIP", conditions=vip_conditions(), targets=targets(first_reply=15))
    ticket = customer_writes(api_inbox, T0)
    ticket = at(T0 + MIN, lambda: apply_policy(Ticket.objects.get(pk=ticket.pk), vip), ticket)
    assert (ticket.sla_policy_id, ticket.sla_pinned) == (vip.pk, True)
    # when: the admin deletes VIP
    do_delete_sla_policy(vip, actor=admin_agent)
    # then: the pin is gone with it, and the next change picks the catch-all
    ticket = Ticket.objects.get(pk=ticket.pk)
    assert (ticket.sla_policy_id, ticket.sla_pinned, ticket.sla_due_at) == (None, False, None)
    ticket = at(T0 + 2 * MIN, lambda: do_add_note(ticket, actor=agent, text="x"), ticket)
    assert ticket.sla_policy_id == standard.pk
    assert ticket.sla_due_at is not None


def test_deleting_a_policy_locks_the_tickets_before_the_clocks(admin_agent: Any, api_inbox: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given: a policy with a running clock
    policy = make_policy(targets=targets(first_reply=60))
    customer_writes(api_inbox, T0)
    # when: it is deleted
    with CaptureQueriesContext(connection) as queries:
        do_delete_sla_policy(policy, actor=admin_agent)
    # then: the tickets are locked (in id order) before any clock is written: the processor's order
    sql = [q["sql"] for q in queries.captured_queries]
    lock = next(n for n, s in enumerate(sql) if s.startswith('SELECT "helpdesk_ticket"."id"') and "ORDER BY" in s)
    first_clock_write = next(n for n, s in enumerate(sql) if s.startswith('UPDATE "helpdesk_slaclock"'))
    assert lock < first_clock_write
    if connection.vendor == "postgresql":
        assert "FOR UPDATE" in sql[lock]


def test_preview_shows_matches_conditions_and_deadlines(api_inbox: Any) -> None:
    ticket = customer_writes(api_inbox, T0)
    preview = preview_policy(
        conditions={"all": [{"field": "priority", "op": "is", "value": 2}], "any": []},
        targets=targets(first_reply=60, resolution=480),
        calendar=None,
        ticket=ticket,
    )
    assert preview["matches"] is True
    assert [ok for _, ok in preview["conditions"]] == [True]
    assert preview["deadlines"] == [
        ("First reply", T0 + 60 * MIN, "calendar"),
        ("Resolution", T0 + 480 * MIN, "calendar"),
    ]


def test_a_calendar_without_opening_hours_gives_no_deadline(api_inbox: Any) -> None:
    # given: a business-hours target in a calendar that is never open
    closed = BusinessCalendar.objects.create(name="Never", time_zone="UTC", hours={})
    make_policy(calendar=closed, targets=targets(first_reply=(60, True)))
    # when: a customer writes
    ticket = customer_writes(api_inbox, T0)
    # then: the clock runs without a deadline (it never breaches), and the change did not fail
    first = clock(ticket, "first_reply")
    assert (first.state, first.due_at, first.next_fire_at) == (SlaClockState.RUNNING, None, None)
    assert ticket.sla_due_at is None
