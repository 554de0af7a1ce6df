"""Live chat across two ASGI server processes on one PostgreSQL and one Redis.

Production runs websockets on uvicorn processes behind a proxy (deploy/run-prod.sh): a visitor's
widget and the agent's desk page are usually connected to different processes, so every live
message has to cross between them through the Redis channel layer. Here: two uvicorn processes
started as production starts them, a Celery worker (routing, deliveries), the test database
shared by all; a visitor's websocket on one process, an agent's desk websocket on the other;
messages both ways, then the same with the processes swapped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from django.conf import settings
from django.db import connection, connections
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from channels_inbox.chat.tokens import visitor_token
from helpdesk.celery import app as celery_app
from tests.test_run_modes import ROOT, free_port, private_celery_queue, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

T = TypeVar("T")
SITE = "http://127.0.0.1:8999"  # the customer's website that embeds the widget
PASSWORD = "pw-ada-chat-12345"
# Generous for a Redis hop between processes; only waited out when a frame is missing.
TIMEOUT = 15


@contextmanager
def process(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own group, killed with its children at the end."""
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def asgi_server(port: int) -> list[str]:
    """The websocket server exactly as deploy/run-prod.sh starts it (one process)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "helpdesk.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ws-per-message-deflate",
        "false",
        "--lifespan",
        "off",
    ]


def log_tail(log_dir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(log_dir.glob("*.log")))


@pytest.fixture
def shared_layer(settings: Any) -> str:
    """A channel-layer prefix of this test's own, for this process and the servers: Redis pub/sub
    ignores the database number, so other test runs on the same Redis must not be heard."""
    prefix = f"twoproc{uuid.uuid4().hex[:10]}"
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"].setdefault("CONFIG", {})["prefix"] = prefix
    settings.CHANNEL_LAYERS = layers
    return prefix


@pytest.fixture
def two_servers(shared_layer: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two uvicorn processes and a Celery worker on this test's database and Redis."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,  # the visitor token and the session are signed here
        SWITCHBOARD_DATA_DIR=str(tmp_path),
        CHANNEL_LAYER_PREFIX=shared_layer,
        CELERY_TASK_ALWAYS_EAGER="false",
    )
    # The worker takes the tasks queued by the servers and by this process (the reply's delivery).
    celery_app.conf.task_always_eager = False
    ports = [free_port(), free_port()]
    worker_args = [sys.executable, "-m", "celery", "-A", "helpdesk", "worker", "--pool", "threads", "-c", "2"]
    with (
        private_celery_queue(env),
        process("asgi1", asgi_server(ports[0]), env, tmp_path) as one,
        process("asgi2", asgi_server(ports[1]), env, tmp_path) as two,
        process("worker", [*worker_args, "--loglevel", "WARNING"], env, tmp_path),
    ):
        for port, proc in zip(ports, (one, two), strict=True):

            def up(port: int = port, proc: Any = proc) -> bool:
                assert proc.poll() is None, log_tail(tmp_path)
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(up, 60, f"the ASGI server on port {port}")
        yield {"ports": ports, "logs": tmp_path}


@pytest.fixture
def chat_inbox(db: Any) -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(kind="chat", name="Shop chat", values={"allowed_origins": SITE})
    return inbox


@pytest.fixture
def chat_agent(db: Any) -> Any:
    from helpdesk.actions.agents import do_create_agent

    return do_create_agent(email="ada@example.com", name="Ada Lovelace", password=PASSWORD, role="admin")


def new_visitor(inbox: Any) -> str:
    """An anonymous visitor of the inbox, as the widget's session endpoint makes one; its token."""
    from channels_inbox.actions.chat import do_start_chat_session

    visitor = do_start_chat_session(inbox, visitor=None, site=SITE, url=f"{SITE}/cart", title="Cart")
    return visitor_token(inbox.public_token, visitor.public_id)


def desk_login(port: int) -> httpx.Client:
    """An agent signed in through the login form of one server (session cookie + CSRF cookie)."""
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=10)
    page = client.get("/desk/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    resp = client.post(
        "/desk/login/",
        data={"username": "ada@example.com", "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{base}/desk/login/"},
    )
    assert resp.status_code == 302, resp.text[:500]
    return client


async def in_thread(func: Callable[[], T]) -> T:
    """Database work off the event loop, its connection closed after (so the test database can be
    dropped at the end)."""

    def run() -> T:
        try:
            return func()
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


async def next_frame(ws: ClientConnection, wanted: Any, what: str) -> dict[str, Any]:
    """The first frame `wanted(frame)` accepts (others are skipped), within TIMEOUT."""

    async def find() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if wanted(frame):
                return dict(frame)

    try:
        return await asyncio.wait_for(find(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"no {what} within {TIMEOUT}s") from None


async def open_desk(port: int, cookie: str) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws/desk/",
        origin=Origin(f"http://127.0.0.1:{port}"),
        additional_headers={"Cookie": cookie},
        open_timeout=TIMEOUT,
    )
    await ws.send(json.dumps({"action": "subscribe_list"}))
    await next_frame(ws, lambda f: f.get("type") == "subscribed", "subscribed frame")
    return ws


async def open_visitor(port: int, inbox: Any, token: str) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws/widget/?inbox={inbox.public_token}",
        origin=Origin(SITE),
        open_timeout=TIMEOUT,
    )
    await ws.send(json.dumps({"action": "auth", "token": token}))
    await next_frame(ws, lambda f: f.get("type") == "ready", "ready frame")
    return ws


