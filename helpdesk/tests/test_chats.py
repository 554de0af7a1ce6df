"""Live chat in the workspace: routing, the queue, end, transfer and availability (helpdesk/actions/chats.py)."""

from __future__ import annotations

import threading
from datetime import timedelta
from itertools import count
from typing import Any, cast

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from channels_inbox.models import ChatConversation, ChatStatus, ChatVisitor, Inbox
from customers.models import Customer, Identity, IdentityKind
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.chats import (
    do_assign_waiting_chats,
    do_end_chat,
    do_route_chat,
    do_set_chat_availability,
    do_transfer_chat,
)
from helpdesk.actions.tickets import do_assign_ticket
from helpdesk.chat_queue import DEFAULT_WAIT_SECONDS, estimate_seconds, queue_info
from helpdesk.models import AgentProfile, Message, Team, Ticket, TicketEvent, TicketStatus, User
from helpdesk.models.message import Direction
from tests.factories import CustomerFactory, InboxFactory, MessageFactory, TicketFactory

_numbers = count(1)


# --- a small factory of chat tickets (the real models; no widget backend needed) ---------------


def chat_inbox(team: Team | None = None, name: str = "") -> Inbox:
    n = next(_numbers)
    return cast(
        Inbox, InboxFactory(kind="chat", name=name or f"Chat {n}", slug=f"chat-{n}", settings={}, secrets={}, team=team)
    )


def chat_ticket(
    inbox: Inbox,
    *,
    queued_at: Any = None,
    text: str = "Hello, is anyone there?",
    **visitor_fields: Any,
) -> ChatConversation:
    """A waiting chat: visitor (a customer with a chat_visitor identity), ticket, one visitor message."""
    customer = cast(Customer, CustomerFactory(name=visitor_fields.pop("name", "Visitor")))
    visitor = ChatVisitor.objects.create(inbox=inbox, customer=customer, **visitor_fields)
    Identity.objects.create(customer=customer, kind=IdentityKind.CHAT_VISITOR, value=visitor.public_id.hex)
    ticket = cast(
        Ticket,
        TicketFactory(
            inbox=inbox, channel="chat", customer=customer, team=inbox.team, status=TicketStatus.NEW, subject=text[:50]
        ),
    )
    MessageFactory(ticket=ticket, channel="chat", direction=Direction.INBOUND, text=text)
    return ChatConversation.objects.create(
        ticket=ticket,
        inbox=inbox,
        visitor=visitor,
        status=ChatStatus.WAITING,
        queued_at=queued_at or timezone.now(),
        started_url="https://shop.example/pricing",
    )


def chat_agent(email: str, *, teams: list[str] | None = None, capacity: int = 3, **profile: Any) -> User:
    """An agent who is online and available for chat (override with presence=…, chat_available=…)."""
    user = do_create_agent(email=email, name=email.split("@")[0].capitalize(), teams=teams or ["Support"])
    fields = {"presence": "online", "chat_available": True, "chat_capacity": capacity, **profile}
    AgentProfile.objects.filter(user=user).update(**fields)
    return user


def active_chats(user: User) -> int:
    return ChatConversation.objects.filter(status=ChatStatus.ACTIVE, ticket__assignee=user).count()


def refreshed(conversation: ChatConversation) -> ChatConversation:
    return ChatConversation.objects.select_related("ticket", "inbox").get(pk=conversation.pk)


