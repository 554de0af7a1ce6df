"""Routing of tickets: rules → team, the queue, the choice of agent, presence, settings
(helpdesk/assignment.py, helpdesk/actions/routing.py, docs/routing.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any, cast

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_inbox.models import Inbox
from customers.models import Customer
from helpdesk.actions import routing
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.presence import do_set_presence
from helpdesk.actions.routing import (
    InvalidRoutingRule,
    active_rules,
    do_agent_went_offline,
    do_assign_queued_tickets,
    do_delete_routing_rule,
    do_move_routing_rule,
    do_save_routing_rule,
    do_set_agent_routing,
    do_set_team_routing,
    queue_for_routing,
    route_new_ticket,
)
from helpdesk.actions.tickets import do_assign_ticket, do_change_status
from helpdesk.assignment import Candidate, capacity_for, choose, normalize_language, speaks
from helpdesk.models import (
    AgentProfile,
    Priority,
    RoutingMode,
    RoutingRule,
    Team,
    Ticket,
    TicketEvent,
    TicketEventType,
    TicketStatus,
    User,
)
from tests.factories import CustomerFactory, InboxFactory, TicketFactory

pytestmark = pytest.mark.django_db

_numbers = count(1)
NOW = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Run what the actions queue after commit (tests run inside a transaction that never commits)."""
    return django_capture_on_commit_callbacks


def team(name: str = "Support", routing_mode: str = RoutingMode.ROUND_ROBIN, **fields: Any) -> Team:
    made, _ = Team.objects.update_or_create(
        slug=name.lower(), defaults={"name": name, "routing": routing_mode, **fields}
    )
    return made


def agent(
    name: str,
    *,
    teams: list[str] | None = None,
    presence: str = "online",
    capacity: dict[str, int] | None = None,
    languages: list[str] | None = None,
    last: datetime | None = None,
    role: str = "agent",
) -> User:
    user = do_create_agent(email=f"{name}@example.com", name=name.capitalize(), teams=teams or ["Support"], role=role)
    AgentProfile.objects.filter(user=user).update(
        presence=presence, capacity=capacity or {}, languages=languages or [], last_assigned_at=last
    )
    return user


def inbox(kind: str = "email", team_: Team | None = None) -> Inbox:
    n = next(_numbers)
    return cast(Inbox, InboxFactory(kind=kind, name=f"{kind} {n}", slug=f"{kind}-{n}", settings={}, team=team_))


def ticket(
    team_: Team | None,
    *,
    channel: str = "email",
    queued_at: datetime | None = NOW,
    priority: int = Priority.NORMAL,
    sla_due_at: datetime | None = None,
    language: str = "",
    status: str = TicketStatus.NEW,
    assignee: User | None = None,
) -> Ticket:
    """A ticket of a team, queued by default (the factory writes no events)."""
    customer = cast(Customer, CustomerFactory(language=language))
    return cast(
        Ticket,
        TicketFactory(
            team=team_,
            channel=channel,
            inbox=inbox(channel),
            customer=customer,
            status=status,
            priority=priority,
            sla_due_at=sla_due_at,
            queued_at=queued_at,
            assignee=assignee,
        ),
    )


def held(user: User, channel: str | None = None) -> int:
    tickets = Ticket.objects.filter(assignee=user, status__in=["new", "open"])
    if channel:
        tickets = tickets.filter(channel=channel)
    return tickets.count()


def fresh(t: Ticket) -> Ticket:
    return Ticket.objects.get(pk=t.pk)


def assigned_events(t: Ticket) -> list[dict[str, Any]]:
    return [e.data for e in TicketEvent.objects.filter(ticket=t, type=TicketEventType.ASSIGNED).order_by("seq")]


def events_of(t: Ticket) -> list[TicketEvent]:
    return list(TicketEvent.objects.filter(ticket=t).order_by("seq"))


@pytest.fixture
def admin(db: Any) -> User:
    return do_create_agent(email="root@example.com", name="Rhea Root", role="admin")


