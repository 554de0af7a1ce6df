"""Workspace benchmark: the desk's list, ticket and search pages at a million tickets.

    .venv/bin/python bench/workspace.py                       # 1,000,000 tickets, 5,000,000 messages
    .venv/bin/python bench/workspace.py --reuse               # measure again without loading
    .venv/bin/python bench/workspace.py --tickets 100000 --messages 500000

1. **Load** (skipped with `--reuse` when the database holds the same scale): creates the
   database (`bench_workspace`, or `--db`), migrates it, writes the small tables (agents,
   teams, inboxes, organizations) through the ORM, drops the secondary indexes and unique
   constraints of the big tables, then streams customers, identities, tickets, messages,
   ticket events and tags with COPY. Ticket subjects and message texts go through a staging
   table with their prepared text (`helpdesk.search_text.prepare_text`, as the app prepares
   them) and are inserted with `to_tsvector('simple', …)`: the same expression the app's
   INSERT computes. Then the indexes and constraints are built again, the sequences moved
   on, VACUUM ANALYZE.
2. **Measure**: GET requests through django.test.Client with a signed-in agent (session,
   auth, permission policy, templates: the whole request cycle, no network server) —
   inbox list first page, a deep cursor page, the ticket page with 50 messages, two-word
   searches (common and rare words, by recency and by rank). Warm-up, then `--runs` timed
   runs each; p50/p95 and the query count per request (counted on one untimed request).

Timings are printed, never asserted. The exit status is non-zero only when a page does not
answer 200 or a loaded count is wrong. See bench/README.md, "Workspace at a million tickets".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpdesk.search_text import prepare_text  # noqa: E402  (pure Python, no Django setup needed)

DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_DB = "bench_workspace"
# The aims of issue 4 (p95, ms).
AIMS = {"list": 50.0, "ticket": 80.0, "search": 150.0}
# The ticket the ticket page shows has this many messages.
BIG_TICKET_MESSAGES = 50
# The signed-in agent: role "agent", member of two of the teams.
BENCH_USER = "bench.agent"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=730)
# Rows per COPY chunk written in one go.
CHUNK = 20_000


class BenchFailure(Exception):
    """A correctness check failed (a page did not answer 200, a count is wrong): exit non-zero."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


# --- text ------------------------------------------------------------------------------------

_COMMON_TEXT = """
the to i and you a my for is of order it please in have not on this we was with be your that can
me but at are from as an thanks hello hi if help so just would do get has been no will account
there any our what when need card refund delivery still payment email one received know could
why time package shipping again number days item back how all new problem issue since last week
yesterday today tomorrow send sent again login password reset app error update invoice charge
charged twice subscription cancel plan upgrade address tracking courier parcel damaged missing
wrong size colour return label exchange support urgent waiting phone screen version browser
checkout discount code coupon price total receipt product box arrived broken team agent reply
answer message contact store online website page link click button working work doesn't can't
didn't won't cannot unable again sorry thank regards best kind morning afternoon month year
friday monday weekend hours minutes order's customer service manager bank transfer paypal visa
mastercard confirm confirmation verify verification locked blocked open closed status pending
ship shipped warehouse stock available replacement warranty repair faulty battery charger cable
screen keyboard laptop printer router install download file attachment photo picture document
form fill data privacy delete remove change edit profile settings name
"""
_COMMON = _COMMON_TEXT.split()
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["qua", "tho", "shi", "cha", "ele", "ion"]
_FIRST_TEXT = """
Jana Wei Olga Amir Lucía Tomás Aiko Sven Noor Kwame Priya Ivan Petra Jakub Eva Martin Anna Lukas
Sofia Mateo Chen Yuki Omar Fatima Elena Pavel Marta Karel Zuzana Dmitri Irina Hana Ondřej Léa
Noah
"""
_FIRST = _FIRST_TEXT.split()
_LAST_TEXT = """
Nováková Chen Petrova Haddad García Novák Sato Berg Khan Mensah Rao Svoboda Dvořák Černá
Kowalski Müller Rossi Smirnov Ivanova Tanaka Kim Nguyen Silva Santos Dubois Martin Horák
Procházka Kučera
"""
_LAST = _LAST_TEXT.split()
_CZECH = [
    "Dobrý den, objednávka mi stále nedorazila.",
    "Zásilka byla poškozená a hrnek je rozbitý.",
    "Prosím o vrácení peněz za objednávku.",
    "Děkuji za rychlou odpověď, vše v pořádku.",
]
_RUSSIAN = [
    "Здравствуйте, мой заказ не пришёл.",
    "Посылка пришла повреждённой, прошу вернуть деньги.",
    "Спасибо за помощь, всё работает.",
]
_CJK = ["你好，我的订单还没有到，请帮我查一下。", "包裹破损了，我想退款。", "注文した商品がまだ届きません。"]


