"""Live chat: delivery latency and memory per idle connection, next to a Redis pub/sub floor.

    .venv/bin/python bench/chat_latency.py                                   # 100, 500, 1000 visitors
    .venv/bin/python bench/chat_latency.py --visitors 500 --layer both       # + the core layer
    .venv/bin/python bench/chat_latency.py --visitors 100 --seconds 5 --no-floor

For each N (and each channel layer asked for), on fresh processes:

1. **Product**: two ASGI processes exactly as production runs websockets (`uvicorn
   helpdesk.asgi:application --ws-per-message-deflate false --lifespan off`, one process each),
   one Celery worker (route_chat, deliveries), all on one PostgreSQL database (`bench_chat`,
   dropped and migrated at the start) and Redis (`--redis-url`, db 10; the channel layer gets a
   prefix of this run's own). Two agents' desk sockets per process subscribe to the list
   (`desk.all`); N visitors, split evenly over the processes, authenticate with their visitor
   token and resume their conversation (created once, untimed, by each visitor's first message).
2. **Memory**: the RSS of both servers (/proc) after the agents and one visitor per process are
   connected, and again 3 s after the other N − 2 visitors are connected and resumed; the
   difference ÷ (N − 2) is the memory per idle connection. Redis' used_memory likewise (noisy:
   Redis is shared).
3. **Latency**, open loop for `--seconds`, both directions at once, `--rate` messages/s in all
   (half each way, at fixed intervals, to visitors drawn at random):
   * visitor → agent: a visitor sends a `message` frame; the time until each agent socket on the
     *other* process receives the `message_received` ticket event of that message (matched by
     the message id in the visitor's ack). The message goes through the whole write path (an
     InboundEvent processed inline) before it is published.
   * agent → visitor: a separate process (Django, like a gunicorn worker) calls `do_reply` on
     the visitor's ticket; the time from the call until the visitor's socket receives the
     `message` event of the reply (matched by its text). This includes the reply's transaction.
4. **Floor**: two plain `websockets` servers (no compression, uvloop) relaying through Redis
   pub/sub (`redis.asyncio`), same N, same split, same rate, same agents: a visitor's frame is
   published to an agents channel that both servers subscribe to; an agent's frame names a
   visitor and is published to that visitor's channel, which the visitor's server subscribed to
   when it connected. Agent → visitor is sent by an agent socket on the other server.

Timings are printed, never asserted. The exit status is non-zero only when a message is lost or
delivered twice, or a process fails. Every wait is bounded; `--timeout` bounds the whole run.
See bench/README.md, "Live chat".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_DB = "bench_chat"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"
# The customer's website the widget is embedded in (an allowed origin of the bench inbox).
SITE_ORIGIN = "http://127.0.0.1:8999"
# The desk's own origin (SITE_URL's default): the desk socket checks it against ALLOWED_HOSTS.
DESK_ORIGIN = "http://127.0.0.1:8000"
SECRET_KEY = "bench-chat-latency-not-a-secret-" + "x" * 32
AGENTS_PER_PROCESS = 2
REPLY_MARK = "bench-reply"
# Handshakes in flight at once while opening connections (as floors.md §5).
OPEN_CONCURRENCY = 50
# How long a message may take before it counts as lost.
GRACE_SECONDS = 15.0


class BenchFailure(Exception):
    """A correctness check failed (a message lost or twice, a process died): exit non-zero."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def now() -> float:
    # CLOCK_MONOTONIC is one clock for every process on the machine: the replier's timestamps
    # and this process's compare directly.
    return time.monotonic()


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_background: set[asyncio.Future[Any]] = set()


