"""The desk websocket through the real ASGI stack: origin check, session auth, replay, live events."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client

from conftest import api_payload, post_signed
from helpdesk.actions.replies import do_add_note
from helpdesk.actions.ticket_fields import do_change_team
from helpdesk.actions.tickets import do_change_status
from helpdesk.asgi import application
from helpdesk.models import Team, Ticket, User
from helpdesk.tests.conftest import ingest

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
# Generous for a Redis round trip; only waited out when a frame is missing.
TIMEOUT = 3
# How long "nothing arrives" is watched for.
QUIET = 0.3


class WebsocketCommunicator(ApplicationCommunicator):
    """A websocket client for an ASGI app, like channels.testing's.

    `channels.testing` cannot be imported here: its package imports daphne for the live
    server test case, and daphne is not a dependency (uvicorn serves websockets).
    """

    def __init__(self, app: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers or [], "subprotocols": []}
        super().__init__(app, scope)

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, response.get("subprotocol")

    async def send_to(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send_input({"type": "websocket.receive", "text": text_data})
        else:
            await self.send_input({"type": "websocket.receive", "bytes": bytes_data})

    async def send_json_to(self, data: Any) -> None:
        await self.send_to(text_data=json.dumps(data))

    async def receive_json_from(self, timeout: float = 1) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


@pytest.fixture(autouse=True)
def _private_channel_layer(settings: Any) -> None:
    """A channel layer of this test's own: a fresh in-memory one, or on Redis a private
    prefix, so other test processes publishing to the same group names (ticket.1,
    desk.all) on the same Redis are not heard here. Changing the setting resets the layers."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if layers["default"]["BACKEND"].startswith("channels_redis"):
        layers["default"].setdefault("CONFIG", {})["prefix"] = f"test-{uuid.uuid4().hex[:12]}"
    settings.CHANNEL_LAYERS = layers


def session_headers(user: Any) -> list[tuple[bytes, bytes]]:
    """The headers a signed-in browser sends: its session cookie and the site's origin."""
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return [ORIGIN, (b"cookie", f"{name}={client.cookies[name].value}".encode())]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


