"""Triggers (helpdesk/actions/rules.py): saving and ordering, the Zendesk semantics — position
order, the pass restarting after a firing, once per change, closed tickets — loop protection,
the cached rule list, and previews."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F

from helpdesk.actions import rules as rules_module
from helpdesk.actions.rules import (
    TRIGGER_EVENTS,
    InvalidRule,
    active_rules,
    do_delete_rule,
    do_move_rule,
    do_save_rule,
    preview_rule,
    run_triggers,
)
from helpdesk.actions.ticket_fields import do_change_priority, do_set_tags
from helpdesk.actions.tickets import do_change_status
from helpdesk.models import Rule, Ticket, TicketEvent, TicketEventType, TicketStatus
from helpdesk.tests.conftest import ingest

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


def process(ticket: Ticket) -> Ticket:
    """The change processor's trigger step over the ticket's unprocessed events."""
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        events = list(TicketEvent.objects.filter(ticket=locked, seq__gt=locked.changes_seq).order_by("seq"))
        run_triggers(locked, events)
        Ticket.objects.filter(pk=ticket.pk).update(changes_seq=F("last_event_seq"))
    return Ticket.objects.get(pk=ticket.pk)


def firings(ticket: Ticket) -> list[str]:
    return [
        e.data["name"]
        for e in TicketEvent.objects.filter(ticket=ticket, type=TicketEventType.RULE_FIRED).order_by("seq")
    ]


def tags(ticket: Ticket) -> list[str]:
    return sorted(ticket.tags.values_list("name", flat=True))


# --- saving --------------------------------------------------------------------------------------


def test_only_admins_save_delete_and_move_rules(agent: Any, admin_agent: Any) -> None:
    rule = trigger(admin_agent, "Tag", [{"type": "add_tags", "value": ["x"]}])
    with pytest.raises(PermissionDenied):
        trigger(agent, "Tag", [{"type": "add_tags", "value": ["x"]}])
    with pytest.raises(PermissionDenied):
        do_move_rule(rule, position=0, actor=agent)
    with pytest.raises(PermissionDenied):
        do_delete_rule(rule, actor=agent)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "hourly"}, "A rule is a trigger or a time rule (not 'hourly')."),
        ({"name": "  "}, "A rule needs a name."),
        ({"name": "x" * 201}, "The name is too long (201 characters; at most 200)."),
        ({"description": "x" * 501}, "The description is too long"),
        ({"events": ["exploded"]}, "Unknown event 'exploded'; one of: created, updated,"),
        ({"events": "created"}, "The events must be a list."),
        ({"conditions": "status=open"}, ""),
        ({"conditions": {"all": [{"field": "colour", "op": "is", "value": "red"}]}}, ""),
        ({"actions": [{"type": "assignee", "value": "me"}]}, '"me" is the agent applying a macro'),
        ({"actions": []}, "A trigger needs at least one step."),
        ({"conditions": {}, "events": []}, "A trigger needs events or conditions"),
    ],
)
def test_invalid_rules_say_what_is_wrong(admin_agent: Any, fields: dict[str, Any], error: str) -> None:
    values: dict[str, Any] = {
        "kind": "trigger",
        "name": "Rule",
        "events": [],
        "conditions": CREATED,
        "actions": [{"type": "add_tags", "value": ["x"]}],
    }
    values.update(fields)
    with pytest.raises(InvalidRule) as caught:
        do_save_rule(None, actor=admin_agent, **values)
    assert caught.value.errors
    assert all(isinstance(e, str) for e in caught.value.errors)
    assert any(error in e for e in caught.value.errors), caught.value.errors
    assert not Rule.objects.exists()


def test_every_problem_is_listed(admin_agent: Any) -> None:
    with pytest.raises(InvalidRule) as caught:
        do_save_rule(
            None,
            kind="trigger",
            name="",
            events=["nope"],
            conditions={"all": [{"field": "status", "op": "is", "value": "bogus"}]},
            actions=[{"type": "priority", "value": 9}],
            actor=admin_agent,
        )
    assert len(caught.value.errors) >= 4


def test_trigger_events_are_the_condition_languages() -> None:
    values = [value for value, _ in TRIGGER_EVENTS]
    assert values[:3] == ["created", "updated", "message_received"]
    assert "sla_breach" in values
    assert "sla_warning" in values


def test_new_rules_go_last_and_move_renumbers(admin_agent: Any) -> None:
    a, b, c = (trigger(admin_agent, name, [{"type": "add_tags", "value": [name.lower()]}]) for name in "ABC")
    assert [r.position for r in (a, b, c)] == [0, 1, 2]
    do_move_rule(c, position=0, actor=admin_agent)
    assert list(Rule.objects.order_by("position").values_list("name", flat=True)) == ["C", "A", "B"]
    do_move_rule(c, position=99, actor=admin_agent)
    assert list(Rule.objects.order_by("position").values_list("name", "position")) == [("A", 0), ("B", 1), ("C", 2)]
    do_delete_rule(a, actor=admin_agent)
    assert list(Rule.objects.order_by("position").values_list("name", "position")) == [("B", 0), ("C", 1)]


# --- trigger semantics ---------------------------------------------------------------------------


def test_triggers_run_in_position_order(admin_agent: Any, api_inbox: Any) -> None:
    # given two triggers on creation setting different priorities
    first = trigger(admin_agent, "Urgent", [{"type": "priority", "value": 4}])
    trigger(admin_agent, "Low", [{"type": "priority", "value": 1}])
    # when a ticket is created / then the later one wins
    assert process(ingest(api_inbox)).priority == 1
    # given the first moved to the end / then it wins
    do_move_rule(first, position=5, actor=admin_agent)
    assert process(ingest(api_inbox, identifier="other")).priority == 4


def test_later_triggers_see_the_ticket_as_earlier_ones_left_it(admin_agent: Any, api_inbox: Any) -> None:
    # given A: on creation, priority urgent; B (after A): urgent tickets get the tag "hot"
    trigger(admin_agent, "A", [{"type": "priority", "value": 4}])
    trigger(
        admin_agent,
        "B",
        [{"type": "add_tags", "value": ["hot"]}],
        {"all": [{"field": "priority", "op": "is", "value": 4}]},
    )
    ticket = process(ingest(api_inbox))
    assert tags(ticket) == ["hot"]
    assert firings(ticket) == ["A", "B"]


def test_a_firing_restarts_the_pass_from_the_top(admin_agent: Any, api_inbox: Any) -> None:
    # given B first, matching only what A (after it) does
    trigger(
        admin_agent,
        "B",
        [{"type": "add_tags", "value": ["hot"]}],
        {"all": [{"field": "priority", "op": "is", "value": 4}]},
    )
    trigger(admin_agent, "A", [{"type": "priority", "value": 4}])
    # when / then A fires, the pass restarts, and B fires on what A did
    ticket = process(ingest(api_inbox))
    assert firings(ticket) == ["A", "B"]
    assert tags(ticket) == ["hot"]


def test_a_trigger_fires_once_per_change(admin_agent: Any, api_inbox: Any) -> None:
    # given a trigger that keeps matching after it fired, and another that restarts the pass
    trigger(
        admin_agent,
        "Note",
        [{"type": "note", "value": "seen"}],
        {"all": [{"field": "status", "op": "is", "value": "new"}]},
    )
    trigger(admin_agent, "Tag", [{"type": "add_tags", "value": ["t"]}])
    # when
    ticket = process(ingest(api_inbox))
    # then each fired once
    assert firings(ticket) == ["Note", "Tag"]
    assert ticket.messages.filter(direction="note").count() == 1


def test_a_pair_of_toggling_triggers_stops(admin_agent: Any, api_inbox: Any, agent: Any) -> None:
    # given two triggers that undo each other on every change
    on = {"all": [{"field": "tags", "op": "includes_none", "value": ["flip"]}]}
    off = {"all": [{"field": "tags", "op": "includes_any", "value": ["flip"]}]}
    trigger(admin_agent, "On", [{"type": "add_tags", "value": ["flip"]}], on, events=["created", "updated"])
    trigger(admin_agent, "Off", [{"type": "remove_tags", "value": ["flip"]}], off, events=["created", "updated"])
    # when a change happens / then each fires once and the run ends
    ticket = process(ingest(api_inbox))
    assert firings(ticket) == ["On", "Off"]
    assert tags(ticket) == []
    # and the processor is not woken by what they did
    assert ticket.changes_seq == ticket.last_event_seq


def test_loop_protection_stops_firing_across_changes(
    admin_agent: Any, api_inbox: Any, settings: Any, caplog: Any
) -> None:
    # given at most 3 firings per ticket and hour, and a trigger on every update
    settings.RULES_MAX_FIRINGS_PER_HOUR = 3
    trigger(admin_agent, "Bump", [{"type": "note", "value": "again"}], {}, events=["updated"])
    ticket = process(ingest(api_inbox))
    # when five changes follow
    caplog.set_level(logging.WARNING, logger="helpdesk.actions.rules")
    for priority in (3, 4, 3, 4, 3):
        do_change_priority(ticket, priority=priority, actor=admin_agent)
        ticket = process(ticket)
    # then it fired three times, and the stop was logged once
    assert firings(ticket) == ["Bump"] * 3
    warnings = [r for r in caplog.records if "loop protection" in r.getMessage()]
    assert len(warnings) == 1


def test_events_filter_which_changes_wake_a_trigger(admin_agent: Any, api_inbox: Any) -> None:
    # given triggers on "updated" and on "status_changed"
    trigger(admin_agent, "Updated", [{"type": "add_tags", "value": ["u"]}], {}, events=["updated"])
    trigger(admin_agent, "Status", [{"type": "add_tags", "value": ["s"]}], {}, events=["status_changed"])
    # when the ticket is created / then neither fires
    ticket = process(ingest(api_inbox))
    assert firings(ticket) == []
    # when its priority changes / then only "updated"
    do_change_priority(ticket, priority=3, actor=admin_agent)
    ticket = process(ticket)
    assert firings(ticket) == ["Updated"]
    # when its status changes / then both
    do_change_status(ticket, status="pending", actor=admin_agent)
    ticket = process(ticket)
    assert firings(ticket) == ["Updated", "Updated", "Status"]


def test_bookkeeping_events_wake_no_trigger(admin_agent: Any, api_inbox: Any) -> None:
    # given a trigger on any change and a ticket whose only new event is a delivery change
    trigger(
        admin_agent,
        "Any",
        [{"type": "add_tags", "value": ["a"]}],
        {"all": [{"field": "status", "op": "is", "value": "new"}]},
    )
    ticket = ingest(api_inbox)
    Ticket.objects.filter(pk=ticket.pk).update(changes_seq=F("last_event_seq"))
    from helpdesk.events import DeliveryChanged, append_event

    with transaction.atomic():
        append_event(Ticket.objects.select_for_update().get(pk=ticket.pk), DeliveryChanged(1, 1, "sent"))
    # when / then
    assert firings(process(ticket)) == []


def test_triggers_see_sla_events(admin_agent: Any, api_inbox: Any) -> None:
    # given a trigger on SLA breaches and a breach recorded by the SLA timer
    trigger(admin_agent, "Breach", [{"type": "priority", "value": 4}], {}, events=["sla_breach"])
    ticket = ingest(api_inbox)
    Ticket.objects.filter(pk=ticket.pk).update(changes_seq=F("last_event_seq"))
    from helpdesk.events import SlaBreached, append_event

    with transaction.atomic():
        append_event(
            Ticket.objects.select_for_update().get(pk=ticket.pk),
            SlaBreached(clock_id=1, metric="first_reply", instance=1, due_at="2026-01-01T00:00:00+00:00"),
        )
    # when / then
    assert process(ticket).priority == 4


def test_closed_tickets_run_no_trigger_except_on_the_change_that_closed_them(admin_agent: Any, api_inbox: Any) -> None:
    # given a trigger on any update
    trigger(admin_agent, "Closing", [{"type": "add_tags", "value": ["bye"]}], {}, events=["updated"])
    ticket = process(ingest(api_inbox))
    # when the ticket is closed / then the trigger fires on that change
    do_change_status(ticket, status="closed", actor=admin_agent)
    ticket = process(ticket)
    assert firings(ticket) == ["Closing"]
    assert ticket.status == TicketStatus.CLOSED
    # when something changes on the closed ticket later / then nothing fires
    do_set_tags(ticket, add=["late"], actor=admin_agent)
    ticket = process(ticket)
    assert firings(ticket) == ["Closing"]


def test_a_failing_trigger_is_skipped_and_the_others_run(admin_agent: Any, api_inbox: Any, agent: Any) -> None:
    # given a trigger assigning an agent who is then deactivated, and a second trigger
    trigger(admin_agent, "Assign", [{"type": "assignee", "value": agent.pk}])
    trigger(admin_agent, "Tag", [{"type": "add_tags", "value": ["ok"]}])
    type(agent).objects.filter(pk=agent.pk).update(is_active=False)
    # when / then
    ticket = process(ingest(api_inbox))
    assert firings(ticket) == ["Tag"]
    assert ticket.assignee_id is None


def test_inactive_rules_do_not_fire(admin_agent: Any, api_inbox: Any) -> None:
    trigger(admin_agent, "Off", [{"type": "add_tags", "value": ["x"]}], is_active=False)
    assert firings(process(ingest(api_inbox))) == []


def test_auto_reply_on_a_new_ticket_is_not_an_agent_reply(admin_agent: Any, api_inbox: Any) -> None:
    trigger(admin_agent, "Ack", [{"type": "reply", "value": "We got it, {{ customer.first_name }}."}])
    ticket = process(ingest(api_inbox))
    assert ticket.events.filter(type=TicketEventType.AUTO_REPLY_SENT).count() == 1
    assert ticket.first_reply_at is None
    assert ticket.status == TicketStatus.NEW


# --- the cached rule list ------------------------------------------------------------------------


def test_no_rules_cost_at_most_one_query_and_then_none(api_inbox: Any, django_assert_max_num_queries: Any) -> None:
    ticket = ingest(api_inbox)
    events = list(TicketEvent.objects.filter(ticket=ticket))
    with django_assert_max_num_queries(1):
        run_triggers(ticket, events)
    with django_assert_max_num_queries(0):
        run_triggers(ticket, events)


def test_the_cache_follows_saves_and_other_processes(admin_agent: Any) -> None:
    # given the list loaded
    assert active_rules("trigger") == []
    # when a rule is saved / then it is seen at once
    rule = trigger(admin_agent, "New", [{"type": "add_tags", "value": ["x"]}])
    assert [r.pk for r in active_rules("trigger")] == [rule.pk]
    # when another process changes the table and bumps the version / then this one reloads
    Rule.objects.filter(pk=rule.pk).update(is_active=False)
    assert [r.pk for r in active_rules("trigger")] == [rule.pk]  # still the cached list
    cache.set(rules_module.VERSION_KEY, "from-another-process", timeout=None)
    assert active_rules("trigger") == []


def test_a_lost_version_reloads(admin_agent: Any) -> None:
    rule = trigger(admin_agent, "New", [{"type": "add_tags", "value": ["x"]}])
    assert [r.pk for r in active_rules("trigger")] == [rule.pk]
    cache.delete(rules_module.VERSION_KEY)
    Rule.objects.filter(pk=rule.pk).delete()
    assert active_rules("trigger") == []


# --- preview -------------------------------------------------------------------------------------


def test_preview_shows_conditions_effects_and_writes_nothing(admin_agent: Any, api_inbox: Any) -> None:
    ticket = ingest(api_inbox)
    seq = ticket.last_event_seq
    result = preview_rule(
        kind="trigger",
        conditions={
            "all": [{"field": "status", "op": "is", "value": "new"}, {"field": "event", "op": "is", "value": "created"}]
        },
        actions=[{"type": "priority", "value": 4}, {"type": "add_tags", "value": ["hot"]}],
        ticket=ticket,
    )
    assert result.refusal is None
    assert [ok for _, ok in result.conditions] == [True, False]  # the newest event is the message
    assert result.matches is False
    assert result.effects == ["Priority: Urgent (now Normal)", "Add tags: hot"]
    assert Ticket.objects.get(pk=ticket.pk).last_event_seq == seq


def test_preview_of_an_invalid_rule_says_why(api_inbox: Any) -> None:
    ticket = ingest(api_inbox)
    result = preview_rule(kind="trigger", conditions={}, actions=[{"type": "assignee", "value": "me"}], ticket=ticket)
    assert result.refusal
    assert '"me"' in result.refusal
    assert result.matches is False


def test_through_the_change_processor(
    admin_agent: Any, api_inbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The whole path: ingest queues the processor after commit, which runs the triggers."""
    pytest.importorskip("helpdesk.actions.routing")
    trigger(admin_agent, "Hot", [{"type": "add_tags", "value": ["hot"]}])
    with django_capture_on_commit_callbacks(execute=True):
        ticket = ingest(api_inbox)
    ticket.refresh_from_db()
    assert tags(ticket) == ["hot"]
    assert ticket.changes_seq == ticket.last_event_seq