async def visitor_writes(
    visitor: ClientConnection, desk: ClientConnection, conversation: str | None, text: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The visitor sends a message; returns its ack and the ticket event the desk got for it."""
    cmid = uuid.uuid4().hex
    frame = {"action": "message", "client_msg_id": cmid, "conversation": conversation, "text": text}
    await visitor.send(json.dumps(frame))
    ack = await next_frame(visitor, lambda f: f.get("client_msg_id") == cmid, "ack of the visitor's message")
    assert ack["type"] == "ack", ack
    message_id = ack["message"]["id"]
    event = await next_frame(
        desk,
        lambda f: (
            f.get("type") == "ticket.event"
            and f.get("event") == "message_received"
            and (f.get("data") or {}).get("message_id") == message_id
        ),
        "message_received event on the desk socket",
    )
    return ack, event


async def visitor_hears(visitor: ClientConnection, text: str) -> dict[str, Any]:
    return await next_frame(
        visitor,
        lambda f: (
            f.get("type") == "event" and f.get("kind") == "message" and (f.get("message") or {}).get("text") == text
        ),
        f"the agent's reply {text!r} on the visitor socket",
    )


def test_visitor_and_agent_on_different_processes_hear_each_other(
    two_servers: dict[str, Any], chat_inbox: Any, chat_agent: Any
) -> None:
    from helpdesk.actions.replies import do_reply
    from helpdesk.models import Ticket

    one, two = two_servers["ports"]
    token = new_visitor(chat_inbox)
    agent_http = desk_login(two)  # the session is in the database: valid on both processes
    cookie = f"{settings.SESSION_COOKIE_NAME}={agent_http.cookies[settings.SESSION_COOKIE_NAME]}"

    def reply_on_the_desk(number: int, text: str) -> None:
        # the composer's form, posted to the agent's process 1 (the visitor is on process 2)
        agent_http.get(f"http://127.0.0.1:{one}/desk/tickets/{number}/")
        resp = agent_http.post(
            f"http://127.0.0.1:{one}/desk/tickets/{number}/reply/",
            data={"text": text, "csrfmiddlewaretoken": agent_http.cookies["csrftoken"]},
            headers={"Referer": f"http://127.0.0.1:{one}/desk/tickets/{number}/"},
        )
        assert resp.status_code in (200, 302), resp.text[:500]

    async def scenario() -> str:
        # given: the visitor's widget on process 1, the agent's desk page on process 2
        visitor = await open_visitor(one, chat_inbox, token)
        desk = await open_desk(two, cookie)
        try:
            # when: the visitor writes (a new conversation)
            ack, event = await visitor_writes(visitor, desk, None, "Hello, is my order on its way?")
            # then: the agent's socket on the other process hears of the new message
            conversation = ack["conversation"]["id"]
            ticket = await in_thread(lambda: Ticket.objects.get(chat__public_id=uuid.UUID(conversation)))
            assert event["ticket_id"] == ticket.pk
            assert event["data"]["channel"] == "chat"

            # when: the agent answers (from a third process: this test's do_reply)
            await in_thread(lambda: do_reply(ticket, actor=chat_agent, text="Yes, it ships today."))
            # then: the visitor's socket on process 1 receives it
            heard = await visitor_hears(visitor, "Yes, it ships today.")
            assert heard["message"]["direction"] == "agent"
            assert heard["conversation"] == conversation
        finally:
            await visitor.close()
            await desk.close()

        # given: the processes swapped: the visitor comes back on process 2, the agent on process 1
        visitor = await open_visitor(two, chat_inbox, token)
        desk = await open_desk(one, cookie)
        try:
            await visitor.send(json.dumps({"action": "resume", "conversation": conversation, "last_seq": heard["seq"]}))
            await next_frame(visitor, lambda f: f.get("type") == "resumed", "resumed frame")
            # when: the visitor writes again
            ack, event = await visitor_writes(visitor, desk, conversation, "Great, and the tracking number?")
            # then: the desk on process 1 hears it, on the same ticket
            assert ack["conversation"]["id"] == conversation
            assert event["ticket_id"] == ticket.pk
            # when: the agent answers through the desk's composer on process 1
            await asyncio.to_thread(reply_on_the_desk, ticket.number, "It is ZX-42.")  # no database here
            # then: the visitor's socket on process 2 receives it, once
            heard = await visitor_hears(visitor, "It is ZX-42.")
            assert heard["message"]["author"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(visitor_hears(visitor, "It is ZX-42."), 1)
        finally:
            await visitor.close()
            await desk.close()
        return conversation

    try:
        conversation = asyncio.run(asyncio.wait_for(scenario(), 120))
    except BaseException:
        print(log_tail(two_servers["logs"]))
        raise
    # and: the four messages are on the one ticket, in order
    written = [
        "Hello, is my order on its way?",
        "Yes, it ships today.",
        "Great, and the tracking number?",
        "It is ZX-42.",
    ]
    assert [t for t in ticket_texts(conversation) if t in written] == written


def ticket_texts(conversation: str) -> list[str]:
    from helpdesk.models import Message

    return list(
        Message.objects.filter(ticket__chat__public_id=uuid.UUID(conversation))
        .exclude(direction="note")
        .order_by("id")
        .values_list("text", flat=True)
    )