async def connected(headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/desk/", headers=headers)
    ok, detail = await communicator.connect(timeout=TIMEOUT)
    assert ok, detail
    return communicator


async def receive(communicator: WebsocketCommunicator) -> dict[str, Any]:
    frame: dict[str, Any] = await communicator.receive_json_from(timeout=TIMEOUT)
    return frame


async def subscribe(communicator: WebsocketCommunicator, number: int, last_seq: int = 0) -> dict[str, Any]:
    await communicator.send_json_to({"action": "subscribe_ticket", "number": number, "last_seq": last_seq})
    return await receive(communicator)


def db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return database_sync_to_async(fn)


# --- connecting ------------------------------------------------------------------------------


def test_unauthenticated_connection_is_closed() -> None:
    async def scenario() -> None:
        # given: no session cookie, or one that names no session
        for headers in ([ORIGIN], [ORIGIN, (b"cookie", b"sessionid=forged")]):
            communicator = WebsocketCommunicator(application, "/ws/desk/", headers=headers)
            # when
            ok, code = await communicator.connect(timeout=TIMEOUT)
            # then
            assert (ok, code) == (False, 4403)

    run(scenario)


def test_signed_in_user_without_agent_profile_is_closed() -> None:
    # given
    visitor = User.objects.create_user("visitor", "visitor@example.com", "pw-visitor-123")
    headers = session_headers(visitor)

    async def scenario() -> None:
        # when
        ok, code = await WebsocketCommunicator(application, "/ws/desk/", headers=headers).connect(timeout=TIMEOUT)
        # then
        assert (ok, code) == (False, 4403)

    run(scenario)


@pytest.mark.parametrize("origin", [None, b"http://evil.example", b"null"])
def test_connection_from_a_foreign_or_no_origin_is_refused(agent: Any, origin: bytes | None) -> None:
    # given: a valid session, sent by a page of another site (cross-site websocket hijacking)
    headers = [h for h in session_headers(agent) if h[0] != b"origin"]
    if origin is not None:
        headers.append((b"origin", origin))

    async def scenario() -> None:
        # when
        ok, _ = await WebsocketCommunicator(application, "/ws/desk/", headers=headers).connect(timeout=TIMEOUT)
        # then
        assert not ok

    run(scenario)


# --- subscribing and replay --------------------------------------------------------------------


def test_subscribe_replays_the_events_in_seq_order(agent: Any, api_inbox: Any) -> None:
    # given: a ticket with some history
    ticket = ingest(api_inbox, "Hello")
    ingest(api_inbox, "Anyone there?")
    do_add_note(ticket, actor=agent, text="on it")
    do_change_status(ticket, status="pending", actor=agent)
    ticket.refresh_from_db()
    expected = list(ticket.events.order_by("seq").values_list("seq", "type"))
    assert len(expected) == 5
    headers = session_headers(agent)

    async def scenario() -> None:
        communicator = await connected(headers)
        # when
        ack = await subscribe(communicator, ticket.number, last_seq=0)
        replayed = [await receive(communicator) for _ in expected]
        # then
        assert ack == {"type": "subscribed", "number": ticket.number, "seq": 5}
        assert [(f["seq"], f["event"]) for f in replayed] == expected
        assert all(f["type"] == "ticket.event" and f["replayed"] for f in replayed)
        assert all(f["ticket_id"] == ticket.pk and f["number"] == ticket.number for f in replayed)
        assert replayed[-1]["data"] == {"old": "new", "new": "pending"}
        assert await communicator.receive_nothing(QUIET)

        # when: a reconnecting client that already has seq 1..3
        again = await connected(headers)
        await subscribe(again, ticket.number, last_seq=3)
        # then
        assert [(await receive(again))["seq"] for _ in range(2)] == [4, 5]
        assert await again.receive_nothing(QUIET)
        await communicator.disconnect()
        await again.disconnect()

    run(scenario)


def test_new_inbound_message_arrives_live_with_the_next_seq(agent: Any, api_inbox: Any) -> None:
    # given: a ticket made through the webhook, and an agent watching it
    resp = post_signed(Client(), api_inbox, api_payload())
    assert resp.status_code == 200, resp.content
    ticket = Ticket.objects.get()
    assert ticket.last_event_seq == 2
    headers = session_headers(agent)

    async def scenario() -> None:
        communicator = await connected(headers)
        ack = await subscribe(communicator, ticket.number, last_seq=2)
        assert ack["seq"] == 2
        assert await communicator.receive_nothing(QUIET)
        # when: the customer writes again; the webhook stores it, a task threads it, after commit
        resp = await db(post_signed)(Client(), api_inbox, api_payload(external_id="msg-2", text="Any news?"))
        assert resp.status_code == 200, resp.content
        # then
        live = await receive(communicator)
        assert live["type"] == "ticket.event"
        assert (live["ticket_id"], live["number"], live["seq"], live["event"]) == (
            ticket.pk,
            ticket.number,
            3,
            "message_received",
        )
        assert "replayed" not in live
        assert "team_id" not in live
        assert "assignee_id" not in live
        # when: an agent adds a note from the desk
        desk = Client()
        await db(desk.force_login)(agent)
        resp = await db(desk.post)(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "checking"})
        assert resp.status_code == 302
        # then
        live = await receive(communicator)
        assert (live["seq"], live["event"]) == (4, "note_added")
        assert await communicator.receive_nothing(QUIET)
        await communicator.disconnect()

    run(scenario)


def test_ticket_and_list_subscriptions_do_not_duplicate_events(agent: Any, api_inbox: Any) -> None:
    # given: one connection subscribed to a ticket and to the list
    ticket = ingest(api_inbox)
    headers = session_headers(agent)

    async def scenario() -> None:
        communicator = await connected(headers)
        await subscribe(communicator, ticket.number, last_seq=ticket.last_event_seq)
        await communicator.send_json_to({"action": "subscribe_list"})
        assert await receive(communicator) == {"type": "subscribed", "list": True}
        # when
        await db(do_add_note)(ticket, actor=agent, text="once")
        # then
        assert (await receive(communicator))["seq"] == ticket.last_event_seq + 1
        assert await communicator.receive_nothing(QUIET)
        await communicator.disconnect()

    run(scenario)


# --- permissions -------------------------------------------------------------------------------


