"""The live desk in real Chromium against the embedded server: two agents in two browser
contexts (viewing, typing, a reply arriving live, the new-message warning, presence), the
sign-in → view → ticket → reply → delivery state path against a callback server of the test's
own, and a light agent who cannot send a public reply."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from channels_inbox.adapters.api import sign
from tests.test_desk_keyboard import HTMX, browser_test
from tests.test_run_modes import ROOT, embedded_env, free_port, manage, serving, signed_post, wait_until

# Every wait of a page is bounded; the whole module stays within a couple of minutes.
WAIT_MS = 10_000

pytestmark = browser_test


class CallbackServer:
    """The integrator's side of the API inbox: records each signed POST, answers 200 after a pause
    (so the reply is seen queued first), with an id the delivery keeps."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.received.append({"body": body, "headers": dict(self.headers)})
                time.sleep(3)
                answer = json.dumps({"id": f"cb-{len(outer.received)}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CallbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not HTMX.is_file():
        pytest.fail(f"{HTMX.relative_to(ROOT)} is missing: `make install` copies it from node_modules")
    data = tmp_path_factory.mktemp("live-desk")
    env = embedded_env(data)
    env["WHITENOISE_USE_FINDERS"] = "1"
    with CallbackServer() as callback:
        manage(env, "migrate", "--noinput")
        inbox = json.loads(
            manage(
                env,
                "inbox",
                "create",
                "--kind",
                "api",
                "--name",
                "Shop",
                "--set",
                f"callback_url=http://127.0.0.1:{callback.port}/hook",
                "--json",
            )
        )
        for email, name, role in [
            ("ada@example.com", "Ada Agent", "agent"),
            ("bo@example.com", "Bo Agent", "agent"),
            ("lee@example.com", "Lee Light", "light_agent"),
        ]:
            password = f"pw-{email.split('@')[0]}-12345"
            manage(
                env,
                "agent",
                "create",
                email,
                "--name",
                name,
                "--role",
                role,
                "--team",
                "Support",
                "--password",
                password,
            )
        with serving(env) as (base, _, _):
            yield {"base": base, "inbox": inbox, "callback": callback, "data": data}


_tickets = iter(range(1, 1000))
# The customer of each ticket made here, by ticket number.
_customers: dict[int, str] = {}


def new_ticket(desk: dict[str, Any], subject: str) -> int:
    """A customer message through the signed webhook; returns the ticket's number once stored."""
    n = next(_tickets)
    payload = {
        "external_id": f"live-{n}",
        "sender": {"identifier": f"customer-{n}", "name": f"Customer {n}"},
        "subject": subject,
        "text": f"{subject}: please help.",
    }
    resp = signed_post(desk["base"], desk["inbox"], payload)
    assert resp.status_code == 200, resp.text
    db = desk["data"] / "switchboard.sqlite3"

    def number() -> int | None:
        import sqlite3

        with sqlite3.connect(db, timeout=10) as conn:
            row = conn.execute("SELECT number FROM helpdesk_ticket WHERE subject = ?", (subject,)).fetchone()
        return int(row[0]) if row else None

    found = int(wait_until(number, 30, f"ticket {subject!r}"))
    _customers[found] = f"customer-{n}"
    return found


def customer_writes(desk: dict[str, Any], number: int, text: str) -> None:
    n = next(_tickets)
    payload = {
        "external_id": f"live-{n}",
        "sender": {"identifier": _customers[number], "name": "Customer"},
        "text": text,
    }
    assert signed_post(desk["base"], desk["inbox"], payload).status_code == 200


def sign_in(browser: Any, base: str, email: str) -> Any:
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{base}/desk/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", f"pw-{email.split('@')[0]}-12345")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/desk/")
    return page


def open_ticket(page: Any, base: str, number: int) -> None:
    page.goto(f"{base}/desk/tickets/{number}/")
    # the page's websocket said hello (the top bar follows the server's state)
    page.wait_for_function("document.getElementById('presence-menu').dataset.presence === 'online'")


def viewers_text(page: Any) -> str:
    return str(page.text_content("#ticket-viewers") or "")


@browser_test
def test_two_agents_see_each_other_typing_replying_and_away(desk: dict[str, Any], browser: Any) -> None:
    base = desk["base"]
    number = new_ticket(desk, "Two agents on one ticket")
    ada = sign_in(browser, base, "ada@example.com")
    bo = sign_in(browser, base, "bo@example.com")
    try:
        # given: Bo has the ticket open; then Ada opens it
        open_ticket(bo, base, number)
        open_ticket(ada, base, number)
        # then: each sees the other listed as viewing, with presence
        bo.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Ada Agent (online)')")
        ada.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Bo Agent (online)')")
        assert bo.is_visible("#ticket-presence")
        assert "Bo Agent" not in viewers_text(bo)  # never oneself
        # given: a marker that survives only as long as Bo's page is not reloaded
        bo.evaluate("window.__noReload = true")
        # when: Bo starts a draft, and Ada types
        bo.fill("#composer-text", "Hello, I am looking into your order")
        bo.dispatch_event("#composer-text", "input")
        ada.click("#composer-text")
        ada.keyboard.type("We shipped it today.")
        # then: each sees the other typing a reply
        bo.wait_for_function("document.getElementById('ticket-typing').textContent === 'Ada Agent is typing a reply…'")
        ada.wait_for_function("document.getElementById('ticket-typing').textContent.includes('Bo Agent is typing')")
        # when: Ada sends
        ada.click("#composer button[type=submit]")
        ada.wait_for_url(f"{base}/desk/tickets/{number}/")
        # then: the reply appears on Bo's page live, and the typing marker goes
        bo.wait_for_function("document.getElementById('timeline').textContent.includes('We shipped it today.')")
        assert bo.evaluate("window.__noReload") is True
        # and the header line follows: Ada's reply opened the new ticket
        bo.wait_for_function("document.querySelector('#ticket-meta .badge').textContent === 'Open'")
        bo.wait_for_function("document.getElementById('ticket-typing').textContent === ''", timeout=8000)
        # and Bo, who has a draft, is warned before sending
        warning = bo.locator("#composer-news-warning")
        warning.wait_for()
        assert warning.get_attribute("role") == "alert"
        assert "a reply from Ada Agent" in (warning.text_content() or "")
        send = bo.locator("#composer button[type=submit]")
        assert send.text_content() == "Send anyway"
        seen_before = int(bo.input_value("#composer-seen-seq"))
        # when: a shortcut-style submit (not the button): held back, the button gets focus
        bo.evaluate("document.getElementById('composer').requestSubmit()")
        assert bo.evaluate("document.activeElement.textContent") == "Send anyway"
        assert bo.evaluate("window.__noReload") is True
        assert int(bo.input_value("#composer-seen-seq")) == seen_before
        # when: Bo confirms with the button
        time.sleep(0.9)
        send.click()
        bo.wait_for_url(f"{base}/desk/tickets/{number}/")
        # then: it was sent (not held back by the server's 409)
        bo.wait_for_function(
            "document.getElementById('timeline').textContent.includes('Hello, I am looking into your order')"
        )
        assert bo.locator("#stale-warning").count() == 0
        ada.wait_for_function(
            "document.getElementById('timeline').textContent.includes('Hello, I am looking into your order')"
        )
        # when: Ada sets herself away in the top bar
        ada.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Bo Agent')")
        bo.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Ada Agent (online)')")
        ada.select_option("#presence-choice", "away")
        # then: her own top bar and Bo's viewer list show it
        ada.wait_for_function("document.getElementById('presence-menu').dataset.presence === 'away'")
        bo.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Ada Agent (away)')")
        ada.select_option("#presence-choice", "online")
        bo.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Ada Agent (online)')")
        # when: Ada leaves the ticket for the list
        ada.goto(f"{base}/desk/")
        # then: she disappears from Bo's page
        bo.wait_for_function("!document.getElementById('ticket-viewers').textContent.includes('Ada Agent')")
        assert bo.is_hidden("#ticket-presence")
        assert ada.errors == []
        assert bo.errors == []
    finally:
        ada.context.close()
        bo.context.close()


@browser_test
def test_a_customer_message_arriving_during_a_draft_is_named_in_the_warning(desk: dict[str, Any], browser: Any) -> None:
    base = desk["base"]
    number = new_ticket(desk, "Customer writes again")
    bo = sign_in(browser, base, "bo@example.com")
    try:
        open_ticket(bo, base, number)
        # given: no draft: a customer message is simply shown, and counts as seen
        customer_writes(desk, number, "First follow-up")
        bo.wait_for_function("document.getElementById('timeline').textContent.includes('First follow-up')")
        assert bo.locator("#composer-news-warning").count() == 0
        bo.wait_for_function("parseInt(document.getElementById('composer-seen-seq').value) > 1")
        # when: a draft, then the customer writes again
        bo.fill("#composer-text", "Draft written before the news")
        customer_writes(desk, number, "Second follow-up")
        # then
        bo.locator("#composer-news-warning").wait_for()
        assert "a new message from the customer" in (bo.text_content("#composer-news-warning") or "")
        # when: the draft is cleared, the warning goes (nothing left to send blind)
        bo.fill("#composer-text", "")
        bo.dispatch_event("#composer-text", "input")
        assert bo.locator("#composer-news-warning").count() == 0
        assert bo.text_content("#composer button[type=submit]") == "Send"
        assert bo.errors == []
    finally:
        bo.context.close()


@browser_test
def test_sign_in_open_a_view_and_a_ticket_reply_and_see_it_delivered(desk: dict[str, Any], browser: Any) -> None:
    base = desk["base"]
    number = new_ticket(desk, "Where is my parcel")
    callback = desk["callback"]
    before = len(callback.received)
    ada = sign_in(browser, base, "ada@example.com")
    try:
        # when: a view, then the ticket from it
        ada.click("a[href='?view=unassigned']")
        ada.wait_for_url(re.compile(r".*view=unassigned.*"))
        ada.click(f"#ticket-rows tr[data-number='{number}'] a.subject")
        ada.wait_for_url(f"{base}/desk/tickets/{number}/")
        # and a reply
        ada.fill("#composer-text", "Your parcel is on its way.")
        ada.click("#composer button[type=submit]")
        ada.wait_for_url(f"{base}/desk/tickets/{number}/")
        # then: queued first (the callback answers after a pause), then sent, live on the page
        delivery = ada.locator("#timeline .msg").filter(has_text="Your parcel is on its way.").locator(".delivery")
        assert delivery.get_attribute("class") == "delivery queued"
        ada.wait_for_function(
            "[...document.querySelectorAll('#timeline .delivery')].some(e => e.classList.contains('sent'))"
        )
        assert (delivery.text_content() or "").strip() == "Sent"
        # and the callback got the reply, signed
        wait_until(lambda: len(callback.received) > before, 10, "the callback POST")
        got = callback.received[-1]
        body = json.loads(got["body"])
        assert body["ticket"]["number"] == number
        assert body["message"]["text"] == "Your parcel is on its way."
        assert got["headers"]["X-Switchboard-Signature"] == sign(
            desk["inbox"]["secrets"]["signing_secret"], got["body"]
        )
        assert ada.errors == []
    finally:
        ada.context.close()


@browser_test
def test_a_light_agent_has_no_public_reply_and_a_forced_one_is_refused(desk: dict[str, Any], browser: Any) -> None:
    base = desk["base"]
    number = new_ticket(desk, "Light agent ticket")
    lee = sign_in(browser, base, "lee@example.com")
    try:
        open_ticket(lee, base, number)
        # then: only the internal note mode
        assert lee.locator("#mode-reply").count() == 0
        assert lee.is_checked("#mode-note")
        # when: a reply forced past the page (the form's own CSRF token)
        token = lee.input_value("#composer input[name=csrfmiddlewaretoken]")
        resp = lee.request.post(
            f"{base}/desk/tickets/{number}/reply/",
            form={"csrfmiddlewaretoken": token, "mode": "reply", "text": "public words", "seen_seq": "99"},
            headers={"Referer": f"{base}/desk/tickets/{number}/"},
            max_redirects=0,
        )
        # then
        assert resp.status == 403
        lee.reload()
        assert "public words" not in (lee.text_content("#timeline") or "")
        # and typing is announced as a note, never a reply
        lee.fill("#composer-text", "an internal remark")
        lee.dispatch_event("#composer-text", "input")
        assert lee.errors == []
    finally:
        lee.context.close()


@browser_test
def test_an_idle_page_is_away_and_activity_brings_it_back(desk: dict[str, Any], browser: Any) -> None:
    base = desk["base"]
    number = new_ticket(desk, "Idle watcher")
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    # the page's timers run on a clock the test can move forward
    page.clock.install()
    watcher = sign_in(browser, base, "ada@example.com")
    try:
        page.goto(f"{base}/desk/login/")
        page.fill("input[name=username]", "bo@example.com")
        page.fill("input[name=password]", "pw-bo-12345")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/desk/")
        open_ticket(page, base, number)
        open_ticket(watcher, base, number)
        watcher.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Bo Agent (online)')")
        # when: five minutes without input
        page.clock.fast_forward("05:01")
        # then: away, on the page and for the other viewer
        page.wait_for_function("document.getElementById('presence-menu').dataset.presence === 'away'")
        watcher.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Bo Agent (away)')")
        # when: a key is pressed
        page.keyboard.press("Shift")
        # then
        page.wait_for_function("document.getElementById('presence-menu').dataset.presence === 'online'")
        watcher.wait_for_function("document.getElementById('ticket-viewers').textContent.includes('Bo Agent (online)')")
    finally:
        page.context.close()
        watcher.context.close()
