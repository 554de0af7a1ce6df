"""The two run modes with real processes: the embedded server and a Celery worker on Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from django.db import connection

from channels_inbox.adapters.api import sign
from channels_inbox.models import InboundEvent, InboundEventStatus
from conftest import api_payload, post_signed
from helpdesk.celery import app as celery_app
from helpdesk.models import Message

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(SWITCHBOARD_DATA_DIR=str(data_dir), SWEEP_INTERVAL_SECONDS="1", SWEEP_GRACE_SECONDS="1")
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput")
    inbox = json.loads(manage(env, "inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    manage(env, "agent", "create", "ada@example.com", "--role", "admin", "--password", "pw-ada-12345")
    with serving(env, stdout=subprocess.PIPE) as (base, port, proc):
        yield {"base": base, "port": port, "inbox": inbox, "db": tmp_path / "switchboard.sqlite3", "proc": proc}


@contextmanager
def serving(env: dict[str, str], *, stdout: Any = subprocess.DEVNULL) -> Iterator[tuple[str, int, Any]]:
    """`manage.py serve` on a free port, up (/healthz answers); killed with its group at the end."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "the embedded server")
        yield base, port, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def private_celery_queue(env: dict[str, str]) -> Iterator[str]:
    """A Celery queue of this test's own, for the test process (tasks it queues) and for the
    worker processes started with `env`: a worker of a test running beside this one (on the
    same Redis) never takes these tasks, nor this test's worker theirs."""
    queue = f"test-{uuid.uuid4().hex[:12]}"
    env["CELERY_TASK_DEFAULT_QUEUE"] = queue
    before = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        celery_app.conf.task_default_queue = before


def signed_post(base: str, inbox: dict[str, Any], payload: dict[str, Any]) -> httpx.Response:
    body = json.dumps(payload).encode()
    return httpx.post(
        f"{base}/webhooks/api/{inbox['uuid']}/",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Switchboard-Signature": sign(inbox["secrets"]["signing_secret"], body),
        },
        timeout=10,
    )


def sql(db: Path, query: str) -> Any:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(query).fetchone()[0]


def login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10)
    page = client.get("/desk/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    resp = client.post(
        "/desk/login/",
        data={"username": "ada@example.com", "password": "pw-ada-12345", "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{base}/desk/login/"},
    )
    assert resp.status_code == 302, resp.text
    return client


@pytest.mark.slow
def test_embedded_server_ingests_in_process_and_pushes_live_updates(embedded_server: dict[str, Any]) -> None:
    base, inbox, db = embedded_server["base"], embedded_server["inbox"], embedded_server["db"]
    agent = login(base)
    cookie = "; ".join(f"{k}={v}" for k, v in agent.cookies.items())

    async def scenario() -> dict[str, Any]:
        url = f"ws://127.0.0.1:{embedded_server['port']}/ws/desk/"
        async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": base}) as ws:
            await ws.send(json.dumps({"action": "subscribe_list"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
            # when: a customer writes through the API channel
            resp = await asyncio.to_thread(signed_post, base, inbox, api_payload())
            assert resp.status_code == 200, resp.text
            # then: the in-process worker processes it and the desk hears about it live
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
                if frame["type"] == "ticket.event" and frame["event"] == "message_received":
                    return frame

    frame = asyncio.run(scenario())
    assert frame["seq"] == 2
    assert sql(db, "SELECT count(*) FROM helpdesk_message") == 1
    assert sql(db, "SELECT status FROM channels_inbox_inboundevent") == "processed"
    # and the desk shows the ticket
    assert "My order #881" in agent.get("/desk/").text


@pytest.mark.slow
def test_embedded_beat_sweeps_lost_work_and_ctrl_c_stops_everything(embedded_server: dict[str, Any]) -> None:
    # given: an event stored while no task was queued for it (as after a crash)
    db, proc = embedded_server["db"], embedded_server["proc"]
    body = json.dumps(api_payload(external_id="lost-1")).encode()
    with sqlite3.connect(db, timeout=10) as conn:
        inbox_id = conn.execute("SELECT id FROM channels_inbox_inbox").fetchone()[0]
        conn.execute(
            "INSERT INTO channels_inbox_inboundevent (inbox_id, dedupe_key, payload, headers, status, received_at,"
            " attempts, next_attempt_at, last_error) VALUES (?, 'lost-1', ?, '{}', 'pending',"
            " datetime('now', '-1 hour'), 0, datetime('now', '-1 hour'), '')",
            (inbox_id, body),
        )
    # then: the in-process beat runs the sweeper, which hands it to the in-process worker
    wait_until(lambda: sql(db, "SELECT status FROM channels_inbox_inboundevent") == "processed", 20, "the sweeper")
    assert sql(db, "SELECT count(*) FROM helpdesk_message") == 1
    # when: Ctrl-C
    os.killpg(proc.pid, signal.SIGINT)
    # then: the server, worker and beat all stop
    assert proc.wait(timeout=20) == 0


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_celery_worker_on_redis_processes_and_delivers(client: Any, api_inbox: Any, tmp_path: Path) -> None:
    # given: a real worker process on the Redis broker, sharing this test's database
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["SWITCHBOARD_DATA_DIR"] = str(tmp_path)
    celery_app.conf.task_always_eager = False
    with private_celery_queue(env):
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "helpdesk",
                "worker",
                "--pool",
                "threads",
                "-c",
                "2",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # when: a message arrives; its processing is queued on Redis
            assert post_signed(client, api_inbox, api_payload()).status_code == 200
            event = InboundEvent.objects.get()
            # then: the worker processes it
            wait_until(
                lambda: InboundEvent.objects.get(pk=event.pk).status == InboundEventStatus.PROCESSED, 30, "the worker"
            )
            assert Message.objects.filter(direction="inbound").count() == 1
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
