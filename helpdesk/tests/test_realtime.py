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
