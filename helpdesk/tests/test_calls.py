"""do_log_call: an agent logs a call by hand (voice-inbox tests: not written yet)."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk.actions.calls import do_log_call
from helpdesk.models import Direction, TicketEvent
from helpdesk.models.call import Call
from helpdesk.tests.conftest import new_ticket

pytestmark = pytest.mark.django_db


def test_log_call_writes_call_note_and_event(agent: Any) -> None:
    ticket = new_ticket()
    call = do_log_call(ticket, actor=agent, direction="outbound", duration_seconds=245, notes="Explained refund")
    call.refresh_from_db()
    assert (call.inbox_id, call.logged_by_id, call.status, call.duration_seconds) == (None, agent.pk, "answered", 245)
    assert call.message is not None
    assert call.message.direction == Direction.NOTE
    assert call.message.text == "Outgoing call, 4:05 — Explained refund"
    types = list(TicketEvent.objects.filter(ticket=ticket).order_by("seq").values_list("type", "data"))
    assert types[-1][1] == {"call_id": call.pk, "direction": "outbound", "status": "answered", "manual": True}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"duration_seconds": -1}, "negative"),
        ({"direction": "sideways"}, "direction"),
        ({"status": "lost"}, "status"),
        ({"notes": "x" * 5001}, "longer"),
    ],
)
def test_log_call_rejects_bad_input(agent: Any, kwargs: dict[str, Any], error: str) -> None:
    ticket = new_ticket()
    values: dict[str, Any] = {"direction": "outbound", "duration_seconds": 10, "notes": "n"} | kwargs
    with pytest.raises(ValueError, match=error):
        do_log_call(ticket, actor=agent, **values)
    assert Call.objects.count() == 0