def test_agent_cannot_subscribe_to_a_ticket_outside_their_teams(
    agent: Any, admin_agent: Any, billing_agent: Any, api_inbox: Any
) -> None:
    # given: a Billing ticket; the agent is in Support only
    ticket = ingest(api_inbox, "invoice question")
    do_change_team(ticket, team=Team.objects.get(slug="billing"), actor=admin_agent)
    headers = session_headers(agent)

    async def scenario() -> None:
        communicator = await connected(headers)
        # when
        answer = await subscribe(communicator, ticket.number, last_seq=0)
        # then: refused, and nothing about the ticket leaks, then or later
        assert answer == {"type": "error", "error": "no such ticket"}
        assert await communicator.receive_nothing(QUIET)
        await db(do_add_note)(ticket, actor=admin_agent, text="secret billing note")
        assert await communicator.receive_nothing(QUIET)
        await communicator.disconnect()

    run(scenario)


def test_list_subscription_only_carries_visible_tickets(agent: Any, admin_agent: Any, api_inbox: Any) -> None:
    # given
    billing = Team.objects.create(name="Billing", slug="billing")
    hidden = ingest(api_inbox, "billing", identifier="a")
    do_change_team(hidden, team=billing, actor=admin_agent)
    teamless = ingest(api_inbox, "general", identifier="b")
    agent_headers, admin_headers = session_headers(agent), session_headers(admin_agent)

    async def scenario() -> None:
        watcher = await connected(agent_headers)
        boss = await connected(admin_headers)
        for communicator in (watcher, boss):
            await communicator.send_json_to({"action": "subscribe_list"})
            assert (await receive(communicator))["type"] == "subscribed"
        # when
        await db(do_add_note)(hidden, actor=admin_agent, text="hidden")
        await db(do_add_note)(teamless, actor=admin_agent, text="visible")
        # then: the agent hears only of the team-less ticket; the admin of both
        assert (await receive(watcher))["ticket_id"] == teamless.pk
        assert await watcher.receive_nothing(QUIET)
        assert {(await receive(boss))["ticket_id"] for _ in range(2)} == {hidden.pk, teamless.pk}
        await watcher.disconnect()
        await boss.disconnect()

    run(scenario)


# --- hostile frames ----------------------------------------------------------------------------

BAD_FRAMES = [
    ("not json", "expected a JSON object with an action"),
    ("[1, 2, 3]", "expected a JSON object with an action"),
    ('"subscribe_list"', "expected a JSON object with an action"),
    ("null", "expected a JSON object with an action"),
    ('{"number": 1}', "expected a JSON object with an action"),
    ('{"action": ["subscribe_list"]}', "expected a JSON object with an action"),
    ('{"action": "dance"}', "unknown action 'dance'"),
    (json.dumps({"action": "x" * 100}), "unknown action " + repr("x" * 40)),
    ('{"action": "subscribe_ticket"}', "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)"),
    (
        '{"action": "subscribe_ticket", "number": "abc"}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": {"$gt": 0}}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": Infinity}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": NaN}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": 1e400}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": ' + "9" * 3000 + "}",
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": -5}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": 1001, "last_seq": "x"}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    (
        '{"action": "subscribe_ticket", "number": 1001, "last_seq": 99999999999999999999}',
        "subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)",
    ),
    ('{"action": "subscribe_ticket", "number": 987654321}', "no such ticket"),
    (json.dumps({"action": "subscribe_list", "pad": "x" * 4100}), "expected a text frame of at most 4096 characters"),
]


def test_malformed_frames_get_an_error_and_the_connection_stays_usable(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    headers = session_headers(agent)

    async def scenario() -> None:
        communicator = await connected(headers)
        for text, error in BAD_FRAMES:
            # when
            await communicator.send_to(text_data=text)
            # then
            assert await receive(communicator) == {"type": "error", "error": error}, text[:80]
        # when: a binary frame
        await communicator.send_to(bytes_data=b"\x00\x01binary")
        # then
        assert await receive(communicator) == {
            "type": "error",
            "error": "expected a text frame of at most 4096 characters",
        }
        # and the connection still works
        ack = await subscribe(communicator, ticket.number, last_seq=ticket.last_event_seq)
        assert ack == {"type": "subscribed", "number": ticket.number, "seq": ticket.last_event_seq}
        await communicator.disconnect()

    run(scenario)