class Words:
    """A vocabulary of common helpdesk words and a long tail of made-up words, drawn ≈ Zipf (s = 1)."""

    def __init__(self, rng: random.Random, tail: int = 40_000) -> None:
        seen = set(_COMMON)
        words = list(dict.fromkeys(_COMMON))
        while len(words) < len(_COMMON) + tail:
            word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))
            if word not in seen:
                seen.add(word)
                words.append(word)
        self.words = words
        weights = [1.0 / (rank + 3) for rank in range(len(words))]
        self.cum = list(_accumulate(weights))
        self.rank = {w: i for i, w in enumerate(words)}

    def draw(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum, k=k)

    def rarest(self, text: str, n: int = 2) -> list[str]:
        found = sorted(
            {
                w
                for w in text.lower().replace(",", " ").replace(".", " ").replace("?", " ").replace("!", " ").split()
                if w in self.rank
            },
            key=lambda w: -self.rank[w],
        )
        return found[:n]


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for v in values:
        total += v
        yield total


def sentence(rng: random.Random, words: Words, lo: int, hi: int) -> str:
    return sentences(rng, words, 1, lo, hi)[0]


def sentences(rng: random.Random, words: Words, count: int, lo: int, hi: int) -> list[str]:
    """`count` sentences of lo…hi words, drawn in one go."""
    sizes = [rng.randint(lo, hi) for _ in range(count)]
    drawn = words.draw(rng, sum(sizes))
    out, at = [], 0
    for size in sizes:
        text = " ".join(drawn[at : at + size])
        at += size
        out.append(text[0].upper() + text[1:] + rng.choice((".", ".", ".", "?", "!")))
    return out


def message_text(rng: random.Random, words: Words, *, email: bool, inbound: bool, name: str, order: int) -> str:
    roll = rng.random()
    if roll < 0.03:
        return " ".join(rng.sample(_CZECH, 2)) + f" Objednávka #{order}."
    if roll < 0.05:
        return " ".join(rng.sample(_RUSSIAN, 2)) + f" Заказ #{order}."
    if roll < 0.06:
        return "".join(rng.sample(_CJK, 2)) + f" #{order}"
    if not email:
        # Chat-like: one to three short sentences.
        return " ".join(sentences(rng, words, rng.randint(1, 3), 3, 12))
    parts = [
        rng.choice(("Hello,", "Hi,", "Hi team,", "Dear support,", "Good morning,"))
        if inbound
        else f"Hi {name.split()[0]},"
    ]
    parts.extend(sentences(rng, words, rng.randint(2, 6), 5, 16))
    if rng.random() < 0.4:
        parts.append(
            f"Order #{order} placed on {rng.randint(1, 28)}/{rng.randint(1, 12)},"
            f" total €{rng.randint(5, 900)}.{rng.randint(10, 99)}."
        )
    parts.append("Thanks,\n" + name if inbound else "Kind regards,\nThe support team")
    return "\n".join(parts)


def subject_text(rng: random.Random, words: Words) -> str:
    drawn = words.draw(rng, rng.randint(2, 7))
    text = " ".join(drawn)
    return text[0].upper() + text[1:]


# --- COPY text format ------------------------------------------------------------------------

NULL = "\\N"


def lit(value: Any) -> str:
    kind = type(value)
    if kind is str:
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return value
    if value is None:
        return NULL
    if kind is int:
        return str(value)
    if kind is datetime:
        return value.isoformat()
    if kind is bool:
        return "t" if value else "f"
    return str(value)


class Stream:
    """One COPY … FROM STDIN on its own connection, fed row by row, written in chunks."""

    def __init__(self, url: str, table: str, columns: list[str]) -> None:
        self.conn = psycopg.connect(url, autocommit=False)
        renice_backend(self.conn)
        self.conn.execute("SET session_replication_role = replica")
        self.cur = self.conn.cursor()
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        self._ctx = self.cur.copy(statement)
        self.copy = self._ctx.__enter__()
        self.buf: list[str] = []
        self.rows = 0

    def row(self, *values: Any) -> None:
        self.buf.append("\t".join(map(lit, values)))
        if len(self.buf) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.copy.write(("\n".join(self.buf) + "\n").encode())
            self.rows += len(self.buf)
            self.buf = []

    def close(self) -> None:
        self.flush()
        self._ctx.__exit__(None, None, None)
        self.conn.commit()
        self.conn.close()


