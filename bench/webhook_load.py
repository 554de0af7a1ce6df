"""Webhook load: signed provider webhooks at a fixed rate into the production HTTP tier.

    .venv/bin/python bench/webhook_load.py                       # 200/s for 60 s, every registered kind
    .venv/bin/python bench/webhook_load.py --rate 50 --seconds 10 --kinds telegram,twilio_sms
    .venv/bin/python bench/webhook_load.py --with-worker         # + a Celery worker; time to drain

What it does (see bench/README.md "Webhook load"):
1. Creates a fresh PostgreSQL database (`--db`, default `bench_webhooks`, dropped first if it
   exists) through the admin connection `BENCH_DATABASE_URL` (default
   postgres://postgres@127.0.0.1:5432/postgres), migrates it and creates one inbox per kind with
   the demo credentials (bench/provider_webhooks.py).
2. Starts gunicorn as production does (deploy/gunicorn.conf.py, sync workers, `--workers 2`) on
   127.0.0.1 only, against that database and Redis (`BENCH_REDIS_URL`, default
   redis://127.0.0.1:6379/15), DEBUG off; optionally `celery -A helpdesk worker`.
3. Sends open-loop: request i is fired at t0 + i/rate whatever the earlier answers (asyncio +
   httpx, up to `--connections` at once), kinds mixed round-robin; `--redeliver` (1%) of them are
   sent again 1–3 s later as provider redeliveries.
4. Prints the 2xx latency (p50/p90/p99/max, from the scheduled send time and from the actual
   one), non-2xx and errors, the achieved rate; then checks the database: every provider id
   stored exactly once per inbox (no loss, no duplicate; the redeliveries answered 2xx and not
   stored again). With --with-worker: how long processing took to drain after the last send.
5. Stops its processes (their process groups), purges the queued tasks, drops the database
   (unless --keep-db). Never fails on time; exit status 1 only when a correctness check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = ROOT / ".venv" / "bin"

from bench import provider_webhooks as pw  # noqa: E402


@dataclass
class Result:
    index: int
    kind: str
    redelivery: bool
    status: int = 0
    error: str = ""
    latency_ms: float = 0.0  # from the actual send
    from_schedule_ms: float = 0.0  # from the scheduled send time (no coordinated omission)
    lag_ms: float = 0.0  # actual send − scheduled


@dataclass
class Run:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)


def tool(name: str) -> str:
    path = VENV_BIN / name
    return str(path) if path.exists() else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def db_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def recreate_database(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def start(run: Run, name: str, cmd: list[str], env: dict[str, str], logdir: Path) -> subprocess.Popen[bytes]:
    log = open(logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
    run.logs.append(log)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    run.procs.append(proc)
    return proc


def stop_all(run: Run) -> None:
    for proc in run.procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in run.procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for log in run.logs:
        log.close()
    run.procs.clear()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode} before it was ready (see its log)")
        try:
            if httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"gunicorn not ready after {timeout:.0f} s")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def send_all(
    base_url: str, plan: list[tuple[float, int, pw.SignedWebhook, bool]], connections: int, timeout: float
) -> list[Result]:
    import httpx

    results: list[Result] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout, trust_env=False) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.5

        async def one(at: float, index: int, hook: pw.SignedWebhook, redelivery: bool) -> None:
            result = Result(index, hook.kind, redelivery)
            sent = loop.time()
            result.lag_ms = (sent - (t0 + at)) * 1000
            try:
                resp = await client.post(hook.path, content=hook.body, headers=hook.headers)
                result.status = resp.status_code
            except httpx.HTTPError as exc:
                result.error = type(exc).__name__
            done = loop.time()
            result.latency_ms = (done - sent) * 1000
            result.from_schedule_ms = (done - (t0 + at)) * 1000
            results.append(result)

        tasks = []
        for at, index, hook, redelivery in plan:
            delay = t0 + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at, index, hook, redelivery)))
        await asyncio.gather(*tasks)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200, help="webhooks per second (default 200)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to send (default 60)")
    parser.add_argument("--kinds", default="", help="comma-separated kinds (default: every registered webhook kind)")
    parser.add_argument("--redeliver", type=float, default=0.01, help="share sent again as redeliveries (0.01)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--connections", type=int, default=100, help="concurrent HTTP connections (default 100)")
    parser.add_argument("--timeout", type=float, default=30, help="per-request timeout in seconds")
    parser.add_argument("--with-worker", action="store_true", help="start a Celery worker; report the drain time")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=600, help="max seconds to wait for processing")
    parser.add_argument("--db", default="bench_webhooks", help="database to create (dropped first)")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    port = free_port()
    site_url = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="sb-webhook-load-"))
    env = {
        **os.environ,
        "DATABASE_URL": db_url(admin_url, args.db),
        "REDIS_URL": redis_url,
        "SITE_URL": site_url,
        "DEBUG": "false",
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "CHANNEL_LAYER_PREFIX": f"bench-webhooks-{os.getpid()}",
        "DJANGO_SETTINGS_MODULE": "helpdesk.settings",
        "WEB_CONCURRENCY": str(args.workers),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "GUNICORN_LOG_LEVEL": "warning",
    }
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DATABASE_URL",
                "REDIS_URL",
                "SITE_URL",
                "DEBUG",
                "SWITCHBOARD_DATA_DIR",
                "CHANNEL_LAYER_PREFIX",
                "DJANGO_SETTINGS_MODULE",
            )
        }
    )
    run = Run()
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    print(f"database {args.db} (fresh), Redis {redis_url}, gunicorn {args.workers} workers on {site_url}")
    recreate_database(admin_url, args.db)
    failed = False
    try:
        import django

        django.setup()
        import logging

        logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0, interactive=False)
        from channels_inbox.actions.inboxes import do_create_inbox
        from channels_inbox.adapters import adapter_kinds, get_adapter
        from channels_inbox.models import InboundEvent, InboundEventStatus
        from helpdesk.celery import app as current_app

        registered = [k for k in pw.WEBHOOK_KINDS if k in adapter_kinds()]
        kinds = [k for k in args.kinds.split(",") if k] or registered
        missing = [k for k in kinds if k not in registered]
        if missing:
            print(f"not registered (skipped): {', '.join(missing)}")
        kinds = [k for k in kinds if k in registered]
        if not kinds:
            print("no registered webhook kinds to send to")
            return 1
        inboxes = {}
        for kind in kinds:
            inbox, _ = do_create_inbox(
                kind=kind, name=f"Load {kind}", values=pw.demo_inbox_values(kind, get_adapter(kind))
            )
            inboxes[kind] = inbox
        current_app.control.purge()
        connections.close_all()

        # The plan: every webhook built and signed before the clock starts.
        rng = random.Random(args.seed)
        total = int(args.rate * args.seconds)
        plan: list[tuple[float, int, pw.SignedWebhook, bool]] = []
        sent_ids: dict[str, list[str]] = defaultdict(list)
        for i in range(total):
            kind = kinds[i % len(kinds)]
            hook = pw.build_message(inboxes[kind], site_url)
            plan.append((i / args.rate, i, hook, False))
            sent_ids[kind].append(hook.provider_id)
        redeliveries = rng.sample(range(total), int(total * args.redeliver)) if total else []
        for i in redeliveries:
            at, _, hook, _ = plan[i]
            plan.append((min(at + rng.uniform(1, 3), args.seconds + 3), i, hook, True))
        plan.sort(key=lambda item: item[0])
        print(
            f"kinds: {', '.join(kinds)}; {total} webhooks at {args.rate:g}/s for {args.seconds:g} s "
            f"+ {len(redeliveries)} redeliveries"
        )

        logdir = data_dir
        web = start(
            run,
            "gunicorn",
            [
                tool("gunicorn"),
                "--config",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--access-logfile",
                str(logdir / "access.log"),
                "helpdesk.wsgi:application",
            ],
            env,
            logdir,
        )
        if args.with_worker:
            start(
                run,
                "worker",
                [
                    tool("celery"),
                    "-A",
                    "helpdesk",
                    "worker",
                    "--loglevel",
                    "WARNING",
                    "--concurrency",
                    str(args.worker_concurrency),
                    "--without-gossip",
                    "--without-mingle",
                    "--hostname",
                    f"bench-{os.getpid()}@%h",
                ],
                env,
                logdir,
            )
        wait_ready(site_url, web)

        started = time.monotonic()
        results = asyncio.run(send_all(site_url, plan, args.connections, args.timeout))
        elapsed = time.monotonic() - started
        last_sent = time.monotonic()

        ok = [r for r in results if 200 <= r.status < 300]
        bad = Counter(r.status for r in results if r.status and not 200 <= r.status < 300)
        errors = Counter(r.error for r in results if r.error)
        lat = [r.latency_ms for r in ok]
        sched = [r.from_schedule_ms for r in ok]
        lags = [r.lag_ms for r in results]
        print(
            f"\nsent {len(results)} requests in {elapsed:.1f} s ({len(results) / elapsed:.1f}/s achieved; "
            f"sender lag p99 {percentile(lags, 99):.1f} ms)"
        )
        print(
            f"2xx {len(ok)} ({len(ok) / max(len(results), 1):.2%}), non-2xx {sum(bad.values())} {dict(bad)}, "
            f"errors {sum(errors.values())} {dict(errors)}"
        )
        for label, values in (("from send", lat), ("from schedule", sched)):
            if values:
                print(
                    f"2xx latency {label:<13} p50 {percentile(values, 50):7.1f} ms  p90 {percentile(values, 90):7.1f}"
                    f" ms  p99 {percentile(values, 99):7.1f} ms  max {max(values):7.1f} ms  "
                    f"mean {statistics.fmean(values):.1f} ms"
                )
        print("per kind (2xx / sent, p99 from send):")
        for kind in kinds:
            mine = [r for r in results if r.kind == kind]
            good = [r.latency_ms for r in mine if 200 <= r.status < 300]
            print(f"  {kind:<16} {len(good):6d} / {len(mine):<6d} p99 {percentile(good, 99):7.1f} ms")
        redelivered = [r for r in results if r.redelivery]
        print(f"redeliveries answered 2xx: {sum(1 for r in redelivered if 200 <= r.status < 300)} / {len(redelivered)}")

        # Exactly once: every provider id in exactly one stored event of its inbox.
        print("\nstored events (every provider id exactly once per inbox):")
        for kind in kinds:
            keys = list(InboundEvent.objects.filter(inbox=inboxes[kind]).values_list("dedupe_key", flat=True))
            tokens: Counter[str] = Counter()
            for key in keys:
                tokens.update(pw.dedupe_tokens(key))
            ids = sent_ids[kind]
            lost = sum(1 for pid in ids if tokens[pid] == 0)
            dup = sum(1 for pid in ids if tokens[pid] > 1)
            extra = len(keys) - (len(ids) - lost)
            verdict = "ok" if not lost and not dup and not extra else "MISMATCH"
            print(
                f"  {kind:<16} sent {len(ids):6d}  stored {len(keys):6d}  lost {lost}  duplicated {dup}  "
                f"unexpected {extra}  {verdict}"
            )
            failed |= verdict != "ok"
        answered = {r.index for r in results if not r.redelivery and 200 <= r.status < 300}
        print(
            f"answered 2xx and stored: {len(answered)} of {total}; "
            f"lost among 2xx answers: {'none' if not failed else 'see above'}"
        )

        if args.with_worker:
            deadline = last_sent + args.drain_timeout
            pending = -1
            while time.monotonic() < deadline:
                pending = InboundEvent.objects.filter(status=InboundEventStatus.PENDING).count()
                if pending == 0:
                    break
                time.sleep(0.5)
            drained = time.monotonic() - last_sent
            statuses = dict(Counter(InboundEvent.objects.values_list("status", flat=True)))
            if pending == 0:
                print(
                    f"\nprocessing drained {drained:.1f} s after the last send "
                    f"({total / (elapsed + drained):.1f} events/s end to end); statuses {statuses}"
                )
            else:
                print(
                    f"\nprocessing not drained after {args.drain_timeout:.0f} s: {pending} pending; statuses {statuses}"
                )
        connections.close_all()
    except KeyboardInterrupt:
        print("interrupted; cleaning up")
        failed = True
    finally:
        stop_all(run)
        with contextlib.suppress(Exception):
            from helpdesk.celery import app

            app.control.purge()
        with contextlib.suppress(Exception):
            from django.db import connections as conns

            conns.close_all()
        if args.keep_db:
            print(f"kept database {args.db}; logs in {data_dir}")
        else:
            recreate_database(admin_url, args.db, drop_only=True)
            print(f"dropped database {args.db}; logs in {data_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
