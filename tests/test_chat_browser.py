"""Live chat as a website's visitor and an agent do it, in real Chromium against the embedded server.

A plain third-party page on another port embeds the widget with the one script tag; a visitor
chats with an agent signed in to the desk in another browser context; the visitor's network drops
and returns; the visitor leaves and the conversation continues by email (an aiosmtpd collector,
the reply piped back through `manage.py ingest_email`); forged and stale identities, a foreign
website and one visitor reading another's conversation are refused; with websockets blocked the
HTTP fallback keeps the widget working.

How the network is cut: `context.set_offline(True)` stops HTTP but leaves websockets open
(microsoft/playwright#4910), so the visitor's websockets are routed through Playwright
(`context.route_web_socket`, connected to the real server) and the test closes both ends and
refuses new ones while offline — the widget sees what it sees on a dead network.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
import websockets

from channels_inbox.chat.identity import user_hash
from tests.test_desk_keyboard import browser_test
from tests.test_email_browser import Collector as MailCollector
from tests.test_run_modes import ROOT, embedded_env, free_port, manage, serving, wait_until

# Every wait of a page is bounded; the whole module stays within a few minutes.
WAIT_MS = 15_000
FRAME_URL = re.compile(r"/widget/v1/[^/]+/frame")
WIDGET_WS = re.compile(r"/ws/widget/")
AGENT_EMAIL = "ada@example.com"
AGENT_PASSWORD = "pw-ada-12345"
IDENTITY_MAX_AGE = 12 * 3600

pytestmark = browser_test


# --- the world around the server: websites that embed the widget, a mail server ---------------


class HostSite:
    """A website of a customer of ours: a plain http.server on its own port serving pages that
    embed the widget (set with `page()`)."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        # `localhost`, not 127.0.0.1: another site than the server's, as a customer's shop is.
        self.origin = f"http://localhost:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, path: str, *, server: str, inbox_token: str, title: str = "Acme shop") -> str:
        self.pages[path] = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title></head>\n<body><h1>{title}</h1><p>Shoes, socks and more.</p>\n"
            f'<script src="{server}/widget/v1/loader.js" data-inbox="{inbox_token}" async></script>\n'
            "</body></html>\n"
        )
        return f"{self.origin}{path}"

    def __enter__(self) -> HostSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class Collector(MailCollector):
    """The email browser test's aiosmtpd collector, which also finds the mail to one address."""

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            found = [raw for _, rcpt, raw in self.messages if address in rcpt]
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in found]


@contextmanager
def smtp_collector() -> Iterator[tuple[int, Collector]]:
    from aiosmtpd.controller import Controller

    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, collector
    finally:
        controller.stop()


@contextmanager
def serving_at(env: dict[str, str], port: int) -> Iterator[tuple[str, int, Any]]:
    """`tests.test_run_modes.serving` on a port chosen beforehand: SITE_URL must name it (the
    widget's frame, API and websocket URLs are absolute, and our own origin is SITE_URL's)."""
    log = Path(env["SWITCHBOARD_DATA_DIR"]) / "server.log"
    with (
        log.open("wb") as out,
        mock.patch("tests.test_run_modes.free_port", return_value=port),
        serving(env, stdout=out) as running,
    ):
        yield running


def manage_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    return dict(json.loads(manage(env, *args)))


def shell(env: dict[str, str], code: str) -> str:
    return manage(env, "shell", "-c", code)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("chat")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = embedded_env(data)
    env.update(
        SITE_URL=base,
        WHITENOISE_USE_FINDERS="1",
        # A visitor whose widget has been closed this long has left: replies go by email.
        CHAT_AWAY_AFTER_SECONDS="2",
        CHAT_POLL_SECONDS="1",
        # A reply delivered live but never read is continued by email at the next sweep: soon here.
        CHAT_CONTINUITY_SWEEP_SECONDS="2",
        # Every visitor of this module comes from 127.0.0.1.
        CHAT_IP_SESSIONS_PER_MINUTE="1000",
        CHAT_IP_REQUESTS_PER_MINUTE="100000",
        CHAT_IP_CONVERSATIONS_PER_HOUR="100000",
        CHAT_IP_MESSAGES_PER_MINUTE="100000",
        CHAT_VISITOR_MESSAGES_PER_MINUTE="1000",
        CHAT_WS_PER_IP="1000",
    )
    with smtp_collector() as (smtp_port, collector), HostSite() as shop, HostSite() as foreign:
        env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp_port}"
        manage(env, "migrate", "--noinput")
        email_inbox = manage_json(
            env,
            "inbox",
            "create",
            "--kind",
            "email",
            "--name",
            "Support",
            "--set",
            "address=support@example.com",
            "--json",
        )
        chat = manage_json(
            env,
            "inbox",
            "create",
            "--kind",
            "chat",
            "--name",
            "Website chat",
            "--set",
            f"allowed_origins={shop.origin}",
            "--set",
            f"continuity_email_inbox={email_inbox['slug']}",
            "--set",
            "greeting=Hi! Ask us anything.",
            "--set",
            "prechat_name=optional",
            "--set",
            "prechat_email=required",
            "--set",
            "csat=true",
            "--json",
        )
        manage(
            env,
            "agent",
            "create",
            AGENT_EMAIL,
            "--name",
            "Ada Agent",
            "--team",
            "Support",
            "--password",
            AGENT_PASSWORD,
        )
        # Ada takes chats (the desk's availability switch does the same through this action).
        shell(
            env,
            "from helpdesk.actions.chats import do_set_chat_availability;"
            "from helpdesk.models import User;"
            f"u = User.objects.get(email={AGENT_EMAIL!r});"
            "do_set_chat_availability(u, available=True, capacity=20, actor=u)",
        )
        token = chat["public_token"]
        shop_page = shop.page("/", server=base, inbox_token=token)
        shop.page("/checkout", server=base, inbox_token=token, title="Checkout")
        foreign_page = foreign.page("/", server=base, inbox_token=token, title="Someone else's site")
        with serving_at(env, port) as (base, port, _):
            yield {
                "base": base,
                "port": port,
                "env": env,
                "db": data / "switchboard.sqlite3",
                "chat": chat,
                "token": token,
                "email_inbox": email_inbox,
                "collector": collector,
                "shop": shop,
                "shop_page": shop_page,
                "foreign": foreign,
                "foreign_page": foreign_page,
            }