@pytest.fixture
def commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Run what the actions queue after commit (tests run inside a transaction that never commits)."""
    return django_capture_on_commit_callbacks


@pytest.fixture
def support(db: Any) -> Team:
    team, _ = Team.objects.get_or_create(slug="support", defaults={"name": "Support"})
    return team


@pytest.fixture
def inbox(support: Team) -> Inbox:
    return chat_inbox(support)


# --- routing -------------------------------------------------------------------------------------


def test_round_robin_over_three_agents_then_the_least_recently_assigned(inbox: Inbox) -> None:
    # given
    agents = [chat_agent(f"rr{i}@example.com") for i in range(3)]
    chats = [chat_ticket(inbox) for _ in range(4)]
    # when
    first = [do_route_chat(c) for c in chats[:3]]
    # then: one each, never-assigned agents by profile id
    assert [u.pk if u else None for u in first] == [a.pk for a in agents]
    assert [active_chats(a) for a in agents] == [1, 1, 1]
    # when: the next chat goes to the agent assigned longest ago
    fourth = do_route_chat(chats[3])
    # then
    assert fourth is not None
    assert fourth.pk == agents[0].pk
    assert [active_chats(a) for a in agents] == [2, 1, 1]


def test_routing_writes_through_the_assignment_action(inbox: Inbox) -> None:
    # given
    agent = chat_agent("ada@example.com")
    chat = chat_ticket(inbox)
    # when
    do_route_chat(chat)
    # then
    chat = refreshed(chat)
    assert chat.status == ChatStatus.ACTIVE
    assert chat.assigned_at is not None
    assert chat.ticket.assignee_id == agent.pk
    event = TicketEvent.objects.filter(ticket=chat.ticket, type="assigned").get()
    assert event.data == {"old_assignee_id": None, "new_assignee_id": agent.pk, "via": "chat"}
    assert event.actor_id is None
    assert agent.notifications.filter(ticket=chat.ticket, kind="assigned").exists()
    assert AgentProfile.objects.get(user=agent).last_chat_assigned_at == chat.assigned_at


def test_capacity_is_respected_and_the_queue_fills_when_a_chat_ends(inbox: Inbox, commit: Any) -> None:
    # given
    agent = chat_agent("ada@example.com", capacity=2)
    chats = [chat_ticket(inbox, queued_at=timezone.now() - timedelta(seconds=30 - i)) for i in range(3)]
    # when
    routed = [do_route_chat(c) for c in chats]
    # then
    assert [bool(u) for u in routed] == [True, True, False]
    assert refreshed(chats[2]).status == ChatStatus.WAITING
    # when: a chat ends (the freed place is filled after commit: eager Celery in tests)
    with commit(execute=True):
        do_end_chat(chats[0], actor=agent, by="agent")
    # then
    assert refreshed(chats[2]).status == ChatStatus.ACTIVE
    assert active_chats(agent) == 2


@pytest.mark.parametrize(
    "profile",
    [{"chat_available": False}, {"presence": "offline"}, {"presence": "away"}, {"role": "light_agent"}],
    ids=["not-available", "offline", "away", "light-agent"],
)
def test_agents_who_cannot_take_chats_are_skipped(inbox: Inbox, profile: dict[str, Any]) -> None:
    # given
    chat_agent("skip@example.com", **profile)
    chat = chat_ticket(inbox)
    # when
    assert do_route_chat(chat) is None
    # then
    assert refreshed(chat).status == ChatStatus.WAITING
    assert refreshed(chat).ticket.assignee_id is None


def test_only_members_of_the_chats_team_get_it(inbox: Inbox) -> None:
    # given
    chat_agent("bill@example.com", teams=["Billing"])
    member = chat_agent("sup@example.com", teams=["Support"])
    chat = chat_ticket(inbox)
    # when
    got = do_route_chat(chat)
    # then
    assert got is not None
    assert got.pk == member.pk


def test_an_inbox_without_a_team_goes_to_any_agent(db: Any) -> None:
    # given
    anyone = chat_agent("bill@example.com", teams=["Billing"])
    chat = chat_ticket(chat_inbox(None))
    # when / then
    got = do_route_chat(chat)
    assert got is not None
    assert got.pk == anyone.pk


def test_waiting_chats_are_assigned_oldest_first_when_an_agent_becomes_available(inbox: Inbox, commit: Any) -> None:
    # given: nobody available; three chats wait
    agent = chat_agent("ada@example.com", capacity=2, chat_available=False)
    now = timezone.now()
    newest, oldest, middle = (chat_ticket(inbox, queued_at=now - timedelta(seconds=s)) for s in (10, 30, 20))
    for chat in (newest, oldest, middle):
        assert do_route_chat(chat) is None
    # when
    with commit(execute=True):
        do_set_chat_availability(agent, available=True, actor=agent)
    # then
    assert refreshed(oldest).status == ChatStatus.ACTIVE
    assert refreshed(middle).status == ChatStatus.ACTIVE
    assert refreshed(newest).status == ChatStatus.WAITING


def test_an_agent_going_offline_keeps_their_chats(inbox: Inbox) -> None:
    # given
    agent = chat_agent("ada@example.com")
    chat = chat_ticket(inbox)
    do_route_chat(chat)
    # when
    AgentProfile.objects.filter(user=agent).update(presence="offline")
    do_assign_waiting_chats()
    second = chat_ticket(inbox)
    # then
    assert refreshed(chat).ticket.assignee_id == agent.pk
    assert refreshed(chat).status == ChatStatus.ACTIVE
    assert do_route_chat(second) is None


def test_the_sweep_follows_edits_of_the_ticket_by_hand(inbox: Inbox, admin_agent: Any) -> None:
    # given: one chat assigned by hand while waiting, one unassigned by hand while active
    agent = chat_agent("ada@example.com", chat_available=False)
    by_hand = chat_ticket(inbox)
    do_assign_ticket(by_hand.ticket, assignee=agent, actor=admin_agent)
    AgentProfile.objects.filter(user=agent).update(chat_available=True)
    dropped = chat_ticket(inbox)
    do_route_chat(dropped)
    do_assign_ticket(refreshed(dropped).ticket, assignee=None, actor=admin_agent)
    AgentProfile.objects.filter(user=agent).update(chat_available=False)
    # when
    do_assign_waiting_chats()
    # then
    assert refreshed(by_hand).status == ChatStatus.ACTIVE
    assert refreshed(dropped).status == ChatStatus.WAITING


# --- the queue -----------------------------------------------------------------------------------


def test_queue_position_and_default_estimate(inbox: Inbox) -> None:
    # given: two agents available, both full
    for i in range(2):
        chat_agent(f"full{i}@example.com", capacity=1)
        do_route_chat(chat_ticket(inbox, queued_at=timezone.now() - timedelta(hours=2)))
    ChatConversation.objects.update(assigned_at=None)  # no history in the last hour
    now = timezone.now()
    waiting = [chat_ticket(inbox, queued_at=now - timedelta(seconds=30 - i)) for i in range(3)]
    other_inbox = chat_ticket(chat_inbox(None), queued_at=now - timedelta(minutes=5))
    # when
    infos = [queue_info(c) for c in waiting]
    # then: position × 120 s ÷ 2 agents
    assert infos == [
        {"position": 1, "estimate_seconds": 60},
        {"position": 2, "estimate_seconds": 120},
        {"position": 3, "estimate_seconds": 180},
    ]
    # an inbox without a team: every available agent counts (the same two)
    assert queue_info(other_inbox) == {"position": 1, "estimate_seconds": int(DEFAULT_WAIT_SECONDS / 2)}
    assert queue_info(refreshed(ChatConversation.objects.filter(status="active").first())) is None  # type: ignore[arg-type]


def test_queue_estimate_uses_the_median_wait_of_the_last_hour(inbox: Inbox) -> None:
    # given: chats assigned in the last hour after waits of 30, 60 and 600 s (median 60),
    # one assigned two hours ago after an hour (ignored); one available agent
    chat_agent("ada@example.com", capacity=1, chat_available=False)
    now = timezone.now()
    for wait, ago in ((30, 100), (60, 200), (600, 300), (3600, 7200)):
        done = chat_ticket(inbox)
        ChatConversation.objects.filter(pk=done.pk).update(
            status="ended",
            queued_at=now - timedelta(seconds=ago + wait),
            assigned_at=now - timedelta(seconds=ago),
        )
    AgentProfile.objects.update(chat_available=True, chat_capacity=0)  # available, but no free place
    first, second = (chat_ticket(inbox, queued_at=now - timedelta(seconds=s)) for s in (20, 10))
    # when / then: 2 × 60 s ÷ 1 agent
    assert queue_info(second) == {"position": 2, "estimate_seconds": 120}
    assert queue_info(first) == {"position": 1, "estimate_seconds": 60}


def test_estimate_formula() -> None:
    assert estimate_seconds(3, None, 0) == 360
    assert estimate_seconds(3, 45.5, 2) == 69
    assert estimate_seconds(1, 0.0, 5) == 0


def test_queue_changes_are_published_after_commit(inbox: Inbox, monkeypatch: Any, commit: Any) -> None:
    # given
    sent: list[tuple[str, dict[str, Any]]] = []

    class Layer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            sent.append((group, message))

    monkeypatch.setattr("helpdesk.realtime.get_channel_layer", lambda: Layer())
    chat_agent("ada@example.com")
    chat = chat_ticket(inbox)
    # when
    with commit(execute=False) as callbacks:
        do_route_chat(chat)
    assert not sent
    for callback in callbacks:
        callback()
    # then
    queue_messages = [(g, m) for g, m in sent if m["type"] == "chat.queue"]
    assert queue_messages == [(f"chatqueue.{inbox.pk}", {"type": "chat.queue", "inbox_id": inbox.pk})]


# --- end and transfer ----------------------------------------------------------------------------


def test_ending_a_chat(inbox: Inbox) -> None:
    # given
    agent = chat_agent("ada@example.com")
    chat = chat_ticket(inbox)
    do_route_chat(chat)
    # when
    ended = do_end_chat(chat, actor=agent, by="agent")
    again = do_end_chat(chat, actor=agent, by="agent")
    # then
    chat = refreshed(chat)
    assert ended.status == again.status == chat.status == ChatStatus.ENDED
    assert chat.ended_at is not None
    assert chat.ticket.status == TicketStatus.SOLVED
    events = list(TicketEvent.objects.filter(ticket=chat.ticket, type="chat_ended").values_list("data", "actor_id"))
    assert events == [({"by": "agent"}, agent.pk)]


def test_the_visitor_ends_a_waiting_chat(inbox: Inbox) -> None:
    # given
    chat = chat_ticket(inbox)
    # when
    do_end_chat(chat, actor=None, by="visitor")
    # then
    chat = refreshed(chat)
    assert chat.status == ChatStatus.ENDED
    assert chat.ticket.status == TicketStatus.SOLVED
    assert TicketEvent.objects.get(ticket=chat.ticket, type="chat_ended").data == {"by": "visitor"}


def test_an_agent_outside_the_team_may_not_end_it(db: Any) -> None:
    # given
    inbox = chat_inbox(Team.objects.create(name="Billing", slug="billing"))
    outsider = chat_agent("sup@example.com", teams=["Support"])
    chat = chat_ticket(inbox)
    # when / then
    with pytest.raises(PermissionDenied):
        do_end_chat(chat, actor=outsider, by="agent")
    assert refreshed(chat).status == ChatStatus.WAITING


def test_transfer_to_an_agent_even_at_capacity(inbox: Inbox) -> None:
    # given
    ada = chat_agent("ada@example.com")
    bea = chat_agent("bea@example.com", capacity=1)
    do_route_chat(chat_ticket(inbox))  # ada (id order)
    do_route_chat(chat_ticket(inbox))  # bea: now full
    chat = chat_ticket(inbox)
    assert do_route_chat(chat) is not None
    assert refreshed(chat).ticket.assignee_id == ada.pk
    # when
    do_transfer_chat(refreshed(chat), actor=ada, to_agent=bea)
    # then
    assert refreshed(chat).ticket.assignee_id == bea.pk
    assert refreshed(chat).status == ChatStatus.ACTIVE
    assert active_chats(bea) == 2


def test_transfer_to_a_team_requeues_it_for_that_team(inbox: Inbox, commit: Any) -> None:
    # given
    ada = chat_agent("ada@example.com", teams=["Support"])
    bill = chat_agent("bill@example.com", teams=["Billing"], chat_available=False)
    chat = chat_ticket(inbox)
    do_route_chat(chat)
    billing = Team.objects.get(slug="billing")
    # when: nobody of Billing is available
    with commit(execute=True):
        do_transfer_chat(refreshed(chat), actor=ada, to_team=billing)
    # then
    chat = refreshed(chat)
    assert chat.status == ChatStatus.WAITING
    assert chat.ticket.assignee_id is None
    assert chat.ticket.team_id == billing.pk
    # when: a Billing agent becomes available
    with commit(execute=True):
        do_set_chat_availability(bill, available=True, actor=bill)
    # then: routed to them, not back to Ada of Support
    assert refreshed(chat).ticket.assignee_id == bill.pk


def test_transfer_refusals(inbox: Inbox, light_agent: Any) -> None:
    # given
    ada = chat_agent("ada@example.com")
    chat = chat_ticket(inbox)
    do_route_chat(chat)
    # when / then
    with pytest.raises(ValueError, match="agent or a team"):
        do_transfer_chat(refreshed(chat), actor=ada)
    with pytest.raises(ValueError, match="does not take chats"):
        do_transfer_chat(refreshed(chat), actor=ada, to_agent=light_agent)
    do_end_chat(chat, actor=ada, by="agent")
    with pytest.raises(ValueError, match="ended"):
        do_transfer_chat(refreshed(chat), actor=ada, to_agent=ada)


# --- availability --------------------------------------------------------------------------------


def test_availability_and_capacity(inbox: Inbox, light_agent: Any, admin_agent: Any) -> None:
    # given
    agent = chat_agent("ada@example.com", chat_available=False)
    # when
    result = do_set_chat_availability(agent, available=True, capacity=5, actor=agent)
    # then
    profile = AgentProfile.objects.get(user=agent)
    assert (result.available, result.capacity) == (True, 5) == (profile.chat_available, profile.chat_capacity)
    for bad in (0, 21):
        with pytest.raises(ValueError, match="1 to 20"):
            do_set_chat_availability(agent, available=True, capacity=bad, actor=agent)
    with pytest.raises(PermissionDenied):
        do_set_chat_availability(light_agent, available=True, actor=light_agent)
    with pytest.raises(PermissionDenied):
        do_set_chat_availability(agent, available=False, actor=light_agent)
    assert do_set_chat_availability(agent, available=False, actor=admin_agent).available is False


# --- concurrency (PostgreSQL) --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_routing_never_puts_an_agent_over_capacity() -> None:
    # given: three agents with two places each, thirty waiting chats
    team = Team.objects.create(name="Support", slug="support")
    inbox = chat_inbox(team)
    agents = [chat_agent(f"c{i}@example.com", capacity=2) for i in range(3)]
    chats = [chat_ticket(inbox) for _ in range(30)]
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            if i % 2:
                do_assign_waiting_chats()
            else:
                for chat in chats[i::6]:
                    do_route_chat(chat)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then
    assert not errors, errors
    assert [active_chats(a) for a in agents] == [2, 2, 2]
    assert ChatConversation.objects.filter(status=ChatStatus.WAITING).count() == 24
    assert Message.objects.filter(ticket__assignee__isnull=False).count() == 6
