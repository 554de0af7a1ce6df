"""Agent presence from open desk websockets, shared by every ASGI process through the cache.

Each open desk websocket is a *connection record* in the cache under its agent
(`presence:agent:<user id>`): an expiry time and whether the browser reports its user idle.
The consumer writes the record when the socket opens and on every heartbeat frame
(`HEARTBEAT_SECONDS`); a record not refreshed within `CONNECTION_TTL_SECONDS` is dead —
that is how a process that died without closing its sockets stops counting. A closed socket
keeps counting for `GRACE_SECONDS`, so going from one desk page to the next (old socket
closes, new one opens) never shows the agent offline.

The effective presence (`compute`):
  offline  no live connection record, or the agent chose "appear offline";
  away     connected, and the agent chose away or every connection reports idle;
  online   connected, chose online, and at least one connection is active.

It is written to `AgentProfile.presence` (what routing reads) by `recompute`, through
`do_set_presence`, only when it differs from the last state written. Dead records are
found by `sweep`, which runs at most once per `SWEEP_SECONDS` across all processes, from
the consumer on connect and on heartbeats (`maybe_sweep`) and from Celery beat every minute
(`helpdesk.tasks.sweep_presence`, for when no desk is open), and recomputes every agent the
database shows present. Redis in production, the process's local memory in the embedded mode.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import Any

from django.core.cache import cache

from helpdesk.models import AgentProfile, Presence
from helpdesk.throttle import cache_lock

logger = logging.getLogger(__name__)

# How often a desk page sends a heartbeat frame (told to the page; the consumer only counts).
HEARTBEAT_SECONDS = 25
# A connection not heard of for this long is dead. Above a minute: background tabs may fire
# timers only once a minute.
CONNECTION_TTL_SECONDS = 90
# A closed connection still counts this long (a page navigation reconnects within it).
GRACE_SECONDS = 5
# No keyboard, pointer or focus activity in the page for this long: the page reports idle.
IDLE_SECONDS = 300
# The sweep of stale agents runs at most this often (cluster-wide).
SWEEP_SECONDS = 30
# Agents and choices that can be stored.
CHOICES = (Presence.ONLINE, Presence.AWAY, Presence.OFFLINE)

_LOCK_SECONDS = 3
_LOCK_WAIT_SECONDS = 1.0


def _agent_key(user_id: int) -> str:
    return f"presence:agent:{user_id}"


def _choice_key(user_id: int) -> str:
    return f"presence:choice:{user_id}"


def _locked(user_id: int) -> AbstractContextManager[bool]:
    """Serialize read-modify-writes of one record across processes (helpdesk/throttle.py)."""
    return cache_lock(f"presence:lock:{user_id}", hold_seconds=_LOCK_SECONDS, wait_seconds=_LOCK_WAIT_SECONDS)


def _load(user_id: int) -> dict[str, Any]:
    record = cache.get(_agent_key(user_id))
    if not isinstance(record, dict):
        record = {}
    conns = record.get("conns")
    record["conns"] = conns if isinstance(conns, dict) else {}
    return record


def _store(user_id: int, record: dict[str, Any], now: float) -> None:
    conns: dict[str, list[Any]] = record["conns"]
    # Forget dead connections; keep the record while any may still count, plus a margin so the
    # last state written is remembered when the agent comes back quickly.
    for conn_id in [c for c, conn in conns.items() if conn[0] <= now]:
        del conns[conn_id]
    latest = max((conn[0] for conn in conns.values()), default=now)
    cache.set(_agent_key(user_id), record, timeout=int(latest - now) + CONNECTION_TTL_SECONDS)


def compute(conns: dict[str, list[Any]], choice: str | None, now: float) -> str:
    """The effective presence from connection records and the choice.

    A record is [expires_at, idle] or [expires_at, idle, closing]. A closing connection (in its
    grace period) keeps the agent connected, but only open ones say whether the agent is active:
    the page left behind by a navigation does not outvote the idle page now shown.
    """
    live = [(bool(c[1]), len(c) > 2 and bool(c[2])) for c in conns.values() if c[0] > now]
    if not live or choice == Presence.OFFLINE:
        return Presence.OFFLINE
    open_idle = [idle for idle, closing in live if not closing]
    if choice == Presence.AWAY or all(open_idle or [idle for idle, _ in live]):
        return Presence.AWAY
    return Presence.ONLINE


def cached_choice(user_id: int) -> str | None:
    """The agent's presence choice as last remembered here (None: not known to the cache)."""
    value = cache.get(_choice_key(user_id))
    return value if value in CHOICES else None


