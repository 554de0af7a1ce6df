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
from helpdesk.actions.presence import do_set_presence_choice
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

    def __init__(
        self,
        app: Any,
        path: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        query: str = "",
        client: str | None = None,
    ) -> None:
        scope: dict[str, Any] = {
            "type": "websocket",
            "path": path,
            "query_string": query.encode(),
            "headers": headers or [],
            "subprotocols": [],
        }
        if client is not None:
            scope["client"] = (client, 50000)
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

    async def closed_with(self, timeout: float = 1) -> int:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.close", response
        return int(response.get("code", 1000))

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
    ("[" * 4000, "expected a JSON object with an action"),  # deeper than the JSON parser recurses
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


# --- presence, viewers and typing ----------------------------------------------------------------


@pytest.fixture
def short_grace(monkeypatch: Any) -> None:
    from helpdesk import presence

    monkeypatch.setattr(presence, "GRACE_SECONDS", 0.1)


@pytest.fixture
def bo(agent: Any) -> Any:
    from helpdesk.actions.agents import do_create_agent

    return do_create_agent(email="bo@example.com", name="Bo Agent", password="pw-bo-12345", teams=["Support"])


async def hello(communicator: WebsocketCommunicator, *, idle: bool = False) -> dict[str, Any]:
    await communicator.send_json_to({"action": "hello", "idle": idle})
    frame = await receive(communicator)
    assert frame["type"] == "presence.self", frame
    return frame


async def desk_page(headers: list[tuple[bytes, bytes]], number: int, seq: int) -> WebsocketCommunicator:
    """A ticket page as desk.js opens it: hello, then the ticket."""
    communicator = await connected(headers)
    await hello(communicator)
    assert await subscribe(communicator, number, last_seq=seq) == {"type": "subscribed", "number": number, "seq": seq}
    return communicator


async def joined(page: WebsocketCommunicator, other: Any) -> dict[str, Any]:
    """The viewer frames a page gets while another agent's page joins, until quiet: one or more
    identical "here" frames (the newcomer's ask, a viewer's direct answer, and on the pub/sub
    layer an ask that raced a join may cross both ways)."""
    frames = [await receive(page)]
    while not await page.receive_nothing(QUIET):
        frames.append(await receive(page))
    first = frames[0]
    assert all(f == first for f in frames), frames
    assert (first["type"], first["user_id"], first["left"]) == ("viewer", other.pk, False)
    return first


def stored_presence(user: Any) -> str:
    from helpdesk.models import AgentProfile

    return str(AgentProfile.objects.get(user=user).presence)


def test_an_open_desk_is_online_and_closing_it_is_offline_after_the_grace(agent: Any, short_grace: None) -> None:
    headers = session_headers(agent)

    async def scenario() -> None:
        # when
        communicator = await connected(headers)
        me = await hello(communicator)
        # then
        assert me == {
            "type": "presence.self",
            "user_id": agent.pk,
            "presence": "online",
            "choice": "online",
            "heartbeat": 25,
            "idle_after": 300,
            "typing_ttl": 6,
            "viewer_ttl": 70,
        }
        assert await db(stored_presence)(agent) == "online"
        # when: the page reports its user idle, then active again
        await communicator.send_json_to({"action": "heartbeat", "idle": True})
        assert await receive(communicator) == {**me, "presence": "away"}
        assert await db(stored_presence)(agent) == "away"
        await communicator.send_json_to({"action": "heartbeat", "idle": False})
        assert (await receive(communicator))["presence"] == "online"
        # when: the page closes
        await communicator.disconnect()
        # then: offline once the grace has passed
        import asyncio

        for _ in range(50):
            if await db(stored_presence)(agent) == "offline":
                break
            await asyncio.sleep(0.1)
        assert await db(stored_presence)(agent) == "offline"

    run(scenario)


def test_a_page_reconnecting_within_the_grace_stays_online(agent: Any, monkeypatch: Any) -> None:
    from helpdesk import presence

    monkeypatch.setattr(presence, "GRACE_SECONDS", 0.5)
    headers = session_headers(agent)

    async def scenario() -> None:
        import asyncio

        first = await connected(headers)
        await hello(first)
        await first.disconnect()
        second = await connected(headers)  # the next page of a navigation
        await hello(second)
        await asyncio.sleep(1.0)  # the first page's grace is over
        assert await db(stored_presence)(agent) == "online"
        await second.disconnect()

    run(scenario)