def background(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a send without waiting for it (open loop), keeping a reference until it is done."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 16
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# --- child processes ---------------------------------------------------------------------------


class Child:
    """A process of its own group; stopped (TERM, then KILL) by its pid at the end."""

    running: list[Child] = []

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path, **popen: Any) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop)
        popen.setdefault("stdout", self.log)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=self.log, start_new_session=True, **popen)
        Child.running.append(self)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchFailure(f"no VmRSS for {self.name}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (/proc/<pid>/stat)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        if self in Child.running:
            Child.running.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for child in list(reversed(cls.running)):
            with contextlib.suppress(Exception):
                child.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, child: Child | None = None) -> None:
    deadline = now() + timeout
    while now() < deadline:
        if child is not None and not child.alive():
            raise BenchFailure(f"{child.name} exited while waiting for {what}:\n{child.tail()}")
        if predicate():
            return
        time.sleep(0.1)
    raise BenchFailure(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310  (http://127.0.0.1 only)
            return bool(resp.status == 200)
    except OSError:
        return False


def tcp_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- the floor: two plain websockets servers relaying through Redis pub/sub ---------------------


def floor_server_main(port: int, redis_url: str, tag: str) -> None:
    """`--role floor-server`: /v/<visitor> and /a connections; frames relayed through Redis."""
    import redis.asyncio as aioredis
    import uvloop
    from websockets.asyncio.server import ServerConnection, serve

    async def main() -> None:
        publisher = aioredis.from_url(redis_url, socket_timeout=None, max_connections=5000)
        pubsub = publisher.pubsub()
        agents_channel = f"{tag}.agents"
        local: dict[str, set[ServerConnection]] = {}
        await pubsub.subscribe(f"{tag}.control")

        async def fan_out() -> None:
            async for item in pubsub.listen():
                if item.get("type") != "message":
                    continue
                channel = item["channel"].decode()
                data = item["data"].decode()
                for ws in list(local.get(channel, ())):
                    with contextlib.suppress(Exception):
                        await ws.send(data)

        async def handler(ws: ServerConnection) -> None:
            path = ws.request.path if ws.request is not None else ""
            channel = f"{tag}.v.{path[3:]}" if path.startswith("/v/") else agents_channel
            members = local.setdefault(channel, set())
            members.add(ws)
            if len(members) == 1:
                await pubsub.subscribe(channel)
            try:
                async for frame in ws:
                    if channel == agents_channel:
                        target = json.loads(frame)["to"]
                        await publisher.publish(f"{tag}.v.{target}", frame)
                    else:
                        await publisher.publish(agents_channel, frame)
            finally:
                members.discard(ws)
                if not members:
                    local.pop(channel, None)
                    await pubsub.unsubscribe(channel)

        reader = asyncio.ensure_future(fan_out())
        async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_queue=None):
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
        reader.cancel()

    uvloop.run(main())


# --- the agent reply process (like one gunicorn worker calling do_reply) -----------------------


def replier_main() -> None:
    """`--role replier`: reads one JSON schedule from stdin, calls do_reply on time (open loop,
    4 threads), prints one JSON line per reply: {"text", "t0", "t1"} (t0 before the call)."""
    import django

    django.setup()
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from helpdesk.actions.replies import do_reply
    from helpdesk.models import Ticket, User

    job = json.loads(sys.stdin.readline())
    agent = User.objects.get(pk=job["agent_id"])
    # Warm: the pool, the channel layer's and the broker's connections (not a REPLY_MARK text,
    # so no client counts it).
    do_reply(Ticket.objects.get(pk=job["warm_ticket_id"]), actor=agent, text="warming up")
    connection.close()
    print(json.dumps({"ready": True}), flush=True)
    start = json.loads(sys.stdin.readline())["start"]
    job["schedule"] = [[start + at, ticket_id, text] for at, ticket_id, text in job["schedule"]]
    lock = threading.Lock()

    def one(ticket_id: int, text: str) -> None:
        t0 = now()
        try:
            ticket = Ticket.objects.get(pk=ticket_id)
            do_reply(ticket, actor=agent, text=text)
            line = {"text": text, "t0": t0, "t1": now()}
        except Exception as exc:  # noqa: BLE001  (reported, and counted as lost by the parent)
            line = {"text": text, "t0": t0, "error": repr(exc)}
        finally:
            connection.close()  # back to the pool, as at the end of a request
        with lock:
            print(json.dumps(line), flush=True)

    with ThreadPoolExecutor(4) as pool:
        for at, ticket_id, text in job["schedule"]:
            delay = at - now()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, ticket_id, text)
    print(json.dumps({"done": True}), flush=True)


# --- clients -----------------------------------------------------------------------------------


@dataclass
class VisitorInfo:
    index: int
    token: str
    conversation: str = ""  # public id (hex)
    ticket_id: int = 0
    last_seq: int = 0


@dataclass
class Samples:
    # visitor → agent: client_msg_id → send time; message id → client_msg_id; (message id, agent) → arrival.
    v_sent: dict[str, tuple[float, int]] = field(default_factory=dict)
    v_acked: dict[int, str] = field(default_factory=dict)
    v_arrived: dict[tuple[Any, int], float] = field(default_factory=dict)
    v_dups: int = 0
    # agent → visitor: text → (start, visitor index); text → arrival.
    a_sent: dict[str, tuple[float, int]] = field(default_factory=dict)
    a_arrived: dict[str, float] = field(default_factory=dict)
    a_dups: int = 0
    errors: list[str] = field(default_factory=list)


