"""@mention suggestions in the composer and the live unread badge, in real Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_desk_keyboard import HTMX, browser_test
from tests.test_run_modes import ROOT, embedded_env, manage, serving, signed_post, wait_until

pytestmark = [pytest.mark.slow, browser_test]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not HTMX.is_file():
        pytest.fail(f"{HTMX.relative_to(ROOT)} is missing: `make install` copies it from node_modules")
    data = tmp_path_factory.mktemp("mentions-desk")
    env = embedded_env(data)
    env["WHITENOISE_USE_FINDERS"] = "1"
    manage(env, "migrate", "--noinput")
    inbox = json.loads(manage(env, "inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    manage(
        env,
        "agent",
        "create",
        "ada@example.com",
        "--name",
        "Ada Agent",
        "--role",
        "admin",
        "--password",
        "pw-ada-12345",
    )
    manage(env, "agent", "create", "bo@example.com", "--name", "Bo Agent", "--password", "pw-bo-12345")
    with serving(env) as (base, _, _):
        payload = {"external_id": "mention-1", "sender": {"identifier": "c-1", "name": "Cy"}, "text": "Help please."}
        assert signed_post(base, inbox, payload).status_code == 200
        db = data / "switchboard.sqlite3"

        def number() -> int | None:
            import sqlite3

            with sqlite3.connect(db, timeout=10) as conn:
                row = conn.execute("SELECT number FROM helpdesk_ticket").fetchone()
            return int(row[0]) if row else None

        wait_until(lambda: number() is not None, 60, "the ticket")
        yield {"base": base, "number": number()}


def sign_in(browser: Any, base: str, email: str, password: str) -> Any:
    page = browser.new_context().new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{base}/desk/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/desk/")
    return page


def test_suggestions_complete_a_mention_that_notifies_and_the_badge_follows(desk: dict[str, Any], browser: Any) -> None:
    base, number = desk["base"], desk["number"]
    # given: Ada writes a note on the ticket
    ada = sign_in(browser, base, "ada@example.com", "pw-ada-12345")
    ada.goto(f"{base}/desk/tickets/{number}/")
    ada.check("#mode-note")
    text = ada.locator("#composer-text")
    text.click()
    text.press_sequentially("Can you look, @b")
    # when: the suggestions open, keyboard-driven
    listbox = ada.locator("#mention-listbox[role=listbox]")
    listbox.wait_for(state="visible")
    option = listbox.locator("[role=option]")
    assert option.count() == 1
    assert "Bo Agent" in option.first.inner_text()
    assert text.get_attribute("aria-activedescendant") == option.first.get_attribute("id")
    assert option.first.get_attribute("aria-selected") == "true"
    text.press("Escape")
    assert listbox.is_hidden()
    text.press_sequentially("o")
    listbox.wait_for(state="visible")
    text.press("ArrowDown")
    text.press("Enter")
    # then: the handle is written, the list closed
    assert listbox.is_hidden()
    assert text.input_value().strip() == "Can you look, @bo"
    text.press_sequentially("thanks")
    ada.click("#composer button[type=submit]")
    ada.wait_for_url(f"{base}/desk/tickets/{number}/")
    assert ada.locator(".msg.note .mention").first.inner_text() == "@bo"
    assert "Notified Bo Agent." in ada.locator(".flash").inner_text()
    assert ada.errors == []

    # given: Bo sees one unread notification
    bo = sign_in(browser, base, "bo@example.com", "pw-bo-12345")
    assert bo.locator("#notif-count").inner_text() == "1"
    # when: a live notification arrives (the frame desk.js hands on as a DOM event)
    bo.evaluate(
        """() => document.dispatchEvent(new CustomEvent("desk:agent-event", {detail: {type: "agent.event",
        kind: "notification", payload: {id: 99, kind: "assigned", ticket_number: 1,
        text: "<img src=x onerror=alert(1)> assigned", unread: 2}}}))"""
    )
    # then
    assert bo.locator("#notif-count").inner_text() == "2"
    assert bo.locator("#notif-live").inner_text() == "<img src=x onerror=alert(1)> assigned"
    assert bo.locator("#notif-live img").count() == 0
    # when: Bo opens the notification from the list
    bo.click("#notif-badge")
    bo.wait_for_url(f"{base}/desk/notifications/")
    bo.click(".notif-open")
    bo.wait_for_url(f"{base}/desk/tickets/{number}/")
    # then: read, the badge empty
    assert bo.locator("#notif-count").is_hidden()
    assert bo.errors == []
