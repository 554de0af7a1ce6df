"""SLA timers at scale: breach lateness and the sweeper's cost as open tickets grow.

    .venv/bin/python bench/sla.py                       # 100,000 tickets, a 120 s run window
    .venv/bin/python bench/sla.py --tickets 20000 --window 60 --restart-at 20
    .venv/bin/python bench/sla.py --in-process          # threads stand in for Celery

1. A throwaway PostgreSQL database (BENCH_DATABASE_URL, default
   postgres://postgres@127.0.0.1:5432/postgres, as admin connection) gets the migrations.
2. Sweeper cost: open tickets, each with one running first-reply clock whose deadline lies
   ahead (spread over a day), are bulk-inserted up to 10k, 25k, 50k and 100k; at each size one
   sweeper run (`do_sweep_sla_clocks`, nothing due) is timed (median of 50) and its query is
   EXPLAIN ANALYZEd (rows read, buffers), also with 100 clocks due.
3. Lateness (default: real Celery): two `celery -A helpdesk worker --pool threads -c 2`
   processes and one `celery beat` on Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/7;
   a private queue and CHANNEL_LAYER_PREFIX), sharing the bench database. The deadlines are
   moved to start 15 s from now (5 s with --in-process), spread over a day; the bench runs one
   scheduler tick itself (what beat's previous tick did in a running deployment: beat's own first tick comes
   SLA_SCHEDULE_AHEAD_SECONDS / 2 after it starts), then for `--window` seconds the workers hold
   and fire the eta timers and beat runs the sweeper every SLA_SWEEP_SECONDS.
   `--restart-at S` SIGKILLs one worker S seconds into the window and starts a new one: the
   timers it held are lost (Redis gives them back only after the visibility timeout), and the
   sweeper must catch those breaches. Which timers were lost is read from kombu's `unacked`
   hash before the processes stop; which breaches came from eta timers and which from the
   sweeper, from the workers' task events (`-E`; captured here). The processes are always stopped (SIGTERM, then
   SIGKILL after a few seconds), also on errors and Ctrl-C.
   `--in-process`: the same phase with the timer machinery in this process (threads for the
   workers, loops for beat) on an in-memory broker.
   Every clock due in the window must be breached exactly once (the run fails otherwise);
   lateness is breached_at − due_at. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import ast
import base64
import heapq
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400
SIZES = (10_000, 25_000, 50_000, 100_000)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class BenchDatabase:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"sb_bench_sla_{os.getpid()}"
        self.url = with_dbname(admin_url, self.name)
        self.created = False

    def create(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.created = True

    def drop(self) -> None:
        if self.created:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
            self.created = False

    def run(self, *statements: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


def setup_django(db: BenchDatabase, workdir: str, real: RealCelery | None) -> None:
    os.environ["DATABASE_URL"] = db.url
    if real is None:
        os.environ.pop("REDIS_URL", None)  # in-memory broker; the timers run in this process
    else:
        os.environ.update(real.env_overrides)
    for name in ("SLA_SCHEDULE_AHEAD_SECONDS", "SLA_SWEEP_SECONDS", "SLA_SWEEP_BATCH"):
        os.environ.pop(name, None)  # their defaults
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
    os.environ["DEBUG"] = "false"
    os.environ["SWITCHBOARD_DATA_DIR"] = workdir
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789")
    os.environ["DJANGO_SETTINGS_MODULE"] = "helpdesk.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- workload -----------------------------------------------------------------------------------


def insert_tickets(start: int, stop: int, *, base: datetime, rng: random.Random, fixtures: dict[str, Any]) -> None:
    """Open tickets start..stop, each with one running first-reply clock due within a day of base."""
    from helpdesk.models import SlaClock, Ticket
    from helpdesk.search_text import SearchDocument

    batch = 5000
    for lo in range(start, stop, batch):
        hi = min(stop, lo + batch)
        tickets = [
            Ticket(
                number=1_000_000 + i,
                subject="",
                status="open",
                customer=fixtures["customer"],
                inbox=fixtures["inbox"],
                channel="api",
                last_activity_at=base,
                sla_policy=fixtures["policy"],
                search_vector=SearchDocument(""),
            )
            for i in range(lo, hi)
        ]
        Ticket.objects.bulk_create(tickets)
        clocks = []
        for ticket in tickets:
            offset = rng.uniform(60, DAY)
            due = base + timedelta(seconds=offset)
            clocks.append(
                SlaClock(
                    ticket=ticket,
                    policy=fixtures["policy"],
                    metric="first_reply",
                    target_seconds=round(offset),
                    started_at=base,
                    running_since=base,
                    due_at=due,
                    next_fire_at=due,
                )
            )
        SlaClock.objects.bulk_create(clocks)
        Ticket.objects.filter(pk__in=[t.pk for t in tickets]).update(sla_due_at=base)


def fixtures() -> dict[str, Any]:
    from django.utils import timezone

    from channels_inbox.models import Inbox
    from customers.models import Customer
    from helpdesk.models import SlaPolicy

    now = timezone.now()
    return {
        "inbox": Inbox.objects.create(kind="api", name="Bench", slug="bench", settings={}, secrets={}),
        "customer": Customer.objects.create(name="Bench customer", first_seen_at=now, last_seen_at=now),
        "policy": SlaPolicy.objects.create(name="Bench", targets={"2": {"first_reply": {"minutes": 1440}}}),
    }


# --- sweeper cost ---------------------------------------------------------------------------------


def explain_sweep(now: datetime) -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection

    from helpdesk.models import SlaClock

    qs = (
        SlaClock.objects.filter(next_fire_at__lte=now)
        .order_by("next_fire_at")
        .values_list("id", flat=True)[: settings.SLA_SWEEP_BATCH]
    )
    query, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params)
        plan = cursor.fetchone()[0]
    root = plan[0]["Plan"] if isinstance(plan, list) else plan["Plan"]

    def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("Plans", []) for n in walk(child))]

    nodes = walk(root)
    scans = [n for n in nodes if "Scan" in n["Node Type"]]
    if os.environ.get("BENCH_SHOW_PLAN"):
        say(repr(plan))
    return {
        "scan": ", ".join(f"{n['Node Type']} {n.get('Index Name', '')}".strip() for n in scans),
        "rows": int(root.get("Actual Rows", 0)),
        "removed": sum(int(n.get("Rows Removed by Filter", 0)) for n in scans),
        "buffers": int(root.get("Shared Hit Blocks", 0)) + int(root.get("Shared Read Blocks", 0)),
        "ms": float(plan[0].get("Execution Time", 0.0)) if isinstance(plan, list) else 0.0,
    }


def sweeper_cost(db: BenchDatabase, base: datetime, fx: dict[str, Any], sizes: list[int], rng: random.Random) -> None:
    from django.db import connection

    from helpdesk.actions.sla import do_sweep_sla_clocks
    from helpdesk.models import SlaClock

    rows = []
    have = 0
    for size in sizes:
        say(f"  inserting tickets {have:,} … {size:,}")
        insert_tickets(have, size, base=base, rng=rng, fixtures=fx)
        have = size
        db.run("VACUUM ANALYZE helpdesk_slaclock", "VACUUM ANALYZE helpdesk_ticket")
        probe = base  # before every deadline: nothing due
        for _ in range(5):
            do_sweep_sla_clocks(now=probe)
        times = []
        for _ in range(50):
            t = time.perf_counter()
            assert do_sweep_sla_clocks(now=probe) == 0
            times.append((time.perf_counter() - t) * 1000)
        idle = explain_sweep(probe)
        # The same query with the 100 earliest clocks due (read only: nothing is fired).
        hundredth = SlaClock.objects.order_by("next_fire_at").values_list("next_fire_at", flat=True)[99]
        assert hundredth is not None
        busy = explain_sweep(hundredth)
        rows.append((size, statistics.median(times), idle, busy))
        connection.close()
    print("\nSweeper run, nothing due (median of 50 runs; EXPLAIN ANALYZE of its query):")
    print(
        f"{'open tickets':>13} {'run ms':>8} {'query ms':>9} {'rows':>5} {'buffers':>8}   "
        f"{'100 due: rows':>13} {'buffers':>8}  plan"
    )
    first = rows[0]
    for size, ms, idle, busy in rows:
        print(
            f"{size:>13,} {ms:>8.3f} {idle['ms']:>9.3f} {idle['rows']:>5} {idle['buffers']:>8}   "
            f"{busy['rows']:>13} {busy['buffers']:>8}  {idle['scan']}"
        )
    last = rows[-1]
    print(
        f"ratio {last[0] // first[0]}× tickets → run time ×{last[1] / first[1]:.2f}, "
        f"buffers ×{max(1, last[2]['buffers']) / max(1, first[2]['buffers']):.2f}"
    )


# --- lateness -------------------------------------------------------------------------------------


class InProcessCelery:
    """What a worker does with eta tasks: hold them, run each at its moment (2 threads)."""

    def __init__(self) -> None:
        self.heap: list[tuple[datetime, int]] = []
        self.lock = threading.Condition()
        self.stop = False
        self.results: dict[str, int] = {}

    def apply_async(self, args: tuple[int], eta: datetime | None = None, **_: Any) -> None:
        from django.utils import timezone

        with self.lock:
            heapq.heappush(self.heap, (eta or timezone.now(), args[0]))
            self.lock.notify()

    def run(self) -> None:
        from django.db import connection
        from django.utils import timezone

        from helpdesk.actions.sla import do_fire_sla_clock

        try:
            while True:
                with self.lock:
                    while not self.stop and (not self.heap or self.heap[0][0] > timezone.now()):
                        wait = (self.heap[0][0] - timezone.now()).total_seconds() if self.heap else 0.5
                        self.lock.wait(max(0.001, min(wait, 0.5)))
                    if self.stop:
                        return
                    _, clock_id = heapq.heappop(self.heap)
                result = do_fire_sla_clock(clock_id)
                self.results[result] = self.results.get(result, 0) + 1
        finally:
            connection.close()


def periodic(every: float, fn: Any, stop: threading.Event, counts: dict[str, int], name: str) -> threading.Thread:
    def loop() -> None:
        from django.db import connection

        try:
            while not stop.is_set():
                counts[name] = counts.get(name, 0) + int(fn())
                stop.wait(every)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def move_deadlines(db: BenchDatabase, window: float, lead: float) -> tuple[datetime, datetime, int]:
    """Deadlines from `lead` seconds from now, spread over a day (their order kept)."""
    from django.db import connection
    from django.utils import timezone

    from helpdesk.models import SlaClock

    start = timezone.now() + timedelta(seconds=lead)
    # The clock is made consistent with the policy's 1-day target (started a day before its
    # deadline), so the change processor, which runs on each breach in the real mode, keeps it.
    moved = "%s + (target_seconds - 60) * (interval '1 second') * (86400.0 / 86340.0)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE helpdesk_slaclock SET due_at = {moved}, next_fire_at = {moved}, "
            f"started_at = {moved} - interval '1 day', running_since = {moved} - interval '1 day', "
            "target_seconds = 86400",
            [start, start, start, start],
        )
    db.run("VACUUM ANALYZE helpdesk_slaclock")
    end = start + timedelta(seconds=window)
    DUE.clear()
    DUE.update((pk, due) for pk, due in SlaClock.objects.filter(due_at__lte=end).values_list("id", "due_at") if due)
    return start, end, len(DUE)


DUE: dict[int, datetime] = {}  # clock id → its deadline as moved (those due in the window)


def breaches(end: datetime) -> list[tuple[int, float]]:
    """(clock id, lateness in seconds) of the clocks due by `end` that were breached."""
    from helpdesk.models import SlaClock

    moved = SlaClock.objects.filter(pk__in=DUE).exclude(due_at__lte=end).count()
    if moved:
        say(f"note: {moved} clocks due in the window have a different due_at now (lateness uses the moved one)")
    rows = SlaClock.objects.filter(pk__in=DUE, breached_at__isnull=False).values_list("id", "breached_at")
    return [(pk, (b - DUE[pk]).total_seconds()) for pk, b in rows if b is not None]


def line(late: list[float]) -> str:
    if not late:
        return "none"
    p50, p99, top = (pct(late, 0.5) * 1000, pct(late, 0.99) * 1000, max(late) * 1000)
    return f"p50 {p50:.0f} ms   p99 {p99:.0f} ms   max {top:.0f} ms   (n={len(late)})"


def verify(end: datetime, expected: int, fired: int) -> int:
    """Every clock due by `end` breached exactly once: one breached_at, one SlaBreached event."""
    from django.db.models import Count

    from helpdesk.models import SlaClock, TicketEvent, TicketEventType

    problems = 0
    if fired != expected:
        say(f"FAIL: {expected} clocks were due, {fired} breached")
        problems += 1
    events = TicketEvent.objects.filter(type=TicketEventType.SLA_BREACHED)
    breached_all = SlaClock.objects.filter(breached_at__isnull=False).count()
    window_tickets = SlaClock.objects.filter(pk__in=DUE).values("ticket_id")
    window_events = events.filter(ticket_id__in=window_tickets).count()
    if window_events != expected:
        say(f"FAIL: {window_events} SlaBreached events for the {expected} clocks due in the window")
        problems += 1
    if events.count() != breached_all:
        say(f"FAIL: {events.count()} SlaBreached events for {breached_all} breached clocks")
        problems += 1
    twice = events.values("ticket_id").annotate(n=Count("id")).filter(n__gt=1).count()
    if twice:
        say(f"FAIL: {twice} tickets have more than one SlaBreached event (one clock each)")
        problems += 1
    late_ones = SlaClock.objects.filter(breached_at__isnull=False).exclude(pk__in=DUE).count()
    print(
        f"  check: {expected} clocks due in the window, {fired} breached, {window_events} SlaBreached events for "
        f"them ({events.count()} in all), "
        f"{twice} tickets breached twice ({late_ones} clocks due after the window breached in the tail) → "
        f"{'OK' if not problems else 'FAILED'}"
    )
    return problems


def lateness_in_process(db: BenchDatabase, window: float, lead: float) -> int:
    from django.conf import settings
    from django.utils import timezone

    from helpdesk.actions.sla import do_schedule_sla_timers, do_sweep_sla_clocks
    from helpdesk.models import SlaClock
    from helpdesk.tasks import fire_sla_clock

    _start, end, expected = move_deadlines(db, window, lead)
    say(f"  {expected} clocks fall due in the {window:.0f} s window; running the timers in this process …")

    worker = InProcessCelery()
    fire_sla_clock.apply_async = worker.apply_async  # type: ignore[method-assign,assignment]
    threads = [threading.Thread(target=worker.run, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    stop = threading.Event()
    counts: dict[str, int] = {}
    beat = [
        periodic(settings.SLA_SCHEDULE_AHEAD_SECONDS / 2, do_schedule_sla_timers, stop, counts, "scheduled"),
        periodic(settings.SLA_SWEEP_SECONDS, do_sweep_sla_clocks, stop, counts, "swept"),
    ]
    try:
        while timezone.now() < end + timedelta(seconds=settings.SLA_SWEEP_SECONDS + 1):
            time.sleep(0.5)
    finally:
        stop.set()
        with worker.lock:
            worker.stop = True
            worker.lock.notify_all()
        for t in [*threads, *beat]:
            t.join(timeout=30)

    fired = breaches(end)
    print(
        f"\nBreach lateness (breached_at − due_at), in-process timers, {len(fired)} breaches in a {window:.0f} s "
        f"window of {SlaClock.objects.count():,} open tickets:"
    )
    print(f"  {line([late for _, late in fired])}")
    print(
        f"  timers queued by the scheduler: {counts.get('scheduled', 0)}; fired by eta timers: "
        f"{worker.results.get('breached', 0)}; by the sweeper: {counts.get('swept', 0)}; "
        f"timer outcomes {dict(sorted(worker.results.items()))}"
    )
    return verify(end, expected, len(fired))


# --- lateness with real Celery processes -----------------------------------------------------------

STOP_GRACE = 10.0  # seconds a process gets after SIGTERM before SIGKILL


class RealCelery:
    """Two Celery worker processes and one beat on a private Redis queue; always stopped."""

    def __init__(self, redis_url: str, workdir: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.redis_url = redis_url
        self.workdir = Path(workdir)
        self.queue = f"bench-sla-{tag}"
        self.env_overrides = {
            "REDIS_URL": redis_url,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "CHANNEL_LAYER_PREFIX": f"bench-sla-{tag}",
            "CELERY_TASK_ALWAYS_EAGER": "false",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.serial = 0
        self.stopped = False
        self.tasks: dict[str, dict[str, Any]] = {}  # task id → name, args, result (task events)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "helpdesk", *args, "--loglevel", "INFO"],
                cwd=ROOT,
                env=dict(os.environ),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C here never reaches it, we stop it
            )
        self.procs[name] = proc
        return proc

    def start_worker(self) -> str:
        self.serial += 1
        name = f"{self.queue}-w{self.serial}"
        self._spawn(
            name,
            "worker",
            "--pool",
            "threads",
            "-c",
            "2",
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "-E",  # task events: which timer ran and what it did (the task log lines are WARNING-filtered)
        )
        return name

    def listen(self) -> None:
        """Capture the workers' task events (task-received: name and args; task-succeeded:
        result) in a daemon thread of this process."""
        from helpdesk.celery import app

        def on_event(event: dict[str, Any]) -> None:
            if not str(event.get("hostname", "")).startswith(self.queue):
                return
            task = self.tasks.setdefault(event["uuid"], {})
            if event["type"] == "task-received":
                task.update(name=event.get("name"), args=event.get("args"), eta=event.get("eta"))
            else:
                task.update(result=event.get("result"), at=event.get("timestamp"))

        def capture() -> None:
            with app.connection() as conn:
                receiver = app.events.Receiver(
                    conn, handlers={"task-received": on_event, "task-succeeded": on_event, "*": lambda e: None}
                )
                receiver.capture(limit=None, timeout=None, wakeup=False)

        threading.Thread(target=capture, daemon=True).start()
        time.sleep(0.5)

    def start_beat(self) -> None:
        sched = str(self.workdir / "beat-schedule")
        self._spawn("beat", "beat", "--schedule", sched, "--pidfile", str(self.workdir / "beat.pid"))

    def wait_ready(self, names: list[str], timeout: float = 180.0) -> float:
        """Until each worker answers a ping; seconds waited."""
        from helpdesk.celery import app

        t0 = time.monotonic()
        host = socket.gethostname()
        waiting = set(names)
        while waiting:
            for name in list(waiting):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.logs[name].read_text()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"workers not ready after {timeout:.0f} s: {sorted(waiting)}")
            replies = app.control.ping(destination=[f"{n}@{host}" for n in waiting], timeout=1) or []
            for reply in replies:
                for key in reply:
                    waiting.discard(key.split("@", 1)[0])
        return time.monotonic() - t0

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)

    def stop(self) -> None:
        """SIGTERM every process group (warm shutdown: held eta timers go back to the queue),
        SIGKILL what is still there after STOP_GRACE seconds; then remove the private queue.
        A second call does nothing."""
        if self.stopped:
            return
        self.stopped = True
        alive = [p for p in self.procs.values() if p.poll() is None]
        for proc in alive:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        for proc in self.procs.values():  # worker threads or beat children left in a group
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.cleanup_redis()

    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url)

    def held_timers(self) -> dict[int, datetime]:
        """Clock id → eta of the timer messages of this queue still unacknowledged (held by a
        worker, alive or dead) in kombu's `unacked` hash."""
        held: dict[int, datetime] = {}
        for raw in self.redis().hvals("unacked"):
            with suppress(ValueError, KeyError, IndexError, TypeError):
                message, _exchange, routing_key = json.loads(raw)
                if routing_key != self.queue:
                    continue
                headers = message.get("headers", {})
                if headers.get("task") != "helpdesk.tasks.fire_sla_clock" or not headers.get("eta"):
                    continue
                args = json.loads(base64.b64decode(message["body"]))[0]
                held[int(args[0])] = datetime.fromisoformat(headers["eta"])
        return held

    def cleanup_redis(self) -> None:
        with suppress(Exception):
            client = self.redis()
            for key in client.scan_iter(match=f"*{self.queue}*", count=1000):
                client.delete(key)
            tags = []
            for tag, raw in client.hscan_iter("unacked", count=1000):
                with suppress(ValueError, TypeError, IndexError):
                    if json.loads(raw)[2] == self.queue:
                        tags.append(tag)
            if tags:
                client.hdel("unacked", *tags)
                client.zrem("unacked_index", *tags)

    def counts(self) -> dict[str, Any]:
        """From the task events: each timer's outcome (and the clocks whose timer breached them),
        the sweeper's and the scheduler's returned counts."""
        outcomes: dict[str, int] = {}
        by_timer: set[int] = set()
        swept = scheduled = 0
        for task in list(self.tasks.values()):
            result = str(task.get("result", "")).strip("'\"")
            if "result" not in task:
                continue
            if task.get("name") == "helpdesk.tasks.fire_sla_clock":
                outcomes[result] = outcomes.get(result, 0) + 1
                if result == "breached":
                    with suppress(ValueError, SyntaxError, IndexError, TypeError):
                        by_timer.add(int(ast.literal_eval(str(task["args"]))[0]))
            elif task.get("name") == "helpdesk.tasks.sweep_sla_clocks" and result.isdigit():
                swept += int(result)
            elif task.get("name") == "helpdesk.tasks.schedule_sla_timers" and result.isdigit():
                scheduled += int(result)
        return {"outcomes": outcomes, "by_timer": by_timer, "swept": swept, "scheduled": scheduled}