def created_ticket(source: Inbox) -> Ticket:
    """A ticket with its `created` event, as ingest makes it."""
    from helpdesk.events import Created, append_event

    t = cast(Ticket, TicketFactory(inbox=source, channel=source.kind, team=source.team, status=TicketStatus.NEW))
    append_event(t, Created(channel=source.kind, inbox_id=source.pk), actor=None)
    return fresh(t)


# --- routing rules: which team ---------------------------------------------------------------------


def test_the_first_active_rule_whose_inbox_matches_sets_the_team(admin: User) -> None:
    # given: rules in order — inactive, another inbox's, this inbox's, any inbox's
    support, billing, sales, vip = team("Support"), team("Billing"), team("Sales"), team("Vip")
    source, other = inbox("email", support), inbox("email")
    inactive = do_save_routing_rule(None, name="Off", inbox=None, conditions={}, team=vip, is_active=False, actor=admin)
    do_save_routing_rule(None, name="Other inbox", inbox=other, conditions={}, team=sales, is_active=True, actor=admin)
    do_save_routing_rule(
        None, name="This inbox", inbox=source, conditions={}, team=billing, is_active=True, actor=admin
    )
    do_save_routing_rule(None, name="Any inbox", inbox=None, conditions={}, team=sales, is_active=True, actor=admin)
    t = created_ticket(source)
    # when
    routed = route_new_ticket(t, events_of(t))
    # then: the inbox's rule won, through a TeamChanged event by the system
    assert fresh(routed).team_id == billing.pk
    change = TicketEvent.objects.get(ticket=t, type=TicketEventType.TEAM_CHANGED)
    assert (change.data, change.actor_id) == ({"old_team_id": support.pk, "new_team_id": billing.pk}, None)
    assert inactive.position == 0
    # when: a ticket from another inbox → "Other inbox" rule (position 1)
    t2 = created_ticket(other)
    assert fresh(route_new_ticket(t2, events_of(t2))).team_id == sales.pk


def test_without_a_match_the_inbox_team_stays_and_only_new_tickets_are_routed(admin: User) -> None:
    # given
    support, billing = team("Support"), team("Billing")
    source, other = inbox("email", support), inbox("email", support)
    do_save_routing_rule(None, name="Other", inbox=other, conditions={}, team=billing, is_active=True, actor=admin)
    t = created_ticket(source)
    # when / then: no rule for this inbox
    assert fresh(route_new_ticket(t, events_of(t))).team_id == support.pk
    # when: a later change (no created event) of a ticket of the routed inbox
    later = cast(Ticket, TicketFactory(inbox=other, channel="email", team=support))
    do_change_status(later, status="open", actor=None)
    # then: untouched
    assert fresh(route_new_ticket(fresh(later), events_of(later))).team_id == support.pk


def test_rule_conditions_decide(admin: User) -> None:
    # given: urgent tickets go to Tier 2, the rest to Billing
    support, tier2, billing = team("Support"), team("Tier2"), team("Billing")
    source = inbox("email", support)
    urgent = {"all": [{"field": "priority", "op": "is", "value": Priority.URGENT}], "any": []}
    do_save_routing_rule(None, name="Urgent", inbox=None, conditions=urgent, team=tier2, is_active=True, actor=admin)
    do_save_routing_rule(None, name="Rest", inbox=source, conditions={}, team=billing, is_active=True, actor=admin)
    calm, hot = created_ticket(source), created_ticket(source)
    Ticket.objects.filter(pk=hot.pk).update(priority=Priority.URGENT)
    # when
    calm_team = fresh(route_new_ticket(calm, events_of(calm))).team_id
    hot_team = fresh(route_new_ticket(fresh(hot), events_of(hot))).team_id
    # then
    assert (calm_team, hot_team) == (billing.pk, tier2.pk)