class ProductVisitor:
    def __init__(self, info: VisitorInfo, port: int, inbox_token: str, process: int, samples: Samples) -> None:
        self.info, self.port, self.inbox_token, self.process, self.samples = info, port, inbox_token, process, samples
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.resumed: asyncio.Future[None] | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        url = f"ws://127.0.0.1:{self.port}/ws/widget/?inbox={self.inbox_token}"
        self.ws = await asyncio.wait_for(
            connect(url, origin=Origin(SITE_ORIGIN), compression=None, ping_interval=None, open_timeout=30), 40
        )
        await self.ws.send(json.dumps({"action": "auth", "token": self.info.token}))
        ready = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if ready.get("type") != "ready":
            raise BenchFailure(f"visitor {self.info.index}: expected ready, got {ready}")
        self.reader = asyncio.ensure_future(self.read())
        if self.info.conversation:
            self.resumed = asyncio.get_running_loop().create_future()
            await self.ws.send(
                json.dumps({"action": "resume", "conversation": self.info.conversation, "last_seq": self.info.last_seq})
            )
            await asyncio.wait_for(asyncio.shield(self.resumed), 30)

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self.on_frame(json.loads(raw), now())

    def on_frame(self, frame: dict[str, Any], at: float) -> None:
        kind = frame.get("type")
        if kind == "event":
            seq = frame.get("seq")
            if isinstance(seq, int):
                self.info.last_seq = max(self.info.last_seq, seq)
            message = frame.get("message") or {}
            text = str(message.get("text", ""))
            if frame.get("kind") == "message" and text.startswith(REPLY_MARK):
                if text in self.samples.a_arrived:
                    self.samples.a_dups += 1
                else:
                    self.samples.a_arrived[text] = at
        elif kind == "ack":
            cmid = str(frame.get("client_msg_id"))
            message_id = (frame.get("message") or {}).get("id")
            if cmid in self.samples.v_sent and message_id is not None:
                self.samples.v_acked[message_id] = cmid
            conv = frame.get("conversation") or {}
            if isinstance(conv.get("last_seq"), int):
                self.info.last_seq = max(self.info.last_seq, conv["last_seq"])
            waiter = self.acks.pop(cmid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
        elif kind == "resumed":
            if self.resumed is not None and not self.resumed.done():
                self.resumed.set_result(None)
        elif kind == "error":
            self.samples.errors.append(f"visitor {self.info.index}: {frame}")
            cmid = str(frame.get("client_msg_id"))
            waiter = self.acks.pop(cmid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)

    async def first_message(self) -> dict[str, Any]:
        """Untimed set-up: the visitor's first message starts its conversation."""
        cmid = uuid.uuid4().hex
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[cmid] = waiter
        frame = {"action": "message", "client_msg_id": cmid, "conversation": None, "text": "Hello, a question."}
        await self.ws.send(json.dumps(frame))
        ack = await asyncio.wait_for(waiter, 60)
        if ack.get("type") != "ack":
            raise BenchFailure(f"visitor {self.info.index}: first message refused: {ack}")
        self.info.conversation = ack["conversation"]["id"]
        return ack

    async def warm_message(self) -> None:
        """Untimed: one message through the server process's whole path before the clock starts."""
        cmid = str(uuid.uuid4())
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[cmid] = waiter
        frame = {"action": "message", "client_msg_id": cmid, "conversation": self.info.conversation, "text": "warm"}
        await self.ws.send(json.dumps(frame))
        await asyncio.wait_for(waiter, 60)

    def send_message(self, k: int) -> None:
        cmid = str(uuid.uuid4())
        frame = {
            "action": "message",
            "client_msg_id": cmid,
            "conversation": self.info.conversation,
            "text": f"visitor message {k}: where is my order?",
        }
        self.samples.v_sent[cmid] = (now(), self.process)
        background(self.ws.send(json.dumps(frame)))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()


class ProductAgent:
    def __init__(self, index: int, port: int, cookie: str, process: int, samples: Samples) -> None:
        self.index, self.port, self.cookie, self.process, self.samples = index, port, cookie, process, samples
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await asyncio.wait_for(
            connect(
                f"ws://127.0.0.1:{self.port}/ws/desk/",
                origin=Origin(DESK_ORIGIN),
                additional_headers={"Cookie": self.cookie},
                compression=None,
                ping_interval=None,
                open_timeout=30,
            ),
            40,
        )
        await self.ws.send(json.dumps({"action": "subscribe_list"}))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if frame.get("type") == "subscribed":
                break
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                at = now()
                frame = json.loads(raw)
                if frame.get("type") == "ticket.event" and frame.get("event") == "message_received":
                    key = ((frame.get("data") or {}).get("message_id"), self.index)
                    if key in self.samples.v_arrived:
                        self.samples.v_dups += 1
                    else:
                        self.samples.v_arrived[key] = at

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()


class FloorVisitor:
    def __init__(self, index: int, port: int, process: int, samples: Samples) -> None:
        self.index, self.port, self.process, self.samples = index, port, process, samples
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await asyncio.wait_for(
            connect(f"ws://127.0.0.1:{self.port}/v/{self.index}", compression=None, ping_interval=None), 40
        )
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                at = now()
                text = json.loads(raw)["k"]
                if text in self.samples.a_arrived:
                    self.samples.a_dups += 1
                else:
                    self.samples.a_arrived[text] = at

    def send_message(self, k: int) -> None:
        cmid = f"b{k}"
        self.samples.v_sent[cmid] = (now(), self.process)
        self.samples.v_acked[k] = cmid  # the floor's "message id" is k itself
        background(self.ws.send(json.dumps({"k": k, "text": f"visitor message {k}: where is my order?"})))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()


class FloorAgent:
    def __init__(self, index: int, port: int, process: int, samples: Samples) -> None:
        self.index, self.port, self.process, self.samples = index, port, process, samples
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await asyncio.wait_for(
            connect(f"ws://127.0.0.1:{self.port}/a", compression=None, ping_interval=None), 40
        )
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                at = now()
                key = (json.loads(raw)["k"], self.index)
                if key in self.samples.v_arrived:
                    self.samples.v_dups += 1
                else:
                    self.samples.v_arrived[key] = at

    def reply(self, visitor: int, text: str) -> None:
        self.samples.a_sent[text] = (now(), visitor)
        background(self.ws.send(json.dumps({"to": visitor, "k": text, "text": "an agent's answer"})))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()


async def open_all(clients: list[Any]) -> None:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(client: Any) -> None:
        async with gate:
            await client.open()

    await asyncio.gather(*(one(c) for c in clients))


async def close_all(clients: list[Any]) -> None:
    gate = asyncio.Semaphore(200)

    async def one(client: Any) -> None:
        async with gate:
            await client.close()

    await asyncio.gather(*(one(c) for c in clients))


def schedule(rate: float, seconds: float, start: float, offset: float) -> list[float]:
    """Send times at fixed intervals (open loop): `rate` per second for `seconds`."""
    interval = 1.0 / rate
    return [start + offset + i * interval for i in range(int(seconds * rate))]


async def run_at(times: list[float], action: Callable[[int], None]) -> None:
    for k, at in enumerate(times):
        delay = at - now()
        if delay > 0:
            await asyncio.sleep(delay)
        action(k)


# --- results -----------------------------------------------------------------------------------


@dataclass
class Result:
    system: str
    n: int
    v2a: list[float]
    a2v: list[float]
    v_sent: int
    a_sent: int
    lost: int
    dups: int
    kib_per_conn: float
    load: float
    cpu_ms_per_msg: float
    reply_call_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def outstanding(samples: Samples, agents: list[Any]) -> int:
    """Deliveries not seen yet (each visitor message at each agent on the other process, each reply)."""
    by_cmid = {cmid: mid for mid, cmid in samples.v_acked.items()}
    missing = 0
    for cmid, (_sent_at, process) in samples.v_sent.items():
        mid = by_cmid.get(cmid)
        for agent in agents:
            if agent.process != process and (mid is None or (mid, agent.index) not in samples.v_arrived):
                missing += 1
    return missing + sum(1 for text in samples.a_sent if text not in samples.a_arrived)


async def settle(samples: Samples, agents: list[Any]) -> None:
    """Wait until everything sent has arrived, at most GRACE_SECONDS (the rest counts as lost)."""
    deadline = now() + GRACE_SECONDS
    while now() < deadline and outstanding(samples, agents):
        await asyncio.sleep(0.1)


def load_average() -> float:
    return os.getloadavg()[0]


def collect(
    system: str,
    n: int,
    samples: Samples,
    agents: list[Any],
    mem: float,
    load: float,
    cpu: float,
    reply_calls: list[float],
) -> Result:
    v2a: list[float] = []
    lost = 0
    by_cmid = {cmid: mid for mid, cmid in samples.v_acked.items()}
    for cmid, (sent_at, process) in samples.v_sent.items():
        mid = by_cmid.get(cmid)
        for agent in agents:
            if agent.process == process:
                continue  # only the agents on the other process: across processes, through Redis
            arrived = samples.v_arrived.get((mid, agent.index)) if mid is not None else None
            if arrived is None:
                lost += 1
            else:
                v2a.append((arrived - sent_at) * 1000)
    a2v: list[float] = []
    for text, (sent_at, _visitor) in samples.a_sent.items():
        arrived = samples.a_arrived.get(text)
        if arrived is None:
            lost += 1
        else:
            a2v.append((arrived - sent_at) * 1000)
    return Result(
        system,
        n,
        v2a,
        a2v,
        len(samples.v_sent),
        len(samples.a_sent),
        lost,
        samples.v_dups + samples.a_dups,
        mem,
        load,
        cpu * 1000 / max(1, len(samples.v_sent) + len(samples.a_sent)),
        reply_calls,
        samples.errors[:5],
    )


def fmt(values: list[float]) -> str:
    if not values:
        return "     –      –      –"
    return f"{percentile(values, 50):6.1f} {percentile(values, 99):6.1f} {max(values):6.1f}"


def print_results(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"# live chat, {args.rate:g} msgs/s in all (half each way), {args.seconds:g} s per N; "
        "latency ms p50 p99 max; memory per idle connection; load = 1-min load average at the end "
        f"({os.cpu_count()} CPUs); CPU ms = the servers' (and worker's) CPU time per message sent"
    )
    header = (
        f"{'system':<16} {'N':>5} | {'visitor→agent':^20} | {'agent→visitor':^20} | "
        f"{'KiB/conn':>8} {'load':>5} {'CPU ms':>6} | {'sent v/a':>9} {'lost':>4} {'dup':>3}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.system:<16} {r.n:>5} | {fmt(r.v2a)} | {fmt(r.a2v)} | "
            f"{r.kib_per_conn:>8.1f} {r.load:>5.1f} {r.cpu_ms_per_msg:>6.1f} | "
            f"{r.v_sent:>4}/{r.a_sent:<4} {r.lost:>4} {r.dups:>3}"
        )
    floors = {r.n: r for r in results if r.system == "floor"}
    lines = []
    for r in results:
        f = floors.get(r.n)
        if r.system == "floor" or f is None or not (r.v2a and r.a2v and f.v2a and f.a2v):
            continue

        def ratio(a: list[float], b: list[float], q: float) -> float:
            return percentile(a, q) / percentile(b, q)

        lines.append(
            f"{r.system:<16} {r.n:>5} | v→a p50 {ratio(r.v2a, f.v2a, 50):5.1f}× p99 {ratio(r.v2a, f.v2a, 99):5.1f}× | "
            f"a→v p50 {ratio(r.a2v, f.a2v, 50):5.1f}× p99 {ratio(r.a2v, f.a2v, 99):5.1f}× | "
            f"memory {r.kib_per_conn / f.kib_per_conn if f.kib_per_conn > 0 else float('nan'):4.1f}×"
        )
    if lines:
        print()
        print("# product ÷ floor (same N, same run)")
        print("\n".join(lines))
    calls = [(r.system, r.n, r.reply_call_ms) for r in results if r.reply_call_ms]
    if calls:
        print()
        print("# do_reply call (the reply's transaction, in the replier process), ms p50 p99")
        for system, n, values in calls:
            print(f"{system:<16} {n:>5} | {percentile(values, 50):6.1f} {percentile(values, 99):6.1f}")
    aims = [r for r in results if r.system != "floor" and r.n == 500]
    for r in aims:
        worst = max(percentile(r.v2a, 99), percentile(r.a2v, 99)) if r.v2a and r.a2v else float("nan")
        print(
            f"\naim at 500 ({r.system}): p99 ≤ 50 ms → worst direction p99 {worst:.1f} ms "
            f"({'met' if worst <= 50 else 'missed'}); ≤ 100 KB per idle connection → {r.kib_per_conn:.1f} KiB "
            f"({'met' if r.kib_per_conn * 1.024 <= 100 else 'missed'})"
        )
    for r in results:
        for e in r.errors:
            say(f"{r.system} {r.n}: {e}")


# --- the product runs --------------------------------------------------------------------------


@dataclass
class World:
    """What the product runs share: the database, the inbox, agents and visitors."""

    env: dict[str, str]
    inbox_token: str
    inbox_id: int
    agent_ids: list[int]
    cookies: list[str]
    visitors: list[VisitorInfo]
    log_dir: Path


def django_env(args: argparse.Namespace, db_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="helpdesk.settings",
        DATABASE_URL=db_url,
        REDIS_URL=args.redis_url,
        SECRET_KEY=SECRET_KEY,
        SWITCHBOARD_DATA_DIR=str(data_dir),
        CHANNEL_LAYER_PREFIX=f"benchchat{os.getpid()}",
        LOG_LEVEL="WARNING",
        DEBUG="false",
        # Every bench client is 127.0.0.1: the per-IP limits would refuse all but the first few.
        CHAT_IP_SESSIONS_PER_MINUTE="1000000",
        CHAT_IP_REQUESTS_PER_MINUTE="1000000",
        CHAT_VISITOR_MESSAGES_PER_MINUTE="600",
        CHAT_WS_PER_IP="1000000",
        CHAT_IP_CONVERSATIONS_PER_HOUR="1000000",
        CHAT_IP_MESSAGES_PER_MINUTE="1000000",
        # The server processes' database pools (one per process).
        DB_POOL_MAX_SIZE="10",
    )
    return env


def prepare_database(args: argparse.Namespace) -> str:
    import psycopg
    from psycopg import sql

    db_url = with_dbname(args.admin_url, args.db)
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db)))
    return db_url


