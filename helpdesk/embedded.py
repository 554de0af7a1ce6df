"""Celery inside the web process, for the embedded mode (no Redis).

A real Celery worker (thread pool) and a real beat scheduler run in threads of the
serving process, on kombu's in-memory broker. Tasks, retries, countdowns and periodic
jobs therefore behave exactly as with separate processes; only their durability differs:
a task still queued when the process stops is lost with it, and the sweeper
(`channels_inbox.tasks.sweep`) finds the work again from the database on the next start.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.beat import EmbeddedService
from celery.worker import WorkController

logger = logging.getLogger(__name__)


class _Worker(WorkController):
    """A worker that tells the starting thread when it consumes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self.ready.set()


class EmbeddedCelery:
    """Starts and stops one Celery worker and one beat inside this process."""

    def __init__(self, app: Celery, *, concurrency: int = 4, beat: bool = True) -> None:
        self.app = app
        self.concurrency = concurrency
        self.with_beat = beat
        self.worker: _Worker | None = None
        self.beat: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        broker = self.app.conf.broker_url or ""
        if not broker.startswith("memory://"):
            raise RuntimeError("the embedded worker runs only on the in-memory broker (REDIS_URL unset)")
        self.worker = _Worker(
            app=self.app,
            pool="threads",
            concurrency=self.concurrency,
            hostname="embedded@%h",
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=None,
        )
        self._thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self._thread.start()
        if not self.worker.ready.wait(timeout):
            raise RuntimeError("the embedded Celery worker did not start")
        if self.with_beat:
            # In-memory schedule: nothing to keep between runs, the sweeper is idempotent.
            self.beat = EmbeddedService(self.app, thread=True, scheduler_cls="celery.beat:Scheduler")
            self.beat.start()
        logger.info("embedded Celery worker (%d threads)%s started", self.concurrency, " and beat" if self.beat else "")

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop()
            self.beat = None
        if self.worker is not None:
            self.worker.stop(in_sighandler=False)
            self.worker = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