def test_routing_rules_cost_no_query_once_cached_and_follow_every_change(
    admin: User, django_assert_num_queries: Any
) -> None:
    # given: no rules; the first look reads the (empty) table
    support, billing = team("Support"), team("Billing")
    source = inbox("email", support)
    t = created_ticket(source)
    events = events_of(t)
    with django_assert_num_queries(1):
        route_new_ticket(t, events)
    # when / then: cached — a change on a workspace without rules costs nothing
    with django_assert_num_queries(0):
        route_new_ticket(t, events)
    # when: a rule is saved → seen at once
    rule = do_save_routing_rule(None, name="All", inbox=None, conditions={}, team=billing, is_active=True, actor=admin)
    assert [r.id for r in active_rules()] == [rule.pk]
    # when: another rule, moved before it → order seen
    first = do_save_routing_rule(
        None, name="First", inbox=source, conditions={}, team=support, is_active=True, actor=admin
    )
    do_move_routing_rule(first, position=0, actor=admin)
    assert [r.id for r in active_rules()] == [first.pk, rule.pk]
    assert list(RoutingRule.objects.values_list("name", "position")) == [("First", 0), ("All", 1)]
    # when: deleted → gone, positions renumbered
    do_delete_routing_rule(first, actor=admin)
    assert [r.id for r in active_rules()] == [rule.pk]
    assert list(RoutingRule.objects.values_list("position", flat=True)) == [0]


def test_the_rule_cache_is_shared_through_the_version_in_the_cache(admin: User) -> None:
    # given: a process that cached "no rules"
    billing = team("Billing")
    assert active_rules() == ()
    # when: another process saves a rule (it changes the version in the shared cache)
    RoutingRule.objects.create(name="Elsewhere", team=billing)
    routing._bump_rules_version()
    # then: this process reloads
    assert [r.team_id for r in active_rules()] == [billing.pk]


# --- the queue ------------------------------------------------------------------------------------------


def test_eligible_tickets_are_queued_and_the_rest_are_not(lost_tasks: Any, commit: Any) -> None:
    # given
    rr, manual = team("Support"), team("Manual", RoutingMode.MANUAL)
    someone = agent("sam")
    cases = {
        "eligible": ticket(rr, queued_at=None),
        "manual team": ticket(manual, queued_at=None),
        "no team": ticket(None, queued_at=None),
        "pending": ticket(rr, queued_at=None, status=TicketStatus.PENDING),
        "assigned": ticket(rr, queued_at=None, assignee=someone),
        "chat": ticket(rr, queued_at=None, channel="chat"),
    }
    # when
    with commit(execute=True):
        for t in cases.values():
            queue_for_routing(t, [])
    # then: only the eligible ticket waits, and its team's assignment was queued after commit
    queued = {name for name, t in cases.items() if fresh(t).queued_at is not None}
    assert queued == {"eligible"}
    assert ("helpdesk.tasks.assign_queued_tickets", (rr.pk,)) in lost_tasks


def test_a_ticket_that_stops_being_eligible_leaves_the_queue(lost_tasks: Any) -> None:
    # given: a queued ticket
    rr = team("Support")
    t = ticket(rr)
    # when: solved
    Ticket.objects.filter(pk=t.pk).update(status=TicketStatus.SOLVED)
    queue_for_routing(fresh(t), [])
    # then
    assert fresh(t).queued_at is None
    # and a chat ticket is never touched (the chat router has its own queue)
    chat = ticket(rr, channel="chat", queued_at=None)
    assert queue_for_routing(chat, []).queued_at is None


def test_a_ticket_moved_to_another_team_waits_there_from_now(lost_tasks: Any) -> None:
    # given: queued in Support an hour ago
    support, billing = team("Support"), team("Billing")
    t = ticket(support, queued_at=timezone.now() - timedelta(hours=1))
    # when: moved to Billing by the system
    from helpdesk.actions.ticket_fields import do_change_team

    moved = do_change_team(t, team=billing, actor=None)
    queue_for_routing(moved, events_of(t))
    # then
    assert timezone.now() - fresh(t).queued_at < timedelta(minutes=1)  # type: ignore[operator]


def test_freed_capacity_runs_the_assignment_of_the_agent_teams(lost_tasks: Any, commit: Any) -> None:
    # given: an agent of two routing teams holds an open ticket
    support, billing = team("Support"), team("Billing")
    ada = agent("ada", teams=["Support", "Billing"])
    t = ticket(support, queued_at=None, status=TicketStatus.OPEN, assignee=ada)
    before = TicketEvent.objects.filter(ticket=t).count()
    # when: solved
    with commit(execute=True):
        solved = do_change_status(t, status="solved", actor=None)
        queue_for_routing(solved, events_of(t)[before:])
    # then: both teams' queues flow
    queued = {args for name, args in lost_tasks if name == "helpdesk.tasks.assign_queued_tickets"}
    assert queued >= {(support.pk,), (billing.pk,)}