def build_world(args: argparse.Namespace, env: dict[str, str], log_dir: Path, n_visitors: int) -> World:
    """Migrate, then (through Django in this process) the chat inbox, agents and visitors."""
    say("migrating the bench database")
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if migrated.returncode != 0:
        raise BenchFailure(f"migrate failed:\n{migrated.stderr[-3000:]}")
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from channels_inbox.actions.inboxes import do_create_inbox
    from channels_inbox.chat.tokens import visitor_token
    from helpdesk.actions.agents import do_create_agent
    from helpdesk.models import AgentProfile

    inbox, _ = do_create_inbox(kind="chat", name="Bench chat", values={"allowed_origins": SITE_ORIGIN})
    agent_ids, cookies = [], []
    for i in range(2 * AGENTS_PER_PROCESS):
        user = do_create_agent(email=f"bench{i}@example.com", name=f"Bench Agent{i}", role="admin")
        # Available with room for every chat: new conversations are assigned at once (nobody waits
        # in the queue, whose changes every waiting visitor's connection would re-read).
        AgentProfile.objects.filter(user=user).update(chat_available=True, chat_capacity=10_000)
        client = Client()
        client.force_login(user)
        name = settings.SESSION_COOKIE_NAME
        agent_ids.append(user.pk)
        cookies.append(f"{name}={client.cookies[name].value}")
    visitors = [
        VisitorInfo(i, visitor_token(inbox.public_token, public_id))
        for i, public_id in enumerate(create_visitors(inbox, n_visitors))
    ]
    return World(env, inbox.public_token, inbox.pk, agent_ids, cookies, visitors, log_dir)


