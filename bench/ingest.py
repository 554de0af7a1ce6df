"""Ingest benchmark: API-channel messages through receive and process, next to the raw-SQL floor.

    .venv/bin/python bench/ingest.py --n 2000 --runs 3

Creates a throwaway PostgreSQL database (`sb_bench_<pid>`), migrates it, and per run:

1. receive — N signed POSTs to `/webhooks/api/<inbox-uuid>/` through Django's WSGIHandler
   (the real middleware stack, request_started/finished signals, no network server). Each
   request stores one InboundEvent and queues `process_inbound` after commit on Celery's
   in-memory broker, with no worker consuming it: nothing is processed inline.
2. process — `do_process_inbound_event(event_id)` for each stored event, one after another
   in this process (one "worker process").
3. floor (stmt) — the same messages written with plain psycopg, one connection, one
   transaction per message, one statement per step (floors.md §2 "stmt").
4. floor (cte) — the same, one CTE statement per message in autocommit (floors.md §2 "cte").

Before receive and before each floor stage the tables are truncated, 10,000 customers with
identities are seeded, then VACUUM ANALYZE and CHECKPOINT (not timed; before process only a
CHECKPOINT). Timings are printed, never asserted; the
exit status is non-zero only when a count or an outcome is wrong. See bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
SEEDED_CUSTOMERS = 10_000
NEW_SENDER_SHARE = 0.20
THREAD_KEY_SHARE = 0.15  # of all messages; they come from existing senders
THREAD_POOL_DIVISOR = 40  # N/40 conversations: ≈6 messages share each thread_key
BODY_CHARS = 1024
TARGET_RATIO = 0.40  # the target: processing ≥ 40% of the floor per worker process


class BenchFailure(Exception):
    """A correctness check failed (count mismatch, unexpected outcome): exit non-zero."""


# --- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sender:
    identifier: str
    name: str
    email: str


@dataclass(frozen=True)
class Msg:
    external_id: str
    sender: Sender
    new_sender: bool
    thread_key: str
    subject: str
    text: str
    sent_at: str

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "external_id": self.external_id,
            "sender": {"identifier": self.sender.identifier, "name": self.sender.name, "email": self.sender.email},
            "text": self.text,
            "sent_at": self.sent_at,
        }
        if self.subject:
            data["subject"] = self.subject
        if self.thread_key:
            data["thread_key"] = self.thread_key
        return data


_FIRST = ["Jana", "Wei", "Olga", "Amir", "Lucía", "Tomás", "Aiko", "Sven", "Noor", "Kwame", "Priya", "Ivan"]
_LAST = ["Nováková", "Chen", "Petrova", "Haddad", "García", "Novák", "Sato", "Berg", "Khan", "Mensah", "Rao"]
_DOMAINS = [f"shop{i}.example" for i in range(40)] + ["example.com", "mail.example.org"]
_VOCABULARY = """
order delivery parcel refund invoice account password login payment card charge subscription
cancel upgrade plan shipping tracking number address warehouse courier damaged missing wrong
size colour return label exchange support please thanks hello urgent week yesterday today
tomorrow still waiting received email phone app error screen update version browser checkout
discount code coupon price total receipt
"""
_WORDS = _VOCABULARY.split()


def seeded_sender(i: int) -> Sender:
    first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
    return Sender(f"cust-{i:06d}", f"{first} {last}", f"{first.lower()}.{i}@{_DOMAINS[i % len(_DOMAINS)]}")


def _text(rng: random.Random, order: int) -> str:
    target = rng.randint(BODY_CHARS - 100, BODY_CHARS + 100)
    first = f"Order #{order}: {' '.join(rng.choices(_WORDS, k=rng.randint(3, 7)))}"
    words = [first, "\n\n"]
    size = len(first) + 2
    while size < target:
        word = rng.choice(_WORDS)
        words.append(word)
        words.append(" " if rng.random() > 0.08 else ".\n")
        size += len(word) + 1
    return "".join(words)[:target]


def make_workload(n: int, seed: int) -> list[Msg]:
    """N distinct messages: ~80% from seeded senders (some in shared threads), ~20% new senders."""
    rng = random.Random(seed)
    threads = [(f"conv-{t:05d}", rng.randrange(SEEDED_CUSTOMERS)) for t in range(max(1, n // THREAD_POOL_DIVISOR))]
    base = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    messages = []
    for j in range(n):
        u = rng.random()
        thread_key = ""
        if u < NEW_SENDER_SHARE:
            sender, new = Sender(f"new-{j:07d}", f"New Person {j}", f"new.{j}@{rng.choice(_DOMAINS)}"), True
        elif u < NEW_SENDER_SHARE + THREAD_KEY_SHARE:
            thread_key, owner = rng.choice(threads)
            sender, new = seeded_sender(owner), False
        else:
            sender, new = seeded_sender(rng.randrange(SEEDED_CUSTOMERS)), False
        messages.append(
            Msg(
                external_id=f"bench-{seed}-{j:07d}",
                sender=sender,
                new_sender=new,
                thread_key=thread_key,
                subject=f"Question about order #{10_000 + j}" if rng.random() < 0.5 else "",
                text=_text(rng, 10_000 + j),
                sent_at=(base + timedelta(seconds=j)).isoformat(),
            )
        )
    return messages


# --- small helpers ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class StageResult:
    name: str
    n: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def p50_ms(self) -> float:
        return pct(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return pct(self.latencies, 0.99) * 1000


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the throwaway database -------------------------------------------------------------------


class BenchDatabase:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"sb_bench_{os.getpid()}"
        self.url = with_dbname(admin_url, self.name)
        self.created = False

    def create(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.created = True

    def drop(self) -> None:
        if not self.created:
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        self.created = False

    def maintenance(self, *statements: str) -> None:
        """TRUNCATE / VACUUM / CHECKPOINT on their own autocommit connection."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]