def test_queue_for_routing_costs_at_most_one_query_when_nothing_changes(django_assert_num_queries: Any) -> None:
    # given: a ticket of a manual team, and one without a team
    manual = team("Manual", RoutingMode.MANUAL)
    t, loose = ticket(manual, queued_at=None), ticket(None, queued_at=None)
    # then
    with django_assert_num_queries(1):
        queue_for_routing(t, [])
    with django_assert_num_queries(0):
        queue_for_routing(loose, [])


# --- the choice of agent -------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(10, 3), (12, 4), (7, 2)])
def test_round_robin_spreads_n_tickets_over_k_agents_evenly(db: Any, n: int, k: int) -> None:
    # given
    rr = team("Support")
    agents = [agent(f"rr{i}") for i in range(k)]
    tickets = [ticket(rr, queued_at=NOW + timedelta(seconds=i)) for i in range(n)]
    # when
    assigned = do_assign_queued_tickets(rr.pk)
    # then: everyone got n/k ± 1, and every ticket left the queue with a routing event
    assert assigned == n
    counts = [held(a) for a in agents]
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == n
    for t in tickets:
        assert fresh(t).queued_at is None
        assert [(d["old_assignee_id"], d["via"]) for d in assigned_events(t)] == [(None, "routing")]


def test_round_robin_takes_the_agent_assigned_longest_ago_never_first(db: Any) -> None:
    # given
    rr = team("Support")
    recent = agent("recent", last=NOW - timedelta(minutes=1))
    older = agent("older", last=NOW - timedelta(hours=1))
    never = agent("never")
    tickets = [ticket(rr, queued_at=NOW + timedelta(seconds=i)) for i in range(3)]
    # when
    do_assign_queued_tickets(rr.pk)
    # then
    assert [fresh(t).assignee_id for t in tickets] == [never.pk, older.pk, recent.pk]
    assert AgentProfile.objects.get(user=never).last_assigned_at is not None


def test_least_loaded_takes_the_most_spare_capacity_on_the_channel(db: Any) -> None:
    # given: Bo holds two email tickets, Cy one, Di none but one sms; all capacity 10
    ll = team("Support", RoutingMode.LEAST_LOADED)
    bo, cy, di = agent("bo"), agent("cy"), agent("di")
    for owner, n in ((bo, 2), (cy, 1)):
        for _ in range(n):
            ticket(ll, queued_at=None, status=TicketStatus.OPEN, assignee=owner)
    ticket(ll, queued_at=None, status=TicketStatus.OPEN, assignee=di, channel="sms")
    # a pending ticket does not count against capacity
    ticket(ll, queued_at=None, status=TicketStatus.PENDING, assignee=di)
    first, second, third = (ticket(ll, queued_at=NOW + timedelta(seconds=i)) for i in range(3))
    # when
    do_assign_queued_tickets(ll.pk)
    # then: Di (0 email) first; then Di and Cy tie at 1 — Cy was never assigned by routing, Di just was
    assert [fresh(t).assignee_id for t in (first, second, third)] == [di.pk, cy.pk, di.pk]


def test_capacity_is_counted_per_channel_kind(db: Any) -> None:
    # given: email 1, sms 2; the agent already holds one email ticket
    rr = team("Support")
    ada = agent("ada", capacity={"email": 1, "sms": 2})
    ticket(rr, queued_at=None, status=TicketStatus.OPEN, assignee=ada)
    email = ticket(rr)
    sms = [ticket(rr, channel="sms", queued_at=NOW + timedelta(seconds=i)) for i in range(3)]
    # when
    assigned = do_assign_queued_tickets(rr.pk)
    # then: full on email, two sms, the third sms waits
    assert assigned == 2
    assert fresh(email).assignee_id is None
    assert fresh(email).queued_at is not None
    assert [fresh(t).assignee_id for t in sms] == [ada.pk, ada.pk, None]