def create_visitors(inbox: Any, n: int) -> list[uuid.UUID]:
    """N anonymous visitors of the inbox, made as the widget's session endpoint makes them (untimed)."""
    from channels_inbox.actions.chat import do_start_chat_session

    return [
        do_start_chat_session(inbox, visitor=None, site=SITE_ORIGIN, url=f"{SITE_ORIGIN}/cart", title="Cart").public_id
        for _ in range(n)
    ]


class ProductServers:
    """Two uvicorn processes (production's websocket command) and a Celery worker."""

    def __init__(self, world: World, layer: str, tag: str) -> None:
        self.world = world
        env = dict(world.env, CHANNEL_LAYER=layer)
        self.ports = [free_port(), free_port()]
        self.servers = [
            Child(
                f"{tag}-asgi{i}",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "helpdesk.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--ws-per-message-deflate",
                    "false",
                    "--lifespan",
                    "off",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env,
                world.log_dir,
            )
            for i, port in enumerate(self.ports)
        ]
        self.worker = Child(
            f"{tag}-worker",
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
                "4",
                "--loglevel",
                "WARNING",
            ],
            env,
            world.log_dir,
        )
        for port, server in zip(self.ports, self.servers, strict=True):
            url = f"http://127.0.0.1:{port}/healthz"
            wait_until(functools.partial(http_ok, url), 60, server.name, server)

    def rss_kib(self) -> int:
        return sum(s.rss_kib() for s in self.servers)

    def cpu_seconds(self) -> float:
        return sum(c.cpu_seconds() for c in [*self.servers, self.worker])

    def check(self) -> None:
        for child in [*self.servers, self.worker]:
            if not child.alive():
                raise BenchFailure(f"{child.name} died:\n{child.tail()}")

    def stop(self) -> None:
        for child in [*self.servers, self.worker]:
            child.stop()