# --- Django side: receive and process ---------------------------------------------------------


def setup_django(db: BenchDatabase, workdir: str) -> None:
    os.environ["DATABASE_URL"] = db.url
    os.environ.pop("REDIS_URL", None)  # in-memory broker and channel layer; see README
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
    os.environ["DEBUG"] = "false"
    os.environ["SWITCHBOARD_DATA_DIR"] = workdir
    os.environ["MEDIA_ROOT"] = os.path.join(workdir, "media")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789")
    os.environ["DJANGO_SETTINGS_MODULE"] = "helpdesk.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def close_django() -> None:
    if "django.db" not in sys.modules:
        return
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        close_pool = getattr(conn, "close_pool", None)
        if close_pool is not None:
            close_pool()


def product_tables() -> list[str]:
    from channels_inbox.models import InboundEvent
    from customers.models import Customer, Identity
    from helpdesk.models import Message, Ticket, TicketEvent

    return [m._meta.db_table for m in (InboundEvent, TicketEvent, Message, Ticket, Identity, Customer)]


def create_inbox() -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(kind="api", name="Bench API", values={"callback_url": "http://127.0.0.1:9/hook"})
    return inbox


def reset_product(db: BenchDatabase, inbox: Any) -> None:
    """Empty the ingest tables, seed the known senders, then VACUUM ANALYZE and CHECKPOINT."""
    from django.utils import timezone

    from channels_inbox.adapters.api import external_identity
    from customers.models import Customer, Identity, IdentityKind

    close_django()  # TRUNCATE needs the tables unlocked; the pool reopens on demand
    tables = ", ".join(f'"{t}"' for t in product_tables())
    db.maintenance(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    purge_broker()
    now = timezone.now()
    senders = [seeded_sender(i) for i in range(SEEDED_CUSTOMERS)]
    customers = Customer.objects.bulk_create(
        [Customer(name=s.name, first_seen_at=now, last_seen_at=now) for s in senders], batch_size=2000
    )
    identities = []
    for sender, customer in zip(senders, customers, strict=True):
        ext = external_identity(inbox, sender.identifier)
        identities.append(Identity(customer=customer, kind=IdentityKind.EXTERNAL, value=ext, raw_value=ext))
        identities.append(
            Identity(customer=customer, kind=IdentityKind.EMAIL, value=sender.email, raw_value=sender.email)
        )
    Identity.objects.bulk_create(identities, batch_size=5000)
    close_django()
    db.maintenance("VACUUM ANALYZE", "CHECKPOINT")


def _broker_queue() -> Any:
    from kombu.transport.memory import Channel

    return Channel.queues.get("celery")


def queued_tasks() -> int:
    queue = _broker_queue()
    return 0 if queue is None else queue.qsize()


def purge_broker() -> None:
    queue = _broker_queue()
    if queue is not None:
        while not queue.empty():
            queue.get_nowait()


@dataclass
class Request:
    environ: dict[str, Any]
    body: bytes


def build_requests(inbox: Any, messages: list[Msg]) -> list[Request]:
    """What the integrator sends: signed JSON bodies (built before the clock starts)."""
    from channels_inbox.adapters.api import SIGNATURE_HEADER, sign

    secret = inbox.secret("signing_secret")
    header = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")
    path = f"/webhooks/api/{inbox.uuid}/"
    requests = []
    for msg in messages:
        body = json.dumps(msg.payload()).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_USER_AGENT": "switchboard-bench/1.0",
            header: sign(secret, body),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        requests.append(Request(environ, body))
    return requests


def run_receive(requests: list[Request]) -> StageResult:
    from django.core.handlers.wsgi import WSGIHandler

    from channels_inbox.models import InboundEvent, InboundEventStatus
    from helpdesk.models import Message

    handler = WSGIHandler()
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    bad: list[tuple[int, str, bytes]] = []
    latencies = []
    started = time.perf_counter()
    for i, req in enumerate(requests):
        environ = dict(req.environ)
        environ["wsgi.input"] = io.BytesIO(req.body)
        t0 = time.perf_counter()
        result = handler(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            result.close()  # what a WSGI server does: fires request_finished
        latencies.append(time.perf_counter() - t0)
        if not statuses[-1].startswith("200") or content != b'{"stored": 1, "duplicates": 0}':
            bad.append((i, statuses[-1], content[:200]))
    elapsed = time.perf_counter() - started
    if bad:
        raise BenchFailure(f"receive: {len(bad)} requests not stored, first: {bad[0]}")
    n = len(requests)
    stored = InboundEvent.objects.count()
    pending = InboundEvent.objects.filter(status=InboundEventStatus.PENDING).count()
    if stored != n or pending != n or Message.objects.exists():
        raise BenchFailure(f"receive: {stored} events ({pending} pending) for {n} requests, or processed inline")
    if queued_tasks() != n:
        raise BenchFailure(f"receive: {queued_tasks()} process_inbound tasks queued for {n} events")
    purge_broker()
    return StageResult("receive", n, elapsed, latencies)


def run_process(messages: list[Msg]) -> StageResult:
    from django.db.models import Count, F, Max

    from channels_inbox.actions.process import do_process_inbound_event
    from channels_inbox.models import InboundEvent, InboundEventStatus
    from customers.models import Customer
    from helpdesk.models import Message, Ticket, TicketEvent

    ids = list(InboundEvent.objects.order_by("id").values_list("id", flat=True))
    outcomes: Counter[str] = Counter()
    latencies = []
    started = time.perf_counter()
    for event_id in ids:
        t0 = time.perf_counter()
        outcomes[do_process_inbound_event(event_id)] += 1
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    n = len(messages)
    # With batches, one task processes the waiting events of its inbox and the tasks of
    # those events then find them done ("already"); every event must end up processed.
    if set(outcomes) - {"processed", "already"} or outcomes["processed"] + outcomes["already"] != n:
        raise BenchFailure(f"process: outcomes {dict(outcomes)}, expected {n} processed or already")
    processed = InboundEvent.objects.filter(status=InboundEventStatus.PROCESSED, message__isnull=False).count()
    created = Message.objects.count()
    received = TicketEvent.objects.filter(type="message_received").count()
    customers = Customer.objects.count()
    expected_customers = SEEDED_CUSTOMERS + sum(m.new_sender for m in messages)
    if (processed, created, received, customers) != (n, n, n, expected_customers):
        raise BenchFailure(
            f"process: {processed} events processed, {created} messages, {received} message_received events, "
            f"{customers} customers; expected {n}, {n}, {n}, {expected_customers}"
        )
    # Every ticket's event numbering is complete: seq 1..last_event_seq, one "created" each.
    tickets = Ticket.objects.count()
    gaps = (
        Ticket.objects.annotate(top=Max("events__seq"), events_n=Count("events"))
        .exclude(last_event_seq=F("top"), events_n=F("top"))
        .count()
    )
    if gaps or TicketEvent.objects.count() != n + tickets:
        raise BenchFailure(
            f"process: {gaps} tickets whose last_event_seq or numbering is off, "
            f"{TicketEvent.objects.count()} events for {n} messages on {tickets} tickets"
        )
    if queued_tasks():
        raise BenchFailure(f"process: {queued_tasks()} tasks queued (retries?)")
    return StageResult("process", n, elapsed, latencies)


# --- the raw-SQL floor ------------------------------------------------------------------------

FLOOR_SCHEMA = """
CREATE TABLE floor_customer (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE floor_identity (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES floor_customer (id),
    kind text NOT NULL,
    value text NOT NULL,
    UNIQUE (kind, value)
);
CREATE TABLE floor_ticket (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES floor_customer (id),
    subject text NOT NULL,
    status text NOT NULL,
    thread_key text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX floor_ticket_status_idx ON floor_ticket (status, updated_at);
-- floors.md has (customer_id); with created_at it serves "the customer's latest ticket".
CREATE INDEX floor_ticket_customer_idx ON floor_ticket (customer_id, created_at);
-- Threading by key, as the product's partial index.
CREATE INDEX floor_ticket_thread_idx ON floor_ticket (thread_key) WHERE thread_key <> '';
CREATE TABLE floor_message (
    id bigserial PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES floor_ticket (id),
    external_id text NOT NULL UNIQUE,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX floor_message_ticket_idx ON floor_message (ticket_id, created_at);
CREATE TABLE floor_event (
    id bigserial PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES floor_ticket (id),
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX floor_event_ticket_idx ON floor_event (ticket_id, created_at);
"""

FLOOR_TABLES = "floor_event, floor_message, floor_ticket, floor_identity, floor_customer"

Q_IDENTITY = (
    "SELECT customer_id FROM floor_identity"
    " WHERE (kind = 'external' AND value = %s) OR (kind = 'email' AND value = %s) LIMIT 1"
)
Q_NEW_CUSTOMER = "INSERT INTO floor_customer (name) VALUES (%s) RETURNING id"
Q_NEW_IDENTITIES = (
    "INSERT INTO floor_identity (customer_id, kind, value)"
    " VALUES (%s, 'external', %s), (%s, 'email', %s) ON CONFLICT DO NOTHING"
)
Q_TICKET_BY_KEY = (
    "SELECT id FROM floor_ticket WHERE thread_key = %s AND thread_key <> ''"
    " ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE"
)
Q_TICKET_BY_CUSTOMER = (
    "SELECT id FROM floor_ticket WHERE customer_id = %s ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE"
)
Q_NEW_TICKET = (
    "INSERT INTO floor_ticket (customer_id, subject, status, thread_key) VALUES (%s, %s, 'new', %s) RETURNING id"
)
Q_MESSAGE = (
    "INSERT INTO floor_message (ticket_id, external_id, body) VALUES (%s, %s, %s)"
    " ON CONFLICT (external_id) DO NOTHING RETURNING id"
)
Q_EVENT = "INSERT INTO floor_event (ticket_id, payload) VALUES (%s, %s)"

_CTE_HEAD = """
WITH found AS (
    SELECT customer_id FROM floor_identity
    WHERE (kind = 'external' AND value = %(ext)s) OR (kind = 'email' AND value = %(email)s)
    LIMIT 1
), new_customer AS (
    INSERT INTO floor_customer (name) SELECT %(name)s WHERE NOT EXISTS (SELECT 1 FROM found) RETURNING id
), new_identity AS (
    INSERT INTO floor_identity (customer_id, kind, value)
    SELECT nc.id, v.kind, v.value
    FROM new_customer nc, (VALUES ('external', %(ext)s), ('email', %(email)s)) v (kind, value)
    ON CONFLICT DO NOTHING
), cust AS (
    SELECT customer_id AS id FROM found UNION ALL SELECT id FROM new_customer
), old_ticket AS (
    SELECT t.id FROM floor_ticket t WHERE {ticket_filter} ORDER BY t.created_at DESC, t.id DESC LIMIT 1 FOR UPDATE
), new_ticket AS (
    INSERT INTO floor_ticket (customer_id, subject, status, thread_key)
    SELECT id, %(subject)s, 'new', %(thread_key)s FROM cust WHERE NOT EXISTS (SELECT 1 FROM old_ticket) RETURNING id
), tk AS (
    SELECT id FROM old_ticket UNION ALL SELECT id FROM new_ticket
), msg AS (
    INSERT INTO floor_message (ticket_id, external_id, body) SELECT id, %(xid)s, %(body)s FROM tk
    ON CONFLICT (external_id) DO NOTHING RETURNING id, ticket_id
)
INSERT INTO floor_event (ticket_id, payload)
SELECT ticket_id, jsonb_build_object('type', 'message_received', 'message_id', id, 'channel', 'api') FROM msg
RETURNING id
"""
Q_CTE_BY_KEY = _CTE_HEAD.format(ticket_filter="t.thread_key = %(thread_key)s AND t.thread_key <> ''")
Q_CTE_BY_CUSTOMER = _CTE_HEAD.format(ticket_filter="t.customer_id = (SELECT id FROM cust)")


def floor_identity_value(identifier: str) -> str:
    return f"bench-inbox:{identifier}"


def reset_floor(db: BenchDatabase) -> None:
    db.maintenance(f"TRUNCATE {FLOOR_TABLES} RESTART IDENTITY")
    with psycopg.connect(db.url) as conn, conn.cursor() as cur:
        senders = [seeded_sender(i) for i in range(SEEDED_CUSTOMERS)]
        with cur.copy("COPY floor_customer (name) FROM STDIN") as copy:
            for s in senders:
                copy.write_row((s.name,))
        with cur.copy("COPY floor_identity (customer_id, kind, value) FROM STDIN") as copy:
            for i, s in enumerate(senders, start=1):
                copy.write_row((i, "external", floor_identity_value(s.identifier)))
                copy.write_row((i, "email", s.email))
    db.maintenance("VACUUM ANALYZE", "CHECKPOINT")


def _subject(msg: Msg) -> str:
    return msg.subject or msg.text.split("\n", 1)[0][:80]


def run_floor_stmt(db: BenchDatabase, messages: list[Msg]) -> StageResult:
    """floors.md §2 "stmt": BEGIN, SELECT identity, (INSERT customer, INSERT identities),
    (SELECT ticket), (INSERT ticket), INSERT message, INSERT event, COMMIT."""
    latencies = []
    with psycopg.connect(db.url) as conn:  # autocommit off; psycopg prepares after 5 uses
        cur = conn.cursor()
        started = time.perf_counter()
        for msg in messages:
            t0 = time.perf_counter()
            ext = floor_identity_value(msg.sender.identifier)
            row = cur.execute(Q_IDENTITY, (ext, msg.sender.email)).fetchone()
            ticket_id = None
            if row is None:
                customer_id = cur.execute(Q_NEW_CUSTOMER, (msg.sender.name,)).fetchone()[0]  # type: ignore[index]
                cur.execute(Q_NEW_IDENTITIES, (customer_id, ext, customer_id, msg.sender.email))
            else:
                customer_id = row[0]
            if msg.thread_key:
                found = cur.execute(Q_TICKET_BY_KEY, (msg.thread_key,)).fetchone()
                ticket_id = found[0] if found else None
            elif row is not None:  # a brand-new customer has no ticket to look up
                found = cur.execute(Q_TICKET_BY_CUSTOMER, (customer_id,)).fetchone()
                ticket_id = found[0] if found else None
            if ticket_id is None:
                ticket_id = cur.execute(Q_NEW_TICKET, (customer_id, _subject(msg), msg.thread_key)).fetchone()[0]  # type: ignore[index]
            message = cur.execute(Q_MESSAGE, (ticket_id, msg.external_id, msg.text)).fetchone()
            if message is not None:
                payload = {"type": "message_received", "message_id": message[0], "channel": "api"}
                cur.execute(Q_EVENT, (ticket_id, Jsonb(payload)))
            conn.commit()
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    check_floor(db, messages, "floor stmt")
    return StageResult("floor stmt", len(messages), elapsed, latencies)


def run_floor_cte(db: BenchDatabase, messages: list[Msg]) -> StageResult:
    """floors.md §2 "cte": the same logic as one statement (one round trip) in autocommit."""
    latencies = []
    with psycopg.connect(db.url, autocommit=True) as conn:
        cur = conn.cursor()
        started = time.perf_counter()
        for msg in messages:
            t0 = time.perf_counter()
            params = {
                "ext": floor_identity_value(msg.sender.identifier),
                "email": msg.sender.email,
                "name": msg.sender.name,
                "subject": _subject(msg),
                "thread_key": msg.thread_key,
                "xid": msg.external_id,
                "body": msg.text,
            }
            cur.execute(Q_CTE_BY_KEY if msg.thread_key else Q_CTE_BY_CUSTOMER, params)  # type: ignore[arg-type]
            cur.fetchall()
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    check_floor(db, messages, "floor cte")
    return StageResult("floor cte", len(messages), elapsed, latencies)


def check_floor(db: BenchDatabase, messages: list[Msg], name: str) -> None:
    n = len(messages)
    expected_customers = SEEDED_CUSTOMERS + sum(m.new_sender for m in messages)
    with psycopg.connect(db.url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM floor_message), (SELECT count(*) FROM floor_event),"
            " (SELECT count(*) FROM floor_customer), (SELECT count(*) FROM floor_identity)"
        ).fetchone()
    if counts != (n, n, expected_customers, 2 * expected_customers):
        raise BenchFailure(
            f"{name}: messages, events, customers, identities = {counts};"
            f" expected {(n, n, expected_customers, 2 * expected_customers)}"
        )


# --- query profile (untimed) ------------------------------------------------------------------

_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?([a-z_]+)"?', re.IGNORECASE)


def classify(statement: str) -> str:
    verb = statement.split(None, 1)[0].upper()
    if verb in ("BEGIN", "COMMIT"):
        return verb
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return "RELEASE SAVEPOINT" if verb == "RELEASE" else verb
    match = _TABLE.search(statement)
    table = match.group(1) if match else "?"
    suffix = " FOR UPDATE" if statement.rstrip().upper().endswith("FOR UPDATE") else ""
    if "nextval(" in statement:
        table = "nextval(ticket number)"
    return f"{verb} {table}{suffix}"


def query_profile(db: BenchDatabase, inbox: Any, messages: list[Msg]) -> None:
    """Count the queries of each receive request and each process call (separate, untimed run)."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from channels_inbox.actions.process import do_process_inbound_event
    from channels_inbox.models import InboundEvent

    reset_product(db, inbox)
    requests = build_requests(inbox, messages)
    handler = WSGIHandler()
    receive_counts: Counter[str] = Counter()
    for req in requests:
        environ = dict(req.environ)
        environ["wsgi.input"] = io.BytesIO(req.body)
        reset_queries()  # the log keeps at most 9,000 entries
        # The request finishes by returning its connection to the pool, so capture inside.
        with CaptureQueriesContext(connection) as ctx:
            result = handler(environ, lambda status, headers, exc_info=None: None)
            b"".join(result)
            captured = list(ctx.captured_queries)
        result.close()
        receive_counts.update(classify(q["sql"]) for q in captured)
    purge_broker()

    kinds: dict[str, Counter[str]] = {
        "new sender": Counter(),
        "known sender, new ticket": Counter(),
        "known sender, existing ticket": Counter(),
    }
    seen = dict.fromkeys(kinds, 0)
    ids = list(InboundEvent.objects.order_by("id").values_list("id", flat=True))
    for msg, event_id in zip(messages, ids, strict=True):
        reset_queries()
        with CaptureQueriesContext(connection) as ctx:
            do_process_inbound_event(event_id)
        counts = Counter(classify(q["sql"]) for q in ctx.captured_queries)
        if msg.new_sender:
            kind = "new sender"
        elif counts["INSERT helpdesk_ticket"]:
            kind = "known sender, new ticket"
        else:
            kind = "known sender, existing ticket"
        kinds[kind].update(counts)
        seen[kind] += 1

    n = len(messages)
    print(f"\nQueries per message (CaptureQueriesContext, BEGIN and COMMIT included), n={n}")
    print(f"\nreceive: {sum(receive_counts.values()) / n:.2f} per request")
    for name, count in receive_counts.most_common():
        print(f"  {count / n:6.2f}  {name}")
    total = sum(sum(c.values()) for c in kinds.values())
    print(f"\nprocess: {total / n:.2f} per message on average")
    for kind, counts in kinds.items():
        if not seen[kind]:
            continue
        print(f"\n  {kind} ({seen[kind]} messages): {sum(counts.values()) / seen[kind]:.2f} per message")
        for name, count in sorted(counts.items(), key=lambda item: -item[1]):
            print(f"    {count / seen[kind]:6.2f}  {name}")


def time_breakdown(db: BenchDatabase, inbox: Any, messages: list[Msg]) -> None:
    """Where the wall time of one processed message goes (separate, instrumented, untimed run).

    Wraps the steps of do_process_inbound_event and every cursor.execute with timers, so the
    numbers run somewhat slower than the timed stage; read them as shares.
    """
    from django.db import connection
    from django.db.backends.base.base import BaseDatabaseWrapper
    from psycopg import Connection as PgConnection

    import channels_inbox.actions.process as process_module
    import customers.actions.resolve as resolve_module
    import helpdesk.actions.ingest as ingest_module
    from channels_inbox.actions.process import do_process_inbound_event
    from channels_inbox.models import InboundEvent

    spent: dict[str, float] = dict.fromkeys(
        ["resolve customer", "  identity lookup", "  new customer", "thread + write message", "  find ticket",
         "  new ticket", "  append events", "COMMIT (round trip)", "after-commit hooks (realtime publish)"],
        0.0,
    )  # fmt: skip
    sql_time: dict[str, float] = {}
    sql_count: Counter[str] = Counter()
    patches = [
        (process_module, "do_resolve_customer", "resolve customer"),
        (resolve_module, "_known_identities", "  identity lookup"),
        (resolve_module, "_create_customer", "  new customer"),
        (process_module, "do_ingest_message", "thread + write message"),
        (ingest_module, "_find_ticket", "  find ticket"),
        (ingest_module, "_create_ticket", "  new ticket"),
        (ingest_module, "append_event", "  append events"),
        (PgConnection, "commit", "COMMIT (round trip)"),
        (BaseDatabaseWrapper, "run_and_clear_commit_hooks", "after-commit hooks (realtime publish)"),
    ]

    def timed(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t0

        return wrapper

    def timed_sql(execute: Callable[..., Any], sql_text: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql_text, params, many, context)
        finally:
            kind = classify(sql_text)
            sql_time[kind] = sql_time.get(kind, 0.0) + time.perf_counter() - t0
            sql_count[kind] += 1

    reset_product(db, inbox)
    run_receive(build_requests(inbox, messages))
    ids = list(InboundEvent.objects.order_by("id").values_list("id", flat=True))
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    try:
        for owner, name, label in patches:
            setattr(owner, name, timed(getattr(owner, name), label))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with connection.execute_wrapper(timed_sql):
            for event_id in ids:
                do_process_inbound_event(event_id)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)

    n = len(ids)

    def ms(seconds: float) -> str:
        return f"{seconds / n * 1000:6.2f} ms  {seconds / wall:4.0%}"

    sql_total = sum(sql_time.values())
    rest = wall - sql_total - spent["COMMIT (round trip)"] - spent["after-commit hooks (realtime publish)"]
    print(f"\nProcess stage, where the time goes (instrumented, n={n}): per message {wall / n * 1000:.2f} ms wall,")
    print(f"{cpu / n * 1000:.2f} ms CPU in this process (the rest is waiting for PostgreSQL or for a CPU)\n")
    print("by step (nested steps are part of the step above them):")
    for label, seconds in spent.items():
        print(f"  {label:<40} {ms(seconds)}")
    top = [spent[k] for k in spent if not k.startswith(" ")]
    print(f"  {'other (lock event, parse, mark processed)':<40} {ms(wall - sum(top))}")
    print("\nby kind:")
    print(f"  {'SQL statements (cursor.execute)':<40} {ms(sql_total)}  ({sum(sql_count.values()) / n:.2f} per message)")
    print(f"  {'COMMIT':<40} {ms(spent['COMMIT (round trip)'])}")
    print(f"  {'after-commit hooks (realtime publish)':<40} {ms(spent['after-commit hooks (realtime publish)'])}")
    print(f"  {'Python outside those (ORM, Django, JSON)':<40} {ms(rest)}")
    print("\nSQL statements (BEGIN is sent with the first one):")
    for kind, seconds in sorted(sql_time.items(), key=lambda item: -item[1]):
        each = seconds / sql_count[kind] * 1e6
        print(f"  {kind:<48} {ms(seconds)}  {sql_count[kind] / n:5.2f}/msg  {each:5.0f} µs each")


# --- the report -------------------------------------------------------------------------------


def median_range(values: list[float], fmt: str = "{:,.0f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(runs: list[dict[str, StageResult]], n: int, with_cte: bool) -> None:
    def rates(name: str) -> list[float]:
        return [run[name].rate for run in runs]

    totals = [n / (run["receive"].seconds + run["process"].seconds) for run in runs]
    floor = rates("floor stmt")
    print(f"\nIngest benchmark: N={n} API-channel messages per run, {len(runs)} run(s); median (min–max) over runs\n")
    header = f"{'stage':<32} {'msgs/s':>24} {'p50 ms':>8} {'p99 ms':>8} {'÷ floor stmt':>22}"
    print(header)
    print("-" * len(header))

    def row(label: str, name: str | None, values: list[float], ratio: bool) -> None:
        p50 = f"{statistics.median([r[name].p50_ms for r in runs]):.2f}" if name else ""
        p99 = f"{statistics.median([r[name].p99_ms for r in runs]):.2f}" if name else ""
        ratios = median_range([v / f for v, f in zip(values, floor, strict=True)], "{:.2f}") if ratio else ""
        print(f"{label:<32} {median_range(values):>24} {p50:>8} {p99:>8} {ratios:>22}")

    row("receive (WSGI, full stack)", "receive", rates("receive"), True)
    row("process (1 worker process)", "process", rates("process"), True)
    row("total N/(receive+process)", None, totals, True)
    row("floor stmt (psycopg, 1 conn)", "floor stmt", floor, False)
    if with_cte:
        row("floor cte (psycopg, 1 conn)", "floor cte", rates("floor cte"), True)
    process_ratio = statistics.median([p / f for p, f in zip(rates("process"), floor, strict=True)])
    verdict = "met" if process_ratio >= TARGET_RATIO else "NOT met"
    print(
        f"\nTarget process ≥ {TARGET_RATIO:.0%} of floor stmt per worker process: {verdict}"
        f" (median ratio {process_ratio:.2f}; informational, never asserted)."
    )
    print("Ratios are per run (stage ÷ that run's floor), then median (min–max).")


# --- main -------------------------------------------------------------------------------------


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def timed_stage(label: str, fn: Callable[[], StageResult]) -> StageResult:
    result = fn()
    say(f"  {label:<12} {result.rate:8,.0f} msg/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; median and min–max are printed (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--no-cte", action="store_true", help="skip the single-CTE floor variant")
    parser.add_argument(
        "--queries", type=int, default=0, metavar="M", help="afterwards, count queries per message over M messages"
    )
    parser.add_argument(
        "--breakdown", type=int, default=0, metavar="M", help="afterwards, time the steps of processing M messages"
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database (debugging)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="INGEST_BATCH_SIZE for the process stage (default 50; 1 = one event per transaction)",
    )
    args = parser.parse_args(argv)
    if args.batch_size is not None:
        os.environ["INGEST_BATCH_SIZE"] = str(args.batch_size)  # read by the settings at setup
    if args.n < 1 or args.runs < 1:
        parser.error("--n and --runs must be at least 1")

    db = BenchDatabase(os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL))
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="sb_bench_") as workdir:
        try:
            db.create()
            say(f"database {db.name}: migrating")
            setup_django(db, workdir)
            db.maintenance(FLOOR_SCHEMA)
            inbox = create_inbox()
            messages = make_workload(args.n, args.seed)
            requests = build_requests(inbox, messages)
            new = sum(m.new_sender for m in messages)
            keyed = sum(bool(m.thread_key) for m in messages)
            say(
                f"workload: {args.n} messages, {new} from new senders, {keyed} with a thread_key "
                f"({len({m.thread_key for m in messages if m.thread_key})} keys), "
                f"body ≈{statistics.mean(len(r.body) for r in requests):,.0f} bytes JSON"
            )
            runs = []
            for i in range(args.runs):
                say(f"run {i + 1}/{args.runs}")
                result: dict[str, StageResult] = {}
                reset_product(db, inbox)
                result["receive"] = timed_stage("receive", lambda: run_receive(requests))
                db.maintenance("CHECKPOINT")
                result["process"] = timed_stage("process", lambda: run_process(messages))
                reset_floor(db)
                result["floor stmt"] = timed_stage("floor stmt", lambda: run_floor_stmt(db, messages))
                if not args.no_cte:
                    reset_floor(db)
                    result["floor cte"] = timed_stage("floor cte", lambda: run_floor_cte(db, messages))
                runs.append(result)
            report(runs, args.n, not args.no_cte)
            if args.queries:
                query_profile(db, inbox, messages[: args.queries])
            if args.breakdown:
                time_breakdown(db, inbox, messages[: args.breakdown])
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