def remember_choice(user_id: int, choice: str) -> None:
    cache.set(_choice_key(user_id), choice, timeout=None)


def choice_of(user_id: int) -> str:
    """The agent's choice: from the cache, else the database (then remembered)."""
    choice = cached_choice(user_id)
    if choice is None:
        stored = AgentProfile.objects.filter(user_id=user_id).values_list("presence_choice", flat=True).first()
        choice = stored if stored in CHOICES else Presence.ONLINE
        remember_choice(user_id, choice)
    return choice


def touch(user_id: int, conn_id: str, *, idle: bool = False, now: float | None = None) -> None:
    """A connection opened or sent a heartbeat: it counts for CONNECTION_TTL_SECONDS more."""
    now = time.time() if now is None else now
    with _locked(user_id):
        record = _load(user_id)
        record["conns"][conn_id] = [now + CONNECTION_TTL_SECONDS, bool(idle)]
        _store(user_id, record, now)


def release(user_id: int, conn_id: str, *, now: float | None = None) -> None:
    """A connection closed: it counts GRACE_SECONDS more, then no longer."""
    now = time.time() if now is None else now
    with _locked(user_id):
        record = _load(user_id)
        conn = record["conns"].get(conn_id)
        if conn is not None:
            record["conns"][conn_id] = [min(conn[0], now + GRACE_SECONDS), conn[1], True]
        _store(user_id, record, now)


def connections(user_id: int) -> dict[str, list[Any]]:
    """The agent's connection records {id: [expires_at, idle(, closing)]} (dead ones until pruned)."""
    conns: dict[str, list[Any]] = _load(user_id)["conns"]
    return conns


def effective(user_id: int, *, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return compute(_load(user_id)["conns"], choice_of(user_id), now)


def recompute(user_id: int, *, now: float | None = None, force: bool = False) -> str:
    """Write the agent's effective presence to the database when it changed; return it.

    The state last written is kept in the agent's record, so a heartbeat that changes nothing
    costs no query. `force` compares with the database instead (the sweep, a new choice).
    """
    from helpdesk.actions.presence import do_set_presence

    now = time.time() if now is None else now
    with _locked(user_id):
        record = _load(user_id)
        state = compute(record["conns"], choice_of(user_id), now)
        if force or record.get("state") != state:
            do_set_presence(user_id, state, actor=None)
            record["state"] = state
            _store(user_id, record, now)
    return state


def sweep(*, now: float | None = None) -> list[int]:
    """Recompute every agent the database shows online or away; returns those set offline/away."""
    now = time.time() if now is None else now
    present = list(
        AgentProfile.objects.exclude(presence=Presence.OFFLINE).values_list("user_id", "presence", "presence_choice")
    )
    if not present:
        return []
    records = cache.get_many([_agent_key(uid) for uid, _, _ in present])
    changed = []
    for user_id, stored, choice in present:
        record = records.get(_agent_key(user_id))
        conns = record.get("conns", {}) if isinstance(record, dict) else {}
        if compute(conns, cached_choice(user_id) or choice, now) != stored:
            recompute(user_id, now=now, force=True)
            changed.append(user_id)
    return changed


def maybe_sweep(*, now: float | None = None) -> bool:
    """Run the sweep if no process ran it in the last SWEEP_SECONDS; True when it ran here."""
    if not cache.add("presence:sweep", 1, timeout=SWEEP_SECONDS):
        return False
    try:
        sweep(now=now)
    except Exception:
        logger.warning("presence sweep failed", exc_info=True)
    return True