async def start_conversations(world: World, ports: list[int]) -> None:
    """Untimed: each visitor's first message, through the websocket, starts its conversation."""
    todo = [v for v in world.visitors if not v.conversation]
    if not todo:
        return
    say(f"starting {len(todo)} conversations (each visitor's first message; untimed)")
    samples = Samples()
    started = now()
    gate = asyncio.Semaphore(20)

    async def one(info: VisitorInfo) -> None:
        async with gate:
            client = ProductVisitor(info, ports[info.index % 2], world.inbox_token, info.index % 2, samples)
            await client.open()
            try:
                await client.first_message()
            finally:
                await client.close()

    await asyncio.gather(*(one(v) for v in todo))
    say(f"  {len(todo)} conversations in {now() - started:.1f} s")
    from channels_inbox.models import ChatConversation

    tickets = await asyncio.to_thread(
        lambda: {
            c.hex: t
            for c, t in ChatConversation.objects.filter(inbox_id=world.inbox_id).values_list("public_id", "ticket_id")
        }
    )
    for v in world.visitors:
        v.ticket_id = tickets.get(v.conversation, 0)
        if v.conversation and not v.ticket_id:
            raise BenchFailure(f"visitor {v.index}: no ticket for conversation {v.conversation}")


async def product_run(world: World, args: argparse.Namespace, layer: str, n: int) -> Result:
    system = f"product {layer}"
    say(f"{system}, N={n}: starting two ASGI processes and a worker")
    servers = await asyncio.to_thread(ProductServers, world, layer, f"{layer}-{n}")
    replier: asyncio.subprocess.Process | None = None
    clients: list[Any] = []
    try:
        samples = Samples()
        agents = [
            ProductAgent(i, servers.ports[i % 2], world.cookies[i], i % 2, samples)
            for i in range(2 * AGENTS_PER_PROCESS)
        ]
        visitors = [
            ProductVisitor(v, servers.ports[v.index % 2], world.inbox_token, v.index % 2, samples)
            for v in world.visitors[:n]
        ]
        clients = [*agents, *visitors]
        await open_all(agents)
        await open_all(visitors[:2])  # warm: one visitor per process, one message each
        await asyncio.gather(*(v.warm_message() for v in visitors[:2]))
        await asyncio.sleep(2)
        rss0 = servers.rss_kib()
        opened = now()
        await open_all(visitors[2:])
        say(f"  {n - 2} more visitors connected, authenticated and resumed in {now() - opened:.1f} s")
        await asyncio.sleep(3)
        mem = (servers.rss_kib() - rss0) / max(1, n - 2)
        servers.check()

        # the agent side: a replier process (do_reply), started before the clock
        replier = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--role",
            "replier",
            cwd=ROOT,
            env=dict(world.env, CHANNEL_LAYER=layer),  # publishes through the same layer as the servers
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert replier.stdin is not None
        assert replier.stdout is not None
        rng = random.Random(f"{args.seed}-{n}-{layer}")
        half = args.rate / 2
        v_times = schedule(half, args.seconds, 0.0, 0.0)
        a_times = schedule(half, args.seconds, 0.0, 0.5 / half)
        v_pick = [rng.randrange(n) for _ in v_times]
        a_pick = [rng.randrange(n) for _ in a_times]
        texts = [f"{REPLY_MARK}-{layer}-{n}-{k}" for k in range(len(a_times))]
        plan = [[at, world.visitors[vi].ticket_id, t] for at, vi, t in zip(a_times, a_pick, texts, strict=True)]
        job = {"agent_id": world.agent_ids[0], "warm_ticket_id": world.visitors[0].ticket_id, "schedule": plan}
        replier.stdin.write((json.dumps(job) + "\n").encode())
        await replier.stdin.drain()
        line = await asyncio.wait_for(replier.stdout.readline(), 90)
        if not line or not json.loads(line).get("ready"):
            raise BenchFailure("the replier did not start")
        start = now() + 1.0
        replier.stdin.write((json.dumps({"start": start}) + "\n").encode())
        await replier.stdin.drain()
        v_times = [start + at for at in v_times]
        for at, vi, text in zip(a_times, a_pick, texts, strict=True):
            samples.a_sent[text] = (start + at, vi)  # replaced by the replier's own start time below

        reply_calls: list[float] = []

        async def read_replier() -> None:
            assert replier is not None
            assert replier.stdout is not None
            while True:
                raw = await replier.stdout.readline()
                if not raw:
                    return
                item = json.loads(raw)
                if item.get("done"):
                    return
                if "error" in item:
                    samples.errors.append(f"reply {item['text']}: {item['error']}")
                    continue
                text = item["text"]
                samples.a_sent[text] = (item["t0"], samples.a_sent[text][1])
                reply_calls.append((item["t1"] - item["t0"]) * 1000)

        cpu0 = servers.cpu_seconds()
        replies = asyncio.ensure_future(read_replier())
        say(f"  measuring {args.seconds:g} s at {args.rate:g} msgs/s")
        await asyncio.wait_for(run_at(v_times, lambda k: visitors[v_pick[k]].send_message(k)), args.seconds + 30)
        await asyncio.wait_for(replies, args.seconds + 60)
        load = load_average()
        await settle(samples, agents)
        cpu = servers.cpu_seconds() - cpu0
        await asyncio.wait_for(replier.wait(), 30)
        servers.check()
        return collect(system, n, samples, agents, mem, load, cpu, reply_calls)
    finally:
        if replier is not None and replier.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(replier.pid, signal.SIGKILL)
            await replier.wait()
        await close_all(clients)
        await asyncio.to_thread(servers.stop)