# --- helpers: the database, the desk, the widget ---------------------------------------------


def db_row(desk: dict[str, Any], query: str, *params: Any) -> Any:
    with sqlite3.connect(desk["db"], timeout=10) as conn:
        return conn.execute(query, params).fetchone()


def deliveries_of(desk: dict[str, Any], number: int) -> list[Any]:
    """What became of a ticket's outbound deliveries (for a failure's message)."""
    with sqlite3.connect(desk["db"], timeout=10) as conn:
        return conn.execute(
            "SELECT d.id, i.kind, d.status, d.attempts, d.last_error, d.next_attempt_at, d.created_at, d.sent_at"
            " FROM channels_inbox_outbounddelivery d JOIN channels_inbox_inbox i ON d.inbox_id = i.id"
            " JOIN helpdesk_message m ON d.message_id = m.id JOIN helpdesk_ticket t ON m.ticket_id = t.id"
            " WHERE t.number = ? ORDER BY d.id",
            (number,),
        ).fetchall()


def ticket_number(desk: dict[str, Any], conversation_id: str) -> int:
    def find() -> int | None:
        row = db_row(
            desk,
            "SELECT t.number FROM helpdesk_ticket t JOIN channels_inbox_chatconversation c ON c.ticket_id = t.id"
            " WHERE c.public_id = ?",
            uuid.UUID(conversation_id).hex,
        )
        return int(row[0]) if row else None

    return int(wait_until(find, 15, f"the ticket of conversation {conversation_id}"))


