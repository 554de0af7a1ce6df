"""Email ingest benchmark: N generated .eml files through store and process, next to the bare parse rate.

    .venv/bin/python bench/email_ingest.py --n 2000 --runs 3

Writes N generated mails as .eml files to a temporary directory (the corpus of
floors.md §3: 3–6 Received headers, a DKIM-Signature, an RFC 2047 display name,
multipart/alternative text + HTML, charsets utf-8 60%, iso-8859-1 12%, windows-1252 10%,
iso-2022-jp 5%, koi8-r 5%, shift_jis 4%, gb2312 4%; 10% with one 5–60 KB attachment; 40%
are replies with In-Reply-To/References and a quoted original), creates a throwaway
PostgreSQL database (`sb_bench_<pid>`), migrates it, and per run:

1. parse floor — `email.message_from_bytes(raw)` alone over the same bytes (the issue's
   yardstick), and `channels_inbox.email.parse.parse_email(raw)` (our full parser).
2. store — each file read from disk and stored with `do_receive_email` (what
   `manage.py ingest_email` does per file: the bytes, one InboundEvent, one transaction),
   with `process_inbound` queued on Celery's in-memory broker and no worker consuming it.
3. process — `do_process_inbound_event(event_id)` for each stored event, one after another
   in this process (one worker process; batches of INGEST_BATCH_SIZE as under a backlog).

"end to end" is N ÷ (store + process): one process doing both. Timings are printed, never
asserted; the exit status is non-zero only when a count is wrong. See bench/README.md.
"""

from __future__ import annotations

import argparse
import email
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (
    DEFAULT_ADMIN_URL,
    BenchDatabase,
    BenchFailure,
    close_django,
    purge_broker,
    say,
    setup_django,
    sigterm_as_interrupt,
)

TARGET_PER_SECOND = 150  # the aim, end to end per worker process
SENDERS = 2000
NEW_SENDER_SHARE = 0.20
REPLY_SHARE = 0.40
ATTACHMENT_SHARE = 0.10

CHARSETS = [
    ("utf-8", 60, "Dobrý den, objednávka č. {n} nedorazila. Prosím o kontrolu — děkuji. Ünïcödé ✓"),
    ("iso-8859-1", 12, "Guten Tag, meine Bestellung {n} ist nicht angekommen. Grüße aus München."),
    ("windows-1252", 10, "Bonjour, ma commande {n} n’est pas arrivée — merci d’avance. Crème brûlée."),
    ("iso-2022-jp", 5, "こんにちは、注文{n}がまだ届いていません。確認をお願いします。"),
    ("koi8-r", 5, "Здравствуйте, мой заказ {n} до сих пор не пришёл. Спасибо."),
    ("shift_jis", 4, "お世話になります。注文番号{n}の配送状況を教えてください。"),
    ("gb2312", 4, "您好，我的订单{n}还没有到货，请帮忙查询一下。谢谢！"),
]
NAMES = ["Jana Nováková", "Jürgen Groß", "Émilie Durand", "山田太郎", "Иван Петров", "王小明", "Zoë O’Brien"]


def _weighted_charset(rng: random.Random) -> tuple[str, str]:
    roll = rng.uniform(0, 100)
    for charset, share, text in CHARSETS:
        roll -= share
        if roll <= 0:
            return charset, text
    return CHARSETS[0][0], CHARSETS[0][2]