def test_capacity_falls_back_to_star_then_the_defaults(settings: Any) -> None:
    # given
    settings.ROUTING_DEFAULT_CAPACITY = {"email": 10, "*": 4}
    own = AgentProfile(capacity={"sms": 2, "*": 5}, chat_capacity=3)
    none = AgentProfile(capacity={}, chat_capacity=3)
    # then
    assert [capacity_for(own, k) for k in ("sms", "email", "api", "chat")] == [2, 5, 5, 3]
    assert [capacity_for(none, k) for k in ("sms", "email", "api")] == [4, 10, 4]
    settings.ROUTING_DEFAULT_CAPACITY = {}
    assert capacity_for(none, "email") == 0


def test_manual_assignment_may_exceed_capacity_routing_never(db: Any) -> None:
    # given: capacity 1, two tickets given by hand
    rr = team("Support")
    ada = agent("ada", capacity={"*": 1})
    for _ in range(2):
        do_assign_ticket(ticket(rr, queued_at=None), assignee=ada, actor=None)
    waiting = ticket(rr)
    # when
    do_assign_queued_tickets(rr.pk)
    # then
    assert held(ada) == 2
    assert fresh(waiting).assignee_id is None


def test_presence_away_receives_email_only_offline_nothing(db: Any) -> None:
    # given
    rr = team("Support")
    away = agent("away", presence="away")
    agent("gone", presence="offline")
    email, api, sms = ticket(rr), ticket(rr, channel="api"), ticket(rr, channel="sms")
    # when
    do_assign_queued_tickets(rr.pk)
    # then
    assert [fresh(t).assignee_id for t in (email, api, sms)] == [away.pk, away.pk, None]


def test_light_agents_and_other_teams_are_never_chosen(db: Any) -> None:
    # given
    rr = team("Support")
    agent("light", role="light_agent")
    agent("billing", teams=["Billing"])
    waiting = ticket(rr)
    # when
    assert do_assign_queued_tickets(rr.pk) == 0
    # then
    assert fresh(waiting).assignee_id is None


def test_language_is_required_until_the_skills_timeout(db: Any) -> None:
    # given: a 10-minute language wait; the Czech speaker is busy (capacity 1, one ticket held)
    rr = team("Support", skills_timeout_minutes=10)
    czech = agent("petra", languages=["cs-CZ"], capacity={"*": 1})
    english = agent("emma", languages=["en"])
    ticket(rr, queued_at=None, status=TicketStatus.OPEN, assignee=czech)
    waiting = ticket(rr, language="cs", queued_at=NOW)
    other = ticket(rr, language="de", queued_at=NOW + timedelta(seconds=1))
    # when: five minutes later
    do_assign_queued_tickets(rr.pk, now=NOW + timedelta(minutes=5))
    # then: the Czech ticket waits for Petra; nobody speaks German either
    assert (fresh(waiting).assignee_id, fresh(other).assignee_id) == (None, None)
    # when: eleven minutes after queueing: anyone
    do_assign_queued_tickets(rr.pk, now=NOW + timedelta(minutes=11))
    # then
    assert (fresh(waiting).assignee_id, fresh(other).assignee_id) == (english.pk, english.pk)


def test_a_speaker_of_the_language_is_chosen_and_without_a_timeout_language_is_ignored(db: Any) -> None:
    # given
    skills, plain = team("Support", skills_timeout_minutes=30), team("Plain")
    agent("emma", languages=["en"], teams=["Support", "Plain"], last=None)
    petra = agent("petra", languages=["cs"], teams=["Support", "Plain"], last=NOW)
    czech = ticket(skills, language="cs-CZ")
    anyone = ticket(plain, language="cs-CZ")
    # when
    do_assign_queued_tickets(skills.pk, now=NOW)
    do_assign_queued_tickets(plain.pk, now=NOW)
    # then: the skills team waited for Petra (although Emma was due), the plain team took Emma
    assert fresh(czech).assignee_id == petra.pk
    assert fresh(anyone).assignee_id != petra.pk


