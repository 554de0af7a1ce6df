"""Screenshots of the desk's main screens, from the embedded demo, into docs/screenshots/.

    .venv/bin/python docs/screenshots/take.py            # after `make install`

It starts the demo exactly as `make run` does, in a temporary data directory (`manage.py
migrate`, `seed_demo`, `serve` on a free port), signs in as the demo agent in Debian's Chromium
and captures: the ticket list with a row selected by the keyboard, a ticket page, the
keyboard shortcuts dialog, rows selected for bulk actions, a macro's preview, a live chat (the
widget on the demo page and the chat's ticket page), and — with the
demo admin in a second browser context — the ticket page showing the admin viewing and typing
and the new-message warning over a draft, and the agent's notifications after a @mention.
Static files are served from the source folders, so nothing is collected into the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
# Debian's Chromium, never a browser some other tool put on the PATH (tests/chromium.py).
DEBIAN_CHROMIUM = "/usr/bin/chromium"
CHROMIUM = DEBIAN_CHROMIUM if Path(DEBIAN_CHROMIUM).exists() else (shutil.which("chromium") or DEBIAN_CHROMIUM)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
LOGIN = ("agent@example.com", "switchboard-agent")  # seed_demo's printed agent login
ADMIN_LOGIN = ("admin@example.com", "switchboard-admin")
MAX_BYTES = 300_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300
    )


def wait_up(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the embedded server did not answer on {base} within {timeout}s")


def sign_in(browser: Any, base: str, login: tuple[str, str]) -> Page:
    page: Page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{base}/desk/login/")
    page.fill("input[name=username]", login[0])
    page.fill("input[name=password]", login[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/desk/")
    return page


def capture(base: str) -> list[Path]:
    shots: list[Path] = []

    def shot(page: Page, name: str) -> None:
        shots.append(OUT / name)
        page.screenshot(path=str(shots[-1]))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = sign_in(browser, base, LOGIN)

            # The ticket list, the second row selected with j j.
            page.keyboard.press("j")
            page.keyboard.press("j")
            shot(page, "ticket-list.png")

            # The shortcuts dialog over the list.
            page.keyboard.press("?")
            page.locator("#shortcuts-dialog").wait_for(state="visible")
            shot(page, "shortcuts.png")
            page.keyboard.press("Escape")

            # Rows picked for a bulk action with x (the second and the fourth).
            page.keyboard.press("x")
            page.keyboard.press("j")
            page.keyboard.press("j")
            page.keyboard.press("x")
            shot(page, "bulk.png")
            page.keyboard.press("x")
            page.keyboard.press("k")
            page.keyboard.press("k")
            page.keyboard.press("x")

            # A ticket page: the selected ticket, opened with Enter, the composer in reply mode.
            page.keyboard.press("Enter")
            page.wait_for_selector("[data-ticket]")
            ticket_url = page.url
            page.keyboard.press("r")
            page.keyboard.type("Thanks for the details — ")
            page.keyboard.press("Escape")
            shot(page, "ticket.png")

            # The admin opens the same ticket, types and sends a reply: the agent, with a draft,
            # sees who else is here, the typing marker, then the warning before sending.
            admin = sign_in(browser, base, ADMIN_LOGIN)
            admin.goto(ticket_url)
            page.locator("#ticket-viewers").get_by_text("Alex Admin").wait_for()
            admin.click("#composer-text")
            admin.keyboard.type("Refund approved, sending it now.")
            page.locator("#ticket-typing").get_by_text("typing").wait_for()
            shot(page, "ticket-typing.png")
            admin.click("#composer button[type=submit]")
            page.locator("#composer-news-warning").wait_for(state="visible")
            page.locator("#timeline").get_by_text("Refund approved, sending it now.").wait_for()
            page.locator("#ticket-meta .badge").get_by_text("Open").wait_for()
            page.locator("#composer-news-warning").scroll_into_view_if_needed()
            shot(page, "ticket-warning.png")

            # The admin mentions the agent in a note: the agent's badge and notifications.
            admin.wait_for_url(ticket_url)
            admin.check("#mode-note")
            admin.fill("#composer-text", "@agent could you confirm the refund went through?")
            admin.click("#composer button[type=submit]")
            admin.wait_for_url(ticket_url)
            page.locator("#notif-count").wait_for(state="visible")
            page.goto(f"{base}/desk/notifications/")
            shot(page, "notifications.png")

            # A macro's preview on the ticket (nothing applied).
            page.goto(ticket_url)
            page.select_option("#macro-select", label="Refund issued")
            page.click("#macro-preview-button")
            page.locator("#macro-preview").wait_for(state="visible")
            shot(page, "macro-preview.png")

            # SLA deadlines: the "Due soon" view; the admin's SLA policy and trigger forms.
            page.goto(f"{base}/desk/?view=due_soon")
            shot(page, "due-soon.png")
            admin.goto(f"{base}/desk/settings/sla/")
            admin.get_by_role("link", name="Standard").first.click()
            admin.wait_for_load_state()
            shot(admin, "settings-sla.png")
            admin.goto(f"{base}/desk/settings/triggers/")
            admin.locator("main a[href*='/desk/settings/triggers/']").filter(has_text="Urgent").first.click()
            admin.wait_for_load_state()
            shot(admin, "settings-trigger.png")

            # Live chat: a visitor on the demo page fills the pre-chat form and writes; the agent
            # answers from the chat's ticket page (its chat panel beside the timeline).
            visitor = browser.new_context(viewport={"width": 1000, "height": 760}).new_page()
            visitor.goto(f"{base}/widget/v1/demo/")
            visitor.wait_for_function("document.getElementById('switchboard-widget')?.dataset.ready === '1'")
            visitor.evaluate("Switchboard.open()")
            frame = visitor.frame(url=re.compile(r"/widget/v1/[^/]+/frame"))
            assert frame is not None, "the widget's frame"
            frame.fill("#sb-prechat-name", "Marta Svobodová")
            frame.fill("#sb-prechat-email", "marta@example.org")
            frame.click("#sb-prechat-submit")
            frame.fill("#sb-input", "Hi! My parcel shows as delivered, but it is not here. Order 1042.")
            frame.press("#sb-input", "Enter")
            frame.wait_for_selector('[data-testid=sb-message][data-direction=visitor]:not([data-message-id=""])')
            page.goto(f"{base}/desk/search/?q=parcel+shows+as+delivered")
            page.locator("a[href*='/desk/tickets/']").first.click()
            page.locator("#chat-panel").wait_for()
            page.fill("#composer-text", "Hi Marta, sorry about that! I am checking with the courier now.")
            page.click("#composer button[type=submit]")
            frame.wait_for_selector("[data-testid=sb-message][data-direction=agent]")
            page.locator("#timeline").get_by_text("checking with the courier").wait_for()
            shot(visitor, "chat-widget.png")
            shot(page, "chat-ticket.png")
        finally:
            browser.close()
    return shots


def main() -> None:
    if not (ROOT / "static" / "vendor" / "htmx.min.js").is_file():
        raise SystemExit("static/vendor/htmx.min.js is missing: run `make install` first")
    with tempfile.TemporaryDirectory(prefix="switchboard-shots-") as data:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        port = free_port()
        # The widget's URLs are absolute (SITE_URL), and the demo chat inbox allows SITE_URL's origin.
        env.update(SWITCHBOARD_DATA_DIR=data, WHITENOISE_USE_FINDERS="1", SITE_URL=f"http://127.0.0.1:{port}")
        manage(env, "migrate", "--noinput")
        manage(env, "seed_demo")
        server = subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(base)
            shots = capture(base)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
    for shot in shots:
        size = shot.stat().st_size
        print(f"{shot.relative_to(ROOT)}  {size // 1024} KB")
        if size > MAX_BYTES:
            raise SystemExit(f"{shot.name} is over {MAX_BYTES // 1000} KB")


if __name__ == "__main__":
    main()
