"""Who gets a queued ticket: the pure choice, no writes (the writes: helpdesk/actions/routing.py).

A team with `routing` round robin or least loaded hands its queued tickets to an agent who
- is a member of the team, an active account, not a light agent (light agents never reply);
- is present for the ticket's channel kind (`accepts_kind`): online receives every kind, away
  only the kinds that wait well (email, web form, API: `AWAY_KINDS`), offline nothing;
- has spare capacity on the ticket's channel kind: `capacity_for(profile, kind)` minus the
  agent's load on that kind, the tickets of that kind assigned to them in status new or open
  (as Freshdesk: only tickets whose SLA runs count, so pending, on hold and solved work frees
  capacity; `LOAD_STATUSES`);
- while the team's `skills_timeout_minutes` has not passed since the ticket was queued and the
  customer's language is known: answers in that language (`speaks`).
Among them (`choose`): round robin takes the one given a ticket longest ago (`last_assigned_at`,
never first, then profile id); least loaded takes the one with the most spare capacity on the
ticket's channel kind, ties as round robin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from helpdesk.models import Presence, RoutingMode, TicketStatus

# Channel kinds an away agent still receives: nobody waits on the line for these.
AWAY_KINDS = frozenset({"email", "web_form", "api"})
# The statuses whose tickets count against an agent's capacity (the SLA-on statuses).
LOAD_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN)
# A ticket routing may hand out: one of these statuses, no assignee, not a live chat.
ROUTABLE_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN)
# Live chats have a router of their own (helpdesk/actions/chats.py) and their own capacity.
CHAT_KIND = "chat"
# Any channel kind an agent's capacity does not name.
ANY_KIND = "*"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def capacity_for(profile: Any, channel: str) -> int:
    """Tickets of this channel kind routing may give the agent at once.

    The agent's own `capacity` for the kind, else their `"*"`, else ROUTING_DEFAULT_CAPACITY for
    the kind, else its `"*"`, else 0. Live chat ("chat") is the agent's `chat_capacity`."""
    if channel == CHAT_KIND:
        return int(profile.chat_capacity)
    own = profile.capacity if isinstance(profile.capacity, Mapping) else {}
    defaults: Mapping[str, Any] = settings.ROUTING_DEFAULT_CAPACITY
    for table in (own, defaults):
        for key in (channel, ANY_KIND):
            value = table.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return max(value, 0)
    return 0


def accepts_kind(presence: str, channel: str) -> bool:
    """Whether an agent with this presence receives tickets of this channel kind."""
    if presence == Presence.ONLINE:
        return True
    if presence == Presence.AWAY:
        return channel in AWAY_KINDS
    return False


def presences_for(channel: str) -> list[str]:
    """The presences that receive this channel kind (for the database filter)."""
    return [p for p in (Presence.ONLINE, Presence.AWAY) if accepts_kind(p, channel)]


def normalize_language(code: str) -> str | None:
    """A BCP 47-ish code in its usual case ("cs-cz" → "cs-CZ"); None when it is not one."""
    code = code.strip().replace("_", "-")
    if not _LANGUAGE.match(code) or len(code) > 35:
        return None
    first, *rest = code.split("-")
    parts = [first.lower()]
    for part in rest:
        if len(part) == 2 and part.isalpha():
            parts.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            parts.append(part.title())
        else:
            parts.append(part.lower())
    return "-".join(parts)


def _same_or_prefix(a: str, b: str) -> bool:
    return a == b or b.startswith(a + "-")


def speaks(languages: Iterable[str], language: str) -> bool:
    """Whether an agent answering in `languages` serves a customer speaking `language`: the
    same tag, or one is a prefix of the other at a subtag boundary ("cs" serves "cs-CZ" and an
    agent with "cs-CZ" serves a customer with "cs"; "en-US" does not serve "en-GB")."""
    wanted = language.strip().lower()
    if not wanted:
        return True
    for spoken in languages:
        if not isinstance(spoken, str):
            continue
        have = spoken.strip().lower()
        if have and (_same_or_prefix(have, wanted) or _same_or_prefix(wanted, have)):
            return True
    return False


def language_required(*, language: str, timeout_minutes: int | None, queued_at: datetime | None, now: datetime) -> bool:
    """Whether the ticket still waits for an agent speaking its customer's language."""
    if timeout_minutes is None or not language.strip():
        return False
    if queued_at is None:
        return timeout_minutes > 0
    return now < queued_at + timedelta(minutes=timeout_minutes)


@dataclass(frozen=True)
class Candidate:
    """An agent routing may consider for one ticket (its channel kind already chosen)."""

    profile_id: int
    user_id: int
    presence: str
    languages: tuple[str, ...]
    last_assigned_at: datetime | None
    capacity: int
    load: int

    @property
    def spare(self) -> int:
        return self.capacity - self.load


def _round_robin_key(c: Candidate) -> tuple[bool, datetime, int]:
    return (c.last_assigned_at is not None, c.last_assigned_at or _EPOCH, c.profile_id)


def eligible(
    candidates: Sequence[Candidate], *, channel: str, language: str = "", require_language: bool = False
) -> list[Candidate]:
    """The candidates who may take a ticket of this kind (and language, when required) now."""
    return [
        c
        for c in candidates
        if accepts_kind(c.presence, channel) and c.spare > 0 and (not require_language or speaks(c.languages, language))
    ]


def choose(
    candidates: Sequence[Candidate],
    *,
    mode: str,
    channel: str,
    language: str = "",
    require_language: bool = False,
) -> Candidate | None:
    """The agent to give the ticket to, or None (nobody may take it now)."""
    pool = eligible(candidates, channel=channel, language=language, require_language=require_language)
    if not pool or mode == RoutingMode.MANUAL:
        return None
    if mode == RoutingMode.LEAST_LOADED:
        return min(pool, key=lambda c: (-c.spare, *_round_robin_key(c)))
    return min(pool, key=_round_robin_key)