def lateness_real(db: BenchDatabase, real: RealCelery, window: float, lead: float, restart_at: float | None) -> int:
    from django.conf import settings
    from django.utils import timezone

    from helpdesk.actions.sla import do_schedule_sla_timers
    from helpdesk.models import SlaClock

    say(f"  starting 2 Celery workers (threads pool, 2 threads each) and beat on queue {real.queue} …")
    real.listen()
    workers = [real.start_worker(), real.start_worker()]
    real.start_beat()
    waited = real.wait_ready(workers)
    say(f"  workers ready after {waited:.1f} s")
    start, end, expected = move_deadlines(db, window, lead)
    # The beat tick before the window (beat's own first tick is SLA_SCHEDULE_AHEAD_SECONDS / 2 away).
    tick_at = timezone.now()
    queued_first = do_schedule_sla_timers()
    say(
        f"  {expected} clocks fall due in the {window:.0f} s window (first deadline "
        f"{(start - tick_at).total_seconds():.1f} s after the first scheduler tick, which queued {queued_first} "
        f"timers); running …"
    )
    killed: dict[str, Any] = {}
    stop_at = end + timedelta(seconds=settings.SLA_SWEEP_SECONDS + 1)
    while timezone.now() < stop_at:
        if restart_at is not None and not killed and timezone.now() >= start + timedelta(seconds=restart_at):
            victim = workers[0]
            real.kill(victim)
            killed["at"] = timezone.now()
            killed["name"] = victim
            replacement = real.start_worker()
            killed["ready_after"] = real.wait_ready([replacement])
            say(
                f"  SIGKILLed {victim} at {(killed['at'] - start).total_seconds():.1f} s; "
                f"{replacement} ready {killed['ready_after']:.1f} s later"
            )
        for name, proc in real.procs.items():
            if proc.poll() is not None and name != killed.get("name"):
                raise RuntimeError(f"{name} exited ({proc.returncode}): {real.logs[name].read_text()[-2000:]}")
        time.sleep(0.25)
    held = real.held_timers()  # before the workers stop: what a dead worker took with it
    time.sleep(1.0)  # the last task events
    counts = real.counts()
    real.stop()  # before counting: no breach may land between the checks' queries

    fired = breaches(end)
    print(
        f"\nBreach lateness (breached_at − due_at), real Celery (2 workers × 2 threads, beat; Redis "
        f"{real.redis_url}), {len(fired)} breaches in a {window:.0f} s window of {SlaClock.objects.count():,} "
        f"open tickets; SLA_SCHEDULE_AHEAD_SECONDS={settings.SLA_SCHEDULE_AHEAD_SECONDS:g}, "
        f"SLA_SWEEP_SECONDS={settings.SLA_SWEEP_SECONDS:g}:"
    )
    print(f"  all: {line([late for _, late in fired])}")
    lost = {pk for pk, eta in held.items() if eta <= end}
    outcomes = counts["outcomes"]
    by_timer = [late for pk, late in fired if pk in counts["by_timer"]]
    by_sweeper = [late for pk, late in fired if pk not in counts["by_timer"]]
    print(
        f"  timers queued: {queued_first} by the first tick + {counts['scheduled']} by beat's ticks; breaches "
        f"fired by eta timers: {outcomes.get('breached', 0)}, by the sweeper: {counts['swept']} (the workers' "
        f"task events); timer outcomes {dict(sorted(outcomes.items()))}"
    )
    print(f"    by eta timers: {line(by_timer)}")
    print(f"    by the sweeper: {line(by_sweeper)}")
    print(f"  timers due in the window still unacknowledged at the end (lost with a dead worker): {len(lost)}")
    if killed:
        kill_s = (killed["at"] - start).total_seconds()
        due = DUE
        caught = [late for pk, late in fired if pk in lost]
        before = [late for pk, late in fired if pk not in lost and due[pk] < killed["at"]]
        after = [late for pk, late in fired if pk not in lost and due[pk] >= killed["at"]]
        print(
            f"  restart: {killed['name']} SIGKILLed {kill_s:.1f} s into the window, its replacement ready "
            f"{killed['ready_after']:.1f} s later"
        )
        print(f"    due before the kill:                          {line(before)}")
        print(f"    due after, timer lost (the sweeper's catch):  {line(caught)}")
        print(f"    due after, timer held by a live worker:       {line(after)}")
    return verify(end, expected, len(fired))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000, help="open tickets (default 100000)")
    parser.add_argument("--window", type=float, default=120.0, help="seconds of real firing (default 120)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="timers in this process, not Celery processes")
    parser.add_argument(
        "--restart-at", type=float, default=None, metavar="SECONDS", help="SIGKILL a worker this far into the window"
    )
    args = parser.parse_args()
    if args.in_process and args.restart_at is not None:
        parser.error("--restart-at needs the real Celery mode (not --in-process)")

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    db = BenchDatabase(os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    db.create()
    real: RealCelery | None = None
    try:
        with tempfile.TemporaryDirectory() as workdir:
            if not args.in_process:
                real = RealCelery(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"), workdir)
            setup_django(db, workdir, real)
            from django.utils import timezone

            rng = random.Random(args.seed)
            fx = fixtures()
            base = timezone.now() + timedelta(hours=1)
            sizes = [s for s in SIZES if s < args.tickets] + [args.tickets]
            say(f"database {db.name}; sweeper cost at {', '.join(f'{s:,}' for s in sizes)} open tickets")
            sweeper_cost(db, base, fx, sizes, rng)
            if real is None:
                problems = lateness_in_process(db, args.window, lead=5.0)
            else:
                try:
                    problems = lateness_real(db, real, args.window, lead=15.0, restart_at=args.restart_at)
                finally:
                    real.stop()
                    if os.environ.get("BENCH_KEEP_LOGS"):
                        for log in real.logs.values():
                            (Path(os.environ["BENCH_KEEP_LOGS"]) / log.name).write_bytes(log.read_bytes())
            from django.db import connections

            for conn in connections.all(initialized_only=True):
                conn.close()
                close_pool = getattr(conn, "close_pool", None)
                if close_pool is not None:
                    close_pool()
            return 1 if problems else 0
    finally:
        if real is not None:
            real.stop()  # idempotent; covers an error before the lateness phase
        if not args.keep_db:
            db.drop()


if __name__ == "__main__":
    sys.exit(main())