def test_the_queue_goes_by_priority_then_deadline_then_age(db: Any) -> None:
    # given: one agent with room for four of six tickets
    rr = team("Support")
    ada = agent("ada", capacity={"*": 4})
    old_low = ticket(rr, priority=Priority.LOW, queued_at=NOW - timedelta(hours=5))
    urgent = ticket(rr, priority=Priority.URGENT, queued_at=NOW)
    normal_no_deadline = ticket(rr, queued_at=NOW - timedelta(hours=2))
    normal_late_deadline = ticket(rr, sla_due_at=NOW + timedelta(hours=5), queued_at=NOW - timedelta(hours=1))
    normal_soon_deadline = ticket(rr, sla_due_at=NOW + timedelta(hours=1), queued_at=NOW)
    normal_no_deadline_newer = ticket(rr, queued_at=NOW - timedelta(hours=1))
    # when
    do_assign_queued_tickets(rr.pk)
    # then: in order of assignment (the order of their Assigned events)
    order = list(
        TicketEvent.objects.filter(type=TicketEventType.ASSIGNED, ticket__assignee=ada)
        .order_by("id")
        .values_list("ticket_id", flat=True)
    )
    assert order == [urgent.pk, normal_soon_deadline.pk, normal_late_deadline.pk, normal_no_deadline.pk]
    assert fresh(normal_no_deadline_newer).assignee_id is None
    assert fresh(old_low).assignee_id is None


def test_assignment_costs_a_bounded_number_of_queries_per_ticket(db: Any) -> None:
    # given: two teams' worth of queued tickets over three agents
    rr = team("Support")
    for i in range(3):
        agent(f"q{i}")

    def run(n: int) -> int:
        for i in range(n):
            ticket(rr, queued_at=NOW + timedelta(seconds=i))
        with CaptureQueriesContext(connection) as ctx:
            assert do_assign_queued_tickets(rr.pk) == n
        return len(ctx.captured_queries)

    # when
    two, six = run(2), run(6)
    # then: a fixed cost per assigned ticket, whatever is already assigned: lock the ticket, lock
    # the candidates, count their load, the assignment (event, ticket, notification: 7), stamp
    # the agent, dequeue — and 4 savepoint statements
    per_ticket = (six - two) / 4
    assert per_ticket == int(per_ticket)
    assert per_ticket <= 16
    assert two - 2 * per_ticket <= 3


def test_a_full_channel_is_not_tried_again_for_every_queued_ticket(db: Any) -> None:
    # given: nobody present; many tickets queued
    rr = team("Support")
    agent("gone", presence="offline")
    for i in range(20):
        ticket(rr, queued_at=NOW + timedelta(seconds=i))
    # when
    with CaptureQueriesContext(connection) as ctx:
        assert do_assign_queued_tickets(rr.pk) == 0
    # then: one try for the kind, not twenty
    assert len(ctx.captured_queries) <= 8


def test_chat_tickets_are_left_to_the_chat_router(db: Any) -> None:
    # given: a chat ticket with queued_at set by mistake
    rr = team("Support")
    agent("ada")
    chat = ticket(rr, channel="chat")
    # when
    assert do_assign_queued_tickets(rr.pk) == 0
    # then: not assigned, taken out of the ticket queue
    assert (fresh(chat).assignee_id, fresh(chat).queued_at) == (None, None)


def test_manual_teams_are_never_assigned(db: Any) -> None:
    manual = team("Manual", RoutingMode.MANUAL)
    agent("ada", teams=["Manual"])
    waiting = ticket(manual)
    assert do_assign_queued_tickets(None) == 0
    assert fresh(waiting).assignee_id is None


