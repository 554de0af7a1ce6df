"""The chat widget's websocket through the real ASGI stack: handshake, auth, resume, live, limits."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import Client

from channels_inbox import consumers
from channels_inbox.actions.chat import do_start_chat_session
from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox_settings
from channels_inbox.chat import presence
from channels_inbox.chat.tokens import visitor_token
from channels_inbox.models import ChatConversation, ChatVisitor, Inbox
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.asgi import application
from helpdesk.models import Ticket, User
from helpdesk.tests.test_consumers import WebsocketCommunicator as DeskCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "https://shop.example"
# Generous for a Redis round trip; only waited out when a frame is missing.
TIMEOUT = 3
# How long "nothing arrives" is watched for.
QUIET = 0.3


class WebsocketCommunicator(DeskCommunicator):
    """The desk tests' websocket client, from a client address of the test's own."""

    def __init__(
        self,
        app: Any,
        path: str,
        query: str = "",
        headers: list[tuple[bytes, bytes]] | None = None,
        client: str | None = None,
    ) -> None:
        super().__init__(app, path, headers, query=query, client=client or CLIENT["ip"])

    async def closed_with(self, timeout: float = TIMEOUT) -> int:
        return await super().closed_with(timeout)


@pytest.fixture(autouse=True)
def _private_channel_layer(settings: Any) -> None:
    """A channel layer of this test's own (see helpdesk/tests/test_consumers.py)."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if layers["default"]["BACKEND"].startswith("channels_redis"):
        layers["default"].setdefault("CONFIG", {})["prefix"] = f"test-{uuid.uuid4().hex[:12]}"
    settings.CHANNEL_LAYERS = layers


# The client address of this test's sockets (its own: the per-address socket count is shared
# by every test on the same Redis).
CLIENT = {"ip": "192.0.2.1"}


@pytest.fixture(autouse=True)
def _own_client_address() -> None:
    CLIENT["ip"] = f"198.51.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def chat_inbox(db: Any) -> Inbox:
    inbox, _ = do_create_inbox(kind="chat", name="Shop chat", values={"allowed_origins": SITE})
    return inbox


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return database_sync_to_async(fn)


def new_visitor(inbox: Inbox, *, site: str = SITE) -> tuple[ChatVisitor, str]:
    """A visitor as the widget's session call makes one: (visitor, their token)."""
    visitor = do_start_chat_session(inbox, visitor=None, site=site, url=f"{site}/cart", title="Cart")
    return visitor, visitor_token(inbox.public_token, visitor.public_id)


def origin_header(origin: str = SITE) -> list[tuple[bytes, bytes]]:
    return [(b"origin", origin.encode())]


async def opened(inbox: Inbox, *, origin: str = SITE, client: str | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, "/ws/widget/", f"inbox={inbox.public_token}", headers=origin_header(origin), client=client
    )
    ok, detail = await communicator.connect(timeout=TIMEOUT)
    assert ok, detail
    return communicator


async def authed(inbox: Inbox, token: str, *, origin: str = SITE) -> WebsocketCommunicator:
    communicator = await opened(inbox, origin=origin)
    await communicator.send_json_to({"action": "auth", "token": token})
    ready = await receive(communicator)
    assert ready["type"] == "ready", ready
    return communicator


async def receive(communicator: WebsocketCommunicator, *, skip: tuple[str, ...] = ("queue",)) -> dict[str, Any]:
    """The next frame, past queue frames (they come whenever the queue moves)."""
    while True:
        frame: dict[str, Any] = await communicator.receive_json_from(timeout=TIMEOUT)
        if frame.get("type") not in skip:
            return frame


async def nothing_more(communicator: WebsocketCommunicator, *, skip: tuple[str, ...] = ("queue",)) -> list[Any]:
    """The frames that arrive within QUIET, past those skipped ([] when all is quiet)."""
    frames = []
    while not await communicator.receive_nothing(QUIET):
        frame = await communicator.receive_json_from(timeout=TIMEOUT)
        if frame.get("type") not in skip:
            frames.append(frame)
    return frames


async def send_message(communicator: WebsocketCommunicator, text: str, conversation: str | None = None) -> Any:
    client_msg_id = str(uuid.uuid4())
    await communicator.send_json_to(
        {"action": "message", "client_msg_id": client_msg_id, "conversation": conversation, "text": text}
    )
    ack = await receive(communicator)
    assert (ack["type"], ack.get("client_msg_id")) == ("ack", client_msg_id), ack
    return ack


def ticket_of(conversation_id: str) -> Ticket:
    return ChatConversation.objects.select_related("ticket").get(public_id=uuid.UUID(conversation_id)).ticket


