"""Time rules (helpdesk/actions/rules.py): refused on save unless a condition their own actions
make false (and an "hours since" one); each fires once per ticket; batch, statuses, locks, cost."""

from __future__ import annotations

import copy
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from helpdesk.actions.rules import InvalidRule, do_run_time_rules, do_save_rule, preview_rule, self_limit_refusal
from helpdesk.models import Rule, Ticket, TicketEventType, TicketStatus
from helpdesk.tests.conftest import new_ticket

pytestmark = pytest.mark.django_db
PENDING_48H = [
    {"field": "status", "op": "is", "value": "pending"},
    {"field": "status_changed", "op": "greater_than", "value": 48},
]


def time_rule(admin: Any, conditions: dict[str, Any], actions: list[dict[str, Any]], name: str = "Rule") -> Rule:
    return do_save_rule(None, kind="time", name=name, conditions=conditions, actions=actions, actor=admin)


def refusals(admin: Any, conditions: dict[str, Any], actions: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(InvalidRule) as caught:
        time_rule(admin, conditions, actions)
    return caught.value.errors


def pending_for(hours: float, **fields: Any) -> Ticket:
    ticket = new_ticket(status=TicketStatus.PENDING, **fields)
    Ticket.objects.filter(pk=ticket.pk).update(status_changed_at=timezone.now() - timedelta(hours=hours))
    return Ticket.objects.get(pk=ticket.pk)


# --- the self-limit rule on save -----------------------------------------------------------------


def test_a_time_rule_whose_actions_never_end_it_is_refused(admin_agent: Any) -> None:
    # given pending for 48 h → add a note (which changes none of the conditions)
    errors = refusals(admin_agent, {"all": PENDING_48H}, [{"type": "note", "value": "Still pending"}])
    # then the sentence explains what to do
    assert errors == [
        "A time rule must contain a condition that its own actions make false, or it fires on the same "
        "tickets every hour: for example, require the tag “reminded” to be absent and add it, or require "
        "status pending and set the status to solved."
    ]
    assert not Rule.objects.exists()


@pytest.mark.parametrize(
    ("extra", "actions"),
    [
        # a tag that must be absent, and is added
        (
            [{"field": "tags", "op": "includes_none", "value": ["reminded"]}],
            [{"type": "add_tags", "value": ["reminded"]}],
        ),
        # status pending, set to solved
        ([], [{"type": "status", "value": "solved"}]),
        # a tag that must be present, and is removed
        (
            [{"field": "tags", "op": "includes_all", "value": ["waiting"]}],
            [{"type": "remove_tags", "value": ["waiting"]}],
        ),
        # priority below urgent, set to urgent
        ([{"field": "priority", "op": "less_than", "value": 4}], [{"type": "priority", "value": 4}]),
        # nobody assigned, then an agent
        ([{"field": "assignee", "op": "not_present", "value": None}], [{"type": "set_tags", "value": []}]),
        # a custom field not set yet, then set
        (
            [{"field": "custom_field.reminded", "op": "not_present", "value": None}],
            [{"type": "custom_field", "value": {"key": "reminded", "value": True}}],
        ),
    ],
)
def test_a_time_rule_that_ends_itself_is_saved(admin_agent: Any, extra: list[Any], actions: list[Any]) -> None:
    if actions == [{"type": "set_tags", "value": []}]:
        # the assignee case: assigning makes "nobody assigned" false
        actions = [{"type": "assignee", "value": admin_agent.pk}]
    rule = time_rule(admin_agent, {"all": [*PENDING_48H, *extra]}, actions)
    assert rule.kind == "time"
    assert rule.position == 0


@pytest.mark.parametrize(
    ("condition", "actions"),
    [
        # adding a tag cannot make "includes any of" false
        ({"field": "tags", "op": "includes_any", "value": ["vip"]}, [{"type": "add_tags", "value": ["other"]}]),
        # removing one of two named tags leaves the other possibly there
        (
            {"field": "tags", "op": "includes_any", "value": ["a", "b"]},
            [{"type": "remove_tags", "value": ["a"]}],
        ),
        # setting the priority the condition already asks for
        ({"field": "priority", "op": "is", "value": 4}, [{"type": "priority", "value": 4}]),
        # removing a tag that must be absent
        ({"field": "tags", "op": "includes_none", "value": ["x"]}, [{"type": "remove_tags", "value": ["x"]}]),
    ],
)
def test_actions_that_leave_the_condition_true_are_refused(admin_agent: Any, condition: Any, actions: Any) -> None:
    conditions = {"all": [{"field": "created", "op": "greater_than", "value": 24}, condition]}
    errors = refusals(admin_agent, conditions, actions)
    assert any("its own actions make false" in e for e in errors), errors


def test_any_conditions_all_made_false_count(admin_agent: Any) -> None:
    conditions = {
        "all": [{"field": "created", "op": "greater_than", "value": 24}],
        "any": [
            {"field": "tags", "op": "includes_none", "value": ["done"]},
            {"field": "status", "op": "is", "value": "open"},
        ],
    }
    assert self_limit_refusal(conditions, [{"type": "add_tags", "value": ["done"]}]) is not None
    assert (
        self_limit_refusal(conditions, [{"type": "add_tags", "value": ["done"]}, {"type": "status", "value": "solved"}])
        is None
    )


def test_a_time_rule_needs_an_hours_since_condition(admin_agent: Any) -> None:
    errors = refusals(
        admin_agent,
        {"all": [{"field": "status", "op": "is", "value": "pending"}]},
        [{"type": "status", "value": "solved"}],
    )
    assert any("needs an “hours since …” condition" in e and "a trigger's job" in e for e in errors), errors


@pytest.mark.parametrize(
    ("conditions", "events", "error"),
    [
        ({"all": [{"field": "event", "op": "is", "value": "created"}, *PENDING_48H]}, [], ""),
        ({"all": [{"field": "status", "op": "changed", "value": None}, *PENDING_48H]}, [], ""),
        ({"all": PENDING_48H}, ["created"], "A time rule runs every hour, not on events; leave its events empty."),
    ],
)
def test_a_time_rule_looks_at_tickets_not_changes(admin_agent: Any, conditions: Any, events: Any, error: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        do_save_rule(
            None,
            kind="time",
            name="R",
            events=events,
            conditions=conditions,
            actions=[{"type": "status", "value": "solved"}],
            actor=admin_agent,
        )
    assert any(error in e for e in caught.value.errors), caught.value.errors


def test_preview_of_a_time_rule_says_why_it_would_be_refused(admin_agent: Any) -> None:
    ticket = pending_for(50)
    result = preview_rule(
        kind="time", conditions={"all": PENDING_48H}, actions=[{"type": "note", "value": "x"}], ticket=ticket
    )
    assert result.matches is True
    assert result.refusal
    assert "its own actions make false" in result.refusal


# --- running -------------------------------------------------------------------------------------


def test_remind_after_48h_then_solve_after_96h_each_once(admin_agent: Any) -> None:
    # given the two rules of docs/rules.md's third example
    time_rule(
        admin_agent,
        {"all": [*PENDING_48H, {"field": "tags", "op": "includes_none", "value": ["reminded"]}]},
        [{"type": "add_tags", "value": ["reminded"]}, {"type": "note", "value": "Reminder sent"}],
        name="Remind",
    )
    time_rule(
        admin_agent,
        {
            "all": [
                {"field": "status", "op": "is", "value": "pending"},
                {"field": "status_changed", "op": "greater_than", "value": 96},
            ]
        },
        [{"type": "status", "value": "solved"}],
        name="Solve",
    )
    fresh, two_days, four_days = pending_for(1), pending_for(50), pending_for(100)
    closed = new_ticket(status=TicketStatus.CLOSED)
    # when the hourly run happens twice
    assert do_run_time_rules() == 3  # remind two_days and four_days, solve four_days
    assert do_run_time_rules() == 0
    # then
    for ticket in (fresh, two_days, four_days, closed):
        ticket.refresh_from_db()
    assert fresh.status == "pending"
    assert not fresh.tags.exists()
    assert list(two_days.tags.values_list("name", flat=True)) == ["reminded"]
    assert two_days.status == "pending"
    assert four_days.status == "solved"
    assert four_days.events.filter(type=TicketEventType.RULE_FIRED).count() == 2
    assert not closed.events.exists()
    assert Rule.objects.get(name="Solve").last_fired_at is not None


def test_at_most_a_batch_per_rule_and_run(admin_agent: Any, settings: Any) -> None:
    settings.TIME_RULES_BATCH = 2
    time_rule(admin_agent, {"all": PENDING_48H}, [{"type": "status", "value": "solved"}])
    tickets = [pending_for(50) for _ in range(3)]
    assert do_run_time_rules() == 2
    assert do_run_time_rules() == 1
    assert {Ticket.objects.get(pk=t.pk).status for t in tickets} == {"solved"}


def test_cost_is_one_query_per_rule_when_nothing_is_due(admin_agent: Any, django_assert_num_queries: Any) -> None:
    time_rule(admin_agent, {"all": PENDING_48H}, [{"type": "status", "value": "solved"}], name="A")
    time_rule(admin_agent, {"all": PENDING_48H}, [{"type": "status", "value": "closed"}], name="B")
    for _ in range(5):
        pending_for(1)
    do_run_time_rules()  # the rule list is loaded (one query)
    with django_assert_num_queries(2):
        assert do_run_time_rules() == 0


def test_the_now_of_the_run_is_what_counts(admin_agent: Any) -> None:
    time_rule(admin_agent, {"all": PENDING_48H}, [{"type": "status", "value": "solved"}])
    ticket = pending_for(1)
    assert do_run_time_rules(now=timezone.now() + timedelta(hours=10)) == 0
    assert do_run_time_rules(now=timezone.now() + timedelta(hours=49)) == 1
    assert Ticket.objects.get(pk=ticket.pk).status == "solved"


def many_pending(count: int, hours: float) -> list[int]:
    """`count` tickets pending for `hours` (bulk-created copies of one), their ids in order."""
    template = pending_for(hours)
    copies = []
    for n in range(count):
        twin = copy.copy(template)
        twin.pk, twin.number = None, 900_000 + n
        copies.append(twin)
    Ticket.objects.bulk_create(copies)
    return list(Ticket.objects.filter(status=TicketStatus.PENDING).order_by("id").values_list("id", flat=True))


def test_skipped_tickets_do_not_starve_later_ones(admin_agent: Any, settings: Any, monkeypatch: Any) -> None:
    # given a small batch, 1,005 matching tickets with the lowest ids that the in-memory check
    # (business hours) refuses, and two later ones it accepts
    import helpdesk.conditions as conditions

    settings.TIME_RULES_BATCH = 2
    time_rule(admin_agent, {"all": PENDING_48H}, [{"type": "status", "value": "solved"}])
    skipped = many_pending(1005, 50)
    due = [pending_for(50).pk, pending_for(50).pk]
    real_query = conditions.ticket_query

    def query_with_check(rules: Any, *, now: Any) -> Any:
        q, _ = real_query(rules, now=now)
        return q, lambda ticket: ticket.pk in due

    monkeypatch.setattr(conditions, "ticket_query", query_with_check)
    # when one run happens
    assert do_run_time_rules() == 2
    # then the later tickets fired, the refused ones were left as they were
    assert set(Ticket.objects.filter(status=TicketStatus.SOLVED).values_list("pk", flat=True)) == set(due)
    assert Ticket.objects.filter(pk__in=skipped, status=TicketStatus.PENDING).count() == len(skipped)


def test_tickets_whose_actions_fail_do_not_starve_later_ones(
    admin_agent: Any, settings: Any, monkeypatch: Any, caplog: Any
) -> None:
    # given a batch of one, and the actions failing on the first three matching tickets
    import helpdesk.actions.rules as rules

    settings.TIME_RULES_BATCH = 1
    time_rule(admin_agent, {"all": PENDING_48H}, [{"type": "status", "value": "solved"}])
    failing = [pending_for(50).pk for _ in range(3)]
    later = pending_for(50)
    real_run = rules.run_actions

    def run(ticket: Ticket, steps: Any, **kwargs: Any) -> Ticket:
        if ticket.pk in failing:
            raise RuntimeError("boom")
        return real_run(ticket, steps, **kwargs)

    monkeypatch.setattr(rules, "run_actions", run)
    # when / then the later one fires in the same run, and the batch is still one
    assert do_run_time_rules() == 1
    assert Ticket.objects.get(pk=later.pk).status == "solved"
    assert not Ticket.objects.filter(pk__in=failing, status=TicketStatus.SOLVED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_ticket_locked_elsewhere_is_skipped_until_the_next_run(admin_agent: Any) -> None:
    # given a due ticket whose row another transaction holds
    time_rule(admin_agent, {"all": PENDING_48H}, [{"type": "status", "value": "solved"}])
    ticket = pending_for(50)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            Ticket.objects.select_for_update().get(pk=ticket.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        # when the run happens / then it skips the ticket without waiting
        assert do_run_time_rules() == 0
    finally:
        release.set()
        holder.join()
    # and the next run takes it
    assert do_run_time_rules() == 1