async def floor_run(args: argparse.Namespace, n: int, log_dir: Path) -> Result:
    say(f"floor, N={n}: two websockets servers relaying through Redis pub/sub")
    tag = f"benchfloor{os.getpid()}-{n}"
    ports = [free_port(), free_port()]
    servers = [
        Child(
            f"floor-{n}-{i}",
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                "floor-server",
                "--port",
                str(port),
                "--redis-url",
                args.redis_url,
                "--tag",
                tag,
            ],
            dict(os.environ),
            log_dir,
        )
        for i, port in enumerate(ports)
    ]
    clients: list[Any] = []
    try:
        for port, server in zip(ports, servers, strict=True):
            await asyncio.to_thread(wait_until, functools.partial(tcp_ok, port), 30, server.name, server)
        samples = Samples()
        agents = [FloorAgent(i, ports[i % 2], i % 2, samples) for i in range(2 * AGENTS_PER_PROCESS)]
        visitors = [FloorVisitor(i, ports[i % 2], i % 2, samples) for i in range(n)]
        clients = [*agents, *visitors]
        await open_all(agents)
        await open_all(visitors[:2])
        await asyncio.sleep(2)
        rss0 = sum(s.rss_kib() for s in servers)
        await open_all(visitors[2:])
        await asyncio.sleep(3)
        mem = (sum(s.rss_kib() for s in servers) - rss0) / max(1, n - 2)

        rng = random.Random(f"{args.seed}-{n}-floor")
        half = args.rate / 2
        start = now() + 1.0
        v_times = schedule(half, args.seconds, start, 0.0)
        a_times = schedule(half, args.seconds, start, 0.5 / half)
        v_pick = [rng.randrange(n) for _ in v_times]
        a_pick = [rng.randrange(n) for _ in a_times]

        def reply(k: int) -> None:
            vi = a_pick[k]
            # an agent on the other server than the visitor
            agent = next(a for a in agents if a.process != vi % 2)
            agent.reply(vi, f"{REPLY_MARK}-floor-{n}-{k}")

        say(f"  measuring {args.seconds:g} s at {args.rate:g} msgs/s")
        cpu0 = sum(s.cpu_seconds() for s in servers)
        await asyncio.wait_for(
            asyncio.gather(
                run_at(v_times, lambda k: visitors[v_pick[k]].send_message(k)),
                run_at(a_times, reply),
            ),
            args.seconds + 30,
        )
        load = load_average()
        await settle(samples, agents)
        cpu = sum(s.cpu_seconds() for s in servers) - cpu0
        for server in servers:
            if not server.alive():
                raise BenchFailure(f"{server.name} died:\n{server.tail()}")
        return collect("floor", n, samples, agents, mem, load, cpu, [])
    finally:
        await close_all(clients)
        for server in servers:
            await asyncio.to_thread(server.stop)


