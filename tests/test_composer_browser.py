"""The composer in real Chromium: answer on another inbox, with a file attached."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import pytest

from tests.test_email_browser import (  # noqa: F401  (desk and smtp are fixtures)
    CHROMIUM,
    CHROMIUM_FLAGS,
    Collector,
    customer_mail,
    desk,
    pipe_mail,
    smtp,
)
from tests.test_run_modes import manage, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"),
]

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def test_reply_through_another_inbox_with_a_file(desk: dict[str, Any]) -> None:  # noqa: F811
    from playwright.sync_api import FilePayload, expect, sync_playwright

    collector: Collector = desk["collector"]
    # given: a second email inbox, and a customer's mail to the first
    manage(desk["env"], "inbox", "create", "--kind", "email", "--name", "Sales", "--set", "address=sales@example.com")
    pipe_mail(desk["env"], customer_mail("Invoice please", "Could you send the invoice?").as_bytes())

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{desk['base']}/desk/login/")
            page.fill("input[name=username]", "ada@example.com")
            page.fill("input[name=password]", "pw-ada-12345")
            page.click("button[type=submit]")
            page.get_by_role("link", name="Invoice please").first.click()
            # the default is the inbox the customer wrote to
            target = page.get_by_label("Answer on")
            expect(target.locator("option:checked")).to_have_text("Email · support@example.com → jana@example.org")
            expect(page.locator("#composer-files-limits")).to_contain_text("Up to 10 files")
            # when: answered through Sales, with the invoice attached
            target.select_option(label="Email · sales@example.com → jana@example.org")
            page.fill("textarea[name=text]", "Here is the invoice.")
            invoice: FilePayload = {"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": PDF}
            page.set_input_files("#composer-files", files=[invoice])
            page.click(".composer button[type=submit]")
            # then: the mail leaves from Sales with the file, and the timeline lists it
            wait_until(lambda: collector.messages, 30, "the reply over SMTP")
            sent = email.message_from_bytes(collector.messages[0][2], policy=email.policy.default)
            assert "sales@example.com" in str(sent["From"])
            files = list(sent.iter_attachments())
            assert [(f.get_filename(), f.get_content()) for f in files] == [("invoice.pdf", PDF)]
            expect(page.locator(".msg.outbound .attachments a")).to_have_text("invoice.pdf")
        finally:
            browser.close()
