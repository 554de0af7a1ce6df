"""Small shared building blocks for live connections: a cross-process cache lock and a
per-connection token bucket (the desk's and the chat widget's websockets use both)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache

logger = logging.getLogger(__name__)


@contextmanager
def cache_lock(key: str, *, hold_seconds: int = 3, wait_seconds: float = 1.0) -> Iterator[bool]:
    """Serialize read-modify-writes of one cache record across processes (cache.add is atomic).

    Waits at most `wait_seconds`; past that the body runs unlocked (yielding False) rather
    than stalling a socket: the records kept this way heal on the next heartbeat. The lock
    expires by itself after `hold_seconds` if its holder dies.
    """
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    held = False
    while True:
        if cache.add(key, token, timeout=hold_seconds):
            held = True
            break
        if time.monotonic() > deadline:
            logger.warning("cache lock %s not acquired; updating unlocked", key)
            break
        time.sleep(0.005)
    try:
        yield held
    finally:
        if held and cache.get(key) == token:
            cache.delete(key)


class TokenBucket:
    """`burst` actions at once, then `per_second` on average (one connection's frames)."""

    def __init__(self, burst: int, per_second: float) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