# --- the desk's side (an agent's page watching the ticket) ----------------------------------------


def desk_headers(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return [(b"origin", b"http://127.0.0.1:8000"), (b"cookie", f"{name}={client.cookies[name].value}".encode())]


async def desk_watching(headers: list[tuple[bytes, bytes]], number: int, last_seq: int) -> WebsocketCommunicator:
    desk = WebsocketCommunicator(application, "/ws/desk/", headers=headers)
    ok, detail = await desk.connect(timeout=TIMEOUT)
    assert ok, detail
    await desk.send_json_to({"action": "hello", "idle": False})
    await desk.send_json_to({"action": "subscribe_ticket", "number": number, "last_seq": last_seq})
    while (await desk.receive_json_from(timeout=TIMEOUT))["type"] != "subscribed":
        pass
    return desk


async def desk_frame(desk: WebsocketCommunicator, type_: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await desk.receive_json_from(timeout=TIMEOUT)
        if frame["type"] == type_:
            return frame


# --- handshake and auth --------------------------------------------------------------------------


def test_unknown_or_non_chat_inbox_is_closed_4404(chat_inbox: Inbox, api_inbox: Any) -> None:
    async def scenario() -> None:
        for query in ("inbox=nope", "", f"inbox={api_inbox.public_token}"):
            # when
            communicator = WebsocketCommunicator(application, "/ws/widget/", query, headers=origin_header())
            # then
            assert await communicator.connect(timeout=TIMEOUT) == (False, 4404), query

    run(scenario)


@pytest.mark.parametrize("origin", [None, "https://evil.example", "null", "https://shop.example.evil.example"])
def test_foreign_or_missing_origin_is_refused_4403(chat_inbox: Inbox, origin: str | None) -> None:
    headers = [] if origin is None else origin_header(origin)

    async def scenario() -> None:
        # when
        communicator = WebsocketCommunicator(application, "/ws/widget/", f"inbox={chat_inbox.public_token}", headers)
        # then
        assert await communicator.connect(timeout=TIMEOUT) == (False, 4403)

    run(scenario)


def test_allowed_site_and_our_own_origin_are_accepted(chat_inbox: Inbox) -> None:
    # given
    visitor, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        for origin in (SITE, settings.SITE_URL):
            # when
            communicator = await authed(chat_inbox, token, origin=origin)
            # then: ping → pong, and the visitor counts as connected while the socket is open
            await communicator.send_json_to({"action": "ping"})
            assert await receive(communicator) == {"type": "pong"}
            assert await db(presence.is_connected)(visitor.public_id)
            await communicator.disconnect()
            assert not await db(presence.is_connected)(visitor.public_id)
            assert await db(presence.last_seen)(visitor.public_id) is not None

    run(scenario)


def test_ready_names_the_visitor(chat_inbox: Inbox) -> None:
    # given
    visitor, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        communicator = await opened(chat_inbox)
        # when
        await communicator.send_json_to({"action": "auth", "token": token})
        # then
        ready = await receive(communicator)
        assert ready["type"] == "ready"
        assert ready["visitor"]["id"] == visitor.public_id.hex
        assert ready["visitor"]["verified"] is False
        await communicator.disconnect()

    run(scenario)


def test_bad_token_or_a_first_frame_other_than_auth_closes_4401(chat_inbox: Inbox) -> None:
    # given: a token of another inbox's visitor, a forged one, and first frames that are not auth
    other, _ = do_create_inbox(kind="chat", name="Other chat", values={"allowed_origins": SITE})
    _, foreign_token = new_visitor(other)
    first_frames = [
        json.dumps({"action": "auth", "token": foreign_token}),
        json.dumps({"action": "auth", "token": "forged:token"}),
        json.dumps({"action": "auth", "token": visitor_token(chat_inbox.public_token, uuid.uuid4())}),
        json.dumps({"action": "auth", "token": ["x"]}),
        json.dumps({"action": "auth"}),
        json.dumps({"action": "ping"}),
        "not json",
        "[" * 5000,
    ]

    async def scenario() -> None:
        for text in first_frames:
            communicator = await opened(chat_inbox)
            # when
            await communicator.send_to(text_data=text)
            # then
            assert await communicator.closed_with() == 4401, text[:60]

    run(scenario)


def test_no_auth_frame_in_time_closes_4401(chat_inbox: Inbox, monkeypatch: Any) -> None:
    # given
    monkeypatch.setattr(consumers, "AUTH_SECONDS", 0.2)

    async def scenario() -> None:
        communicator = await opened(chat_inbox)
        # when: nothing is sent
        # then
        assert await communicator.closed_with() == 4401

    run(scenario)


def test_a_visitor_whose_website_is_no_longer_allowed_is_closed_4403(chat_inbox: Inbox) -> None:
    # given: a visitor of shop.example; then the inbox stops allowing it
    _, token = new_visitor(chat_inbox)
    do_update_inbox_settings(chat_inbox, values={"allowed_origins": "https://other.example"})

    async def scenario() -> None:
        # when: the hosted page (our own origin) connects with that visitor's token
        communicator = await opened(chat_inbox, origin=settings.SITE_URL)
        await communicator.send_json_to({"action": "auth", "token": token})
        # then
        assert await communicator.closed_with() == 4403

    run(scenario)


# --- conversations: message, resume, live --------------------------------------------------------


def test_message_is_acked_and_the_agent_sees_it_and_the_visitors_typing_live(
    chat_inbox: Inbox, admin_agent: User
) -> None:
    # given
    _, token = new_visitor(chat_inbox)
    headers = desk_headers(admin_agent)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        # when: the first message starts a conversation
        ack = await send_message(widget, "Hello, is my order shipped?")
        # then
        assert ack["duplicate"] is False
        assert ack["conversation"]["status"] in ("waiting", "active")
        assert ack["message"]["text"] == "Hello, is my order shipped?"
        assert ack["message"]["direction"] == "visitor"
        conversation = ack["conversation"]["id"]
        ticket = await db(ticket_of)(conversation)
        assert await nothing_more(widget) == []  # its own message is not echoed as an event

        # when: an agent watches the ticket; the visitor moves on, types, and writes again
        desk = await desk_watching(headers, ticket.number, ticket.last_event_seq)
        await widget.send_json_to({"action": "page", "url": f"{SITE}/checkout", "title": "Checkout"})
        page = await desk_frame(desk, "chat.visitor")
        await widget.send_json_to({"action": "typing", "conversation": conversation, "typing": True})
        typing = await desk_frame(desk, "chat.visitor")
        again = await send_message(widget, "Still there?", conversation)
        live = await desk_frame(desk, "ticket.event")
        # then
        assert page == {
            "type": "chat.visitor",
            "number": ticket.number,
            "typing": False,
            "url": f"{SITE}/checkout",
            "title": "Checkout",
        }
        assert (typing["typing"], typing["url"]) == (True, f"{SITE}/checkout")
        assert (live["number"], live["event"]) == (ticket.number, "message_received")
        assert again["conversation"]["id"] == conversation
        # sending ends the visitor's typing marker
        assert (await desk_frame(desk, "chat.visitor"))["typing"] is False
        assert await nothing_more(widget) == []
        await widget.disconnect()
        await desk.disconnect()

    run(scenario)


def test_a_frame_of_the_longest_message_fits(chat_inbox: Inbox) -> None:
    # given
    _, token = new_visitor(chat_inbox)
    text = "ř" * settings.CHAT_MESSAGE_MAX_CHARS

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        # when / then
        ack = await send_message(widget, text)
        assert ack["message"]["text"] == text
        too_long = str(uuid.uuid4())
        await widget.send_json_to({"action": "message", "client_msg_id": too_long, "text": text + "!"})
        assert await receive(widget) == {
            "type": "error",
            "client_msg_id": too_long,
            "error": f"text is longer than {settings.CHAT_MESSAGE_MAX_CHARS} characters",
        }
        await widget.disconnect()

    run(scenario)


def test_agent_reply_reaches_the_visitor_live_exactly_once(chat_inbox: Inbox, admin_agent: User) -> None:
    # given: a visitor in a conversation, and a second tab of the same visitor that resumed it
    _, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        ack = await send_message(widget, "Hi")
        conversation = ack["conversation"]["id"]
        tab = await authed(chat_inbox, token)
        await tab.send_json_to({"action": "resume", "conversation": conversation, "last_seq": 0})
        resumed = await receive(tab)
        assert (resumed["type"], resumed["conversation"]["id"]) == ("resumed", conversation)
        history = await receive(tab)
        assert (history["kind"], history["message"]["text"]) == ("message", "Hi")
        ticket = await db(ticket_of)(conversation)
        # when
        reply = await db(do_reply)(ticket, actor=admin_agent, text="Hello! Let me check.")
        # then: both connections get it once, as the serializer's event
        for communicator in (widget, tab):
            event = await receive(communicator, skip=("queue", "typing"))
            assert (event["type"], event.get("kind")) == ("event", "message"), event
            assert event["conversation"] == conversation
            assert event["message"]["id"] == reply.pk
            assert event["message"]["direction"] == "agent"
            assert event["message"]["text"] == "Hello! Let me check."
            assert "admin@example.com" not in json.dumps(event)
            later = [
                f for f in await nothing_more(communicator, skip=("queue", "typing")) if f.get("kind") == "message"
            ]
            assert later == []
        await widget.disconnect()
        await tab.disconnect()

    run(scenario)


def test_reconnect_with_last_seq_replays_the_missed_events_once(chat_inbox: Inbox, admin_agent: User) -> None:
    # given: a conversation; the visitor's connection drops
    _, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        ack = await send_message(widget, "Hi")
        conversation = ack["conversation"]["id"]
        last_seq = ack["conversation"]["last_seq"]
        await widget.disconnect()
        ticket = await db(ticket_of)(conversation)
        # when: the agent answers twice (and writes a note) while the visitor is away
        first = await db(do_reply)(ticket, actor=admin_agent, text="one")
        await db(do_add_note)(ticket, actor=admin_agent, text="internal: VIP customer")
        second = await db(do_reply)(ticket, actor=admin_agent, text="two")
        again = await authed(chat_inbox, token)
        await again.send_json_to({"action": "resume", "conversation": conversation, "last_seq": last_seq})
        # then
        assert (await receive(again))["type"] == "resumed"
        replayed = [await receive(again, skip=("queue", "typing")) for _ in range(2)]
        assert [e["message"]["id"] for e in replayed] == [first.pk, second.pk]
        assert replayed[0]["seq"] < replayed[1]["seq"]
        rest = await nothing_more(again, skip=("queue", "typing"))
        assert [f for f in rest if f.get("kind") == "message"] == []
        assert "VIP" not in json.dumps(rest)
        # when: the same connection resumes again: nothing it had is sent twice
        await again.send_json_to({"action": "resume", "conversation": conversation, "last_seq": 0})
        assert (await receive(again))["type"] == "resumed"
        frames = await nothing_more(again, skip=("queue", "typing"))
        # the history before last_seq (the visitor's first message) arrives now, once; nothing else
        assert [e["message"]["text"] for e in frames if e.get("kind") == "message"] == ["Hi"]
        await again.disconnect()

    run(scenario)


def test_notes_never_reach_the_visitor(chat_inbox: Inbox, admin_agent: User) -> None:
    # given
    _, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        ack = await send_message(widget, "Hi")
        ticket = await db(ticket_of)(ack["conversation"]["id"])
        # when
        await db(do_add_note)(ticket, actor=admin_agent, text="internal: refund approved by finance")
        # then: nothing live, and nothing in a full replay
        assert await nothing_more(widget) == []
        await widget.send_json_to({"action": "resume", "conversation": ack["conversation"]["id"], "last_seq": 0})
        frames = await nothing_more(widget)
        assert "refund" not in json.dumps(frames)
        assert all(f["type"] in ("resumed", "event") for f in frames)
        await widget.disconnect()

    run(scenario)


def test_agent_typing_a_reply_reaches_the_visitor_a_note_never(chat_inbox: Inbox, admin_agent: User) -> None:
    # given: a visitor in a conversation, an agent on its ticket page
    _, token = new_visitor(chat_inbox)
    headers = desk_headers(admin_agent)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        ack = await send_message(widget, "Hi")
        conversation = ack["conversation"]["id"]
        ticket = await db(ticket_of)(conversation)
        desk = await desk_watching(headers, ticket.number, ticket.last_event_seq)
        assert await nothing_more(widget) == []
        # when: the agent types a note
        await desk.send_json_to({"action": "typing", "number": ticket.number, "mode": "note"})
        # then
        assert await nothing_more(widget) == []
        # when: the agent types a reply, then stops
        await desk.send_json_to({"action": "typing", "number": ticket.number, "mode": "reply"})
        typing = await receive(widget)
        await desk.send_json_to({"action": "typing", "number": ticket.number, "mode": "none"})
        stopped = await receive(widget)
        # then: the agent's first name only
        assert typing == {
            "type": "typing",
            "conversation": conversation,
            "typing": True,
            "agent": "Alan",
            "ttl": consumers.AGENT_TYPING_TTL,
        }
        assert stopped == {"type": "typing", "conversation": conversation, "typing": False, "agent": ""}
        # when: the agent heartbeats (viewer re-announced without typing): nothing new
        await desk.send_json_to({"action": "heartbeat", "idle": False})
        assert await nothing_more(widget) == []
        await widget.disconnect()
        await desk.disconnect()

    run(scenario)


def test_a_visitor_cannot_resume_or_hear_another_visitors_conversation(chat_inbox: Inbox, admin_agent: User) -> None:
    # given: B's conversation, and A who learned its id
    _, token_a = new_visitor(chat_inbox)
    _, token_b = new_visitor(chat_inbox)

    async def scenario() -> None:
        b = await authed(chat_inbox, token_b)
        ack = await send_message(b, "my address is 1 Secret Street")
        conversation = ack["conversation"]["id"]
        ticket = await db(ticket_of)(conversation)
        a = await authed(chat_inbox, token_a)
        # when
        await a.send_json_to({"action": "resume", "conversation": conversation, "last_seq": 0})
        # then
        assert await receive(a) == {"type": "error", "error": "no such conversation"}
        # and typing, read or a message there are refused; nothing of B's live events reaches A
        await a.send_json_to({"action": "typing", "conversation": conversation, "typing": True})
        assert (await receive(a))["type"] == "error"
        attempt = str(uuid.uuid4())
        await a.send_json_to({"action": "message", "client_msg_id": attempt, "conversation": conversation, "text": "x"})
        assert await receive(a) == {"type": "error", "client_msg_id": attempt, "error": "no such conversation"}
        await db(do_reply)(ticket, actor=admin_agent, text="We ship to 1 Secret Street")
        assert (await receive(b, skip=("queue", "typing")))["kind"] == "message"
        assert "Secret" not in json.dumps(await nothing_more(a, skip=()))
        await a.disconnect()
        await b.disconnect()

    run(scenario)


def test_a_waiting_visitor_hears_their_place_in_the_queue(chat_inbox: Inbox) -> None:
    # given: two visitors waiting (no agent is available for chat)
    _, first_token = new_visitor(chat_inbox)
    _, second_token = new_visitor(chat_inbox)

    async def scenario() -> None:
        first = await authed(chat_inbox, first_token)
        ack = await send_message(first, "first in line")
        queued = await receive(first, skip=())
        second = await authed(chat_inbox, second_token)
        await send_message(second, "second in line")
        # then: each is told its place right after the ack
        assert queued["type"] == "queue"
        assert (queued["conversation"], queued["position"]) == (ack["conversation"]["id"], 1)
        assert queued["estimate_seconds"] >= 0
        assert (await receive(second, skip=()))["position"] == 2
        # when: the queue moves (a burst of signals): each waiting visitor is told again, once
        layer = get_channel_layer()
        assert layer is not None
        for _ in range(5):
            await layer.group_send(f"chatqueue.{chat_inbox.pk}", {"type": "chat.queue", "inbox_id": chat_inbox.pk})
        # then
        assert (await receive(first, skip=()))["position"] == 1
        assert await nothing_more(first, skip=()) == []
        assert (await receive(second, skip=()))["position"] == 2
        await first.disconnect()
        await second.disconnect()

    run(scenario)


# --- hostile frames and limits ------------------------------------------------------------------

BAD_FRAMES = [
    ("not json", "expected a JSON object with an action"),
    ("[" * 5000, "expected a JSON object with an action"),  # deeper than the JSON parser recurses
    ('{"a": ' * 3000 + "1" + "}" * 3000, "expected a JSON object with an action"),
    ("[1, 2, 3]", "expected a JSON object with an action"),
    ("null", "expected a JSON object with an action"),
    ('{"action": ["ping"]}', "expected a JSON object with an action"),
    ('{"action": "dance"}', "unknown action 'dance'"),
    (json.dumps({"action": "x" * 100}), "unknown action " + repr("x" * 40)),
    ('{"action": "resume"}', "resume needs a conversation id (and optionally last_seq ≥ 0)"),
    (
        '{"action": "resume", "conversation": {"$ne": null}}',
        "resume needs a conversation id (and optionally last_seq ≥ 0)",
    ),
    (
        json.dumps({"action": "resume", "conversation": str(uuid.uuid4()), "last_seq": -1}),
        "resume needs a conversation id (and optionally last_seq ≥ 0)",
    ),
    (json.dumps({"action": "resume", "conversation": str(uuid.uuid4())}), "no such conversation"),
    ('{"action": "message", "text": "hi"}', "message needs a client_msg_id"),
    ('{"action": "typing", "typing": true}', "typing needs a followed conversation and typing: true or false"),
    ('{"action": "read", "message_id": 1}', "read needs a followed conversation and a message_id"),
    ('{"action": "auth", "token": "x"}', "already authenticated"),
]


def test_malformed_frames_get_an_error_and_the_connection_stays_usable(chat_inbox: Inbox) -> None:
    # given
    _, token = new_visitor(chat_inbox)
    limit = consumers.max_frame()

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        for text, error in BAD_FRAMES:
            # when
            await widget.send_to(text_data=text)
            # then
            assert await receive(widget) == {"type": "error", "error": error}, text[:80]
        # when: an oversized frame, and a binary one
        await widget.send_to(text_data=json.dumps({"action": "ping", "pad": "x" * limit}))
        too_big = await receive(widget)
        await widget.send_to(bytes_data=b"\x00\x01binary")
        binary = await receive(widget)
        # then
        assert too_big == binary == {"type": "error", "error": f"expected a text frame of at most {limit} characters"}
        await widget.send_json_to({"action": "ping"})
        assert await receive(widget) == {"type": "pong"}
        await widget.disconnect()

    run(scenario)


def test_too_many_frames_are_refused(chat_inbox: Inbox) -> None:
    # given
    _, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        # when: far more frames at once than the burst allows
        for _ in range(consumers.RATE_BURST + 20):
            await widget.send_json_to({"action": "ping"})
        # then: the burst is answered (less the auth frame's token), then one error, the rest dropped
        frames = [await receive(widget)]
        frames += await nothing_more(widget)
        pongs = [f for f in frames if f == {"type": "pong"}]
        errors = [f for f in frames if f["type"] == "error"]
        assert consumers.RATE_BURST - 1 <= len(pongs) < consumers.RATE_BURST + 5, len(pongs)
        assert errors == [{"type": "error", "error": "too many frames; slow down"}]
        assert frames.index(errors[0]) >= consumers.RATE_BURST - 1
        await widget.disconnect()

    run(scenario)


def test_messages_per_visitor_are_rate_limited(chat_inbox: Inbox, settings: Any) -> None:
    # given
    settings.CHAT_VISITOR_MESSAGES_PER_MINUTE = 2
    _, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        ack = await send_message(widget, "one")
        await send_message(widget, "two", ack["conversation"]["id"])
        third = str(uuid.uuid4())
        # when
        await widget.send_json_to(
            {"action": "message", "client_msg_id": third, "conversation": ack["conversation"]["id"], "text": "three"}
        )
        # then
        refused = await receive(widget)
        assert refused == {"type": "error", "client_msg_id": third, "error": "too many messages; wait a moment"}
        await widget.disconnect()

    run(scenario)


# --- the channel layer under a burst -----------------------------------------------------------------


@pytest.mark.redis
def test_a_burst_of_500_group_sends_to_500_consumers_loses_nothing() -> None:
    """floors.md §8 (4): with channels-redis defaults 399 of 500 were lost; the configured layer loses none."""

    async def scenario() -> None:
        layer = get_channel_layer()
        assert layer is not None
        channels = [await layer.new_channel() for _ in range(500)]
        for i, channel in enumerate(channels):
            await layer.group_add(f"burst.{i}", channel)
        # when
        await asyncio.gather(*(layer.group_send(f"burst.{i}", {"type": "burst", "n": i}) for i in range(500)))
        # then
        received = await asyncio.gather(*(asyncio.wait_for(layer.receive(c), timeout=10) for c in channels))
        assert sorted(m["n"] for m in received) == list(range(500))
        for i, channel in enumerate(channels):
            await layer.group_discard(f"burst.{i}", channel)

    run(scenario)


# --- review #8: sockets per visitor and per address, bounded replay; revocation on ping -------------


def test_sockets_per_visitor_are_capped_and_a_closed_one_frees_its_place(chat_inbox: Inbox, settings: Any) -> None:
    # given a limit of 2 sockets per visitor
    settings.CHAT_WS_PER_VISITOR = 2
    _, token = new_visitor(chat_inbox)
    _, other_token = new_visitor(chat_inbox)

    async def scenario() -> None:
        first, second = await authed(chat_inbox, token), await authed(chat_inbox, token)
        # when a third socket of the same visitor authenticates
        third = await opened(chat_inbox)
        await third.send_json_to({"action": "auth", "token": token})
        # then it is closed 4429; another visitor is not affected
        assert await third.closed_with() == consumers.CLOSE_TOO_MANY
        other = await authed(chat_inbox, other_token)
        # when one closes, a new one gets its place
        await first.disconnect()
        again = await authed(chat_inbox, token)
        for communicator in (second, other, again):
            await communicator.disconnect()

    run(scenario)


def test_sockets_per_address_are_capped_and_a_closed_one_frees_its_place(chat_inbox: Inbox, settings: Any) -> None:
    # given a limit of 2 sockets per client address
    settings.CHAT_WS_PER_IP = 2

    async def scenario() -> None:
        first, second = await opened(chat_inbox), await opened(chat_inbox)
        # when a third connects from the same address
        third = WebsocketCommunicator(
            application, "/ws/widget/", f"inbox={chat_inbox.public_token}", headers=origin_header()
        )
        # then the handshake is refused 4429 (before auth: no token needed to count)
        assert await third.connect(timeout=TIMEOUT) == (False, consumers.CLOSE_TOO_MANY)
        # and another address is not affected
        elsewhere = await opened(chat_inbox, client="203.0.113.9-" + uuid.uuid4().hex[:6])
        # when one closes, a new one gets its place
        await first.disconnect()
        again = await opened(chat_inbox)
        for communicator in (second, elsewhere, again):
            await communicator.disconnect()
        assert await db(presence.address_count)(CLIENT["ip"]) == 0

    run(scenario)


def test_a_dead_processs_sockets_stop_counting_after_their_ttl() -> None:
    # given an address whose sockets were counted by a process that died (never released)
    ip = f"dead-{uuid.uuid4().hex}"
    long_ago = time.time() - presence.CONNECTION_TTL_SECONDS - 1
    for n in range(3):
        assert presence.claim_address(ip, f"conn-{n}", limit=3, now=long_ago)
    visitor = uuid.uuid4()
    assert presence.touch(visitor, "conn-a", limit=1, now=long_ago)
    # when / then: new sockets are counted again
    assert presence.claim_address(ip, "new", limit=3)
    assert presence.address_count(ip) == 1
    assert presence.touch(visitor, "conn-b", limit=1)
    # and the poll never counts towards the socket limit
    assert presence.touch(visitor, presence.POLL, limit=1)


def test_a_resume_from_0_of_a_long_conversation_replays_only_the_newest_events(
    chat_inbox: Inbox, admin_agent: User, monkeypatch: Any
) -> None:
    # given a conversation with many more events than a replay carries
    monkeypatch.setattr(consumers, "REPLAY_MAX", 5)
    _, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        ack = await send_message(widget, "Hi")
        conversation = ack["conversation"]["id"]
        await widget.disconnect()
        ticket = await db(ticket_of)(conversation)
        replies = [await db(do_reply)(ticket, actor=admin_agent, text=f"reply {n}") for n in range(12)]
        # when the visitor resumes from 0
        again = await authed(chat_inbox, token)
        await again.send_json_to({"action": "resume", "conversation": conversation, "last_seq": 0})
        resumed = await receive(again)
        replayed = [await receive(again, skip=("queue", "typing")) for _ in range(5)]
        rest = await nothing_more(again, skip=("queue", "typing"))
        # then only the 5 newest events come, oldest first, and `resumed` says what was left out
        assert resumed["type"] == "resumed"
        assert rest == []
        seqs = [e["seq"] for e in replayed]
        assert seqs == sorted(seqs)
        assert replayed[-1]["message"]["id"] == replies[-1].pk
        assert resumed["truncated"] is True
        assert resumed["history_after"] == 0
        assert resumed["history_before"] == seqs[0]
        # and the HTTP API serves what was left out (after history_after, before history_before)
        page = await db(Client().get)(
            f"/widget/v1/{chat_inbox.public_token}/conversations/{conversation}/events?after=0",
            HTTP_ORIGIN=SITE,
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        older = [e for e in page.json()["events"] if e["seq"] < resumed["history_before"]]
        assert [e["message"]["text"] for e in older if e["kind"] == "message"][:2] == ["Hi", "reply 0"]
        # when it resumes from near the end: nothing truncated
        await again.send_json_to({"action": "resume", "conversation": conversation, "last_seq": seqs[-2]})
        assert (await receive(again))["truncated"] is False
        await again.disconnect()

    run(scenario)


def test_the_replay_costs_the_same_for_a_long_conversation(chat_inbox: Inbox, admin_agent: User) -> None:
    # given two conversations, one short and one long
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    short_visitor, _ = new_visitor(chat_inbox)
    long_visitor, _ = new_visitor(chat_inbox)

    def conversation_with(visitor: ChatVisitor, replies: int) -> ChatConversation:
        from channels_inbox.actions.chat import do_receive_chat_message

        receipt = do_receive_chat_message(visitor, conversation=None, client_msg_id=str(uuid.uuid4()), text="Hi")
        assert receipt.conversation is not None
        for n in range(replies):
            do_reply(receipt.conversation.ticket, actor=admin_agent, text=f"reply {n}")
        return ChatConversation.objects.select_related("visitor").get(pk=receipt.conversation.pk)

    short, long = conversation_with(short_visitor, 2), conversation_with(long_visitor, 30)
    counts = []
    for conversation in (short, long):
        # when its whole history is replayed
        with CaptureQueriesContext(connection) as queries:
            frames, _ = consumers._replay(conversation, 0, conversation.visitor.public_id)
        counts.append(len(queries))
        assert frames
    # then the same number of queries
    assert counts[0] == counts[1]


def test_a_ping_after_the_website_was_revoked_closes_4403(chat_inbox: Inbox) -> None:
    # given two open sockets: one on the visitor's website, one on our own origin (hosted page)
    _, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        site = await authed(chat_inbox, token)
        hosted = await authed(chat_inbox, token, origin=settings.SITE_URL)
        for communicator in (site, hosted):
            await communicator.send_json_to({"action": "ping"})
            assert await receive(communicator) == {"type": "pong"}
        # when the inbox stops allowing the website, and each pings
        await db(do_update_inbox_settings)(chat_inbox, values={"allowed_origins": "https://other.example"})
        for communicator in (site, hosted):
            await communicator.send_json_to({"action": "ping"})
            # then both close 4403: the page's origin, or the website the visitor's token was made for
            assert await communicator.closed_with() == consumers.CLOSE_ORIGIN

    run(scenario)


def _scoped(inbox: Inbox, visitor: ChatVisitor, conversation: str, *, expires_in: int = 3600) -> str:
    from channels_inbox.chat.tokens import scoped_visitor_token

    return scoped_visitor_token(
        inbox.public_token, visitor.public_id, uuid.UUID(conversation), expires_at=int(time.time()) + expires_in
    )


def test_a_hosted_page_token_reaches_only_its_one_conversation(chat_inbox: Inbox) -> None:
    # given a visitor with two conversations, and a hosted-page token limited to the first
    visitor, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        first = (await send_message(widget, "first"))["conversation"]["id"]
        await db(ChatConversation.objects.filter(public_id=uuid.UUID(first)).update)(status="ended")
        second = (await send_message(widget, "second"))["conversation"]["id"]
        assert first != second
        await widget.disconnect()
        scoped = await db(_scoped)(chat_inbox, visitor, first)
        page = await authed(chat_inbox, scoped, origin=settings.SITE_URL)
        # when it resumes its own conversation, then it may
        await page.send_json_to({"action": "resume", "conversation": first, "last_seq": 0})
        assert (await receive(page))["type"] == "resumed"
        await nothing_more(page, skip=("queue", "typing", "event"))
        # when it resumes or writes to the other one, then "no such conversation", nothing stored
        await page.send_json_to({"action": "resume", "conversation": second, "last_seq": 0})
        assert await receive(page) == {"type": "error", "error": "no such conversation"}
        cmid = str(uuid.uuid4())
        await page.send_json_to({"action": "message", "client_msg_id": cmid, "conversation": second, "text": "x"})
        refused = await receive(page, skip=("queue", "typing", "event"))
        assert (refused["type"], refused["client_msg_id"]) == ("error", cmid)
        # and a message without a conversation never opens a new one
        cmid = str(uuid.uuid4())
        await page.send_json_to({"action": "message", "client_msg_id": cmid, "conversation": None, "text": "y"})
        answer = await receive(page, skip=("queue", "typing", "event"))
        assert answer["type"] == "error" or answer["conversation"]["id"] == first, answer
        count = await db(ChatConversation.objects.filter(visitor=visitor).count)()
        assert count == 2
        await page.disconnect()

    run(scenario)


def test_an_expired_hosted_page_token_is_refused_and_closed_on_ping(chat_inbox: Inbox) -> None:
    # given a hosted-page socket whose token expires while it is open
    visitor, token = new_visitor(chat_inbox)

    async def scenario() -> None:
        widget = await authed(chat_inbox, token)
        conversation = (await send_message(widget, "hello"))["conversation"]["id"]
        await widget.disconnect()
        scoped = await db(_scoped)(chat_inbox, visitor, conversation, expires_in=2)
        page = await authed(chat_inbox, scoped, origin=settings.SITE_URL)
        expired = await db(_scoped)(chat_inbox, visitor, conversation, expires_in=-10)
        late = await opened(chat_inbox, origin=settings.SITE_URL)
        # when an expired one authenticates, then 4401
        await late.send_json_to({"action": "auth", "token": expired})
        assert await late.closed_with() == consumers.CLOSE_AUTH
        # when the open one pings after its expiry, then 4401
        await asyncio.sleep(2.1)
        await page.send_json_to({"action": "ping"})
        assert await page.closed_with() == consumers.CLOSE_AUTH

    run(scenario)


def test_typing_shows_the_agents_visitor_name_never_an_email(chat_inbox: Inbox) -> None:
    # given an agent whose only name is an email address
    from helpdesk.actions.agents import do_create_agent

    agent = do_create_agent(email="zed@example.com", name="zed@example.com", password="pw-agent-123")
    # when / then
    assert "@" not in consumers._agent_name(agent.pk)