def test_the_worked_examples_of_docs_rules_md_save(admin_agent: Any, api_inbox: Any) -> None:
    """docs/rules.md's three examples are valid as written."""
    from helpdesk.models import Team

    tier2 = Team.objects.create(name="Tier 2", slug="tier-2")
    after_hours = do_save_rule(
        None,
        kind="trigger",
        name="After-hours auto-reply",
        events=["created"],
        conditions={
            "all": [
                {"field": "channel", "op": "is", "value": "email"},
                {"field": "within_business_hours", "op": "is", "value": False},
            ]
        },
        actions=[
            {"type": "reply", "value": "Hello {{ customer.first_name }}, we will answer #{{ ticket.number }}."},
            {"type": "add_tags", "value": ["after_hours"]},
        ],
        actor=admin_agent,
    )
    urgent = do_save_rule(
        None,
        kind="trigger",
        name="Urgent to Tier 2",
        events=["created", "priority_changed"],
        conditions={
            "all": [
                {"field": "priority", "op": "is", "value": "urgent"},
                {"field": "team", "op": "is_not", "value": tier2.pk},
            ]
        },
        actions=[
            {"type": "team", "value": tier2.pk},
            {"type": "notify", "value": {"to": "team", "text": "Urgent: #{{ ticket.number }} {{ ticket.subject }}"}},
        ],
        actor=admin_agent,
    )
    do_save_rule(
        None,
        kind="time",
        name="Remind after 48 h pending",
        conditions={
            "all": [
                {"field": "status", "op": "is", "value": "pending"},
                {"field": "status_changed", "op": "greater_than", "value": 48},
                {"field": "tags", "op": "includes_none", "value": ["reminded"]},
            ]
        },
        actions=[
            {"type": "reply", "value": "Do you still need help with #{{ ticket.number }}?"},
            {"type": "add_tags", "value": ["reminded"]},
        ],
        actor=admin_agent,
    )
    assert after_hours.kind == urgent.kind == "trigger"
    # and the escalation works: an urgent ticket moves to Tier 2
    ticket = ingest(api_inbox)
    do_change_priority(ticket, priority=4, actor=admin_agent)
    assert process(ticket).team_id == tier2.pk


