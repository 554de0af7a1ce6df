"""Live updates leave after commit, once per transaction, and never for a rollback."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from helpdesk import realtime
from tests.factories import TicketFactory

pytestmark = pytest.mark.django_db(transaction=True)


class RecordingLayer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


@pytest.fixture
def layer(monkeypatch: Any) -> RecordingLayer:
    recording = RecordingLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: recording)
    return recording


def test_events_of_one_transaction_go_out_after_commit_in_one_hop(layer: RecordingLayer, monkeypatch: Any) -> None:
    from helpdesk.events import NoteAdded, PendingEvents

    hops = []
    real = realtime._PublishBatch.flush

    def counting_flush(self: Any) -> None:
        hops.append(len(self.items))
        real(self)

    monkeypatch.setattr(realtime._PublishBatch, "flush", counting_flush)
    ticket: Any = TicketFactory(team=None, assignee=None)
    # when
    with transaction.atomic():
        events = PendingEvents(ticket)
        events.add(NoteAdded(message_id=1))
        events.add(NoteAdded(message_id=2))
        events.write(save_seq=True)
        assert layer.sent == []
    # then
    assert hops == [2]
    assert [(g, m["seq"]) for g, m in layer.sent] == [
        (f"ticket.{ticket.pk}", 1),
        ("desk.all", 1),
        (f"ticket.{ticket.pk}", 2),
        ("desk.all", 2),
    ]


def test_rolled_back_events_are_never_published(layer: RecordingLayer) -> None:
    from helpdesk.events import NoteAdded, append_event

    ticket: Any = TicketFactory()

    def rolled_back() -> None:
        with transaction.atomic():
            append_event(ticket, NoteAdded(message_id=1))
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        rolled_back()
    with transaction.atomic():
        append_event(ticket, NoteAdded(message_id=2))
    assert [m["data"]["message_id"] for _, m in layer.sent if _.startswith("ticket.")] == [2]


def test_rolled_back_savepoint_does_not_lose_later_events(layer: RecordingLayer) -> None:
    from helpdesk.events import NoteAdded, append_event

    ticket: Any = TicketFactory()
    with transaction.atomic():
        try:
            with transaction.atomic():
                append_event(ticket, NoteAdded(message_id=1))
                raise RuntimeError("inner rollback")
        except RuntimeError:
            pass
        append_event(ticket, NoteAdded(message_id=2))
    assert [m["data"]["message_id"] for g, m in layer.sent if g.startswith("ticket.")] == [2]


def test_team_and_assignee_groups_are_included(layer: RecordingLayer, agent: Any) -> None:
    from helpdesk.events import NoteAdded, append_event
    from helpdesk.models import Team

    team = Team.objects.create(name="Billing", slug="billing")
    ticket: Any = TicketFactory(team=team, assignee=agent)
    append_event(ticket, NoteAdded(message_id=1))
    assert sorted(g for g, _ in layer.sent) == sorted(
        [f"ticket.{ticket.pk}", "desk.all", f"team.{team.pk}", f"agent.{agent.pk}"]
    )


def test_agent_messages_go_to_the_agents_group_after_commit(layer: RecordingLayer, agent: Any) -> None:
    # given
    payload = {"id": 7, "kind": "mention", "ticket_number": 1001, "text": "hi", "unread": 1}
    # when: inside a transaction
    with transaction.atomic():
        realtime.publish_to_agent(agent.pk, "notification", payload)
        assert layer.sent == []
    # then
    assert layer.sent == [(f"agent.{agent.pk}", {"type": "agent.event", "kind": "notification", "payload": payload})]


def test_rolled_back_agent_messages_are_never_published(layer: RecordingLayer, agent: Any) -> None:
    def rolled_back() -> None:
        with transaction.atomic():
            realtime.publish_to_agent(agent.pk, "notification", {"id": 1})
            realtime.publish_presence(agent.pk, presence="away", choice="away")
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        rolled_back()
    assert layer.sent == []


def test_presence_goes_to_the_agents_group(layer: RecordingLayer, agent: Any) -> None:
    realtime.publish_presence(agent.pk, presence="away", choice="online")
    assert layer.sent == [(f"agent.{agent.pk}", {"type": "presence.self", "presence": "away", "choice": "online"})]


def test_ticket_events_name_their_agent_without_a_query(
    layer: RecordingLayer, agent: Any, django_assert_num_queries: Any
) -> None:
    from helpdesk.events import NoteAdded, PendingEvents

    ticket: Any = TicketFactory(team=None, assignee=None)
    events = PendingEvents(ticket)
    event = events.add(NoteAdded(message_id=1), actor=agent)
    with django_assert_num_queries(0):
        realtime.publish_ticket_event(ticket, event)
    message = layer.sent[0][1]
    assert (message["actor_id"], message["actor_name"]) == (agent.pk, "Ada Agent")
    # and an event by nobody (a customer message) names no agent
    event = events.add(NoteAdded(message_id=2))
    realtime.publish_ticket_event(ticket, event)
    assert (layer.sent[-1][1]["actor_id"], layer.sent[-1][1]["actor_name"]) == (None, "")