def test_viewers_see_each_other_typing_and_leaving(agent: Any, bo: Any, api_inbox: Any) -> None:
    # given: Bo has the ticket open
    ticket = ingest(api_inbox)
    seq = ticket.last_event_seq
    ada_headers, bo_headers = session_headers(agent), session_headers(bo)

    async def scenario() -> None:
        bo_page = await desk_page(bo_headers, ticket.number, seq)
        assert await bo_page.receive_nothing(QUIET)
        # when: Ada opens it
        ada_page = await desk_page(ada_headers, ticket.number, seq)
        # then: each sees the other, with presence
        seen_by_bo = await joined(bo_page, agent)
        seen_by_ada = await joined(ada_page, bo)
        assert {k: seen_by_bo[k] for k in ("type", "number", "user_id", "name", "presence", "typing", "left")} == {
            "type": "viewer",
            "number": ticket.number,
            "user_id": agent.pk,
            "name": "Ada Agent",
            "presence": "online",
            "typing": None,
            "left": False,
        }
        assert (seen_by_ada["user_id"], seen_by_ada["name"], seen_by_ada["left"]) == (bo.pk, "Bo Agent", False)
        # and the viewer token is opaque (no channel name, no session)
        assert seen_by_bo["viewer"].isalnum()
        assert len(seen_by_bo["viewer"]) == 32
        assert "reply_to" not in seen_by_bo
        assert "ask" not in seen_by_bo
        # when: Ada types a reply, twice within the throttle, then a note
        await ada_page.send_json_to({"action": "typing", "number": ticket.number, "mode": "reply"})
        await ada_page.send_json_to({"action": "typing", "number": ticket.number, "mode": "reply"})
        typing = await receive(bo_page)
        assert (typing["user_id"], typing["typing"]) == (agent.pk, "reply")
        assert await bo_page.receive_nothing(QUIET)
        await ada_page.send_json_to({"action": "typing", "number": ticket.number, "mode": "note"})
        assert (await receive(bo_page))["typing"] == "note"
        await ada_page.send_json_to({"action": "typing", "number": ticket.number, "mode": "none"})
        assert (await receive(bo_page))["typing"] is None
        # and Ada's own page never hears of Ada
        assert await ada_page.receive_nothing(QUIET)
        # when: Ada chooses away
        await db(do_set_presence_choice)(agent, "away", actor=agent)
        # then: Bo's page sees it
        frames = [await receive(bo_page)]
        assert (frames[-1]["type"], frames[-1]["presence"]) == ("viewer", "away"), frames
        # when: Ada leaves
        await ada_page.disconnect()
        # then
        frames = [await receive(bo_page)]
        while not frames[-1]["left"]:
            frames.append(await receive(bo_page))
        assert frames[-1]["user_id"] == agent.pk
        await bo_page.disconnect()

    run(scenario)


def test_viewers_of_a_ticket_never_reach_an_agent_who_may_not_see_it(
    agent: Any, bo: Any, billing_agent: Any, api_inbox: Any
) -> None:
    # given: a Support ticket (Billing's agent may not see it), viewed by Ada
    ticket = ingest(api_inbox)
    do_change_team(ticket, team=Team.objects.get(slug="support"), actor=agent)
    ticket.refresh_from_db()
    seq = ticket.last_event_seq
    ada_headers, bill_headers = session_headers(agent), session_headers(billing_agent)

    async def scenario() -> None:
        ada_page = await desk_page(ada_headers, ticket.number, seq)
        spy = await connected(bill_headers)
        await hello(spy)
        # when: the Billing agent tries to watch it, and to type on it
        assert await subscribe(spy, ticket.number, last_seq=seq) == {"type": "error", "error": "no such ticket"}
        await spy.send_json_to({"action": "typing", "number": ticket.number, "mode": "note"})
        assert await receive(spy) == {"type": "error", "error": "typing needs a subscribed ticket"}
        # then: Ada is never told of them, and they hear nothing of Ada typing or leaving
        assert await ada_page.receive_nothing(QUIET)
        await ada_page.send_json_to({"action": "typing", "number": ticket.number, "mode": "reply"})
        await ada_page.disconnect()
        assert await spy.receive_nothing(QUIET)
        await spy.disconnect()

    run(scenario)