def sign_in(browser: Any, base: str) -> Any:
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{base}/desk/login/")
    page.fill("input[name=username]", AGENT_EMAIL)
    page.fill("input[name=password]", AGENT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/desk/")
    return page


def open_ticket(page: Any, base: str, number: int) -> None:
    page.goto(f"{base}/desk/tickets/{number}/")
    page.wait_for_function("document.getElementById('presence-menu').dataset.presence === 'online'")


def agent_replies(page: Any, base: str, number: int, text: str) -> None:
    page.fill("#composer-text", text)
    page.click("#composer button[type=submit]")
    page.wait_for_url(f"{base}/desk/tickets/{number}/")


def timeline_count(page: Any, text: str) -> int:
    return int(
        page.evaluate(
            "t => [...document.querySelectorAll('#timeline .msg')].filter(m => m.textContent.includes(t)).length",
            text,
        )
    )


def wait_timeline(page: Any, text: str) -> None:
    page.wait_for_function("t => document.getElementById('timeline').textContent.includes(t)", arg=text)


class Network:
    """The visitor's network, for the widget's websockets: routed through Playwright to the real
    server, so the test can cut them (both ends) and refuse new ones while offline."""

    def __init__(self, context: Any, *, websockets_blocked: bool = False) -> None:
        self.context = context
        self.offline = False
        self.blocked = websockets_blocked
        self.routes: list[tuple[Any, Any]] = []
        self.handshakes = 0
        context.route_web_socket(WIDGET_WS, self._route)

    def _route(self, ws: Any) -> None:
        self.handshakes += 1
        if self.offline or self.blocked:
            ws.close(code=1006, reason="network unreachable")
            return
        self.routes.append((ws, ws.connect_to_server()))

    def drop(self) -> None:
        self.offline = True
        self.context.set_offline(True)
        for page_side, server_side in self.routes:
            server_side.close(code=1001, reason="network gone")
            page_side.close(code=1006, reason="network gone")
        self.routes.clear()

    def restore(self) -> None:
        self.offline = False
        self.context.set_offline(False)


class Visitor:
    """A visitor's browser on a host page; the widget's frame and its hooks (notes ws-front.md)."""

    def __init__(self, browser: Any, url: str, *, websockets_blocked: bool = False) -> None:
        self.context = browser.new_context()
        self.network = Network(self.context, websockets_blocked=websockets_blocked)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.console: list[str] = []
        self.page.on("console", self._console)
        self.page.goto(url)

    def _console(self, msg: Any) -> None:
        self.console.append(f"{msg.type}: {msg.text}")
        if msg.type == "warning":
            self.warnings.append(msg.text)

    def ready(self) -> Any:
        self.page.wait_for_function("document.getElementById('switchboard-widget')?.dataset.ready === '1'")
        frame = self.page.frame(url=FRAME_URL)
        assert frame is not None, [f.url for f in self.page.frames]
        frame.wait_for_selector("#sb-root[data-ready='1']", state="attached")
        return frame

    @property
    def frame(self) -> Any:
        frame = self.page.frame(url=FRAME_URL)
        assert frame is not None
        return frame

    def open(self) -> Any:
        frame = self.ready()
        self.page.evaluate("Switchboard.open()")
        frame.wait_for_selector("#sb-root[data-open='1']", state="attached")
        return frame

    def prechat(self, name: str, email_address: str) -> None:
        frame = self.frame
        frame.wait_for_selector("#sb-prechat")
        frame.fill("#sb-prechat-name", name)
        frame.fill("#sb-prechat-email", email_address)
        frame.click("#sb-prechat-submit")
        frame.wait_for_selector("#sb-input")

    def write(self, text: str) -> None:
        self.frame.fill("#sb-input", text)
        self.frame.click("#sb-send")

    def stored(self, text: str) -> None:
        """Until the server acknowledged the message (it has its id)."""
        self.frame.wait_for_function(
            "t => [...document.querySelectorAll('[data-testid=sb-message][data-direction=visitor]')]"
            ".some(m => m.querySelector('.sb-text').textContent === t && m.dataset.messageId)",
            arg=text,
        )

    def count(self, text: str, direction: str | None = None) -> int:
        selector = "[data-testid=sb-message]" + (f"[data-direction={direction}]" if direction else "")
        return int(
            self.frame.evaluate(
                "([s, t]) => [...document.querySelectorAll(s)]"
                ".filter(m => m.querySelector('.sb-text').textContent === t).length",
                [selector, text],
            )
        )

    def sees(self, text: str, direction: str = "agent") -> None:
        try:
            self.frame.wait_for_function(
                "([t, d]) => [...document.querySelectorAll(`[data-testid=sb-message][data-direction=${d}]`)]"
                ".some(m => m.querySelector('.sb-text').textContent === t)",
                arg=[text, direction],
            )
        except Exception as exc:
            root = self.frame.evaluate("JSON.stringify(document.getElementById('sb-root').dataset)")
            shown = self.frame.text_content("#sb-messages")
            raise AssertionError(f"{direction} message {text!r} not shown; widget {root}: {shown!r}") from exc

    def identify(self, data: dict[str, Any]) -> None:
        """`Switchboard.identify(data)` on the host page, until the widget has the answer."""
        before = self.page.evaluate(
            "() => { if (window.sbAnswers === undefined) { window.sbAnswers = 0;"
            " Switchboard.on('identified', () => window.sbAnswers++);"
            " Switchboard.on('identify_error', () => window.sbAnswers++); } return window.sbAnswers; }"
        )
        self.page.evaluate("d => Switchboard.identify(d)", data)
        self.page.wait_for_function("n => window.sbAnswers > n", arg=before)

    def host_token(self, inbox_token: str) -> str | None:
        """The token in the host page's storage (the fallback when the frame is denied its own)."""
        value = self.page.evaluate("k => localStorage.getItem(k)", f"switchboard:sb:{inbox_token}:token")
        return str(value) if value is not None else None

    def past(self) -> list[str]:
        """The conversation ids under "Previous conversations", in the order shown."""
        return list(
            self.frame.evaluate(
                "() => [...document.querySelectorAll('#sb-history:not([hidden]) [data-testid=sb-past]')]"
                ".map(e => e.dataset.conversation)"
            )
        )

    def root(self, name: str) -> str:
        return str(self.frame.get_attribute("#sb-root", f"data-{name}") or "")

    def conversation(self) -> str:
        self.frame.wait_for_function("document.getElementById('sb-root').dataset.conversation")
        return self.root("conversation")

    def close(self) -> None:
        # A tab closing sends its websockets' close frames ("going away"); Playwright does not
        # close the server side of a routed socket with the context, so the test does. New
        # sockets are refused first: closing a route's server side closes its page side too, the
        # widget reconnects at once, and a route opened while the context closes would stay
        # connected to the server (a visitor "there" until CONNECTION_TTL_SECONDS).
        self.network.blocked = True
        self.page.close()
        for _page_side, server_side in self.network.routes:
            server_side.close(code=1001, reason="page closed")
        self.network.routes.clear()
        self.context.close()


def pump_until(page: Any, predicate: Any, timeout: float, what: str) -> Any:
    """`wait_until` for what Playwright's events fill in (console, routes): the sync API runs its
    event handlers only while it is called, so this waits through the page, not time.sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_chat(
    desk: dict[str, Any],
    browser: Any,
    text: str,
    *,
    name: str = "Jana Nováková",
    email_address: str = "jana@example.org",
    websockets_blocked: bool = False,
) -> tuple[Visitor, str, int]:
    """A visitor on the shop's page opens the widget, fills the pre-chat form and writes."""
    visitor = Visitor(browser, desk["shop_page"], websockets_blocked=websockets_blocked)
    visitor.open()
    visitor.prechat(name, email_address)
    visitor.write(text)
    visitor.stored(text)
    conversation = visitor.conversation()
    return visitor, conversation, ticket_number(desk, conversation)


def api(desk: dict[str, Any], method: str, path: str, *, token: str = "", origin: str = "", **kwargs: Any) -> Any:
    headers = {"Origin": origin or desk["shop"].origin}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(
        method, f"{desk['base']}/widget/v1/{desk['token']}/{path}", headers=headers, timeout=10, **kwargs
    )


def new_session(desk: dict[str, Any]) -> dict[str, Any]:
    """A visitor's session as the widget opens it (its API call, from the shop's origin)."""
    resp = api(desk, "POST", "session", json={"site": desk["shop"].origin, "url": desk["shop_page"], "title": "Acme"})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def identity(desk: dict[str, Any], user_id: str, email_address: str, name: str) -> dict[str, Any]:
    """What a signed-in user's page passes to `Switchboard.identify` (its server signs it)."""
    now = int(time.time())
    secret = desk["chat"]["secrets"]["identity_secret"]
    return {
        "user_id": user_id,
        "email": email_address,
        "name": name,
        "issued_at": now,
        "user_hash": user_hash(secret, user_id, now),
    }


def verified_user_of(desk: dict[str, Any], conversation_id: str) -> str:
    row = db_row(
        desk,
        "SELECT v.verified_user_id FROM channels_inbox_chatconversation c"
        " JOIN channels_inbox_chatvisitor v ON c.visitor_id = v.id WHERE c.public_id = ?",
        uuid.UUID(conversation_id).hex,
    )
    assert row is not None, conversation_id
    return str(row[0])


def ws_url(desk: dict[str, Any]) -> str:
    return f"ws://127.0.0.1:{desk['port']}/ws/widget/?inbox={desk['token']}"


def run_async(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run beside Playwright's sync API (which keeps an event loop running in this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


async def ws_frames(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Every frame the server sends within `seconds`."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return frames


def pipe_mail(desk: dict[str, Any], raw: bytes) -> None:
    """What an MTA's pipe transport does with the visitor's answer (as tests/test_email_browser.py)."""
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest_email", "--inbox", desk["email_inbox"]["slug"], "-"],
        cwd=ROOT,
        env=desk["env"],
        input=raw,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


# --- the tests -------------------------------------------------------------------------------


@browser_test
def test_a_visitor_and_an_agent_chat_live_and_a_network_drop_loses_and_doubles_nothing(
    desk: dict[str, Any], browser: Any
) -> None:
    base = desk["base"]
    # given: a visitor on the shop's own page (another site, another port) starts a chat
    visitor, _conversation, number = start_chat(desk, browser, "Hello, my order #881 is late")
    assert visitor.page.url.startswith(desk["shop"].origin)
    assert visitor.root("transport") == "ws"
    ada = sign_in(browser, base)
    try:
        # when: the agent opens the chat's ticket
        open_ticket(ada, base, number)
        # then: the visitor's message is there, with the pre-chat answers
        wait_timeline(ada, "Hello, my order #881 is late")
        assert "jana@example.org" in (ada.text_content("body") or "")
        # when: the agent answers
        agent_replies(ada, base, number, "Hi Jana, let me check that for you.")
        # then: the visitor sees it live (no reload), from the agent by first name
        visitor.sees("Hi Jana, let me check that for you.")
        # when: the visitor writes again
        visitor.write("Thank you!")
        # then: the agent's page shows it live
        wait_timeline(ada, "Thank you!")

        # when: the visitor's network drops
        visitor.network.drop()
        visitor.page.wait_for_function(
            "document.getElementById('switchboard-widget').dataset.transport === 'offline'", timeout=WAIT_MS
        )
        # and meanwhile the visitor writes (kept in the widget until it is back) and the agent answers
        visitor.write("Are you still there? (sent offline)")
        assert visitor.frame.get_attribute("#sb-root", "data-pending") == "1"
        agent_replies(ada, base, number, "Yes: it ships today (sent while you were offline).")
        visitor.page.wait_for_timeout(1000)
        assert visitor.count("Yes: it ships today (sent while you were offline).") == 0
        # when: the network returns
        visitor.network.restore()
        # then: each side gets the other's message, exactly once
        visitor.stored("Are you still there? (sent offline)")
        visitor.sees("Yes: it ships today (sent while you were offline).")
        wait_timeline(ada, "Are you still there? (sent offline)")
        visitor.frame.wait_for_function("document.getElementById('sb-root').dataset.transport === 'ws'")
        visitor.page.wait_for_timeout(1500)  # a late duplicate would show up now
        for text in ("Hello, my order #881 is late", "Thank you!", "Are you still there? (sent offline)"):
            assert visitor.count(text, "visitor") == 1, text
            assert timeline_count(ada, text) == 1, text
        for text in ("Hi Jana, let me check that for you.", "Yes: it ships today (sent while you were offline)."):
            assert visitor.count(text, "agent") == 1, text
            assert timeline_count(ada, text) == 1, text
        # and the database holds each visitor message once
        assert db_row(
            desk,
            "SELECT count(*) FROM helpdesk_message m JOIN helpdesk_ticket t ON m.ticket_id = t.id"
            " WHERE t.number = ? AND m.text = ?",
            number,
            "Are you still there? (sent offline)",
        ) == (1,)
        # and after a reload the widget shows the same history, once each
        visitor.page.reload()
        visitor.open()
        visitor.sees("Are you still there? (sent offline)", "visitor")
        visitor.sees("Yes: it ships today (sent while you were offline).")
        visitor.page.wait_for_timeout(1000)
        for text in ("Hello, my order #881 is late", "Thank you!", "Are you still there? (sent offline)"):
            assert visitor.count(text, "visitor") == 1, text
        for text in ("Hi Jana, let me check that for you.", "Yes: it ships today (sent while you were offline)."):
            assert visitor.count(text, "agent") == 1, text
        assert visitor.errors == []
        assert ada.errors == []
    finally:
        visitor.close()
        ada.context.close()


@browser_test
def test_a_visitor_who_left_gets_the_reply_by_email_and_the_email_reply_continues_the_ticket(
    desk: dict[str, Any], browser: Any
) -> None:
    base = desk["base"]
    collector: Collector = desk["collector"]
    address = "petr@example.org"
    # given: a chat, seen by the agent
    visitor, conversation, number = start_chat(
        desk, browser, "Can I change my delivery address?", name="Petr", email_address=address
    )
    ada = sign_in(browser, base)
    try:
        open_ticket(ada, base, number)
        wait_timeline(ada, "Can I change my delivery address?")
        # when: the visitor leaves the site
        visitor.close()
        # (a widget counts as there for 2×CHAT_POLL_SECONDS+5 s after its last HTTP request, and
        # CHAT_AWAY_AFTER_SECONDS=2 more on this server: then it has left)
        time.sleep(8)
        # and the agent answers
        agent_replies(ada, base, number, "Yes, reply with the new address and we will change it.")
        # then: the answer arrives by email, with a link back into the conversation
        # (by `send` when the visitor is gone; by the sweep when the reply went out live first)
        try:
            mails = wait_until(lambda: collector.to(address), 60, "the continuity mail")
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}; deliveries: {deliveries_of(desk, number)}") from None
        assert len(mails) == 1
        sent = mails[0]
        plain = sent.get_body(("plain",))
        assert plain is not None
        body = plain.get_content()
        assert "Yes, reply with the new address and we will change it." in body
        link = re.search(rf"{re.escape(base)}/widget/v1/{re.escape(desk['token'])}/c/[^\s/]+/", body)
        assert link, body
        reply_to = str(sent["Reply-To"] or sent["From"])
        assert re.search(rf"support\+{number}-", reply_to), reply_to
        # when: the visitor answers that mail
        answer = EmailMessage()
        answer["From"] = f"Petr <{address}>"
        answer["To"] = reply_to
        answer["Subject"] = f"Re: {sent['Subject']}"
        answer["Message-ID"] = make_msgid(domain="example.org")
        answer["In-Reply-To"] = str(sent["Message-ID"])
        answer["References"] = str(sent["Message-ID"])
        answer.set_content("The new address is Dlouhá 5, Praha.\n\n> Yes, reply with the new address")
        pipe_mail(desk, answer.as_bytes())
        # then: it lands on the same ticket (processed by the pipe's own process: in the embedded
        # mode its live update stays there, so the agent's page is reloaded, as in test_email_browser)
        ada.reload()
        wait_timeline(ada, "The new address is Dlouhá 5, Praha.")
        assert db_row(
            desk,
            "SELECT t.number FROM helpdesk_message m JOIN helpdesk_ticket t ON m.ticket_id = t.id WHERE m.text LIKE ?",
            "The new address is Dlouhá 5%",
        ) == (number,)
        # when: the visitor opens the link from the mail (another browser: no widget storage)
        page = browser.new_context().new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(link.group(0))
            # then: the conversation, on our own origin, with the agent's answer and the mail reply
            root = page.locator("#sb-root")
            root.wait_for(state="attached")
            page.wait_for_function(
                "t => document.getElementById('sb-messages').textContent.includes(t)",
                arg="Yes, reply with the new address and we will change it.",
            )
            page.wait_for_function(
                "t => document.getElementById('sb-messages').textContent.includes(t)",
                arg="The new address is Dlouhá 5, Praha.",
            )
            assert page.get_attribute("#sb-root", "data-conversation") == conversation
            # and the visitor can go on chatting there
            page.fill("#sb-input", "Thanks, that was quick.")
            page.click("#sb-send")
            wait_timeline(ada, "Thanks, that was quick.")
        finally:
            page.context.close()
        assert ada.errors == []
    finally:
        ada.context.close()


@browser_test
def test_forged_and_stale_identities_and_a_foreign_website_are_refused(desk: dict[str, Any], browser: Any) -> None:
    secret = desk["chat"]["secrets"]["identity_secret"]
    now = int(time.time())
    session = new_session(desk)

    def identify(user_id: str, issued_at: int, hash_: str) -> Any:
        data = {"user_id": user_id, "email": "vip@example.com", "name": "V. I. P.", "issued_at": issued_at}
        return api(desk, "POST", "identify", token=session["token"], json={**data, "user_hash": hash_})

    # when: a forged hash (the right shape, the wrong key)
    forged = identify("customer-7", now, user_hash("not-the-secret", "customer-7", now))
    # then: refused, saying why, and the visitor is not tied to that customer
    assert forged.status_code == 403, forged.text
    assert "does not match" in forged.json()["error"]
    # when: a real hash, issued longer ago than CHAT_IDENTITY_MAX_AGE_SECONDS
    stale_at = now - IDENTITY_MAX_AGE - 60
    stale = identify("customer-7", stale_at, user_hash(secret, "customer-7", stale_at))
    # then
    assert stale.status_code == 403, stale.text
    assert "too old" in stale.json()["error"]
    assert db_row(
        desk,
        "SELECT verified_user_id FROM channels_inbox_chatvisitor WHERE public_id = ?",
        uuid.UUID(session["visitor"]["id"]).hex,
    ) == ("",)
    # and a fresh, real one is accepted (the control)
    good = identify("customer-7", now, user_hash(secret, "customer-7", now))
    assert good.status_code == 200, good.text
    assert good.json()["visitor"]["verified"] is True

    # when: the widget's own identify, from the shop's page, with a forged hash
    visitor = Visitor(browser, desk["shop_page"])
    try:
        visitor.ready()
        visitor.page.evaluate(
            "a => Switchboard.identify(a)",
            {"user_id": "customer-8", "email": "x@example.com", "user_hash": "0" * 64, "issued_at": now},
        )
        visitor.page.wait_for_timeout(1000)
        # then: nobody of that id was verified
        assert db_row(
            desk, "SELECT count(*) FROM channels_inbox_chatvisitor WHERE verified_user_id LIKE ?", "%customer-8%"
        ) == (0,)
    finally:
        visitor.close()

    # when: the same script tag on a website the inbox does not allow
    foreign = Visitor(browser, desk["foreign_page"])
    try:
        # then: the loader is refused its config and adds nothing to the page
        pump_until(foreign.page, lambda: any("Switchboard" in w for w in foreign.warnings), 10, "the loader's refusal")
        assert foreign.page.locator("#switchboard-widget").count() == 0
        assert foreign.page.frame(url=FRAME_URL) is None
        # and the frame itself, put there by hand, is refused by the browser (CSP frame-ancestors)
        frame_url = f"{desk['base']}/widget/v1/{desk['token']}/frame?site={desk['foreign'].origin}"
        foreign.page.evaluate(
            "u => { const f = document.createElement('iframe'); f.id = 'forced'; f.src = u;"
            " document.body.appendChild(f); }",
            frame_url,
        )
        foreign.page.wait_for_timeout(2000)
        forced = foreign.page.frame(url=FRAME_URL)
        assert forced is None or forced.evaluate("document.getElementById('sb-root')") is None
    finally:
        foreign.close()
    # and the server refuses that website's config, frame and API calls
    config = api(desk, "GET", "config", origin=desk["foreign"].origin)
    assert config.status_code == 403, config.text
    assert "access-control-allow-origin" not in config.headers
    allowed = api(desk, "GET", "config")
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == desk["shop"].origin
    frame = httpx.get(frame_url, timeout=10)
    csp = frame.headers.get("content-security-policy", "")
    assert frame.status_code == 403 or (
        "frame-ancestors" in csp and desk["foreign"].origin not in csp and desk["shop"].origin in csp
    ), (frame.status_code, csp)
    refused = api(desk, "POST", "session", origin=desk["foreign"].origin, json={"site": desk["foreign"].origin})
    assert refused.status_code == 403, refused.text

    # and a websocket handshake from that website is refused
    async def handshake(origin: str) -> str:
        try:
            async with websockets.connect(ws_url(desk), additional_headers={"Origin": origin}) as ws:
                await ws.send(json.dumps({"action": "auth", "token": session["token"]}))
                first = json.loads(await asyncio.wait_for(ws.recv(), 5))
                return str(first.get("type"))
        except websockets.ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd else None}"
        except websockets.InvalidStatus as invalid:
            return f"status {invalid.response.status_code}"

    assert run_async(handshake(desk["shop"].origin)) == "ready"
    assert run_async(handshake(desk["foreign"].origin)) in ("closed 4403", "status 403")


@browser_test
def test_one_visitor_can_never_read_another_visitors_conversation(desk: dict[str, Any], browser: Any) -> None:
    # given: visitor A's conversation, in the browser
    alice, conversation, number = start_chat(
        desk, browser, "My secret order is #4242", name="Alice", email_address="alice@example.org"
    )
    alice.close()
    # and visitor B, another browser's widget session
    bob = new_session(desk)
    assert all(c["id"] != conversation for c in bob["conversations"])

    # when: B asks the HTTP fallback for A's conversation
    events = api(desk, "GET", f"conversations/{conversation}/events?after=0", token=bob["token"])
    # then: as if it did not exist, and nothing of it is in the answer
    assert events.status_code == 404, events.text
    assert "4242" not in events.text
    # and B cannot write into it, mark it read, end it or rate it
    cmid = str(uuid.uuid4())
    posted = api(
        desk,
        "POST",
        "messages",
        token=bob["token"],
        json={"conversation": conversation, "client_msg_id": cmid, "text": "let me in"},
    )
    assert posted.status_code == 404, posted.text
    for action, body in [
        ("read", {"message_id": 1}),
        ("typing", {"typing": True}),
        ("end", {}),
        ("rating", {"rating": 1}),
    ]:
        resp = api(desk, "POST", f"conversations/{conversation}/{action}", token=bob["token"], json=body)
        assert resp.status_code == 404, (action, resp.status_code, resp.text)
    assert db_row(desk, "SELECT count(*) FROM helpdesk_message WHERE text = 'let me in'") == (0,)
    # and a token of another inbox or a forged one gets nothing either
    bad = api(desk, "GET", f"conversations/{conversation}/events?after=0", token=bob["token"] + "x")
    assert bad.status_code == 401, bad.text

    # when: B tries over the websocket
    async def over_websocket() -> list[dict[str, Any]]:
        async with websockets.connect(ws_url(desk), additional_headers={"Origin": desk["shop"].origin}) as ws:
            await ws.send(json.dumps({"action": "auth", "token": bob["token"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ready"
            await ws.send(json.dumps({"action": "resume", "conversation": conversation, "last_seq": 0}))
            await ws.send(json.dumps({"action": "read", "conversation": conversation, "message_id": 1}))
            await ws.send(
                json.dumps(
                    {
                        "action": "message",
                        "conversation": conversation,
                        "client_msg_id": str(uuid.uuid4()),
                        "text": "let me in over ws",
                    }
                )
            )
            # an agent reply on A's ticket meanwhile must not reach B either
            await asyncio.to_thread(
                shell,
                desk["env"],
                "from helpdesk.actions.replies import do_reply; from helpdesk.models import Ticket, User;"
                f"do_reply(Ticket.objects.get(number={number}), actor=User.objects.get(email={AGENT_EMAIL!r}),"
                " text='Your order #4242 shipped')",
            )
            return await ws_frames(ws, 3)

    frames = run_async(over_websocket())
    # then: refusals only, never an event of A's conversation
    assert not [f for f in frames if f.get("type") in ("event", "typing", "queue")], frames
    assert "4242" not in json.dumps(frames)
    errors = [f for f in frames if f.get("type") == "error"]
    assert errors, frames
    assert db_row(desk, "SELECT count(*) FROM helpdesk_message WHERE text = 'let me in over ws'") == (0,)
    # and the ticket still holds only A's words and the agent's
    assert db_row(
        desk,
        "SELECT count(*) FROM helpdesk_message m JOIN helpdesk_ticket t ON m.ticket_id = t.id WHERE t.number = ?",
        number,
    ) == (2,)


@browser_test
def test_the_http_fallback_keeps_the_widget_working_when_websockets_are_blocked(
    desk: dict[str, Any], browser: Any
) -> None:
    base = desk["base"]
    # given: a visitor whose network refuses every websocket
    visitor, _conversation, number = start_chat(
        desk,
        browser,
        "Chatting from a locked-down office",
        websockets_blocked=True,
        name="Olga",
        email_address="olga@example.org",
    )
    ada = sign_in(browser, base)
    try:
        # then: the widget says it is on HTTP, and its message was stored anyway
        assert visitor.network.handshakes >= 1
        visitor.frame.wait_for_function("document.getElementById('sb-root').dataset.transport === 'http'")
        open_ticket(ada, base, number)
        wait_timeline(ada, "Chatting from a locked-down office")
        # when: the agent answers
        agent_replies(ada, base, number, "Polling works too, Olga.")
        # then: it arrives through the poll (CHAT_POLL_SECONDS=1 here), once
        visitor.sees("Polling works too, Olga.")
        # when: the visitor writes again
        visitor.write("Great, thanks")
        visitor.stored("Great, thanks")
        wait_timeline(ada, "Great, thanks")
        visitor.page.wait_for_timeout(2000)
        assert visitor.count("Polling works too, Olga.", "agent") == 1
        assert visitor.count("Great, thanks", "visitor") == 1
        assert timeline_count(ada, "Great, thanks") == 1
        assert visitor.errors == []
    finally:
        visitor.close()
        ada.context.close()


@browser_test
def test_signing_in_as_another_user_in_the_same_browser_shows_only_that_users_chats(
    desk: dict[str, Any], browser: Any
) -> None:
    token = desk["token"]
    # given: user A of the shop, signed in (a valid hash), chats
    visitor = Visitor(browser, desk["shop_page"])
    try:
        visitor.open()
        visitor.identify(identity(desk, "shop-user-a", "anna@example.org", "Anna"))
        assert visitor.root("verified") == "1"
        visitor.write("Anna's private order #5150")
        visitor.stored("Anna's private order #5150")
        anna_conversation = visitor.conversation()
        anna_token = visitor.host_token(token)
        handshakes = visitor.network.handshakes

        # when: A signs out without the site calling reset(), and B signs in on the same browser
        visitor.identify(identity(desk, "shop-user-b", "bert@example.org", "Bert"))

        # then: nothing of A is shown, and the widget reconnects as B
        visitor.frame.wait_for_selector("#sb-root[data-transport='ws']", state="attached")
        assert visitor.network.handshakes > handshakes
        assert visitor.root("verified") == "1"
        assert visitor.root("conversation") == ""
        assert visitor.count("Anna's private order #5150") == 0
        assert visitor.past() == []
        if anna_token is not None:
            assert visitor.host_token(token) not in (None, anna_token)
        # and B's messages go into B's own conversation
        visitor.write("Bert here, about my return")
        visitor.stored("Bert here, about my return")
        bert_conversation = visitor.conversation()
        assert bert_conversation != anna_conversation
        assert verified_user_of(desk, bert_conversation) == "shop-user-b"
        assert verified_user_of(desk, anna_conversation) == "shop-user-a"

        # when: the page is reloaded
        visitor.page.reload()
        visitor.open()
        # then: still B, with B's chat only
        visitor.sees("Bert here, about my return", "visitor")
        assert visitor.root("verified") == "1"
        assert visitor.root("conversation") == bert_conversation
        visitor.page.wait_for_timeout(1000)
        assert visitor.count("Anna's private order #5150") == 0
        assert visitor.past() == []
        assert visitor.errors == []
    finally:
        visitor.close()


@browser_test
def test_reset_on_logout_forgets_the_signed_in_visitor(desk: dict[str, Any], browser: Any) -> None:
    token = desk["token"]
    # given: a signed-in user who chatted
    visitor = Visitor(browser, desk["shop_page"])
    try:
        visitor.open()
        visitor.identify(identity(desk, "shop-user-c", "carla@example.org", "Carla"))
        visitor.write("Carla's invoice #77 is wrong")
        visitor.stored("Carla's invoice #77 is wrong")
        carla_token = visitor.host_token(token)

        # when: the website's logout calls Switchboard.reset()
        visitor.page.evaluate("Switchboard.reset()")

        # then: a new anonymous visitor, none of the user's chats
        visitor.frame.wait_for_selector("#sb-root[data-ready='1'][data-verified='0']", state="attached")
        assert visitor.root("conversation") == ""
        assert visitor.count("Carla's invoice #77 is wrong") == 0
        assert visitor.past() == []
        assert visitor.frame.is_visible("#sb-prechat")  # an anonymous visitor: the pre-chat form again
        if carla_token is not None:
            assert visitor.host_token(token) not in (None, carla_token)

        # when: the page is reloaded
        visitor.page.reload()
        frame = visitor.open()
        # then: still anonymous, still nothing of the user
        frame.wait_for_selector("#sb-root[data-verified='0']", state="attached")
        visitor.page.wait_for_timeout(1000)
        assert visitor.root("conversation") == ""
        assert visitor.count("Carla's invoice #77 is wrong") == 0
        assert visitor.past() == []
        assert visitor.errors == []
    finally:
        visitor.close()


@browser_test
def test_a_verified_customer_sees_their_earlier_conversations(desk: dict[str, Any], browser: Any) -> None:
    user = ("shop-user-d", "dana@example.org", "Dana")

    def chat_elsewhere(text: str) -> tuple[str, str]:
        """A chat of the user on another device, through the widget's API, ended by the user."""
        session = new_session(desk)
        identified = api(desk, "POST", "identify", token=session["token"], json=identity(desk, *user))
        assert identified.status_code == 200, identified.text
        device = identified.json()["token"]
        sent = api(
            desk,
            "POST",
            "messages",
            token=device,
            json={
                "conversation": None,
                "client_msg_id": str(uuid.uuid4()),
                "text": text,
                "prechat": {"name": user[2], "email": user[1]},
            },
        )
        assert sent.status_code == 201, sent.text
        return sent.json()["conversation"]["id"], device

    # given: two earlier chats of the customer, the first answered by the agent, both ended
    first, first_device = chat_elsewhere("First chat: the shoes are too small")
    shell(
        desk["env"],
        "from helpdesk.actions.replies import do_reply; from helpdesk.models import Ticket, User;"
        f"do_reply(Ticket.objects.get(chat__public_id={uuid.UUID(first).hex!r}),"
        f" actor=User.objects.get(email={AGENT_EMAIL!r}), text='Send them back, we swap the size.')",
    )
    ended = api(desk, "POST", f"conversations/{first}/end", token=first_device)
    assert ended.status_code == 200, ended.text
    second, second_device = chat_elsewhere("Second chat: a sock is missing")
    ended = api(desk, "POST", f"conversations/{second}/end", token=second_device)
    assert ended.status_code == 200, ended.text

    # when: the customer signs in on the shop in a new browser
    visitor = Visitor(browser, desk["shop_page"])
    try:
        visitor.open()
        visitor.identify(identity(desk, *user))
        # then: both earlier chats are listed, newest first, and none is opened as the current chat
        assert visitor.past() == [second, first]
        assert visitor.root("conversation") == ""
        # when: the customer opens them
        frame = visitor.frame
        for conversation, texts in (
            (second, ["Second chat: a sock is missing"]),
            (first, ["First chat: the shoes are too small", "Send them back, we swap the size."]),
        ):
            item = f"[data-testid=sb-past][data-conversation='{conversation}']"
            frame.click(f"{item} .sb-past-btn")
            frame.wait_for_selector(f"{item}[data-loaded='1']", state="attached")
            # then: their history, loaded over HTTP, read-only
            shown = frame.text_content(f"{item} .sb-past-body") or ""
            for text in texts:
                assert text in shown, (text, shown)
            assert frame.locator(f"{item} [data-testid=sb-past-continue]").count() == 0
        assert visitor.count("Send them back, we swap the size.", "agent") == 1
        assert visitor.count("Second chat: a sock is missing", "visitor") == 1
        # when: the customer writes now
        visitor.write("Third time: where is my refund?")
        visitor.stored("Third time: where is my refund?")
        # then: a new conversation; the earlier two stay listed
        third = visitor.conversation()
        assert third not in (first, second)
        assert visitor.past() == [second, first]
        # and after a reload: the current chat, and the earlier two below "Previous conversations"
        visitor.page.reload()
        visitor.open()
        visitor.sees("Third time: where is my refund?", "visitor")
        assert visitor.root("conversation") == third
        assert visitor.past() == [second, first]
        assert visitor.errors == []
    finally:
        visitor.close()


@browser_test
def test_a_long_conversation_is_shown_whole_and_in_order_after_a_reload(desk: dict[str, Any], browser: Any) -> None:
    # given: a conversation longer than one websocket replay (the rest comes over HTTP)
    total = 120
    visitor, conversation, _number = start_chat(
        desk, browser, "Line 000", name="Lena", email_address="lena@example.org"
    )
    try:
        token = visitor.host_token(desk["token"])
        assert token, "the visitor's token (host-page storage in this browser)"
        with httpx.Client(
            base_url=f"{desk['base']}/widget/v1/{desk['token']}/",
            headers={"Origin": desk["shop"].origin, "Authorization": f"Bearer {token}"},
            timeout=10,
        ) as client:
            for n in range(1, total):
                sent = client.post(
                    "messages",
                    json={"conversation": conversation, "client_msg_id": str(uuid.uuid4()), "text": f"Line {n:03}"},
                )
                assert sent.status_code == 201, sent.text
        history: list[str] = []
        visitor.page.on("request", lambda r: history.append(r.url) if "/events?after=" in r.url else None)
        # when: the page is reloaded
        visitor.page.reload()
        visitor.open()
        # then: every message, once, oldest first
        visitor.sees(f"Line {total - 1:03}", "visitor")
        visitor.sees("Line 000", "visitor")
        shown = visitor.frame.evaluate(
            "() => [...document.querySelectorAll('#sb-messages [data-testid=sb-message]')]"
            ".map(m => m.querySelector('.sb-text').textContent)"
        )
        assert shown == [f"Line {n:03}" for n in range(total)], shown
        # (the websocket replayed the newest events; the widget fetched the older ones over HTTP)
        assert visitor.root("transport") == "ws"
        assert any(f"conversations/{conversation}/events?after=0" in url for url in history), history
        assert visitor.errors == []
    finally:
        visitor.close()


def test_the_demo_page_embeds_the_first_chat_inbox(desk: dict[str, Any], browser: Any) -> None:
    # when: the page `make run` points a new user to
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{desk['base']}/widget/v1/demo/")
        # then: the inbox, its embed snippet, and the widget working on our own origin
        assert page.text_content("#demo-inbox") == "Website chat"
        assert f'data-inbox="{desk["token"]}"' in (page.text_content("#demo-snippet") or "")
        page.wait_for_function("document.getElementById('switchboard-widget')?.dataset.ready === '1'")
    finally:
        page.context.close()
