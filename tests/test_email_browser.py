"""The email round trip as a user does it on `make run`, in real Chromium.

Mail in through the MTA pipe (`manage.py ingest_email`) → a ticket on the desk → the
agent replies in the browser → the reply leaves over a real SMTP conversation with the
threading headers → the customer's answer to that mail threads back onto the same ticket.
"""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import CHROMIUM, CHROMIUM_FLAGS, browser_test
from tests.test_run_modes import ROOT, embedded_env, free_port, manage, serving, wait_until

pytestmark = [
    pytest.mark.slow,
    browser_test,
]


class Collector:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Collector]]:
    from aiosmtpd.controller import Controller

    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, collector
    finally:
        controller.stop()


@pytest.fixture
def desk(tmp_path: Path, smtp: tuple[int, Collector]) -> Iterator[dict[str, Any]]:
    env = embedded_env(tmp_path)
    env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp[0]}"
    manage(env, "migrate", "--noinput")
    inbox = json.loads(
        manage(
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
    )
    manage(env, "agent", "create", "ada@example.com", "--name", "Ada Agent", "--password", "pw-ada-12345")
    with serving(env) as (base, _, _):
        yield {"base": base, "env": env, "inbox": inbox, "collector": smtp[1]}


def pipe_mail(env: dict[str, str], raw: bytes) -> None:
    """What an MTA's pipe transport does: the raw message on stdin; exit 0 means stored."""
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest_email", "--inbox", "support", "-"],
        cwd=ROOT,
        env=env,
        input=raw,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


def customer_mail(subject: str, text: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Jana Nováková <jana@example.org>"
    msg["To"] = headers.pop("to", "support@example.com")
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def test_email_round_trip_in_the_browser(desk: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    collector: Collector = desk["collector"]
    # given a customer's mail piped in by the MTA
    first = customer_mail("Objednávka nedorazila", "Dobrý den, objednávka č. 881 stále nedorazila.")
    pipe_mail(desk["env"], first.as_bytes())

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            # when the agent signs in and opens the new ticket from the list
            page.goto(f"{desk['base']}/desk/login/")
            page.fill("input[name=username]", "ada@example.com")
            page.fill("input[name=password]", "pw-ada-12345")
            page.click("button[type=submit]")
            page.get_by_role("link", name="Objednávka nedorazila").first.click()
            expect(page.locator("#timeline")).to_contain_text("objednávka č. 881 stále nedorazila")
            number = int(page.locator("[data-ticket]").get_attribute("data-ticket") or 0)

            # and answers it
            page.fill("textarea[name=text]", "Dobrý den, balík je na cestě.")
            page.click(".composer button[type=submit]")

            # then the reply leaves over SMTP, threaded to the customer's mail
            wait_until(lambda: collector.messages, 30, "the reply over SMTP")
            _mail_from, rcpt_tos, raw = collector.messages[0]
            sent = email.message_from_bytes(raw, policy=email.policy.default)
            assert rcpt_tos == ["jana@example.org"]
            assert "support@example.com" in str(sent["From"])
            assert str(sent["In-Reply-To"]) == first["Message-ID"]
            assert first["Message-ID"] in str(sent["References"])
            assert f"[#{number}]" in str(sent["Subject"])
            reply_to = str(sent["Reply-To"])
            assert reply_to.startswith(f"support+{number}-")
            assert reply_to.endswith("@example.com")
            plain = sent.get_body(("plain",))
            assert plain is not None
            assert "balík je na cestě" in plain.get_content()
            # and the desk shows it delivered to the SMTP server
            page.reload()
            expect(page.locator(".msg.outbound .delivery")).to_have_text("Sent", timeout=15_000)

            # when the customer answers that mail from their mail client
            answer = customer_mail(
                f"Re: {sent['Subject']}",
                "Děkuji, dorazilo!\n\n> Dobrý den, balík je na cestě.",
                to=reply_to,
                In_Reply_To=str(sent["Message-ID"]),
                References=f"{first['Message-ID']} {sent['Message-ID']}",
            )
            pipe_mail(desk["env"], answer.as_bytes())

            # then it is on the same ticket, after the agent's reply
            page.reload()
            expect(page.locator(".msg.inbound").last).to_contain_text("Děkuji, dorazilo!")
            assert page.locator("[data-ticket]").get_attribute("data-ticket") == str(number)
            page.goto(f"{desk['base']}/desk/?view=all")
            expect(page.get_by_role("link", name="Objednávka nedorazila")).to_have_count(1)
        finally:
            browser.close()
