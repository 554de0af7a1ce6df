"""Rate limits of the chat widget, per visitor and per client address, on the shared cache.

Fixed windows: a counter per (limit, subject, window) that expires with its window, so
every web and websocket process counts together (Redis in production, the process's own
memory in the embedded mode). A refused call is not counted twice: the counter only
grows. The client address is REMOTE_ADDR, or behind the deployment's proxy
(BEHIND_PROXY) the last X-Forwarded-For entry, the one the proxy appended.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache

MINUTE = 60
HOUR = 3600
# identify calls of one visitor per minute (a valid hash needs one; brute force is hopeless anyway).
IDENTIFY_PER_MINUTE = 10
# typing/page/read pings of one visitor per minute (the widget sends a few per second at most).
PINGS_PER_MINUTE = 240


def _clock() -> float:
    return time.time()


def client_ip(request: Any) -> str:
    """The client's address (see helpdesk/views/password_reset.py for why the last hop)."""
    if getattr(settings, "BEHIND_PROXY", False):
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded and forwarded[-1]:
            return forwarded[-1][:64]
    return str(request.META.get("REMOTE_ADDR") or "unknown")[:64]


def hit(name: str, subject: str, *, limit: int, window: int, now: float | None = None, amount: int = 1) -> bool:
    """Count `amount` uses of `name` by `subject` in the current window; False once over `limit`."""
    if limit <= 0:
        return True
    now = _clock() if now is None else now
    key = f"chat:rl:{name}:{subject}:{int(now // window)}"
    cache.add(key, 0, timeout=window + 1)
    try:
        count = cache.incr(key, amount)
    except ValueError:  # expired between add and incr
        cache.add(key, amount, timeout=window + 1)
        count = amount
    return int(count) <= limit


def _visitor(visitor_public_id: uuid.UUID | str) -> str:
    return visitor_public_id.hex if isinstance(visitor_public_id, uuid.UUID) else str(visitor_public_id)


def allow_ip_request(ip: str) -> bool:
    return hit("ip", ip, limit=settings.CHAT_IP_REQUESTS_PER_MINUTE, window=MINUTE)


def allow_new_session(ip: str) -> bool:
    """A new visitor (a session without a valid token) from this address."""
    return hit("session", ip, limit=settings.CHAT_IP_SESSIONS_PER_MINUTE, window=MINUTE)


def allow_message(visitor_public_id: uuid.UUID | str) -> bool:
    """One more message (HTTP or websocket) of this visitor."""
    return hit("msg", _visitor(visitor_public_id), limit=settings.CHAT_VISITOR_MESSAGES_PER_MINUTE, window=MINUTE)


def allow_upload(visitor_public_id: uuid.UUID | str) -> bool:
    return hit("upload", _visitor(visitor_public_id), limit=settings.CHAT_VISITOR_MESSAGES_PER_MINUTE, window=MINUTE)


def allow_identify(visitor_public_id: uuid.UUID | str) -> bool:
    return hit("identify", _visitor(visitor_public_id), limit=IDENTIFY_PER_MINUTE, window=MINUTE)


def allow_ping(visitor_public_id: uuid.UUID | str) -> bool:
    """typing, page and read reports."""
    return hit("ping", _visitor(visitor_public_id), limit=PINGS_PER_MINUTE, window=MINUTE)


def allow_transcript(visitor_public_id: uuid.UUID | str) -> bool:
    return hit("transcript", _visitor(visitor_public_id), limit=settings.CHAT_TRANSCRIPTS_PER_HOUR, window=HOUR)


def allow_ip_transcript(ip: str) -> bool:
    """Transcripts requested from one client address per hour (visitors are free to make)."""
    return hit("transcript-ip", ip, limit=settings.CHAT_IP_TRANSCRIPTS_PER_HOUR, window=HOUR)


def allow_ip_conversation(ip: str) -> bool:
    """A new conversation (a new chat ticket) started from this address."""
    return hit("conv-ip", ip, limit=settings.CHAT_IP_CONVERSATIONS_PER_HOUR, window=HOUR)


def allow_ip_message(ip: str) -> bool:
    """One more visitor message (HTTP or websocket) from this address, whatever the visitor."""
    return hit("msg-ip", ip, limit=settings.CHAT_IP_MESSAGES_PER_MINUTE, window=MINUTE)


def allow_ip_upload_bytes(ip: str, size: int) -> bool:
    """`size` more uploaded bytes from this address within the hour."""
    return hit("upload-bytes-ip", ip, limit=settings.CHAT_IP_UPLOAD_BYTES_PER_HOUR, window=HOUR, amount=max(size, 1))