# --- trigger statistics --------------------------------------------------------------------------


def rule_updates(queries: Any) -> list[str]:
    table = Rule._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and table in q["sql"]]


def test_last_fired_at_is_written_after_commit_once_per_rule(
    admin_agent: Any, api_inbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given A (on creation: urgent) and B (urgent tickets: tag "hot"), which restarts the pass
    a = trigger(admin_agent, "A", [{"type": "priority", "value": 4}])
    b = trigger(
        admin_agent,
        "B",
        [{"type": "add_tags", "value": ["hot"]}],
        {"all": [{"field": "priority", "op": "is", "value": 4}]},
    )
    c = trigger(
        admin_agent, "Never", [{"type": "note", "value": "x"}], {"all": [{"field": "priority", "op": "is", "value": 1}]}
    )
    ticket = ingest(api_inbox)
    # when the change is processed, the ticket locked in its transaction
    with django_capture_on_commit_callbacks(execute=False) as callbacks, CaptureQueriesContext(connection) as inside:
        assert firings(process(ticket)) == ["A", "B"]
    # then nothing wrote a rule's row inside the ticket's transaction
    assert rule_updates(inside.captured_queries) == []
    assert Rule.objects.get(pk=a.pk).last_fired_at is None
    # when it has committed / then one UPDATE per rule that fired
    with CaptureQueriesContext(connection) as after:
        for callback in callbacks:
            callback()
    assert len(rule_updates(after.captured_queries)) == 2
    fired = {r.pk: r.last_fired_at for r in Rule.objects.all()}
    assert fired[a.pk] is not None
    assert fired[b.pk] is not None
    assert fired[c.pk] is None


def test_a_rolled_back_change_records_no_firing(
    admin_agent: Any, api_inbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given a trigger that fires on creation
    rule = trigger(admin_agent, "A", [{"type": "priority", "value": 4}])
    ticket = ingest(api_inbox)

    def change_that_fails() -> None:
        with transaction.atomic():
            process(ticket)
            raise RuntimeError

    # when the change's transaction rolls back after the trigger fired
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        change_that_fails()
    # then the rule's statistics say it never fired
    assert Rule.objects.get(pk=rule.pk).last_fired_at is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rule_row_locked_elsewhere_does_not_hold_up_the_ticket(
    admin_agent: Any, api_inbox: Any, lost_tasks: Any
) -> None:
    import threading

    from django.db import connection

    # given a trigger whose row another transaction holds (as another ticket's processor
    # firing the same trigger did, before the statistics moved after commit)
    rule = trigger(admin_agent, "A", [{"type": "priority", "value": 4}])
    ticket = ingest(api_inbox)  # its processor task is dropped: the change is processed below
    assert Ticket.objects.get(pk=ticket.pk).changes_seq < ticket.last_event_seq
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            Rule.objects.select_for_update().get(pk=rule.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        # when the ticket's change is processed, waiting at most 2 s for any lock
        with transaction.atomic():
            transaction.on_commit(release.set)  # runs before the statistics' UPDATE
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            processed = process(ticket)
    finally:
        release.set()
        holder.join()
    # then it did not wait for the rule's row; the statistics were written after commit
    assert processed.priority == 4
    assert Rule.objects.get(pk=rule.pk).last_fired_at is not None
