"""Whether a chat visitor has the widget open now, shared by every process through the cache.

Each open widget websocket is a *connection record* under its visitor
(`chatpresence:<visitor hex>`): the time it stops counting. The consumer writes it on auth
and on every frame (the widget pings every 25 s); a record not refreshed within
`CONNECTION_TTL_SECONDS` is dead, so a process that died without closing its sockets stops
counting. A closed socket is removed at once (`release`). The HTTP fallback's poll is the
connection "poll", counting for 2×CHAT_POLL_SECONDS + 5 s.

`is_connected` is what `ChatAdapter.send` asks to choose between delivering a reply live and
continuing by email; `last_seen` (the last touch or release, kept a day) lets it wait out a
page navigation (CHAT_AWAY_AFTER_SECONDS). Redis in production, local memory embedded.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any

from django.conf import settings
from django.core.cache import cache

from helpdesk.throttle import cache_lock

logger = logging.getLogger(__name__)

# A websocket not heard of for this long is dead (the widget pings every PING_SECONDS; a
# background tab may fire its timers only once a minute).
CONNECTION_TTL_SECONDS = 90
PING_SECONDS = 25
# The connection id the HTTP fallback's poll touches.
POLL = "poll"
# How long the last-seen time is remembered.
LAST_SEEN_TTL_SECONDS = 24 * 3600

_LOCK_SECONDS = 3
_LOCK_WAIT_SECONDS = 0.5


def poll_ttl_seconds() -> float:
    return 2 * float(settings.CHAT_POLL_SECONDS) + 5


def _hex(visitor_public_id: uuid.UUID | str) -> str:
    if isinstance(visitor_public_id, uuid.UUID):
        return visitor_public_id.hex
    return uuid.UUID(str(visitor_public_id)).hex


def _conns_key(visitor: str) -> str:
    return f"chatpresence:{visitor}"


def _seen_key(visitor: str) -> str:
    return f"chatpresence:seen:{visitor}"


def _locked(visitor: str) -> AbstractContextManager[bool]:
    """Serialize read-modify-writes of one record across processes (helpdesk/throttle.py)."""
    return cache_lock(f"chatpresence:lock:{visitor}", hold_seconds=_LOCK_SECONDS, wait_seconds=_LOCK_WAIT_SECONDS)


def _load(visitor: str) -> dict[str, float]:
    record: Any = cache.get(_conns_key(visitor))
    if not isinstance(record, dict):
        return {}
    return {str(k): float(v) for k, v in record.items() if isinstance(v, int | float)}


def _store(visitor: str, conns: dict[str, float], now: float) -> None:
    live = {conn: expires for conn, expires in conns.items() if expires > now}
    if not live:
        cache.delete(_conns_key(visitor))
        return
    cache.set(_conns_key(visitor), live, timeout=int(max(live.values()) - now) + 1)


def touch(
    visitor_public_id: uuid.UUID | str, conn_id: str, *, now: float | None = None, limit: int | None = None
) -> bool:
    """A widget connection authenticated, pinged or sent a frame (or the HTTP fallback polled).

    With `limit`, a websocket not counted yet is refused (False, nothing written) while the
    visitor has `limit` live websockets already (CHAT_WS_PER_VISITOR); the poll never counts
    towards it. A connection already counted is always refreshed."""
    visitor = _hex(visitor_public_id)
    now = time.time() if now is None else now
    ttl = poll_ttl_seconds() if conn_id == POLL else CONNECTION_TTL_SECONDS
    with _locked(visitor):
        conns = _load(visitor)
        if limit is not None and conn_id != POLL and conn_id not in conns:
            sockets = sum(1 for conn, expires in conns.items() if conn != POLL and expires > now)
            if sockets >= limit:
                return False
        conns[conn_id] = now + ttl
        _store(visitor, conns, now)
    cache.set(_seen_key(visitor), now, timeout=LAST_SEEN_TTL_SECONDS)
    return True


def release(visitor_public_id: uuid.UUID | str, conn_id: str, *, now: float | None = None) -> None:
    """A widget connection closed: it no longer counts."""
    visitor = _hex(visitor_public_id)
    now = time.time() if now is None else now
    with _locked(visitor):
        conns = _load(visitor)
        if conns.pop(conn_id, None) is not None:
            _store(visitor, conns, now)
    cache.set(_seen_key(visitor), now, timeout=LAST_SEEN_TTL_SECONDS)


def is_connected(visitor_public_id: uuid.UUID | str, *, now: float | None = None) -> bool:
    """A live widget websocket, or an HTTP poll within 2×CHAT_POLL_SECONDS + 5 s."""
    now = time.time() if now is None else now
    return any(expires > now for expires in _load(_hex(visitor_public_id)).values())


def last_seen(visitor_public_id: uuid.UUID | str) -> float | None:
    """The Unix time the visitor's widget was last heard of (touch or release), if within a day."""
    value = cache.get(_seen_key(_hex(visitor_public_id)))
    return float(value) if isinstance(value, int | float) else None


def states(
    visitor_public_ids: list[uuid.UUID] | list[str], *, now: float | None = None
) -> dict[str, tuple[bool, float | None]]:
    """(is_connected, last_seen) of many visitors by hex id, in one cache round trip."""
    now = time.time() if now is None else now
    visitors = list(dict.fromkeys(_hex(v) for v in visitor_public_ids))
    found: dict[str, Any] = cache.get_many([_conns_key(v) for v in visitors] + [_seen_key(v) for v in visitors])
    result: dict[str, tuple[bool, float | None]] = {}
    for visitor in visitors:
        record = found.get(_conns_key(visitor))
        conns = record if isinstance(record, dict) else {}
        connected = any(isinstance(e, int | float) and e > now for e in conns.values())
        seen = found.get(_seen_key(visitor))
        result[visitor] = (connected, float(seen) if isinstance(seen, int | float) else None)
    return result


# --- open websockets per client address (CHAT_WS_PER_IP) ---------------------------------------
# The same kind of record as a visitor's, under the address: one entry per socket, each dropped
# on close and, should the process die, CONNECTION_TTL_SECONDS after its last refresh.


def _address(ip: str) -> str:
    return f"ip:{ip[:64]}"


def claim_address(ip: str, conn_id: str, *, limit: int, now: float | None = None) -> bool:
    """Count one more websocket from `ip`, unless `limit` live ones are counted already."""
    record = _address(ip)
    now = time.time() if now is None else now
    with _locked(record):
        conns = _load(record)
        if conn_id not in conns and sum(1 for e in conns.values() if e > now) >= limit:
            return False
        conns[conn_id] = now + CONNECTION_TTL_SECONDS
        _store(record, conns, now)
    return True


def refresh_address(ip: str, conn_id: str, *, now: float | None = None) -> None:
    """The socket is alive (its pings): keep counting it."""
    record = _address(ip)
    now = time.time() if now is None else now
    with _locked(record):
        conns = _load(record)
        conns[conn_id] = now + CONNECTION_TTL_SECONDS
        _store(record, conns, now)


def release_address(ip: str, conn_id: str, *, now: float | None = None) -> None:
    record = _address(ip)
    now = time.time() if now is None else now
    with _locked(record):
        conns = _load(record)
        if conns.pop(conn_id, None) is not None:
            _store(record, conns, now)


def address_count(ip: str, *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    return sum(1 for e in _load(_address(ip)).values() if e > now)
