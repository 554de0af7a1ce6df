"""Replay realistic signed provider webhooks into a RUNNING Switchboard, one conversation per channel.

    .venv/bin/python bench/replay_webhooks.py --url http://127.0.0.1:8000
    .venv/bin/python bench/replay_webhooks.py --url https://desk.example.com \\
        --inbox telegram=<inbox-uuid>:<secret> --inbox twilio_sms=<inbox-uuid>:<auth-token>

Without `--inbox`, the inboxes (uuid, settings, secrets) of every messaging channel are read
from the instance's database through the Django ORM, with the same environment as the server
(DATABASE_URL, SWITCHBOARD_DATA_DIR; in the embedded demo nothing to set). With `--inbox
kind=uuid:secret` (repeatable) the database is not touched: the secret is the one the provider
signs with (Twilio auth token, Meta app secret, Telegram webhook secret token).

Each webhook is signed exactly as the provider signs it (bench/provider_webhooks.py) for the
URL `--site-url` (default: `--url`; it must be the server's SITE_URL, which Twilio signs) and
POSTed to `--url`. Prints what it sent and each response. Exit status 1 if any answer is not
2xx. `--kinds` limits the channels; `--messages N` sends N messages per conversation.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import provider_webhooks as pw  # noqa: E402

# One conversation per channel: a first message, then a follow-up from the same customer.
CONVERSATION = (
    "Hi! I ordered a blue jacket (order #5120) and got a red one. Can I exchange it?",
    "I still have the box and the receipt 🙂",
    "Thanks, I'll wait for the return label.",
)


def inboxes_from_db(kinds: list[str]) -> list[pw.InboxRef]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")
    import django

    django.setup()
    from channels_inbox.models import Inbox

    refs = []
    for inbox in Inbox.objects.filter(kind__in=kinds, is_active=True).order_by("kind", "pk"):
        refs.append(pw.InboxRef(inbox.kind, str(inbox.uuid), dict(inbox.settings), dict(inbox.secrets)))
    return refs


def inboxes_from_args(values: list[str]) -> list[pw.InboxRef]:
    refs = []
    for value in values:
        kind, _, rest = value.partition("=")
        inbox_uuid, _, secret = rest.partition(":")
        if kind not in pw.BUILDERS or not inbox_uuid or not secret:
            raise SystemExit(f"--inbox {value!r}: expected kind=uuid:secret with kind in {', '.join(pw.BUILDERS)}")
        refs.append(pw.InboxRef(kind, inbox_uuid, {}, {pw.SECRET_NAMES[kind][0]: secret}))
    return refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="where the server listens")
    parser.add_argument("--site-url", default="", help="the server's SITE_URL (what Twilio signs); default --url")
    parser.add_argument("--inbox", action="append", default=[], help="kind=uuid:secret (repeatable; skips the DB)")
    parser.add_argument("--kinds", default=",".join(pw.WEBHOOK_KINDS), help="comma-separated channel kinds")
    parser.add_argument("--messages", type=int, default=2, help="messages per conversation (1-3)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    site_url = (args.site_url or args.url).rstrip("/")
    refs = inboxes_from_args(args.inbox) if args.inbox else inboxes_from_db(kinds)
    refs = [r for r in refs if r.kind in kinds]
    if not refs:
        print("No messaging-channel inboxes found (run `manage.py seed_demo`, or pass --inbox kind=uuid:secret).")
        return 1
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the script prints its own lines
    failed = 0
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=15.0, trust_env=False) as client:
        for n, ref in enumerate(refs):
            # The same customer for the whole conversation,
            sender = pw.SENDERS[(n + 2) % len(pw.SENDERS)]  # not the seeded conversations' customers
            print(f"== {ref.kind} inbox {ref.uuid}")
            for text in CONVERSATION[: max(1, min(args.messages, len(CONVERSATION)))]:
                try:
                    hook = pw.build_message(ref, site_url, sender=sender, text=text)
                except LookupError as exc:
                    print(f"   skipped: {exc}")
                    failed += 1
                    break
                started = time.perf_counter()
                try:
                    resp = client.post(hook.path, content=hook.body, headers=hook.headers)
                except httpx.HTTPError as exc:
                    print(f"   -> {hook.summary[:70]!r}\n   !! {type(exc).__name__}: {exc}")
                    failed += 1
                    continue
                ms = (time.perf_counter() - started) * 1000
                body = resp.text.strip().replace("\n", " ")
                print(f"   -> POST {hook.path}  id={hook.provider_id}  {hook.summary[:70]!r}")
                print(f"   <- {resp.status_code} in {ms:.0f} ms  {body[:120]}")
                if not 200 <= resp.status_code < 300:
                    failed += 1
    print(f"Sent to {len(refs)} inboxes; {failed} failed. Open {site_url}/desk/ to see them arrive.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
