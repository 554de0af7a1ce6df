"""A worker killed while it holds an SLA timer: the breach is still recorded, by the sweeper of
the next worker and beat, within seconds of the deadline and exactly once (real Celery
processes on Redis, sharing this test's PostgreSQL database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from helpdesk.celery import app as celery_app
from helpdesk.models import SlaClock, SlaPolicy, Ticket, TicketEvent, TicketEventType
from tests.factories import TicketFactory
from tests.test_run_modes import ROOT, private_celery_queue, wait_until


def _env(tmp_path: Path) -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["SWITCHBOARD_DATA_DIR"] = str(tmp_path)
    # The sweeper every second; the beat scheduler's window wide enough to matter.
    env["SLA_SWEEP_SECONDS"] = "1"
    env["SLA_SCHEDULE_AHEAD_SECONDS"] = "60"
    return env


@contextmanager
def celery(env: dict[str, str], *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "helpdesk", *args, "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def _worker_args(name: str) -> tuple[str, ...]:
    return ("worker", "--pool", "threads", "-c", "2", "-n", f"{name}@%h", "--without-mingle", "--without-gossip")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_breach_survives_a_worker_killed_while_it_held_the_timer(tmp_path: Path, capsys: Any) -> None:
    from helpdesk.tasks import fire_sla_clock

    env = _env(tmp_path)
    log = tmp_path / "celery.log"
    broker = redis.Redis.from_url(settings.REDIS_URL)
    celery_app.conf.task_always_eager = False
    first = f"sla-a-{uuid.uuid4().hex[:8]}"
    with private_celery_queue(env) as queue, celery(env, *_worker_args(first), log=log) as worker:
        # given: a worker up on this test's own queue
        wait_until(
            lambda: celery_app.control.ping(destination=[f"{first}@{os.uname().nodename}"], timeout=1),
            60,
            "the first worker",
        )
        # and: a clock due in 3 seconds, its timer queued with that moment as eta
        policy = SlaPolicy.objects.create(name="Fast", targets={"2": {"first_reply": {"minutes": 1}}})
        ticket = cast(Ticket, TicketFactory(sla_policy=policy))
        now = timezone.now()
        due = now + timedelta(seconds=3)
        clock = SlaClock.objects.create(
            ticket=ticket,
            policy=policy,
            metric="first_reply",
            target_seconds=60,
            started_at=due - timedelta(seconds=60),
            running_since=due - timedelta(seconds=60),
            due_at=due,
            next_fire_at=due,
        )
        fire_sla_clock.apply_async(args=(clock.pk,), eta=due)
        # when: the worker takes the timer (it holds it, unacknowledged, until its eta) …
        wait_until(lambda: broker.llen(queue) == 0, 10, "the worker to take the timer")
        # … and is killed before the deadline
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
        assert timezone.now() < due, "the worker took too long to take the timer; the test proves nothing"
        # then: a new worker and beat start; the sweeper records the breach
        second = f"sla-b-{uuid.uuid4().hex[:8]}"
        beat_args = ("beat", "--schedule", str(tmp_path / "beat-schedule"))
        with celery(env, *_worker_args(second), log=log), celery(env, *beat_args, log=log):
            breached = wait_until(
                lambda: SlaClock.objects.filter(pk=clock.pk, breached_at__isnull=False).first(), 60, "the breach"
            )
            # exactly once, even with the lost timer restored one day and later sweeps
            wait_until(lambda: timezone.now() > breached.breached_at + timedelta(seconds=3), 10, "more sweeps")
            events = TicketEvent.objects.filter(ticket=ticket, type=TicketEventType.SLA_BREACHED)
            assert events.count() == 1, log.read_text()
    lateness = (breached.breached_at - due).total_seconds()
    with capsys.disabled():
        print(f"\nbreach recorded {lateness:.2f} s after its deadline (worker killed holding its timer)")
    # Within seconds: a new worker and beat start (a few seconds on this machine), then one
    # sweep interval. Generous, as two cores are shared by the whole test run.
    assert lateness < 30, log.read_text()