def test_a_ticket_that_leaves_the_agents_sight_stops_sharing_viewers(
    agent: Any, bo: Any, admin_agent: Any, api_inbox: Any
) -> None:
    # given: Ada and Bo view a team-less ticket
    ticket = ingest(api_inbox)
    seq = ticket.last_event_seq
    ada_headers, bo_headers = session_headers(agent), session_headers(bo)
    billing = Team.objects.create(name="Billing", slug="billing")

    async def scenario() -> None:
        bo_page = await desk_page(bo_headers, ticket.number, seq)
        ada_page = await desk_page(ada_headers, ticket.number, seq)
        await joined(bo_page, agent)
        await joined(ada_page, bo)
        # when: an admin moves it to Billing
        await db(do_change_team)(ticket, team=billing, actor=admin_agent)
        # then: both pages are told they no longer watch it (and each other leaving)
        for page, other in ((bo_page, agent), (ada_page, bo)):
            frames = [await receive(page)]
            while frames[-1]["type"] != "unsubscribed":
                frames.append(await receive(page))
            assert frames[-1] == {"type": "unsubscribed", "number": ticket.number}
            assert all(f["type"] == "viewer" and f["left"] and f["user_id"] == other.pk for f in frames[:-1])
        # and typing on it is refused
        await ada_page.send_json_to({"action": "typing", "number": ticket.number, "mode": "note"})
        assert await receive(ada_page) == {"type": "error", "error": "typing needs a subscribed ticket"}
        assert await bo_page.receive_nothing(QUIET)
        await ada_page.disconnect()
        await bo_page.disconnect()

    run(scenario)


def test_a_light_agent_may_type_notes_but_not_replies(light_agent: Any, api_inbox: Any) -> None:
    ticket = ingest(api_inbox)
    headers = session_headers(light_agent)

    async def scenario() -> None:
        page = await desk_page(headers, ticket.number, ticket.last_event_seq)
        await page.send_json_to({"action": "typing", "number": ticket.number, "mode": "reply"})
        assert await receive(page) == {"type": "error", "error": "you may not reply on this ticket"}
        await page.send_json_to({"action": "typing", "number": ticket.number, "mode": "note"})
        assert await page.receive_nothing(QUIET)
        await page.disconnect()

    run(scenario)


TYPING_ERROR = "typing needs a ticket number and a mode: reply, note or none"
BAD_LIVE_FRAMES = [
    ('{"action": "typing"}', TYPING_ERROR),
    ('{"action": "typing", "number": 1001}', TYPING_ERROR),
    ('{"action": "typing", "number": 1001, "mode": "shout"}', TYPING_ERROR),
    ('{"action": "typing", "number": 1001, "mode": ["reply"]}', TYPING_ERROR),
    ('{"action": "typing", "number": 1001, "mode": null}', TYPING_ERROR),
    ('{"action": "typing", "number": "<script>", "mode": "reply"}', TYPING_ERROR),
    ('{"action": "typing", "number": -1, "mode": "reply"}', TYPING_ERROR),
    ('{"action": "typing", "number": true, "mode": "reply"}', TYPING_ERROR),
    ('{"action": "typing", "number": 987654321, "mode": "reply"}', "typing needs a subscribed ticket"),
    ('{"action": "heartbeat", "idle": "yes"}', "heartbeat takes idle: true or false"),
    ('{"action": "heartbeat", "idle": 1}', "heartbeat takes idle: true or false"),
    ('{"action": "hello", "idle": {}}', "hello takes idle: true or false"),
]


def test_hostile_live_frames_get_an_error_and_nothing_is_broadcast(agent: Any, bo: Any, api_inbox: Any) -> None:
    ticket = ingest(api_inbox)
    seq = ticket.last_event_seq
    ada_headers, bo_headers = session_headers(agent), session_headers(bo)

    async def scenario() -> None:
        bo_page = await desk_page(bo_headers, ticket.number, seq)
        ada = await connected(ada_headers)
        for text, error in BAD_LIVE_FRAMES:
            await ada.send_to(text_data=text)
            assert await receive(ada) == {"type": "error", "error": error}, text
        # a forged viewer message for a ticket watched by nobody here is dropped by the consumer
        await ada.send_json_to({"action": "ticket.viewer", "ticket_id": ticket.pk, "viewer": "x"})
        assert (await receive(ada))["error"] == "unknown action 'ticket.viewer'"
        assert await bo_page.receive_nothing(QUIET)
        await ada.disconnect()
        await bo_page.disconnect()

    run(scenario)