def test_the_pure_choice() -> None:
    # given
    def c(pid: int, *, spare: int = 5, presence: str = "online", last: datetime | None = None) -> Candidate:
        return Candidate(
            profile_id=pid,
            user_id=pid,
            presence=presence,
            languages=("en",),
            last_assigned_at=last,
            capacity=5,
            load=5 - spare,
        )

    pool = [c(1, last=NOW), c(2, spare=1, last=NOW - timedelta(hours=1)), c(3, spare=0), c(4, presence="away")]
    # then
    assert choose(pool, mode="round_robin", channel="sms").profile_id == 2  # type: ignore[union-attr]
    assert choose(pool, mode="least_loaded", channel="sms").profile_id == 1  # type: ignore[union-attr]
    assert choose(pool, mode="round_robin", channel="email").profile_id == 4  # type: ignore[union-attr]
    assert choose(pool, mode="manual", channel="email") is None
    assert choose(pool, mode="round_robin", channel="sms", language="cs", require_language=True) is None
    assert speaks(["cs"], "cs-CZ")
    assert speaks(["cs-CZ"], "cs")
    assert not speaks(["en-US"], "en-GB")
    assert not speaks(["c"], "cs")
    assert speaks([], "")
    assert normalize_language("pt_br") == "pt-BR"
    assert normalize_language("zh-hant-tw") == "zh-Hant-TW"
    assert normalize_language("english!") is None


# --- an agent going offline --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_going_offline_returns_new_and_open_tickets_of_reassigning_teams(lost_tasks: Any) -> None:
    # given: Ada holds tickets in a reassigning team and in one that is not
    support = team("Support", reassign_offline=True)
    billing = team("Billing", reassign_offline=False)
    ada = agent("ada", teams=["Support", "Billing"])
    new, opened = (
        ticket(support, queued_at=None, assignee=ada),
        ticket(support, queued_at=None, assignee=ada, status="open"),
    )
    pending = ticket(support, queued_at=None, assignee=ada, status="pending")
    elsewhere = ticket(billing, queued_at=None, assignee=ada, status="open")
    # when: her presence becomes offline (the live layer, then the commit)
    assert do_set_presence(ada.pk, "offline", actor=None) is True
    # then: the task was queued after commit
    assert lost_tasks == [("helpdesk.tasks.agent_went_offline", (ada.pk,))]
    # when: it runs
    assert do_agent_went_offline(ada) == 2
    # then: the new and open Support tickets are back in the queue, by routing
    for t in (new, opened):
        assert (fresh(t).assignee_id, fresh(t).queued_at is not None) == (None, True)
        assert assigned_events(t)[-1] == {"old_assignee_id": ada.pk, "new_assignee_id": None, "via": "routing"}
    assert (fresh(pending).assignee_id, fresh(elsewhere).assignee_id) == (ada.pk, ada.pk)
    assert ("helpdesk.tasks.assign_queued_tickets", (support.pk,)) in lost_tasks
    # and a second run finds nothing left
    assert do_agent_went_offline(ada) == 0


def test_going_offline_does_nothing_for_an_agent_back_online(db: Any) -> None:
    # given
    support = team("Support", reassign_offline=True)
    ada = agent("ada", presence="online")
    t = ticket(support, queued_at=None, assignee=ada)
    # when: the (late) call runs while she is online again
    assert do_agent_went_offline(ada) == 0
    # then
    assert fresh(t).assignee_id == ada.pk


@pytest.mark.django_db(transaction=True)
def test_the_returned_tickets_go_to_an_online_colleague() -> None:
    # given: eager tasks run after commit
    support = team("Support", reassign_offline=True)
    ada, bo = agent("ada"), agent("bo")
    t = ticket(support, queued_at=None, assignee=ada, status="open")
    # when
    do_set_presence(ada.pk, "offline", actor=None)
    # then
    assert fresh(t).assignee_id == bo.pk
    assert [d["new_assignee_id"] for d in assigned_events(t)] == [None, bo.pk]


# --- settings -------------------------------------------------------------------------------------------


def test_saving_a_rule_says_what_is_wrong(admin: User) -> None:
    # when
    with pytest.raises(InvalidRoutingRule) as caught:
        do_save_routing_rule(None, name="  ", inbox=None, conditions={}, team=None, is_active=True, actor=admin)  # type: ignore[arg-type]
    # then
    assert caught.value.errors == ["The rule needs a name.", "Choose the team the rule sends tickets to."]
    with pytest.raises(InvalidRoutingRule) as caught:
        do_save_routing_rule(
            None,
            name="x" * 201,
            inbox=None,
            conditions={"all": [{"field": "nope"}]},
            team=team(),
            is_active=True,
            actor=admin,
        )
    assert caught.value.errors[0].startswith("A rule's name has at most 200 characters")
    assert len(caught.value.errors) >= 2  # and the condition's own sentence