async def bench(args: argparse.Namespace, sizes: list[int], layers: list[str], log_dir: Path) -> list[Result]:
    results: list[Result] = []
    world: World | None = None
    if layers:
        db_url = prepare_database(args)
        data_dir = Path(tempfile.mkdtemp(prefix="bench-chat-"))
        env = django_env(args, db_url, data_dir)
        world = await asyncio.to_thread(build_world, args, env, log_dir, max(sizes))
        from helpdesk.celery import app as celery_app

        await asyncio.to_thread(celery_app.control.purge)
        # The conversations start on servers of their own: the measured ones start fresh (their
        # memory baseline not lowered by what the set-up's connections freed).
        setup = await asyncio.to_thread(ProductServers, world, layers[0], "setup")
        try:
            await start_conversations(world, setup.ports)
        finally:
            await asyncio.to_thread(setup.stop)
    for n in sizes:
        for layer in layers:
            assert world is not None
            results.append(await product_run(world, args, layer, n))
        if not args.no_floor:
            results.append(await floor_run(args, n, log_dir))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", default="100,500,1000", help="comma-separated N (default 100,500,1000)")
    parser.add_argument("--rate", type=float, default=30.0, help="messages/s in all, half each way (default 30)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per N (default 20)")
    parser.add_argument("--layer", choices=["pubsub", "core", "both", "none"], default="pubsub")
    parser.add_argument("--no-floor", action="store_true", help="skip the websockets + Redis pub/sub floor")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--db", default=DEFAULT_DB, help="throwaway database, dropped and created (bench_chat)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0, help="the whole run stops after this (s)")
    parser.add_argument("--role", choices=["bench", "floor-server", "replier"], default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "floor-server":
        floor_server_main(args.port, args.redis_url, args.tag)
        return 0
    if args.role == "replier":
        replier_main()
        return 0

    sizes = [int(x) for x in args.visitors.split(",") if x.strip()]
    if not sizes or min(sizes) < 4:
        parser.error("--visitors: comma-separated numbers ≥ 4")
    layers = {"pubsub": ["pubsub"], "core": ["core"], "both": ["pubsub", "core"], "none": []}[args.layer]
    limit = raise_fd_limit()
    say(f"file descriptor limit {limit}")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-chat-logs-"))
    say(f"server logs in {log_dir}")

    def on_timeout() -> None:
        say(f"--timeout {args.timeout:g} s reached: stopping")
        Child.stop_all()
        os._exit(3)

    watchdog = threading.Timer(args.timeout, on_timeout)
    watchdog.daemon = True
    watchdog.start()

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            import uvloop

            results = uvloop.run(bench(args, sizes, layers, log_dir))
        except ImportError:
            results = asyncio.run(bench(args, sizes, layers, log_dir))
    except BenchFailure as exc:
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        Child.stop_all()
        watchdog.cancel()
    print_results(results, args)
    bad = [r for r in results if r.lost or r.dups]
    if bad:
        say("FAILED: " + "; ".join(f"{r.system} N={r.n}: {r.lost} lost, {r.dups} twice" for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
