"""The condition language (helpdesk/conditions.py): one table of cases evaluated in memory and in
the database must give the same tickets (run on SQLite and on PostgreSQL); event conditions of
triggers; validation messages; hostile input; one query for a view over many tickets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_inbox.models import Inbox
from customers.models import IdentityKind, Organization
from helpdesk.conditions import (
    MAX_CONDITIONS,
    OPERATORS,
    Change,
    InvalidConditions,
    describe,
    describe_fields,
    event_happened,
    explain,
    matches,
    ticket_query,
    validate_conditions,
)
from helpdesk.models import (
    Attachment,
    Direction,
    Message,
    SlaPolicy,
    Tag,
    Ticket,
    TicketEvent,
    TicketEventType,
)
from tests.factories import CustomerFactory, IdentityFactory, InboxFactory, MessageFactory, TicketFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC
H = timedelta(hours=1)


def _ticket(name: str, *, tags: list[str], times: dict[str, datetime | None], **fields: Any) -> Ticket:
    ticket = cast(Ticket, TicketFactory(subject=name, **fields))
    if tags:
        ticket.tags.set([Tag.objects.get_or_create(name=t)[0] for t in tags])
    Ticket.objects.filter(pk=ticket.pk).update(**times)
    return ticket


@pytest.fixture
def world(db: Any, agent: Any, billing_agent: Any, support_team: Any, billing_team: Any) -> dict[str, Any]:
    """Four tickets that differ in every field the conditions read."""
    inbox_a = cast(Inbox, InboxFactory(kind="api", name="Shop API"))
    inbox_b = cast(Inbox, InboxFactory(kind="email", name="Support mail"))
    acme = Organization.objects.create(name="Acme")
    beta = Organization.objects.create(name="Beta")
    gold = SlaPolicy.objects.create(name="Gold")
    jana = CustomerFactory(name="Jana", language="cs", organization=acme)
    IdentityFactory(customer=jana, value="jana@example.com")
    IdentityFactory(customer=jana, value="jana@work.cz")
    IdentityFactory(customer=jana, kind=IdentityKind.PHONE, value="+420601000000")
    bob = CustomerFactory(name="Bob", language="")
    IdentityFactory(customer=bob, value="bob@shop.example")
    eve = CustomerFactory(name="Eve", language="en-GB", organization=beta)
    IdentityFactory(customer=eve, kind=IdentityKind.PHONE, value="+420601000001")
    t1 = _ticket(
        "Refund for order 881",
        status="open",
        priority=3,
        inbox=inbox_a,
        channel="api",
        team=support_team,
        assignee=agent,
        customer=jana,
        sla_policy=gold,
        custom_fields={"plan": "Gold", "seats": 12, "vip": True, "note": ""},
        tags=["billing", "vip"],
        times={
            "sla_due_at": NOW + 2 * H,
            "created_at": NOW - 50 * H,
            "updated_at": NOW - 3 * H,
            "status_changed_at": NOW - 5.5 * H,
            "last_customer_message_at": NOW - 1.5 * H,
        },
    )
    t2 = _ticket(
        "Password reset",
        status="pending",
        priority=2,
        inbox=inbox_b,
        channel="email",
        customer=bob,
        custom_fields={"plan": "free", "seats": 1},
        tags=["account"],
        times={
            "created_at": NOW - 2 * H,
            "updated_at": NOW - 0.5 * H,
            "last_customer_message_at": NOW - 2 * H,
            "last_agent_message_at": NOW - 1 * H,
        },
    )
    t3 = _ticket(
        "Order question",
        status="solved",
        priority=1,
        inbox=inbox_a,
        channel="api",
        team=billing_team,
        assignee=billing_agent,
        customer=eve,
        custom_fields={"seats": "many", "plan": None},
        tags=[],
        times={
            "sla_due_at": NOW - 1 * H,
            "created_at": NOW - 200 * H,
            "updated_at": NOW - 100 * H,
            "solved_at": NOW - 97 * H,
            "last_agent_message_at": NOW - 98 * H,
            "last_customer_message_at": NOW - 199 * H,
        },
    )
    t4 = _ticket(
        "URGENT: outage",
        status="new",
        priority=4,
        inbox=inbox_b,
        channel="email",
        team=support_team,
        customer=jana,
        custom_fields={},
        tags=["vip"],
        times={"sla_due_at": NOW + 0.5 * H, "created_at": NOW - 1 * H, "updated_at": NOW - 1 * H},
    )
    return {
        "tickets": {"t1": t1, "t2": t2, "t3": t3, "t4": t4},
        "$inbox_a": inbox_a.pk,
        "$inbox_b": inbox_b.pk,
        "$support": support_team.pk,
        "$billing": billing_team.pk,
        "$ada": agent.pk,
        "$bea": billing_agent.pk,
        "$acme": acme.pk,
        "$beta": beta.pk,
        "$gold": gold.pk,
    }


def _c(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


ALL = {"t1", "t2", "t3", "t4"}
NONE: set[str] = set()

# (conditions, the tickets they match). "$name" values are ids from the world fixture.
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, ALL),
    ({"all": [], "any": []}, ALL),
    # status, ordered new < open < pending < on_hold < solved < closed
    ({"all": [_c("status", "is", "open")]}, {"t1"}),
    ({"all": [_c("status", "is_not", "open")]}, {"t2", "t3", "t4"}),
    ({"all": [_c("status", "includes_any", ["new", "pending"])]}, {"t2", "t4"}),
    ({"all": [_c("status", "includes_none", ["new", "pending"])]}, {"t1", "t3"}),
    ({"all": [_c("status", "greater_than", "pending")]}, {"t3"}),
    ({"all": [_c("status", "less_than", "open")]}, {"t4"}),
    ({"all": [_c("status", "greater_than", "closed")]}, NONE),
    # priority
    ({"all": [_c("priority", "is", "high")]}, {"t1"}),
    ({"all": [_c("priority", "greater_than", "normal")]}, {"t1", "t4"}),
    ({"all": [_c("priority", "less_than", 2)]}, {"t3"}),
    ({"all": [_c("priority", "includes_none", [1, "urgent"])]}, {"t1", "t2"}),
    # channel and inbox
    ({"all": [_c("channel", "is", "email")]}, {"t2", "t4"}),
    ({"all": [_c("channel", "is_not", "email")]}, {"t1", "t3"}),
    ({"all": [_c("channel", "includes_any", ["api", "chat"])]}, {"t1", "t3"}),
    ({"all": [_c("inbox", "is", "$inbox_a")]}, {"t1", "t3"}),
    ({"all": [_c("inbox", "includes_none", ["$inbox_a"])]}, {"t2", "t4"}),
    # team, assignee: ids or nobody
    ({"all": [_c("team", "is", "$support")]}, {"t1", "t4"}),
    ({"all": [_c("team", "is", None)]}, {"t2"}),
    ({"all": [_c("team", "is_not", "$support")]}, {"t2", "t3"}),
    ({"all": [_c("team", "is_not", None)]}, {"t1", "t3", "t4"}),
    ({"all": [_c("team", "present")]}, {"t1", "t3", "t4"}),
    ({"all": [_c("team", "not_present")]}, {"t2"}),
    ({"all": [_c("team", "includes_any", ["$billing", None])]}, {"t2", "t3"}),
    ({"all": [_c("team", "includes_none", ["$billing", None])]}, {"t1", "t4"}),
    ({"all": [_c("assignee", "is", "none")]}, {"t2", "t4"}),
    ({"all": [_c("assignee", "is", "$ada")]}, {"t1"}),
    ({"all": [_c("assignee", "is_not", "$ada")]}, {"t2", "t3", "t4"}),
    ({"all": [_c("assignee", "includes_any", ["$ada", "$bea"])]}, {"t1", "t3"}),
    # tags
    ({"all": [_c("tags", "includes_any", ["vip", "account"])]}, {"t1", "t2", "t4"}),
    ({"all": [_c("tags", "includes_all", ["billing", "vip"])]}, {"t1"}),
    ({"all": [_c("tags", "includes_all", [" VIP "])]}, {"t1", "t4"}),
    ({"all": [_c("tags", "includes_none", ["vip"])]}, {"t2", "t3"}),
    ({"all": [_c("tags", "includes_any", ["nothing-like-this"])]}, NONE),
    ({"all": [_c("tags", "present")]}, {"t1", "t2", "t4"}),
    ({"all": [_c("tags", "not_present")]}, {"t3"}),
    # subject: text, case-insensitive
    ({"all": [_c("subject", "contains", "ORDER")]}, {"t1", "t3"}),
    ({"all": [_c("subject", "not_contains", "order")]}, {"t2", "t4"}),
    ({"all": [_c("subject", "starts_with", "urgent")]}, {"t4"}),
    ({"all": [_c("subject", "is", "password RESET")]}, {"t2"}),
    ({"all": [_c("subject", "is_not", "password reset")]}, {"t1", "t3", "t4"}),
    ({"all": [_c("subject", "contains", "50%_")]}, NONE),
    ({"all": [_c("subject", "present")]}, ALL),
    ({"all": [_c("subject", "not_present")]}, NONE),
    # custom fields: JSON scalars, compared by type
    ({"all": [_c("custom_field.plan", "is", "gold")]}, {"t1"}),
    ({"all": [_c("custom_field.plan", "is_not", "gold")]}, {"t2", "t3", "t4"}),
    ({"all": [_c("custom_field.plan", "contains", "OL")]}, {"t1"}),
    ({"all": [_c("custom_field.plan", "present")]}, {"t1", "t2"}),
    ({"all": [_c("custom_field.plan", "not_present")]}, {"t3", "t4"}),
    ({"all": [_c("custom_field.note", "present")]}, NONE),
    ({"all": [_c("custom_field.note", "not_present")]}, ALL),
    ({"all": [_c("custom_field.seats", "greater_than", 5)]}, {"t1"}),
    ({"all": [_c("custom_field.seats", "less_than", 5)]}, {"t2"}),
    ({"all": [_c("custom_field.seats", "greater_than", 1.5)]}, {"t1"}),
    ({"all": [_c("custom_field.seats", "is", 12)]}, {"t1"}),
    ({"all": [_c("custom_field.seats", "is", 12.0)]}, {"t1"}),
    ({"all": [_c("custom_field.seats", "is", "12")]}, NONE),
    ({"all": [_c("custom_field.seats", "is", "MANY")]}, {"t3"}),
    ({"all": [_c("custom_field.seats", "is", True)]}, NONE),
    ({"all": [_c("custom_field.seats", "is", 1)]}, {"t2"}),
    ({"all": [_c("custom_field.vip", "is", True)]}, {"t1"}),
    ({"all": [_c("custom_field.vip", "is", 1)]}, NONE),
    ({"all": [_c("custom_field.vip", "is_not", True)]}, {"t2", "t3", "t4"}),
    ({"all": [_c("custom_field.missing_one", "is_not", "x")]}, ALL),
    # customer fields
    ({"all": [_c("customer.email", "is", "jana@work.cz")]}, {"t1", "t4"}),
    ({"all": [_c("customer.email", "is", " JANA@example.com")]}, {"t1", "t4"}),
    ({"all": [_c("customer.email", "is_not", "jana@work.cz")]}, {"t2", "t3"}),
    ({"all": [_c("customer.email", "contains", "@shop.")]}, {"t2"}),
    ({"all": [_c("customer.email", "not_contains", "example")]}, {"t3"}),
    ({"all": [_c("customer.email", "contains", "+420")]}, NONE),
    ({"all": [_c("customer.email", "present")]}, {"t1", "t2", "t4"}),
    ({"all": [_c("customer.email", "not_present")]}, {"t3"}),
    ({"all": [_c("customer.language", "is", "CS")]}, {"t1", "t4"}),
    ({"all": [_c("customer.language", "is", "en-gb")]}, {"t3"}),
    ({"all": [_c("customer.language", "is_not", "cs")]}, {"t2", "t3"}),
    ({"all": [_c("customer.language", "starts_with", "en")]}, {"t3"}),
    ({"all": [_c("customer.language", "not_present")]}, {"t2"}),
    ({"all": [_c("customer.organization", "is", "$acme")]}, {"t1", "t4"}),
    ({"all": [_c("customer.organization", "is_not", "$acme")]}, {"t2", "t3"}),
    ({"all": [_c("customer.organization", "not_present")]}, {"t2"}),
    ({"all": [_c("customer.organization", "includes_any", ["$beta", None])]}, {"t2", "t3"}),
    ({"all": [_c("sla_policy", "is", "$gold")]}, {"t1"}),
    ({"all": [_c("sla_policy", "not_present")]}, {"t2", "t3", "t4"}),
    # hours since: whole hours; a boundary at exactly N hours counts as N
    ({"all": [_c("created", "greater_than", 48)]}, {"t1", "t3"}),
    ({"all": [_c("created", "is", 50)]}, {"t1"}),
    ({"all": [_c("created", "is", 49)]}, NONE),
    ({"all": [_c("created", "less_than", 2)]}, {"t4"}),
    ({"all": [_c("created", "is", 2)]}, {"t2"}),
    ({"all": [_c("created", "greater_than", 1)]}, {"t1", "t2", "t3"}),
    ({"all": [_c("created", "greater_than", 0)]}, ALL),
    ({"all": [_c("updated", "is", 3)]}, {"t1"}),
    ({"all": [_c("updated", "less_than", 1)]}, {"t2"}),
    ({"all": [_c("updated", "is", 0)]}, {"t2"}),
    ({"all": [_c("status_changed", "greater_than", 4)]}, {"t1"}),
    ({"all": [_c("status_changed", "is", 5)]}, {"t1"}),
    ({"all": [_c("status_changed", "less_than", 100)]}, {"t1"}),
    ({"all": [_c("customer_replied", "less_than", 2)]}, {"t1"}),
    ({"all": [_c("customer_replied", "is", 2)]}, {"t2"}),
    ({"all": [_c("agent_replied", "greater_than", 24)]}, {"t3"}),
    ({"all": [_c("agent_replied", "less_than", 24)]}, {"t2"}),
    ({"all": [_c("solved", "greater_than", 96)]}, {"t3"}),
    ({"all": [_c("solved", "is", 96)]}, NONE),
    ({"all": [_c("solved", "is", 97)]}, {"t3"}),
    # hours until the SLA deadline (negative: overdue)
    ({"all": [_c("sla_due", "less_than", 0)]}, {"t3"}),
    ({"all": [_c("sla_due", "less_than", 1)]}, {"t3", "t4"}),
    ({"all": [_c("sla_due", "greater_than", 1)]}, {"t1"}),
    ({"all": [_c("sla_due", "greater_than", -2)]}, {"t1", "t3", "t4"}),
    ({"all": [_c("sla_due", "present")]}, {"t1", "t3", "t4"}),
    ({"all": [_c("sla_due", "not_present")]}, {"t2"}),
    # the rest of the operators of each field
    ({"all": [_c("priority", "is_not", "urgent")]}, {"t1", "t2", "t3"}),
    ({"all": [_c("priority", "includes_any", ["low", "normal"])]}, {"t2", "t3"}),
    ({"all": [_c("channel", "includes_none", ["api"])]}, {"t2", "t4"}),
    ({"all": [_c("inbox", "is_not", "$inbox_a")]}, {"t2", "t4"}),
    ({"all": [_c("inbox", "includes_any", ["$inbox_a", "$inbox_b"])]}, ALL),
    ({"all": [_c("assignee", "includes_none", ["$ada", None])]}, {"t3"}),
    ({"all": [_c("assignee", "present")]}, {"t1", "t3"}),
    ({"all": [_c("assignee", "not_present")]}, {"t2", "t4"}),
    ({"all": [_c("customer.language", "present")]}, {"t1", "t3", "t4"}),
    ({"all": [_c("customer.organization", "includes_none", ["$beta"])]}, {"t1", "t2", "t4"}),
    ({"all": [_c("customer.organization", "present")]}, {"t1", "t3", "t4"}),
    ({"all": [_c("sla_policy", "is_not", "$gold")]}, {"t2", "t3", "t4"}),
    ({"all": [_c("sla_policy", "includes_any", ["$gold"])]}, {"t1"}),
    ({"all": [_c("sla_policy", "includes_none", ["$gold"])]}, {"t2", "t3", "t4"}),
    ({"all": [_c("sla_policy", "present")]}, {"t1"}),
    ({"all": [_c("updated", "greater_than", 2)]}, {"t1", "t3"}),
    ({"all": [_c("updated", "greater_than", 3)]}, {"t3"}),
    ({"all": [_c("customer_replied", "greater_than", 1)]}, {"t2", "t3"}),
    ({"all": [_c("agent_replied", "is", 1)]}, {"t2"}),
    ({"all": [_c("solved", "less_than", 1000)]}, {"t3"}),
    # ALL and ANY
    ({"any": [_c("priority", "is", "urgent"), _c("tags", "includes_any", ["account"])]}, {"t2", "t4"}),
    ({"all": [_c("channel", "is", "email")], "any": [_c("status", "is", "new"), _c("status", "is", "solved")]}, {"t4"}),
    ({"all": [_c("tags", "includes_any", ["vip"])], "any": []}, {"t1", "t4"}),
    ({"any": [_c("status", "is", "open")]}, {"t1"}),
    ({"all": [_c("status", "is", "open"), _c("priority", "is", "low")]}, NONE),
    (
        {"any": [_c("customer.email", "contains", "work"), _c("custom_field.seats", "less_than", 5)]},
        {"t1", "t2", "t4"},
    ),
    (
        {
            "all": [_c("team", "present"), _c("sla_due", "present")],
            "any": [_c("tags", "includes_all", ["vip", "billing"]), _c("customer.email", "not_present")],
        },
        {"t1", "t3"},
    ),
]


def _resolve(value: Any, world: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return world[value]
    if isinstance(value, list):
        return [_resolve(v, world) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, world) for k, v in value.items()}
    return value


def _in_memory(conditions: dict[str, Any], now: datetime = NOW) -> set[str]:
    found = set()
    for ticket in Ticket.objects.order_by("id"):  # fresh instances, as a trigger would hold
        if matches(conditions, ticket, now=now):
            found.add(ticket.subject)
    return found


def _in_database(conditions: dict[str, Any], now: datetime = NOW) -> set[str]:
    q, check = ticket_query(conditions, now=now)
    rows = list(Ticket.objects.filter(q))
    assert len(rows) == len({t.pk for t in rows}), "the query duplicated rows"
    return {t.subject for t in rows if check is None or check(t)}


@pytest.mark.parametrize(("conditions", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_memory_and_database_agree(world: dict[str, Any], conditions: dict[str, Any], expected: set[str]) -> None:
    # given the four tickets and one case of the table
    names = {key: t.subject for key, t in world["tickets"].items()}
    conditions = validate_conditions(_resolve(conditions, world), for_query=True)
    want = {names[key] for key in expected}
    # when the conditions are evaluated in memory and compiled to a query
    # then both find exactly the expected tickets
    assert _in_memory(conditions) == want
    assert _in_database(conditions) == want


def test_every_field_and_operator_is_in_the_table_or_the_event_tests(db: Any) -> None:
    # given the registry of fields
    table = {
        (c["field"].split(".")[0] if c["field"].startswith("custom_field") else c["field"], c["op"])
        for conds, _ in CASES
        for c in conds.get("all", []) + conds.get("any", [])
    }
    # then every (field, operator) that queries can use has a case in the table
    untested = []
    for entry in describe_fields():
        name = "custom_field" if entry["type"] == "custom" else entry["name"]
        if entry["event_only"] or entry["type"] == "business_hours":
            continue  # tested by the event and business-hours tests below
        for op, _ in entry["operators"]:
            if op not in entry["event_operators"] and (name, op) not in table:
                untested.append((name, op))
    assert not untested, repr(untested)


def test_normalized_conditions_validate_to_themselves(world: dict[str, Any]) -> None:
    # given every case of the table, normalized once
    for conditions, _ in CASES:
        once = validate_conditions(_resolve(conditions, world))
        # then normalizing again changes nothing (stored data stays stable)
        assert validate_conditions(once) == once


# --- normalization and validation ---------------------------------------------------------------


def test_values_are_normalized(world: dict[str, Any]) -> None:
    # when
    result = validate_conditions(
        {
            "all": [
                _c("status", "is", "On hold"),
                _c("priority", "is", "HIGH"),
                _c("priority", "is_not", "2"),
                _c("tags", "includes_any", " VIP "),
                _c("assignee", "is", "none"),
                _c("team", "is", str(world["$support"])),
                _c("customer.email", "is", " Jana@Example.COM "),
                _c("within_business_hours", "is", "yes"),
                _c("created", "greater_than", "24"),
            ],
            "any": [_c("tags", "present", "ignored")],
        }
    )
    # then
    assert [c["value"] for c in result["all"]] == [
        "on_hold",
        3,
        2,
        ["vip"],
        None,
        world["$support"],
        "jana@example.com",
        True,
        24,
    ]
    assert result["any"] == [{"field": "tags", "op": "present", "value": None}]


def _errors(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(InvalidConditions) as info:
        validate_conditions(data, **kwargs)
    assert str(info.value) == " ".join(info.value.errors)
    return info.value.errors


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"all": [_c("priority", "is", "huge")]},
            "Condition 1 (priority): 'huge' is not a priority; use low, normal, high or urgent.",
        ),
        (
            {"all": [_c("status", "is", "open"), _c("status", "is", "done")]},
            "Condition 2 (status): 'done' is not a status; use new, open, pending, on hold, solved or closed.",
        ),
        ({"all": [_c("stauts", "is", "open")]}, "Condition 1: 'stauts' is not a field; did you mean status?"),
        ({"any": [_c("sentiment", "is", "angry")]}, "ANY condition 1: 'sentiment' is not a field."),
        (
            {"all": [_c("status", "contains", "op")]},
            "Condition 1 (status): 'contains' is not an operator for status; use is, is not, includes any, "
            "includes none, less than, greater than, changed, changed to, changed from or not changed.",
        ),
        ({"all": [_c("team", "is", 999_999)]}, "Condition 1 (team): there is no team with id 999999."),
        ({"all": [_c("team", "is", True)]}, 'Condition 1 (team): true is not the id of a team (or "none").'),
        ({"all": [_c("inbox", "is", None)]}, "Condition 1 (inbox): null is not the id of an inbox."),
        ({"all": [_c("tags", "includes_any", [])]}, "Condition 1 (tags): give at least one value."),
        (
            {"all": [_c("tags", "includes_any", ["a,b"])]},
            "Condition 1 (tags): a tag name cannot contain a comma; add one tag at a time.",
        ),
        (
            {"all": [_c("subject", "contains", "  ")]},
            "Condition 1 (subject): the text is empty; to match an empty value use “is not set”.",
        ),
        (
            {"all": [_c("subject", "contains", "x" * 501)]},
            "Condition 1 (subject): the text is too long (501 characters; at most 500).",
        ),
        (
            {"all": [_c("created", "greater_than", -1)]},
            "Condition 1 (created): give whole hours from 0 to 100000, not -1.",
        ),
        (
            {"all": [_c("created", "greater_than", 1.5)]},
            "Condition 1 (created): give whole hours from 0 to 100000, not 1.5.",
        ),
        (
            {"all": [_c("custom_field.seats", "greater_than", "5")]},
            "Condition 1 (custom_field.seats): give a number, not '5'.",
        ),
        (
            {"all": [_c("custom_field.seats", "is", float("nan"))]},
            "Condition 1 (custom_field.seats): give a finite number.",
        ),
        (
            {"all": [_c("custom_field.seats", "is", None)]},
            "Condition 1 (custom_field.seats): give a value; to match a field that is not set use “is not set”.",
        ),
        (
            {"all": [_c("custom_field.Bad Key", "is", 1)]},
            "Condition 1: 'Bad Key' is not a custom field key (1–64 lower-case letters, digits or single "
            "underscores, starting with a letter).",
        ),
        (
            {"all": [_c("within_business_hours", "is", "maybe")]},
            "Condition 1 (within_business_hours): give true or false, not 'maybe'.",
        ),
        (
            {"all": [{"field": "status", "op": "is", "value": "open", "calendar": 1}]},
            "Condition 1 (status): only “within business hours” takes a calendar.",
        ),
        (
            {"all": [{"field": "within_business_hours", "op": "is", "value": True, "calendar": 999_999}]},
            "Condition 1 (within_business_hours): there is no calendar with id 999999.",
        ),
        (
            {"all": [_c("event", "is", "exploded")]},
            "Condition 1 (event): 'exploded' is not an event; use created, updated, message_received, "
            "reply_added, note_added, auto_reply_sent, status_changed, priority_changed, assigned, team_changed, "
            "tags_changed, custom_field_changed, sla_warning, sla_breach, sla_fulfilled, merged, chat_ended or "
            "chat_rated.",
        ),
        (
            {"all": [_c("channel", "is", "pigeon")]},
            "Condition 1 (channel): 'pigeon' is not a channel; use api, chat, email, instagram, messenger, "
            "telegram, twilio_sms, twilio_voice, twilio_whatsapp, web_form or whatsapp.",
        ),
        ({"all": "status is open"}, "\"all\" is a list of conditions, not 'status is open'."),
        ({"every": []}, '\'every\' is not a part of conditions; use "all" and "any".'),
        ([], 'Conditions are an object with the lists "all" and "any", not a list.'),
        (
            {"all": [["status", "is", "open"]]},
            "Condition 1: a condition is an object with field, op and value, not a list.",
        ),
        (
            {"all": [{"field": "status", "op": "is", "value": "open", "extra": 1}]},
            "Condition 1: 'extra' is not part of a condition; use field, op and value.",
        ),
        (
            {"all": [{"op": "is", "value": "open"}]},
            "Condition 1: name the field to test (e.g. status, priority, tags).",
        ),
    ],
)
def test_validation_says_what_is_wrong(db: Any, data: Any, error: str) -> None:
    # when / then
    assert _errors(data) == [error]


def test_every_problem_is_reported_at_once(db: Any) -> None:
    # when
    errors = _errors(
        {"all": [_c("priority", "is", "huge"), _c("status", "is", "open")], "any": [_c("tags", "includes_any", 5)]}
    )
    # then
    assert errors == [
        "Condition 1 (priority): 'huge' is not a priority; use low, normal, high or urgent.",
        "ANY condition 1 (tags): a tag is a name, not 5.",
    ]


def test_queries_refuse_what_only_a_trigger_can_see(db: Any) -> None:
    # when
    errors = _errors(
        {
            "all": [
                _c("event", "is", "created"),
                _c("status", "changed_to", "solved"),
                _c("message.text", "contains", "x"),
            ]
        },
        for_query=True,
    )
    # then
    assert errors == [
        "Condition 1 (event): the event field looks at what a change did, so it only works in triggers "
        "(not in views, time rules or SLA policies).",
        "Condition 2 (status): “changed to” looks at what a change did, so it only works in triggers "
        "(not in views, time rules or SLA policies).",
        "Condition 3 (message.text): the message.text field looks at what a change did, so it only works in "
        "triggers (not in views, time rules or SLA policies).",
    ]
    with pytest.raises(InvalidConditions):
        ticket_query({"all": [_c("status", "changed")]}, now=NOW)
    # and triggers may use them
    assert validate_conditions({"all": [_c("status", "changed")]})["all"][0]["value"] is None


def test_limits(db: Any) -> None:
    # given
    many = [_c("status", "is", "open")] * (MAX_CONDITIONS + 1)
    # then
    assert _errors({"all": many[:30], "any": many[30:]}) == ["At most 50 conditions (these are 51)."]
    assert validate_conditions({"all": many[:MAX_CONDITIONS]})
    assert _errors({"all": [_c("tags", "includes_any", [f"t{i}" for i in range(101)])]}) == [
        "Condition 1 (tags): a list has at most 100 values (this one has 101)."
    ]


def _refusal(data: Any) -> list[str] | None:
    """The sentences refusing the conditions, or None when they are valid."""
    try:
        validate_conditions(data)
    except InvalidConditions as exc:
        return exc.errors
    return None


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value] if depth % 2 else {"a": value}
    return value


@pytest.mark.parametrize(
    "value",
    [
        _deep(100_000),
        _deep(100_001),
        10**400,
        -(10**400),
        float("inf"),
        float("nan"),
        {"a": 1},
        [[1]],
        b"bytes",
        object(),
        "²",
        "٣",
        "9" * 5000,
        "\x00" * 600,
        "\u202e" + "x" * 499,
        [None] * 101,
    ],
)
def test_hostile_values_give_clear_errors(db: Any, value: Any) -> None:
    # given every field and operator, each with the hostile value
    for entry in describe_fields():
        name = "custom_field.x" if entry["type"] == "custom" else entry["name"]
        for op, _ in entry["operators"]:
            # when / then: accepted, or refused in short sentences (never another exception)
            errors = _refusal({"all": [_c(name, op, value)]})
            assert all(isinstance(e, str) and len(e) < 600 for e in errors or [])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {
                "all": st.lists(
                    st.fixed_dictionaries(
                        {
                            "field": st.sampled_from(
                                [
                                    "status",
                                    "priority",
                                    "tags",
                                    "team",
                                    "subject",
                                    "custom_field.a",
                                    "created",
                                    "sla_due",
                                    "customer.email",
                                    "event",
                                    "message.text",
                                    "within_business_hours",
                                    "x",
                                ]
                            ),
                            "op": st.sampled_from([*OPERATORS, "nope"]),
                            "value": JSON,
                        }
                    ),
                    max_size=4,
                )
            }
        ),
    )
)
def test_any_input_is_either_valid_or_refused_in_words(world: dict[str, Any], data: Any) -> None:
    # when arbitrary JSON is given as conditions
    errors = _refusal(data)
    if errors is not None:
        # then it is refused in sentences
        assert errors
        assert all(isinstance(e, str) for e in errors)
        return
    normalized = validate_conditions(data)
    # or it is valid, and evaluating it works in memory (and, without event conditions, in SQL)
    ticket = world["tickets"]["t1"]
    assert isinstance(matches(normalized, ticket, now=NOW), bool)
    assert len(explain(normalized, ticket, now=NOW)) == len(normalized["all"]) + len(normalized["any"])
    try:
        q, _ = ticket_query(normalized, now=NOW)
    except InvalidConditions:
        return
    list(Ticket.objects.filter(q))


# --- event conditions (triggers) --------------------------------------------------------------


def _event(ticket: Ticket, type_: str, message: Message | None = None, **data: Any) -> TicketEvent:
    return TicketEvent(ticket=ticket, seq=1, type=type_, data=data, message=message)


def _message(**fields: Any) -> Message:
    return cast(Message, MessageFactory(**fields))


def _check(conditions: dict[str, Any], ticket: Ticket, change: Change | None) -> bool:
    return matches(validate_conditions(conditions), ticket, change=change, now=NOW)


def test_status_changes(world: dict[str, Any]) -> None:
    # given a change that solved an open ticket
    t1 = world["tickets"]["t1"]
    change = Change(events=[_event(t1, TicketEventType.STATUS_CHANGED, old="open", new="solved")])
    # then
    assert _check({"all": [_c("status", "changed")]}, t1, change)
    assert _check({"all": [_c("status", "changed_to", "solved")]}, t1, change)
    assert _check({"all": [_c("status", "changed_from", "open")]}, t1, change)
    assert not _check({"all": [_c("status", "changed_to", "open")]}, t1, change)
    assert not _check({"all": [_c("status", "changed_from", "solved")]}, t1, change)
    assert not _check({"all": [_c("status", "not_changed")]}, t1, change)
    # and a change that did something else did not change the status
    other = Change(events=[_event(t1, TicketEventType.PRIORITY_CHANGED, old=2, new=4)])
    assert _check({"all": [_c("status", "not_changed")]}, t1, other)
    assert not _check({"all": [_c("status", "changed")]}, t1, other)
    assert _check({"all": [_c("priority", "changed_to", "urgent"), _c("priority", "changed_from", 2)]}, t1, other)
    # and without a change (views, time rules) nothing "changed" and nothing "did not change"
    assert not _check({"all": [_c("status", "changed")]}, t1, None)
    assert not _check({"all": [_c("status", "not_changed")]}, t1, None)


def test_changed_to_means_the_value_after_the_change(world: dict[str, Any]) -> None:
    # given a change that solved and reopened the ticket
    t1 = world["tickets"]["t1"]
    change = Change(
        events=[
            _event(t1, TicketEventType.STATUS_CHANGED, old="open", new="solved"),
            _event(t1, TicketEventType.STATUS_CHANGED, old="solved", new="open"),
        ]
    )
    # then it did not change to solved, and it came from open
    assert not _check({"all": [_c("status", "changed_to", "solved")]}, t1, change)
    assert _check({"all": [_c("status", "changed_to", "open"), _c("status", "changed_from", "open")]}, t1, change)


def test_creation_is_a_change_to_the_initial_values(world: dict[str, Any]) -> None:
    # given the change that created t4 (new, urgent, vip) and then routed it to Support
    t4 = world["tickets"]["t4"]
    created = _event(t4, TicketEventType.CREATED, channel="email", inbox_id=world["$inbox_b"])
    routed = _event(t4, TicketEventType.TEAM_CHANGED, old_team_id=None, new_team_id=world["$support"])
    change = Change(events=[created, routed])
    # then
    assert _check({"all": [_c("status", "changed_to", "new"), _c("priority", "changed_to", "urgent")]}, t4, change)
    assert _check({"all": [_c("team", "changed_to", world["$support"]), _c("team", "changed_from", None)]}, t4, change)
    assert _check({"all": [_c("tags", "changed_to", "vip")]}, t4, change)
    assert _check({"all": [_c("assignee", "not_changed")]}, t4, change)  # nobody then, nobody now
    assert _check({"all": [_c("event", "is", "created"), _c("event", "is_not", "updated")]}, t4, change)


def test_assignee_tags_and_custom_field_changes(world: dict[str, Any]) -> None:
    # given
    t1 = world["tickets"]["t1"]
    change = Change(
        events=[
            _event(t1, TicketEventType.ASSIGNED, old_assignee_id=None, new_assignee_id=world["$ada"], via="rule"),
            _event(t1, TicketEventType.TAGS_CHANGED, added=["vip", "temp"], removed=["legacy"]),
            _event(t1, TicketEventType.TAGS_CHANGED, added=[], removed=["temp"]),
            _event(t1, TicketEventType.CUSTOM_FIELD_CHANGED, key="plan", old=None, new="Gold"),
        ]
    )
    # then
    assert _check(
        {"all": [_c("assignee", "changed_from", "none"), _c("assignee", "changed_to", world["$ada"])]}, t1, change
    )
    assert _check({"all": [_c("tags", "changed"), _c("tags", "changed_to", ["vip", "x"])]}, t1, change)
    assert _check({"all": [_c("tags", "changed_from", "legacy")]}, t1, change)
    assert not _check({"all": [_c("tags", "changed_to", "temp")]}, t1, change)  # added, then removed
    assert not _check({"all": [_c("tags", "changed_from", "temp")]}, t1, change)
    assert _check({"all": [_c("custom_field.plan", "changed_to", "gold")]}, t1, change)
    assert _check({"all": [_c("custom_field.plan", "changed_from", None)]}, t1, change)
    assert _check({"all": [_c("custom_field.seats", "not_changed")]}, t1, change)
    assert _check({"all": [_c("team", "not_changed")]}, t1, change)


def test_event_kinds(world: dict[str, Any]) -> None:
    # given
    t1 = world["tickets"]["t1"]
    breach = Change(
        events=[_event(t1, TicketEventType.SLA_BREACHED, clock_id=1, metric="first_reply", instance=1, due_at="")]
    )
    # then
    assert _check({"all": [_c("event", "is", "sla_breach"), _c("event", "is", "updated")]}, t1, breach)
    assert _check({"all": [_c("event", "includes_any", ["sla_warning", "sla_breach"])]}, t1, breach)
    assert not _check({"all": [_c("event", "is", "message_received")]}, t1, breach)
    assert not _check({"all": [_c("event", "is", "created")]}, t1, None)
    assert event_happened("updated", breach.events)
    assert not event_happened("updated", [])


def test_message_conditions(world: dict[str, Any]) -> None:
    # given messages of each kind on t1
    t1 = world["tickets"]["t1"]
    inbound = _message(ticket=t1, text="Where is my REFUND?", channel="email")
    reply = _message(
        ticket=t1,
        direction=Direction.OUTBOUND,
        author_customer=None,
        author_agent_id=world["$ada"],
        text="On its way",
        channel="api",
    )
    auto = _message(ticket=t1, direction=Direction.OUTBOUND, author_customer=None, text="We got it", channel="email")
    note = _message(
        ticket=t1,
        direction=Direction.NOTE,
        author_customer=None,
        author_agent_id=world["$ada"],
        inbox=None,
        text="vip!",
        channel="",
    )
    Attachment.objects.create(
        message=inbound, file="attachments/x", filename="a.pdf", content_type="application/pdf", size=1, sha256="0" * 64
    )
    received = Change.from_events(
        [_event(t1, TicketEventType.MESSAGE_RECEIVED, message=inbound, message_id=inbound.pk, channel="email")]
    )

    def change(message: Message, type_: str = TicketEventType.REPLY_ADDED) -> Change:
        return Change(events=[_event(t1, type_, message=message, message_id=message.pk)], message=message)

    # then
    assert received.message == inbound
    assert _check(
        {"all": [_c("message.text", "contains", "refund"), _c("message.from", "is", "customer")]}, t1, received
    )
    assert _check(
        {"all": [_c("message.text", "starts_with", "where"), _c("message.text", "not_contains", "parcel")]},
        t1,
        received,
    )
    assert _check({"all": [_c("message.text", "is", "where is my refund?")]}, t1, received)
    assert _check({"all": [_c("message.public", "is", True), _c("message.has_attachments", "is", True)]}, t1, received)
    assert _check({"all": [_c("message.channel", "is", "email"), _c("message.channel", "is_not", "api")]}, t1, received)
    assert _check(
        {"all": [_c("message.from", "is", "agent"), _c("message.has_attachments", "is", False)]}, t1, change(reply)
    )
    assert _check({"all": [_c("message.from", "is", "system")]}, t1, change(auto, TicketEventType.AUTO_REPLY_SENT))
    assert _check(
        {"all": [_c("message.public", "is", False), _c("message.from", "is_not", "customer")]},
        t1,
        change(note, TicketEventType.NOTE_ADDED),
    )
    # and a change without a message makes every message condition false
    quiet = Change.from_events([_event(t1, TicketEventType.PRIORITY_CHANGED, old=2, new=3)])
    assert quiet.message is None
    assert not _check({"all": [_c("message.text", "not_contains", "refund")]}, t1, quiet)
    assert not _check({"all": [_c("message.public", "is", False)]}, t1, quiet)
    assert not _check({"any": [_c("message.text", "contains", "x")]}, t1, None)


def test_triggers_read_the_ticket_too(world: dict[str, Any]) -> None:
    # given a trigger's conditions mixing ticket fields and the change
    t1 = world["tickets"]["t1"]
    change = Change(events=[_event(t1, TicketEventType.STATUS_CHANGED, old="pending", new="open")])
    conditions = {
        "all": [_c("status", "changed_from", "pending"), _c("tags", "includes_any", ["vip"])],
        "any": [_c("customer.email", "contains", "work.cz"), _c("priority", "is", "urgent")],
    }
    # then
    assert _check(conditions, t1, change)
    assert not _check(conditions, world["tickets"]["t2"], change)


# --- business hours (helpdesk/calendars.py) -----------------------------------------------------


def test_within_business_hours_without_a_calendar_is_always(world: dict[str, Any]) -> None:
    # given no calendar at all: every hour is a business hour
    inside = {"all": [_c("within_business_hours", "is", True)]}
    outside = {"all": [_c("within_business_hours", "is", False)]}
    names = {t.subject for t in world["tickets"].values()}
    # then
    assert _in_memory(inside) == _in_database(inside) == names
    assert _in_memory(outside) == _in_database(outside) == set()


def test_within_business_hours_by_calendar(world: dict[str, Any]) -> None:
    from helpdesk.models import BusinessCalendar

    # given the default calendar open 9–17 in Prague on weekdays, and a weekend-only calendar
    office = BusinessCalendar.objects.create(
        name="Office",
        time_zone="Europe/Prague",
        hours={d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
        is_default=True,
    )
    weekend = BusinessCalendar.objects.create(name="Weekend", time_zone="UTC", hours={"sat": [["00:00", "24:00"]]})
    names = {t.subject for t in world["tickets"].values()}
    inside = {"all": [_c("within_business_hours", "is", True)]}
    on_weekend = {"all": [{"field": "within_business_hours", "op": "is", "value": True, "calendar": weekend.pk}]}
    combined = {"any": [_c("within_business_hours", "is", False), _c("priority", "is", "urgent")]}
    monday_noon, monday_night = NOW, NOW.replace(hour=20)  # 13:00 and 21:00 in Prague
    # then
    assert _in_memory(inside, monday_noon) == _in_database(inside, monday_noon) == names
    assert _in_memory(inside, monday_night) == _in_database(inside, monday_night) == set()
    assert _in_memory(on_weekend, monday_noon) == _in_database(on_weekend, monday_noon) == set()
    urgent = {world["tickets"]["t4"].subject}
    assert _in_memory(combined, monday_noon) == _in_database(combined, monday_noon) == urgent
    assert _in_memory(combined, monday_night) == _in_database(combined, monday_night) == names
    assert describe(on_weekend) == ["Within business hours (Weekend)"]
    assert office.pk


# --- words -------------------------------------------------------------------------------------


def test_explain_says_each_condition_and_its_result(world: dict[str, Any]) -> None:
    # given
    conditions = validate_conditions(
        {
            "all": [
                _c("priority", "is", "high"),
                _c("team", "is", world["$support"]),
                _c("created", "greater_than", 100),
            ],
            "any": [_c("tags", "includes_any", ["vip", "billing"]), _c("status", "changed_to", "solved")],
        }
    )
    # when
    lines = explain(conditions, world["tickets"]["t1"], now=NOW)
    # then
    assert lines == [
        ("Priority is High", True),
        ("Team is Support", True),
        ("Hours since created is more than 100 hours", False),
        ("Any of: Tags include any of vip or billing", True),
        ("Any of: Status changed to Solved (only in triggers: there is no change to look at)", False),
    ]


def test_describe(world: dict[str, Any]) -> None:
    # then
    assert describe({}) == ["Every ticket"]
    assert describe(
        {
            "all": [
                _c("assignee", "is", "none"),
                _c("tags", "includes_all", ["vip", "billing"]),
                _c("sla_due", "less_than", 1),
                _c("status", "greater_than", "open"),
                _c("team", "includes_any", [world["$billing"], 987_654]),
            ],
            "any": [_c("subject", "contains", "refund"), _c("within_business_hours", "is", False)],
        }
    ) == [
        "Assignee is nobody",
        "Tags include all of vip and billing",
        "Hours until the SLA deadline is less than 1 hour",
        "Status is after Open",
        "Team is one of Billing or team 987654 (deleted)",
        "At least one of: Subject contains “refund”; Outside business hours (the default calendar)",
    ]


def test_describe_fields_lists_labels_operators_and_choices(world: dict[str, Any]) -> None:
    # when
    fields = {f["name"]: f for f in describe_fields()}
    # then
    assert {
        "status",
        "priority",
        "channel",
        "inbox",
        "team",
        "assignee",
        "tags",
        "subject",
        "custom_field.<key>",
        "customer.email",
        "customer.language",
        "customer.organization",
        "sla_policy",
        "created",
        "updated",
        "status_changed",
        "customer_replied",
        "agent_replied",
        "solved",
        "sla_due",
        "within_business_hours",
        "event",
        "message.text",
        "message.from",
        "message.public",
        "message.channel",
        "message.has_attachments",
    } <= set(fields)
    assert fields["status"]["choices"][:2] == [("new", "New"), ("open", "Open")]
    assert ("greater_than", "is after") in fields["status"]["operators"]
    assert fields["status"]["event_operators"] == ["changed", "changed_to", "changed_from", "not_changed"]
    assert (world["$support"], "Support") in fields["team"]["choices"]
    assert fields["team"]["choices"][0] == (None, "None")
    assert fields["assignee"]["choices"][0] == (None, "Nobody")
    assert ("api", "API") in fields["channel"]["choices"] or any(v == "api" for v, _ in fields["channel"]["choices"])
    assert fields["tags"]["values"]["includes_any"] == "list"
    assert fields["team"]["values"]["present"] == "none"
    assert fields["event"]["event_only"] is True
    assert fields["subject"]["choices"] is None


# --- cost --------------------------------------------------------------------------------------


def test_a_view_over_many_tickets_is_one_query(world: dict[str, Any], django_assert_num_queries: Any) -> None:
    # given 40 more tickets with tags and customers with several email identities
    vip = Tag.objects.get(name="vip")
    for i in range(40):
        customer = CustomerFactory(language="cs")
        IdentityFactory(customer=customer, value=f"a{i}@work.cz")
        IdentityFactory(customer=customer, value=f"b{i}@work.cz")
        ticket = cast(Ticket, TicketFactory(customer=customer, status="open", custom_fields={"seats": i}))
        ticket.tags.add(vip, Tag.objects.get(name="billing"))
    conditions = validate_conditions(
        {
            "all": [
                _c("status", "includes_any", ["new", "open"]),
                _c("tags", "includes_all", ["vip", "billing"]),
                _c("customer.email", "contains", "work.cz"),
                _c("created", "less_than", 10_000),
                _c("custom_field.seats", "greater_than", 4),
            ],
            "any": [_c("customer.language", "is", "cs"), _c("team", "present")],
        },
        for_query=True,
    )
    q, check = ticket_query(conditions, now=datetime.now(UTC))
    assert check is None
    # when / then: one query, and every ticket once although it has two matching tags and emails
    with django_assert_num_queries(1):
        rows = list(Ticket.objects.filter(q))
    assert len(rows) == len({t.pk for t in rows}) == 35 + 1  # seats 5..39, and t1


def test_matching_in_memory_reads_each_relation_once(world: dict[str, Any], django_assert_num_queries: Any) -> None:
    # given a fresh ticket instance and conditions over tags and emails, several each
    ticket = Ticket.objects.select_related("customer").get(pk=world["tickets"]["t1"].pk)
    conditions = validate_conditions(
        {
            "all": [_c("tags", "includes_any", ["vip"]), _c("tags", "includes_none", ["spam"])],
            "any": [_c("customer.email", "is", "x@y.z"), _c("customer.email", "contains", "work")],
        }
    )
    # when / then: one query for the tags, one for the identities
    with django_assert_num_queries(2):
        assert matches(conditions, ticket, now=NOW)