def test_only_admins_change_routing(agent_user: User) -> None:
    support = team("Support")
    profile = AgentProfile.objects.get(user=agent_user)
    with pytest.raises(PermissionDenied):
        do_save_routing_rule(None, name="x", inbox=None, conditions={}, team=support, is_active=True, actor=agent_user)
    with pytest.raises(PermissionDenied):
        do_set_team_routing(
            support, routing="manual", reassign_offline=False, skills_timeout_minutes=None, actor=agent_user
        )
    with pytest.raises(PermissionDenied):
        do_set_agent_routing(profile, capacity={}, chat_capacity=3, languages=[], actor=agent_user)


@pytest.fixture
def agent_user(db: Any) -> User:
    return agent("plain")


def test_switching_a_team_to_routing_queues_its_tickets_and_back_empties_the_queue(
    admin: User, lost_tasks: Any, commit: Any
) -> None:
    # given
    support = team("Support", RoutingMode.MANUAL)
    someone = agent("sam")
    waiting, held_ticket = ticket(support, queued_at=None), ticket(support, queued_at=None, assignee=someone)
    # when
    with commit(execute=True):
        do_set_team_routing(
            support, routing="least_loaded", reassign_offline=True, skills_timeout_minutes=15, actor=admin
        )
    # then
    support.refresh_from_db()
    assert (support.routing, support.reassign_offline, support.skills_timeout_minutes) == ("least_loaded", True, 15)
    assert (fresh(waiting).queued_at is not None, fresh(held_ticket).queued_at) == (True, None)
    assert ("helpdesk.tasks.assign_queued_tickets", (support.pk,)) in lost_tasks
    # when: back to manual
    do_set_team_routing(support, routing="manual", reassign_offline=False, skills_timeout_minutes=None, actor=admin)
    # then
    assert fresh(waiting).queued_at is None
    # and nonsense is refused with sentences
    with pytest.raises(InvalidRoutingRule) as caught:
        do_set_team_routing(support, routing="random", reassign_offline=False, skills_timeout_minutes=-1, actor=admin)
    assert len(caught.value.errors) == 2


def test_agent_routing_settings_are_validated_and_normalized(admin: User) -> None:
    # given
    ada = agent("ada")
    profile = AgentProfile.objects.get(user=ada)
    # when
    saved = do_set_agent_routing(
        profile, capacity={"email": 8, "*": 4}, chat_capacity=0, languages=["cs_cz", "en", "EN"], actor=admin
    )
    # then
    assert (saved.capacity, saved.chat_capacity, saved.languages) == ({"email": 8, "*": 4}, 0, ["cs-CZ", "en"])
    # when: nonsense
    with pytest.raises(InvalidRoutingRule) as caught:
        do_set_agent_routing(
            profile, capacity={"fax": 1, "email": 1001, "api": True}, chat_capacity=51, languages=["!!"], actor=admin
        )
    # then: one sentence each
    assert len(caught.value.errors) == 5
    assert caught.value.errors[0].startswith("“fax” is not a channel")


# --- end to end: a new ticket through the change processor ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_new_ticket_is_routed_queued_and_assigned_through_the_change_processor(admin: User) -> None:
    # given: the API inbox's tickets go to Billing by rule; Billing is round robin with one agent
    from helpdesk.tests.conftest import ingest

    support, billing = team("Support", RoutingMode.MANUAL), team("Billing")
    bea = agent("bea", teams=["Billing"])
    source = inbox("api", support)
    source.settings = {"callback_url": "http://127.0.0.1:9/hook"}
    source.secrets = {"signing_secret": "s3cret"}
    source.save()
    do_save_routing_rule(None, name="API", inbox=source, conditions={}, team=billing, is_active=True, actor=admin)
    # when: a message arrives (eager tasks run after each commit)
    t = ingest(source)
    # then
    done = fresh(t)
    assert (done.team_id, done.assignee_id, done.queued_at) == (billing.pk, bea.pk, None)
    assert assigned_events(t)[-1]["via"] == "routing"
