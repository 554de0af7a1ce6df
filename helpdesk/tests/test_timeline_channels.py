"""The ticket page's channel items: quoted replies, reactions, edits, unsupported messages,
skipped media and calls; the raw event download; logging a call by hand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_inbox.models import InboundEvent, Inbox
from helpdesk.attachments import store_attachment
from helpdesk.models import Call, Direction, Message, Team, Ticket, TicketEvent
from helpdesk.tests.conftest import logged_in
from tests.factories import InboxFactory, MessageFactory, TicketFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def inbox(db: Any) -> Inbox:
    return cast(Inbox, InboxFactory(kind="api", name="Shop API"))


@pytest.fixture
def ticket(inbox: Inbox, agent: Any) -> Ticket:
    return cast(Ticket, TicketFactory(inbox=inbox, team=Team.objects.get(slug="support")))


def message(ticket: Ticket, **fields: Any) -> Message:
    return cast(Message, MessageFactory(ticket=ticket, inbox=ticket.inbox, **fields))


def page(user: Any, ticket: Ticket) -> str:
    response = logged_in(user).get(f"/desk/tickets/{ticket.number}/")
    assert response.status_code == 200
    return response.content.decode()


def add_channel_messages(ticket: Ticket, n: int, start: int) -> None:
    for i in range(start, start + n):
        quoted = message(ticket, external_id=f"q-{i}", text=f"Original question {i}")
        reply = message(
            ticket,
            external_id=f"r-{i}",
            text=f"Answer {i}",
            metadata={
                "reply_to": {"external_id": f"q-{i}"},
                "reactions": [{"emoji": "👍", "by": "customer", "at": "2026-12-01T10:00:00+00:00"}],
                "edits": [{"text": f"First draft {i}", "at": "2026-12-01T09:00:00+00:00"}],
            },
        )
        message(ticket, external_id=f"u-{i}", text="", metadata={"unsupported": {"type": "sticker"}})
        Call.objects.create(
            ticket=ticket,
            customer=ticket.customer,
            direction="inbound",
            status="answered",
            duration_seconds=65,
            message=reply,
        )
        Call.objects.create(ticket=ticket, customer=ticket.customer, direction="outbound", status="missed")
        assert quoted.pk


def test_message_channel_items_render(ticket: Ticket, agent: Any) -> None:
    quoted = message(ticket, external_id="wamid.1", text="Where is <my> parcel?")
    reply = message(
        ticket,
        external_id="wamid.2",
        text="Now it is here",
        metadata={
            "reply_to": {"external_id": "wamid.1"},
            "reactions": [{"emoji": "❤️", "by": "customer", "at": "2026-12-01T10:00:00+00:00"}, {"by": "x"}],
            "edits": [{"text": "Not <here> yet", "at": "2026-12-01T09:00:00+00:00"}],
            "media_skipped": [{"filename": "huge.mp4", "reason": "over the size limit"}],
        },
    )
    missing = message(
        ticket, external_id="wamid.3", text="Reply to the unknown", metadata={"reply_to": {"external_id": "wamid.gone"}}
    )
    unsupported = message(ticket, external_id="wamid.4", text="", metadata={"unsupported": {"type": "<poll>"}})
    html = page(agent, ticket)
    assert quoted.author_customer is not None
    assert (
        f'<a href="#m{quoted.pk}">In reply to {quoted.author_customer.display_name}</a>: Where is &lt;my&gt; parcel?'
        in html
    )
    assert '<li class="reaction" title="customer">❤️</li>' in html
    assert html.count('class="reaction"') == 1  # the one without an emoji is not shown
    assert "<summary>edited</summary>" in html
    assert "Not &lt;here&gt; yet" in html
    assert "huge.mp4 <small>— not stored: over the size limit</small>" in html
    assert "In reply to a message that is not on this desk" in html
    assert "Unsupported message (&lt;poll&gt;)." in html
    assert f'href="/desk/messages/{unsupported.pk}/event/"' in html
    assert reply.pk
    assert missing.pk


def test_quote_never_shows_another_customers_message(ticket: Ticket, inbox: Inbox, agent: Any) -> None:
    other = cast(Ticket, TicketFactory(inbox=inbox, team=ticket.team))
    message(other, external_id="secret-1", text="Another customer's secret")
    message(ticket, external_id="mine-1", text="Hi", metadata={"reply_to": {"external_id": "secret-1"}})
    html = page(agent, ticket)
    assert "Another customer" not in html
    assert "In reply to a message that is not on this desk" in html


def test_call_items_render(ticket: Ticket, agent: Any) -> None:
    note = message(ticket, direction=Direction.NOTE, author_customer=None, author_agent=agent, text="Called back")
    recording = store_attachment(note, "call.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00", "audio/mpeg")
    Call.objects.create(
        ticket=ticket,
        customer=ticket.customer,
        direction="inbound",
        status="answered",
        from_number="+420601123456",
        to_number="+420222333444",
        duration_seconds=245,
        recording=recording,
        transcription="Hello, my <order>",
        message=note,
    )
    Call.objects.create(
        ticket=ticket,
        customer=ticket.customer,
        direction="outbound",
        status="missed",
        started_at=timezone.now() - timedelta(minutes=5),
    )
    html = page(agent, ticket)
    assert "<strong>Incoming call</strong>" in html
    assert '<span class="call-status">Answered</span> <span class="call-duration">4:05</span>' in html
    assert "+420601123456 → +420222333444" in html
    assert f'<audio controls preload="none" src="/desk/attachments/{recording.pk}/"></audio>' in html
    assert "Hello, my &lt;order&gt;" in html
    # A call without a message of its own is an item of the timeline.
    assert '<article class="msg call"' in html
    assert "<strong>Outgoing call</strong>" in html
    assert '<span class="call-status">Missed</span>' in html


def test_timeline_queries_do_not_grow_with_channel_messages(ticket: Ticket, agent: Any) -> None:
    client = logged_in(agent)
    url = f"/desk/tickets/{ticket.number}/"
    add_channel_messages(ticket, 2, 0)
    client.get(url)  # warm up (session, caches)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    add_channel_messages(ticket, 6, 10)
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert response.content.decode().count("Unsupported message (sticker)") == 8
    assert response.content.decode().count("<audio") == 0
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries][-30:]


# --- the raw event -------------------------------------------------------------------------


def test_message_event_raw_is_a_download(ticket: Ticket, agent: Any) -> None:
    unsupported = message(ticket, external_id="wamid.9", text="", metadata={"unsupported": {"type": "poll"}})
    InboundEvent.objects.create(
        inbox=ticket.inbox, dedupe_key="wamid.9", payload=b'{"type": "poll", "x": "<script>"}', message=unsupported
    )
    response = logged_in(agent).get(f"/desk/messages/{unsupported.pk}/event/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="message-{unsupported.pk}-event.txt"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content == b'{"type": "poll", "x": "<script>"}'


def test_message_event_raw_permissions(ticket: Ticket, agent: Any, billing_agent: Any, client: Any) -> None:
    unsupported = message(ticket, external_id="wamid.9", text="")
    InboundEvent.objects.create(inbox=ticket.inbox, dedupe_key="wamid.9", payload=b"{}", message=unsupported)
    url = f"/desk/messages/{unsupported.pk}/event/"
    # Not signed in: the login page; another team's agent: not found (as for the ticket).
    assert client.get(url).status_code == 302
    assert logged_in(billing_agent).get(url).status_code in (403, 404)
    assert (
        logged_in(billing_agent).get(f"/desk/tickets/{ticket.number}/").status_code
        == logged_in(billing_agent).get(url).status_code
    )
    no_event = message(ticket, external_id="wamid.10", text="x")
    assert logged_in(agent).get(f"/desk/messages/{no_event.pk}/event/").status_code == 404


# --- logging a call ------------------------------------------------------------------------


def log(user: Any, ticket: Ticket, **data: str) -> Any:
    return logged_in(user).post(f"/desk/tickets/{ticket.number}/calls/log/", data)


def test_log_call_creates_call_and_note(ticket: Ticket, agent: Any) -> None:
    response = log(
        agent,
        ticket,
        direction="outbound",
        status="answered",
        duration="4:05",
        number="+420 601 123 456",
        notes="Promised a refund",
    )
    assert response.status_code == 302
    call = Call.objects.get(ticket=ticket)
    assert (call.direction, call.status, call.duration_seconds, call.to_number, call.from_number) == (
        "outbound",
        "answered",
        245,
        "+420 601 123 456",
        "",
    )
    assert call.logged_by == agent
    assert call.inbox is None
    assert call.notes == "Promised a refund"
    assert call.message is not None
    assert call.message.direction == Direction.NOTE
    assert call.message.text == "Outgoing call, 4:05, +420 601 123 456 — Promised a refund"
    logged = TicketEvent.objects.get(ticket=ticket, type="call_logged")
    assert logged.data["call_id"] == call.pk
    assert logged.data["manual"] is True
    html = page(agent, ticket)
    assert '<span class="call-duration">4:05</span>' in html
    assert "logged by" in html


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"direction": "sideways"}, "Choose whether the call was incoming or outgoing."),
        ({"direction": "inbound", "status": "voicemail"}, "A logged call is answered or missed."),
        ({"direction": "inbound", "duration": "four"}, "Write the duration as minutes:seconds"),
        ({"direction": "inbound", "duration": "3:75"}, "Write the duration as minutes:seconds"),
        ({"direction": "inbound", "duration": "1441:00"}, "A call lasts at most 24 hours."),
        ({"direction": "inbound", "number": "call <me>"}, "The number may hold only digits"),
        ({"direction": "inbound", "notes": "x" * 5001}, "The notes are too long"),
    ],
)
def test_log_call_validation(ticket: Ticket, agent: Any, data: dict[str, str], error: str) -> None:
    response = log(agent, ticket, **data)
    assert response.status_code == 400
    html = response.content.decode()
    assert f"Call not logged: {error}" in html
    assert '<details class="log-call" id="log-call" open>' in html
    assert not Call.objects.exists()
    assert not Message.objects.filter(ticket=ticket, direction=Direction.NOTE).exists()


def test_log_call_permission_as_reply(ticket: Ticket, light_agent: Any, billing_agent: Any) -> None:
    # A light agent sees the ticket but may not reply: nor log a call.
    reply = logged_in(light_agent).post(f"/desk/tickets/{ticket.number}/reply/", {"text": "hi"})
    assert reply.status_code == 403
    assert log(light_agent, ticket, direction="inbound").status_code == 403
    # Another team's agent does not see the ticket at all.
    assert log(billing_agent, ticket, direction="inbound").status_code == 404
    assert not Call.objects.exists()
    assert 'id="log-call"' not in page(light_agent, ticket)


def test_log_call_needs_post(ticket: Ticket, agent: Any) -> None:
    assert logged_in(agent).get(f"/desk/tickets/{ticket.number}/calls/log/").status_code == 405


def test_live_timeline_fragment_shows_channel_items(ticket: Ticket, agent: Any) -> None:
    message(ticket, external_id="wamid.5", text="", metadata={"unsupported": {"type": "location"}})
    Call.objects.create(ticket=ticket, customer=ticket.customer, direction="inbound", status="voicemail")
    response = logged_in(agent).get(f"/desk/tickets/{ticket.number}/timeline/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unsupported message (location)." in html
    assert '<span class="call-status">Voicemail</span>' in html