def make_corpus(n: int, seed: int, directory: Path) -> list[Path]:
    """N mails as .eml files; replies answer an earlier mail of the same sender."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    known = [f"customer{i}@example.org" for i in range(SENDERS)]
    by_sender: dict[str, list[tuple[str, str, list[str]]]] = {}
    paths = []
    for i in range(n):
        sender = f"new{seed}-{i}@example.net" if rng.random() < NEW_SENDER_SHARE else rng.choice(known)
        charset, template = _weighted_charset(rng)
        body = template.format(n=10_000 + i)
        msg = EmailMessage()
        for hop in range(rng.randint(3, 6)):
            msg["Received"] = (
                f"from mx{hop}.example.net (mx{hop}.example.net [192.0.2.{hop + 1}]) by mail.example.com "
                f"with ESMTPS id {rng.getrandbits(48):x}; {format_datetime(start)}"
            )
        msg["DKIM-Signature"] = (
            "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel; h=from:to:subject:date; "
            f"bh={rng.getrandbits(256):064x}; b={rng.getrandbits(1024):0256x}"
        )
        msg["From"] = formataddr((rng.choice(NAMES), sender))
        msg["To"] = "Support <support@example.com>"
        message_id = f"<m{seed}.{i}.{rng.getrandbits(32):x}@example.org>"
        msg["Message-ID"] = message_id
        msg["Date"] = format_datetime(start + timedelta(seconds=30 * i))
        history = by_sender.get(sender, [])
        subject = f"Order {10_000 + i} has not arrived"
        quoted = ""
        if history and rng.random() < REPLY_SHARE / (1 - NEW_SENDER_SHARE):
            parent_id, parent_subject, parent_refs = history[-1]
            subject = f"Re: {parent_subject}"
            refs = [*parent_refs, parent_id][-10:]
            msg["In-Reply-To"] = parent_id
            msg["References"] = " ".join(refs)
            quoted = f"\n\nOn {format_datetime(start)}, Support <support@example.com> wrote:\n> " + "\n> ".join(
                [body] * 3
            )
        else:
            refs = []
        msg["Subject"] = subject
        text = (body + "\n") * rng.randint(2, 12) + quoted
        msg.set_content(text, charset=charset)
        paragraphs = "".join(f"<p>{line}</p>" for line in text.splitlines() if line)
        msg.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html", charset=charset)
        if rng.random() < ATTACHMENT_SHARE:
            size = rng.randint(5_000, 60_000)
            kind = rng.choice(["pdf", "png", "txt"])
            content = {
                "pdf": b"%PDF-1.4\n" + rng.randbytes(size),
                "png": b"\x89PNG\r\n\x1a\n" + rng.randbytes(size),
                "txt": ("příloha " * (size // 9)).encode(),
            }[kind]
            maintype, subtype = {"pdf": ("application", "pdf"), "png": ("image", "png"), "txt": ("text", "plain")}[kind]
            msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=f"účtenka-{i}.{kind}")
        by_sender.setdefault(sender, []).append((message_id, subject.removeprefix("Re: "), refs))
        path = directory / f"{i:06d}.eml"
        path.write_bytes(msg.as_bytes())
        paths.append(path)
    return paths


def timed_rate(label: str, n: int, seconds: float) -> float:
    rate = n / seconds if seconds else float("inf")
    say(f"  {label:<22} {rate:9,.0f} emails/s  ({seconds * 1000 / max(n, 1):.2f} ms each)")
    return rate


def run_parse_floor(blobs: list[bytes]) -> tuple[float, float]:
    from channels_inbox.email.parse import parse_email

    started = time.perf_counter()
    for raw in blobs:
        email.message_from_bytes(raw)
    bare = timed_rate("message_from_bytes", len(blobs), time.perf_counter() - started)
    started = time.perf_counter()
    errors = 0
    for raw in blobs:
        errors += bool(parse_email(raw).error)
    ours = timed_rate("parse_email", len(blobs), time.perf_counter() - started)
    if errors:
        raise BenchFailure(f"parse_email reported an error for {errors} generated mails")
    return bare, ours


def create_inbox() -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(
        kind="email",
        name="Bench email",
        values={"address": "support@example.com", "rate_limit_per_hour": 0},
    )
    return inbox


def reset_product(db: BenchDatabase) -> None:
    from channels_inbox.models import InboundEvent, OutboundDelivery
    from customers.models import Customer, Identity
    from helpdesk.models import Attachment, Message, Ticket, TicketCC, TicketEvent

    close_django()
    models = (InboundEvent, OutboundDelivery, TicketEvent, Attachment, TicketCC, Message, Ticket, Identity, Customer)
    tables = ", ".join(f'"{m._meta.db_table}"' for m in models)
    db.maintenance(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    purge_broker()
    seed_customers()
    close_django()
    db.maintenance("VACUUM ANALYZE", "CHECKPOINT")


def seed_customers() -> None:
    from django.utils import timezone

    from customers.models import Customer, Identity, IdentityKind

    now = timezone.now()
    customers = Customer.objects.bulk_create(
        [Customer(name=f"Customer {i}", first_seen_at=now, last_seen_at=now) for i in range(SENDERS)],
        batch_size=2000,
    )
    Identity.objects.bulk_create(
        [
            Identity(customer=c, kind=IdentityKind.EMAIL, value=f"customer{i}@example.org")
            for i, c in enumerate(customers)
        ],
        batch_size=5000,
    )


def run_store(inbox: Any, paths: list[Path]) -> float:
    from channels_inbox.actions.receive_email import do_receive_email, strip_mbox_line

    started = time.perf_counter()
    stored = 0
    for path in paths:
        stored += do_receive_email(inbox, strip_mbox_line(path.read_bytes()), source=f"pipe:{path.name}").stored
    seconds = time.perf_counter() - started
    if stored != len(paths):
        raise BenchFailure(f"store: {stored} stored of {len(paths)}")
    return seconds


def run_process(n: int) -> tuple[float, dict[str, int]]:
    from channels_inbox.actions.process import do_process_inbound_event
    from channels_inbox.models import InboundEvent, InboundEventStatus
    from helpdesk.models import Message, Ticket

    ids = list(InboundEvent.objects.order_by("id").values_list("id", flat=True))
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for event_id in ids:
        outcomes[do_process_inbound_event(event_id)] += 1
    seconds = time.perf_counter() - started
    processed = InboundEvent.objects.filter(status=InboundEventStatus.PROCESSED, message__isnull=False).count()
    messages = Message.objects.count()
    if processed != n or messages != n:
        raise BenchFailure(f"process: {processed} events processed, {messages} messages; expected {n} ({outcomes})")
    return seconds, {"tickets": Ticket.objects.count(), "messages": messages}


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="emails per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; median and min–max are printed (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database (debugging)")
    parser.add_argument("--batch-size", type=int, default=None, help="INGEST_BATCH_SIZE for processing (default 50)")
    args = parser.parse_args(argv)
    if args.batch_size is not None:
        os.environ["INGEST_BATCH_SIZE"] = str(args.batch_size)
    if args.n < 1 or args.runs < 1:
        parser.error("--n and --runs must be at least 1")

    db = BenchDatabase(os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL))
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="sb_email_bench_") as workdir:
        try:
            corpus = Path(workdir) / "eml"
            corpus.mkdir()
            paths = make_corpus(args.n, args.seed, corpus)
            blobs = [p.read_bytes() for p in paths]
            sizes = sorted(len(b) for b in blobs)
            say(
                f"corpus: {len(paths)} .eml files, {sum(sizes) / 1e6:.1f} MB, median {sizes[len(sizes) // 2]:,} bytes,"
                f" max {sizes[-1]:,}"
            )
            db.create()
            say(f"database {db.name}: migrating")
            setup_django(db, workdir)
            inbox = create_inbox()
            results: dict[str, list[float]] = {k: [] for k in ("bare", "parse", "store", "process", "e2e")}
            for i in range(args.runs):
                say(f"run {i + 1}/{args.runs}")
                bare, ours = run_parse_floor(blobs)
                reset_product(db)
                store_s = run_store(inbox, paths)
                timed_rate("store (ingest_email)", args.n, store_s)
                db.maintenance("CHECKPOINT")
                process_s, counts = run_process(args.n)
                timed_rate("process (1 worker)", args.n, process_s)
                e2e = timed_rate("end to end", args.n, store_s + process_s)
                say(f"  {counts['messages']} messages on {counts['tickets']} tickets")
                for key, value in (
                    ("bare", bare),
                    ("parse", ours),
                    ("store", args.n / store_s),
                    ("process", args.n / process_s),
                    ("e2e", e2e),
                ):
                    results[key].append(value)
            bare_median = statistics.median(results["bare"])
            print(f"\nemails/s, median (min–max) of {args.runs} runs, N={args.n}, one process")
            print(f"{'stage':<34} {'emails/s':>22}  ÷ message_from_bytes")
            for key, label in (
                ("bare", "email.message_from_bytes alone"),
                ("parse", "parse_email (our parser)"),
                ("store", "store (ingest_email per file)"),
                ("process", "process, one worker process"),
                ("e2e", "end to end (store + process)"),
            ):
                ratio = statistics.median(results[key]) / bare_median
                print(f"{label:<34} {median_range(results[key]):>22}  {ratio:.3f}")
            e2e_median = statistics.median(results["e2e"])
            verdict = "reaches" if e2e_median >= TARGET_PER_SECOND else "is below"
            print(f"end to end {verdict} the aim of {TARGET_PER_SECOND} emails/s per worker process")
            return 0
        except BenchFailure as exc:
            print(f"CORRECTNESS FAILURE: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            say("interrupted")
            return 130
        finally:
            close_django()
            if args.keep_db:
                say(f"kept database {db.name}")
            else:
                db.drop()


if __name__ == "__main__":
    sys.exit(main())