def renice_backend(conn: psycopg.Connection[Any]) -> None:
    """The server process of this connection runs at nice 10, like this script (best effort)."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    if pid:
        subprocess.run(["renice", "-n", "10", "-p", str(pid[0])], capture_output=True, check=False)


# --- the load --------------------------------------------------------------------------------

BIG_TABLES = [
    "customers_customer",
    "customers_identity",
    "helpdesk_ticket",
    "helpdesk_ticket_tags",
    "helpdesk_message",
    "helpdesk_ticketevent",
]


@dataclass
class Scale:
    tickets: int
    messages: int
    seed: int

    @property
    def customers(self) -> int:
        return max(10, int(self.tickets * 0.35))


@dataclass
class Small:
    """Ids of the rows written through the ORM before the bulk load."""

    agents: list[int]
    teams: list[int]
    bench_user: int
    bench_teams: list[int]
    inboxes: list[tuple[int, str, str]]  # id, kind, address
    organizations: list[int]
    tags: list[int]


@dataclass
class Probe:
    """What the measurement needs to know about the data (stored in bench_workspace_meta)."""

    big_ticket_number: int = 0
    rare_pairs: list[list[str]] = field(default_factory=list)


def setup_django(url: str, workdir: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)  # local-memory cache; no broker needed for GETs
    os.environ["DEBUG"] = "false"
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    os.environ["SWITCHBOARD_DATA_DIR"] = workdir
    os.environ["MEDIA_ROOT"] = os.path.join(workdir, "media")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789")
    os.environ["DJANGO_SETTINGS_MODULE"] = "helpdesk.settings"
    import django

    django.setup()


def write_small(rng: random.Random, agents: int = 60, teams: int = 8) -> Small:
    from django.contrib.auth.hashers import make_password

    from channels_inbox.models import Inbox
    from customers.models import Organization
    from helpdesk.models import AgentProfile, Role, Tag, Team, User

    team_rows = Team.objects.bulk_create(
        [
            Team(name=n, slug=n.lower().replace(" ", "-"))
            for n in ["Billing", "Shipping", "Tier 2", "Returns", "Accounts", "Hardware", "Partners", "Czech desk"][
                :teams
            ]
        ]
    )
    password = make_password("bench-password")
    users = User.objects.bulk_create(
        [
            User(
                username=BENCH_USER,
                email="bench.agent@example.com",
                first_name="Bench",
                last_name="Agent",
                password=password,
            )
        ]
        + [
            User(
                username=f"agent{i}",
                email=f"agent{i}@example.com",
                first_name=rng.choice(_FIRST),
                last_name=rng.choice(_LAST),
                password=password,
            )
            for i in range(1, agents)
        ]
    )
    roles = [Role.AGENT] * 50 + [Role.SUPERVISOR] * 6 + [Role.LIGHT_AGENT] * 3 + [Role.ADMIN]
    profiles = AgentProfile.objects.bulk_create(
        [AgentProfile(user=u, role=Role.AGENT if i == 0 else roles[i % len(roles)]) for i, u in enumerate(users)]
    )
    through = AgentProfile.teams.through
    links = [
        through(agentprofile_id=profiles[0].pk, team_id=team_rows[0].pk),
        through(agentprofile_id=profiles[0].pk, team_id=team_rows[1].pk),
    ]
    for p in profiles[1:]:
        for t in rng.sample(team_rows, rng.randint(1, 2)):
            links.append(through(agentprofile_id=p.pk, team_id=t.pk))
    through.objects.bulk_create(links)
    inbox_specs = [
        ("email", "Support mail", "support@shop.example"),
        ("email", "Billing mail", "billing@shop.example"),
        ("email", "Czech mail", "podpora@shop.example"),
        ("api", "Chat widget", "chat"),
        ("api", "Mobile app", "app"),
    ]
    inboxes = Inbox.objects.bulk_create(
        [
            Inbox(kind=k, name=n, slug=n.lower().replace(" ", "-"), settings={"address": a} if k == "email" else {})
            for k, n, a in inbox_specs
        ]
    )
    orgs = Organization.objects.bulk_create([Organization(name=f"Company {i}") for i in range(2000)])
    tags = Tag.objects.bulk_create(
        [Tag(name=n) for n in ["vip", "refund", "bug", "shipping", "invoice", "escalated", "spam", "feedback"]]
    )
    return Small(
        agents=[u.pk for u in users],
        teams=[t.pk for t in team_rows],
        bench_user=users[0].pk,
        bench_teams=[team_rows[0].pk, team_rows[1].pk],
        inboxes=[(i.pk, i.kind, spec[2]) for i, spec in zip(inboxes, inbox_specs, strict=True)],
        organizations=[o.pk for o in orgs],
        tags=[t.pk for t in tags],
    )


def saved_schema(conn: psycopg.Connection[Any]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """The unique constraints and the non-constraint indexes of the big tables (to drop and rebuild)."""
    constraints = conn.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.contype = 'u' AND c.conrelid::regclass::text = ANY(%s)",
        [BIG_TABLES],
    ).fetchall()
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " WHERE i.indrelid::regclass::text = ANY(%s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        [BIG_TABLES],
    ).fetchall()
    return [tuple(r) for r in constraints], [tuple(r) for r in indexes]


def columns_of(model: Any) -> list[str]:
    return [f.column for f in model._meta.concrete_fields]


def load(admin_url: str, url: str, dbname: str, scale: Scale, workdir: str) -> tuple[Probe, dict[str, float]]:
    times: dict[str, float] = {}
    started = time.perf_counter()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    setup_django(url, workdir)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    rng = random.Random(scale.seed)
    small = write_small(rng)
    connection.close()
    times["schema + small tables"] = time.perf_counter() - started

    t = time.perf_counter()
    admin = psycopg.connect(url, autocommit=True)
    renice_backend(admin)
    constraints, indexes = saved_schema(admin)
    for table, name, _ in constraints:
        admin.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name)))
    for name, _ in indexes:
        admin.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    for table in ("bench_stage_ticket", "bench_stage_message"):
        admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    admin.execute("CREATE UNLOGGED TABLE bench_stage_ticket (LIKE helpdesk_ticket INCLUDING DEFAULTS, doc text)")
    admin.execute("CREATE UNLOGGED TABLE bench_stage_message (LIKE helpdesk_message INCLUDING DEFAULTS, doc text)")
    probe = generate(url, scale, small, rng)
    times["generate + COPY"] = time.perf_counter() - t

    t = time.perf_counter()
    say("insert tickets and messages with their search documents …")
    from helpdesk.models import Message, Ticket

    def move(table: str, stage: str, cols: list[str], where: str = "") -> None:
        conn = psycopg.connect(url, autocommit=True)
        renice_backend(conn)
        conn.execute("SET session_replication_role = replica")
        target = [c for c in cols if c != "search_vector"]
        conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}, search_vector) SELECT {}, to_tsvector('simple'::regconfig, doc) FROM {} {}"
            ).format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, target)),
                sql.SQL(", ").join(map(sql.Identifier, target)),
                sql.Identifier(stage),
                sql.SQL(where),
            )
        )
        conn.close()

    ticket_cols, message_cols = columns_of(Ticket), columns_of(Message)
    # Two server processes: the machine has two cores.
    threads = [
        threading.Thread(target=move, args=("helpdesk_ticket", "bench_stage_ticket", ticket_cols)),
        threading.Thread(
            target=move, args=("helpdesk_message", "bench_stage_message", message_cols, "WHERE id % 2 = 0")
        ),
        threading.Thread(
            target=move, args=("helpdesk_message", "bench_stage_message", message_cols, "WHERE id % 2 = 1")
        ),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    admin.execute("DROP TABLE bench_stage_ticket")
    admin.execute("DROP TABLE bench_stage_message")
    times["search documents (to_tsvector)"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"rebuild {len(indexes)} indexes and {len(constraints)} unique constraints …")
    admin.execute("SET maintenance_work_mem = '1GB'")
    for name, definition in indexes:
        t1 = time.perf_counter()
        admin.execute(definition)
        say(f"  {name}: {time.perf_counter() - t1:.1f} s")
    for table, name, definition in constraints:
        admin.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(table), sql.Identifier(name), sql.SQL(definition)
            )
        )
    for table in BIG_TABLES:
        admin.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT coalesce(max(id), 1) FROM {}))").format(
                sql.Identifier(table)
            ),
            [table],
        )
    admin.execute("SELECT setval('helpdesk_ticket_number_seq', (SELECT max(number) FROM helpdesk_ticket))")
    times["indexes + constraints"] = time.perf_counter() - t
    t = time.perf_counter()
    say("vacuum analyze …")
    for table in BIG_TABLES:
        admin.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    admin.execute("ANALYZE")
    times["vacuum analyze"] = time.perf_counter() - t
    check_load(admin, scale)
    times["total"] = time.perf_counter() - started
    admin.execute("DROP TABLE IF EXISTS bench_workspace_meta")
    admin.execute("CREATE TABLE bench_workspace_meta (data jsonb)")
    meta = {
        "tickets": scale.tickets,
        "messages": scale.messages,
        "seed": scale.seed,
        "times": times,
        "big_ticket_number": probe.big_ticket_number,
        "rare_pairs": probe.rare_pairs,
        "loaded_at": datetime.now(UTC).isoformat(),
    }
    admin.execute("INSERT INTO bench_workspace_meta VALUES (%s)", [json.dumps(meta)])
    admin.close()
    return probe, times


def check_load(conn: psycopg.Connection[Any], scale: Scale) -> None:
    def one(query: str) -> Any:
        row = conn.execute(query).fetchone()
        return row[0] if row else None

    tickets = one("SELECT count(*) FROM helpdesk_ticket")
    messages = one("SELECT count(*) FROM helpdesk_message")
    if tickets != scale.tickets or messages != scale.messages:
        raise BenchFailure(f"loaded {tickets} tickets / {messages} messages, wanted {scale.tickets} / {scale.messages}")
    if one("SELECT count(*) FROM helpdesk_message WHERE search_vector IS NULL"):
        raise BenchFailure("messages without a search document")
    # Foreign keys were not checked during COPY (session_replication_role): check them now.
    orphans = 0
    for child, column, parent in (
        ("helpdesk_message", "ticket_id", "helpdesk_ticket"),
        ("helpdesk_ticketevent", "ticket_id", "helpdesk_ticket"),
        ("helpdesk_ticket", "customer_id", "customers_customer"),
        ("customers_identity", "customer_id", "customers_customer"),
    ):
        orphans += one(
            f"SELECT count(*) FROM {child} AS c LEFT JOIN {parent} AS p ON p.id = c.{column} WHERE p.id IS NULL"
        )
    if orphans:
        raise BenchFailure(f"{orphans} rows point at nothing")
    bad_seq = one(
        "SELECT count(*) FROM helpdesk_ticket t WHERE t.last_event_seq <>"
        " (SELECT count(*) FROM helpdesk_ticketevent e WHERE e.ticket_id = t.id) AND t.id % 997 = 0"
    )
    if bad_seq:
        raise BenchFailure(f"{bad_seq} sampled tickets whose last_event_seq is not their event count")


def message_counts(rng: random.Random, scale: Scale, big: int) -> list[int]:
    """Messages per ticket: ≥ 1 with a geometric-ish tail, BIG_TICKET_MESSAGES for ticket `big`, summing to
    scale.messages."""
    n = scale.tickets
    counts = [1] * n
    counts[big] = BIG_TICKET_MESSAGES
    extra = scale.messages - sum(counts)
    if extra < 0:
        raise SystemExit("--messages must be at least --tickets + 49")
    mean = extra / max(1, n - 1)
    for i in range(n):
        if i != big and extra > 0:
            k = min(extra, int(rng.expovariate(1 / mean)) if mean > 0 else 0, 40)
            counts[i] += k
            extra -= k
    i = 0
    while extra > 0:
        if i != big and counts[i] < 41:
            counts[i] += 1
            extra -= 1
        i = (i + 1) % n
    return counts


def generate(url: str, scale: Scale, small: Small, rng: random.Random) -> Probe:
    from customers.models import Customer, Identity
    from helpdesk.models import Message, Ticket, TicketEvent

    words = Words(rng)
    probe = Probe()
    t0 = NOW - SPAN
    n_cust = scale.customers
    say(f"customers: {n_cust:,} …")
    cust = Stream(url, "customers_customer", columns_of(Customer))
    idents = Stream(url, "customers_identity", columns_of(Identity))
    names: list[str] = []
    ident_id = 0
    for cid in range(1, n_cust + 1):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        names.append(name)
        first = t0 + timedelta(seconds=rng.random() * SPAN.total_seconds())
        org = rng.choice(small.organizations) if rng.random() < 0.3 else None
        attrs = json.dumps({"plan": rng.choice(("free", "pro", "business"))}) if rng.random() < 0.5 else "{}"
        cust.row(
            cid,
            name,
            rng.choice(("en", "cs", "de", "ru", "")),
            "",
            org,
            attrs,
            first,
            NOW - timedelta(seconds=rng.random() * 86400 * 30),
            first,
            first,
        )
        ident_id += 1
        email = f"{name.split()[0].lower()}.{cid}@mail{cid % 97}.example"
        idents.row(ident_id, cid, "email", email, email, False, first)
        if rng.random() < 0.4:
            ident_id += 1
            phone = f"+4206{cid:08d}"
            idents.row(ident_id, cid, "phone", phone, phone, False, first)
        if rng.random() < 0.3:
            ident_id += 1
            idents.row(ident_id, cid, "external", f"app:user-{cid}", f"user-{cid}", False, first)
    cust.close()
    idents.close()

    n = scale.tickets
    big = n // 3  # index of the ticket with 50 messages; created early, active to the end
    counts = message_counts(rng, scale, big)
    big_positions = {big + 1 + k * max(1, (n - big - 2) // BIG_TICKET_MESSAGES): k for k in range(BIG_TICKET_MESSAGES)}
    say(f"tickets: {n:,}, messages: {scale.messages:,} …")
    tickets = Stream(url, "bench_stage_ticket", [c for c in columns_of(Ticket) if c != "search_vector"] + ["doc"])
    message_columns = [c for c in columns_of(Message) if c != "search_vector"] + ["doc"]
    messages = Stream(url, "bench_stage_message", message_columns)
    events = Stream(url, "helpdesk_ticketevent", columns_of(TicketEvent))
    tags = Stream(url, "helpdesk_ticket_tags", ["id", "ticket_id", "tag_id"])
    email_inboxes = [i for i in small.inboxes if i[1] == "email"]
    api_inboxes = [i for i in small.inboxes if i[1] == "api"]
    agents = small.agents
    state = {"message_id": 0, "event_id": 0, "tag_id": 0}
    big_state: dict[str, Any] = {}
    started = time.perf_counter()
    step = timedelta(seconds=SPAN.total_seconds() / n)

    def new_event(
        ticket_id: int,
        seq: int,
        kind: str,
        when: datetime,
        *,
        actor: int | None = None,
        customer: int | None = None,
        message: int | None = None,
        data: dict[str, Any],
    ) -> None:
        state["event_id"] += 1
        events.row(state["event_id"], ticket_id, seq, kind, actor, customer, message, json.dumps(data), when)

    def write_message(ticket: dict[str, Any], k: int, when: datetime, inbound: bool, note: bool) -> int:
        state["message_id"] += 1
        mid = state["message_id"]
        email = ticket["channel"] == "email"
        text = message_text(rng, words, email=email, inbound=inbound, name=ticket["name"], order=100_000 + ticket["id"])
        if note:
            text = sentence(rng, words, 4, 14)
            direction, author_c, author_a, inbox, channel, ext, status = "note", None, ticket["agent"], None, "", "", ""
        elif inbound:
            direction, author_c, author_a = "inbound", ticket["customer"], None
            inbox, channel, status = ticket["inbox"], ticket["channel"], ""
            ext = f"<m{mid}.{ticket['id']}@mail.example>" if email else f"app-{mid}"
        else:
            direction, author_c, author_a = "outbound", None, ticket["agent"]
            inbox, channel, ext = ticket["inbox"], ticket["channel"], ""
            status = rng.choice(("delivered", "delivered", "read", "sent"))
        metadata = "{}"
        if email and not note:
            sender = f"{ticket['name']} <{ticket['email']}>" if inbound else ticket["address"]
            to = ticket["address"] if inbound else f"{ticket['name']} <{ticket['email']}>"
            metadata = json.dumps({"email": {"from": sender, "to": [to], "cc": [], "subject": ticket["subject"]}})
        messages.row(
            mid,
            ticket["id"],
            direction,
            author_c,
            author_a,
            inbox,
            channel,
            text,
            "",
            ext,
            status,
            "",
            metadata,
            when if inbound else None,
            when,
            prepare_text(text),
        )
        if not note and inbound and rng.random() < 0.0003 and len(probe.rare_pairs) < 40:
            pair = words.rarest(text)
            if len(pair) == 2:
                probe.rare_pairs.append(pair)
        return mid

    def ticket_row(i: int, created: datetime) -> dict[str, Any]:
        tid = i + 1
        recent = i >= n * 0.96
        if recent:
            status = rng.choices(("new", "open", "pending", "on_hold", "solved"), (25, 40, 20, 5, 10))[0]
        else:
            status = rng.choices(("solved", "closed", "open", "pending", "on_hold"), (60, 38.5, 0.7, 0.5, 0.3))[0]
        email = rng.random() < 0.6
        inbox = rng.choice(email_inboxes if email else api_inboxes)
        customer = rng.randint(1, n_cust)
        subject = subject_text(rng, words) if email or rng.random() < 0.5 else ""
        team = rng.choice(small.teams) if rng.random() < 0.85 else None
        assigned = (status != "new" and rng.random() < 0.85) or (status == "new" and rng.random() < 0.1)
        agent = rng.choice(agents)
        return {
            "id": tid,
            "created": created,
            "status": status,
            "channel": inbox[1],
            "inbox": inbox[0],
            "address": inbox[2],
            "customer": customer,
            "name": names[customer - 1],
            "email": f"{names[customer - 1].split()[0].lower()}.{customer}@mail{customer % 97}.example",
            "subject": subject,
            "team": team,
            "assignee": agent if assigned else None,
            "agent": agent,
            "priority": rng.choices((1, 2, 3, 4), (10, 70, 15, 5))[0],
        }

    def finish_ticket(ticket: dict[str, Any], times: list[datetime], mids: list[int], kinds: list[str]) -> None:
        tid, created = ticket["id"], ticket["created"]
        seq = 1
        new_event(
            tid,
            seq,
            "created",
            created,
            customer=ticket["customer"],
            data={"channel": ticket["channel"], "inbox_id": ticket["inbox"], "followup_of": None},
        )
        first_reply = last_customer = last_agent = None
        for when, mid, kind in zip(times, mids, kinds, strict=True):
            seq += 1
            if kind == "inbound":
                last_customer = when
                new_event(
                    tid,
                    seq,
                    "message_received",
                    when,
                    customer=ticket["customer"],
                    message=mid,
                    data={"message_id": mid, "channel": ticket["channel"]},
                )
            elif kind == "outbound":
                last_agent = when
                first_reply = first_reply or when
                new_event(
                    tid,
                    seq,
                    "reply_added",
                    when,
                    actor=ticket["agent"],
                    message=mid,
                    data={"message_id": mid, "channel": ticket["channel"]},
                )
            else:
                new_event(tid, seq, "note_added", when, actor=ticket["agent"], message=mid, data={"message_id": mid})
        last = times[-1]
        if ticket["assignee"]:
            seq += 1
            new_event(
                tid,
                seq,
                "assigned",
                times[0] + timedelta(minutes=3),
                actor=ticket["agent"],
                data={"old_assignee_id": None, "new_assignee_id": ticket["assignee"]},
            )
        solved_at = closed_at = None
        status = ticket["status"]
        if status != "new":
            seq += 1
            new_event(
                tid,
                seq,
                "status_changed",
                (first_reply or times[0]) + timedelta(seconds=1),
                actor=ticket["agent"],
                data={"old": "new", "new": "open"},
            )
        if status in ("pending", "on_hold", "solved", "closed"):
            seq += 1
            last = last + timedelta(minutes=20)
            if status in ("solved", "closed"):
                solved_at = last
            new_event(
                tid,
                seq,
                "status_changed",
                last,
                actor=ticket["agent"],
                data={"old": "open", "new": "solved" if status == "closed" else status},
            )
        if status == "closed":
            seq += 1
            last = last + timedelta(days=4)
            closed_at = last
            new_event(tid, seq, "status_changed", last, actor=None, data={"old": "solved", "new": "closed"})
        last = min(last, NOW)
        waiting = last_customer if status in ("new", "open") and kinds[-1] == "inbound" else None
        tickets.row(
            tid,
            1000 + tid,
            ticket["subject"],
            status,
            ticket["priority"],
            ticket["customer"],
            ticket["inbox"],
            ticket["channel"],
            ticket["team"],
            ticket["assignee"],
            "{}",
            None,
            None,
            "",
            first_reply,
            solved_at,
            closed_at,
            last_customer,
            last_agent,
            waiting,
            last,
            seq,
            created,
            last,
            prepare_text(ticket["subject"]),
        )
        if rng.random() < 0.1:
            for tag in rng.sample(small.tags, rng.randint(1, 2)):
                state["tag_id"] += 1
                tags.row(state["tag_id"], tid, tag)

    def conversation(ticket: dict[str, Any], count: int) -> tuple[list[datetime], list[int], list[str]]:
        when = ticket["created"]
        times, mids, kinds = [], [], []
        public_inbound = True
        for k in range(count):
            if k == 0 or ticket["status"] == "new":
                inbound, note = True, False
            else:
                note = rng.random() < 0.1
                inbound = not note and not public_inbound
                if not note:
                    public_inbound = inbound
                when = when + timedelta(seconds=rng.expovariate(1 / 14400))
            if k == 0:
                public_inbound = True
            when = min(when, NOW - timedelta(minutes=1))
            mids.append(write_message(ticket, k, when, inbound, note))
            times.append(when)
            kinds.append("note" if note else "inbound" if inbound else "outbound")
        return times, mids, kinds

    for i in range(n):
        created = t0 + step * i + timedelta(seconds=rng.random() * 60)
        if i == big:
            ticket = ticket_row(i, created)
            ticket.update(
                status="open",
                team=small.bench_teams[0],
                assignee=small.bench_user,
                agent=small.bench_user,
                channel="email",
                inbox=email_inboxes[0][0],
                address=email_inboxes[0][2],
                subject="Replacement order still not delivered after several attempts",
            )
            big_state.update(ticket=ticket, times=[], mids=[], kinds=[])
            probe.big_ticket_number = 1000 + ticket["id"]
        else:
            ticket = ticket_row(i, created)
            finish_ticket(ticket, *conversation(ticket, counts[i]))
        k = big_positions.get(i)
        if k is not None:
            # One message of the big ticket, written among the other tickets' messages (its rows
            # are spread over the table, as a long conversation's are).
            bt = big_state["ticket"]
            inbound = k % 2 == 0 or k == BIG_TICKET_MESSAGES - 1
            note = k % 7 == 3
            when = created if k else bt["created"]
            big_state["mids"].append(write_message(bt, k, when, inbound and not note, note))
            big_state["times"].append(when)
            big_state["kinds"].append("note" if note else "inbound" if inbound else "outbound")
        if i and i % 100_000 == 0:
            rate = i / (time.perf_counter() - started)
            say(f"  {i:,} tickets, {state['message_id']:,} messages ({rate:,.0f} tickets/s)")
    if len(big_state["mids"]) != BIG_TICKET_MESSAGES:
        raise BenchFailure(f"the big ticket got {len(big_state['mids'])} messages")
    finish_ticket(big_state["ticket"], big_state["times"], big_state["mids"], big_state["kinds"])
    for stream in (tickets, messages, events, tags):
        stream.close()
    say(f"  written: {tickets.rows:,} tickets, {messages.rows:,} messages, {events.rows:,} events, {tags.rows:,} tags")
    return probe


# --- the measurement ---------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Case:
    name: str
    aim: str  # a key of AIMS
    urls: list[str]


@dataclass
class Result:
    case: Case
    times_ms: list[float]
    queries: int
    # CPU time of this process per request (Python: Django, templates, psycopg), without the server's.
    cpu_ms: list[float] = field(default_factory=list)


def count_queries(client: Any, url: str) -> int:
    from django.db import connection

    calls = 0

    def counter(execute: Callable[..., Any], sql_text: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal calls
        calls += 1
        return execute(sql_text, params, many, context)

    # The wrapper must sit on the connection the request will use: open it first.
    from django.db import connections

    connections["default"].ensure_connection()
    with connection.execute_wrapper(counter):
        resp = client.get(url)
    if resp.status_code != 200:
        raise BenchFailure(f"GET {url} answered {resp.status_code}")
    return calls


def measure(cases: list[Case], warmup: int, runs: int) -> list[Result]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.get(username=BENCH_USER)
    client = Client()
    client.force_login(user)
    results = []
    for case in cases:
        # Every URL of the case at least once: the timed runs start warm.
        for i in range(max(warmup, len(case.urls))):
            resp = client.get(case.urls[i % len(case.urls)])
            if resp.status_code != 200:
                raise BenchFailure(f"GET {case.urls[i % len(case.urls)]} answered {resp.status_code}")
        queries = count_queries(client, case.urls[0])
        times: list[float] = []
        cpu: list[float] = []
        for i in range(runs):
            url = case.urls[i % len(case.urls)]
            c = time.process_time()
            t = time.perf_counter()
            resp = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            if resp.status_code != 200:
                raise BenchFailure(f"GET {url} answered {resp.status_code}")
        results.append(Result(case, times, queries, cpu))
        say(f"  {case.name}: p50 {pct(times, 0.5):.1f} ms, p95 {pct(times, 0.95):.1f} ms, {queries} queries")
    return results


def build_cases(probe: Probe, deep: int) -> list[Case]:
    from urllib.parse import urlencode

    from django.contrib.auth import get_user_model

    from helpdesk.selectors import encode_cursor, view_queryset

    user = get_user_model().objects.get(username=BENCH_USER)
    deep_ticket = view_queryset(user, "open").order_by("-last_activity_at", "-id")[deep : deep + 1].first()
    cases = [
        Case("inbox list, All open, first page", "list", ["/desk/"]),
        Case("inbox list, Mine, first page", "list", ["/desk/?view=mine"]),
    ]
    if deep_ticket is not None:
        cases.append(
            Case(
                f"inbox list, All open, cursor at {deep:,}",
                "list",
                ["/desk/?" + urlencode({"cursor": encode_cursor(deep_ticket)})],
            )
        )
    cases.append(
        Case(f"ticket page, {BIG_TICKET_MESSAGES} messages", "ticket", [f"/desk/tickets/{probe.big_ticket_number}/"])
    )
    common = ["order refund", "payment card", "delivery address", "password reset", "still waiting", "invoice charged"]
    rare = [" ".join(p) for p in probe.rare_pairs[:10]] or ["zzzz qqqq"]
    for label, pairs in (("common", common), ("rare", rare)):
        for sort in ("recent", "relevance"):
            urls = [
                "/desk/search/?" + urlencode({"q": q, **({"sort": sort} if sort != "recent" else {})}) for q in pairs
            ]
            cases.append(
                Case(f"search, two {label} words, by {'recency' if sort == 'recent' else 'rank'}", "search", urls)
            )
    return cases


def report(results: list[Result], scale: Scale, load_times: dict[str, float] | None) -> None:
    print()
    print(f"Workspace at {scale.tickets:,} tickets / {scale.messages:,} messages (agent role, 2 teams)")
    if load_times:
        steps = ["schema + small tables", "generate + COPY", "search documents (to_tsvector)"]
        steps += ["indexes + constraints", "vacuum analyze", "total"]
        print("load: " + ", ".join(f"{k} {load_times[k]:,.0f} s" for k in steps if k in load_times))
    print()
    print(
        f"| {'request':<44} | {'n':>3} | {'p50 ms':>7} | {'p95 ms':>7} | {'aim p95':>7} | {'p95/aim':>7} | queries "
        f"| {'cpu p50':>7} |"
    )
    print(f"|{'-' * 46}|{'-' * 5}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|---------|{'-' * 9}|")
    for r in results:
        aim = AIMS[r.case.aim]
        p95 = pct(r.times_ms, 0.95)
        print(
            f"| {r.case.name:<44} | {len(r.times_ms):>3} | {pct(r.times_ms, 0.5):>7.1f} | {p95:>7.1f} | {aim:>7.0f} "
            f"| {p95 / aim:>7.2f} | {r.queries:>7} | {pct(r.cpu_ms, 0.5):>7.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="keep a database already loaded at this scale")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database name (default {DEFAULT_DB})")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--deep", type=int, default=10_000, help="position of the deep cursor page")
    parser.add_argument("--load-only", action="store_true")
    args = parser.parse_args(argv)
    if args.messages < args.tickets + BIG_TICKET_MESSAGES - 1:
        parser.error("--messages must be at least --tickets + 49")
    scale = Scale(args.tickets, args.messages, args.seed)
    url = with_dbname(args.admin_url, args.db)
    workdir = tempfile.mkdtemp(prefix="bench_workspace_")
    meta = existing_meta(url) if args.reuse else None
    try:
        if (
            meta
            and meta["tickets"] == scale.tickets
            and meta["messages"] == scale.messages
            and meta["seed"] == scale.seed
        ):
            say(f"reusing {args.db} (loaded {meta['loaded_at']})")
            probe = Probe(meta["big_ticket_number"], meta["rare_pairs"])
            load_times = meta["times"]
            setup_django(url, workdir)
        else:
            if args.reuse:
                say(f"{args.db} holds no load at this scale: loading")
            probe, load_times = load(args.admin_url, url, args.db, scale, workdir)

        if args.load_only:
            return 0
        say("measuring …")
        results = measure(build_cases(probe, args.deep), args.warmup, args.runs)
        report(results, scale, load_times)
    except BenchFailure as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def existing_meta(url: str) -> dict[str, Any] | None:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT data FROM bench_workspace_meta").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


if __name__ == "__main__":
    sys.exit(main())