def test_a_flood_of_frames_is_cut_off_and_the_connection_recovers(agent: Any, api_inbox: Any) -> None:
    import asyncio

    from helpdesk import consumers

    ticket = ingest(api_inbox)
    headers = session_headers(agent)

    async def scenario() -> None:
        communicator = await connected(headers)
        # when: far more frames than the burst allows
        for _ in range(consumers.RATE_BURST + 30):
            await communicator.send_json_to({"action": "dance"})
        frames = []
        while not await communicator.receive_nothing(QUIET):
            frames.append(await receive(communicator))
        # then: the burst is answered, then one "slow down" (not one per frame)
        errors = [f["error"] for f in frames]
        assert errors.count("unknown action 'dance'") <= consumers.RATE_BURST + 3
        assert errors.count("too many frames; slow down") == 1
        # and after a pause the connection works again
        await asyncio.sleep(1)
        assert (await subscribe(communicator, ticket.number, last_seq=ticket.last_event_seq))["type"] == "subscribed"
        await communicator.disconnect()

    run(scenario)


def test_publish_to_agent_reaches_only_that_agents_pages(agent: Any, bo: Any) -> None:
    from helpdesk.realtime import publish_to_agent

    ada_headers, bo_headers = session_headers(agent), session_headers(bo)
    payload = {"id": 1, "kind": "mention", "ticket_number": 1001, "text": "<b>hi</b>", "unread": 3}

    async def scenario() -> None:
        ada_list, ada_other = await connected(ada_headers), await connected(ada_headers)
        bo_page = await connected(bo_headers)
        # when
        await db(publish_to_agent)(agent.pk, "notification", payload)
        # then: every page of Ada's, none of Bo's
        for page in (ada_list, ada_other):
            assert await receive(page) == {"type": "agent.event", "kind": "notification", "payload": payload}
        assert await bo_page.receive_nothing(QUIET)
        for page in (ada_list, ada_other, bo_page):
            await page.disconnect()

    run(scenario)


def test_assigned_tickets_events_reach_only_pages_that_watch_them(agent: Any, api_inbox: Any) -> None:
    from helpdesk.actions.tickets import do_assign_ticket

    # given: a ticket assigned to the agent, whose desk page shows something else (no subscription)
    ticket = ingest(api_inbox)
    do_assign_ticket(ticket, assignee=agent, actor=agent)
    headers = session_headers(agent)

    async def scenario() -> None:
        page = await connected(headers)
        await hello(page)
        # when
        await db(do_add_note)(ticket, actor=agent, text="to my own group")
        # then
        assert await page.receive_nothing(QUIET)
        await page.disconnect()

    run(scenario)


def test_events_name_their_actor_so_a_page_tells_its_own_reply_from_others(agent: Any, api_inbox: Any) -> None:
    ticket = ingest(api_inbox)
    headers = session_headers(agent)

    async def scenario() -> None:
        page = await connected(headers)
        await subscribe(page, ticket.number, last_seq=ticket.last_event_seq)
        await db(do_add_note)(ticket, actor=agent, text="mine")
        live = await receive(page)
        assert (live["actor_id"], live["actor_name"]) == (agent.pk, "Ada Agent")
        await page.disconnect()

    run(scenario)


@pytest.mark.redis
def test_viewers_and_typing_cross_the_redis_layer(agent: Any, bo: Any, api_inbox: Any) -> None:
    """Two pages whose frames go through Redis pub/sub, as from two ASGI processes."""
    from channels.layers import get_channel_layer

    assert type(get_channel_layer()).__module__.startswith("channels_redis")
    ticket = ingest(api_inbox)
    seq = ticket.last_event_seq
    ada_headers, bo_headers = session_headers(agent), session_headers(bo)

    async def scenario() -> None:
        bo_page = await desk_page(bo_headers, ticket.number, seq)
        ada_page = await desk_page(ada_headers, ticket.number, seq)
        await joined(bo_page, agent)
        await joined(ada_page, bo)
        await ada_page.send_json_to({"action": "typing", "number": ticket.number, "mode": "reply"})
        assert (await receive(bo_page))["typing"] == "reply"
        assert await bo_page.receive_nothing(QUIET)
        await ada_page.disconnect()
        assert (await receive(bo_page))["left"] is True
        await bo_page.disconnect()

    run(scenario)
