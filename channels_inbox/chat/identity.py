"""Verifying `Switchboard.identify({user_id, user_hash, issued_at, …})`.

The website's backend computes, with the inbox's identity secret,

    user_hash = hex(HMAC-SHA256(identity_secret, f"{user_id}:{issued_at}"))

where `issued_at` is the Unix time (seconds) it computed it (per page render). We accept it only within
CHAT_IDENTITY_MAX_AGE_SECONDS of that time, so a hash that leaks stops working; this
closes the replay hole of the bare HMAC(user_id) scheme (Chatwoot #5479). Nothing else of
the call is signed: its `email` and `name` are contact details, never an identity.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from channels_inbox.models import Inbox

MAX_USER_ID_LENGTH = 200
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class IdentityRefused(Exception):
    """The identify call's hash is wrong, stale or malformed (→ 403; nothing is claimed)."""


def user_hash(secret: str, user_id: str, issued_at: int) -> str:
    return hmac.new(secret.encode(), f"{user_id}:{issued_at}".encode(), hashlib.sha256).hexdigest()


def verify_identity(inbox: Inbox, *, user_id: Any, issued_at: Any, given_hash: Any, now: float | None = None) -> str:
    """The verified user id, or IdentityRefused saying why."""
    if not isinstance(user_id, str | int) or isinstance(user_id, bool):
        raise IdentityRefused("user_id must be a string")
    user_id = str(user_id).strip()
    if not user_id or len(user_id) > MAX_USER_ID_LENGTH or any(ord(c) < 32 for c in user_id):
        raise IdentityRefused(f"user_id must be 1–{MAX_USER_ID_LENGTH} printable characters")
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | str):
        raise IdentityRefused("issued_at must be a Unix time in seconds")
    try:
        issued = int(issued_at)
    except ValueError as exc:
        raise IdentityRefused("issued_at must be a Unix time in seconds") from exc
    # Checked before compare_digest, which raises TypeError on non-ASCII text.
    if not isinstance(given_hash, str) or not _HEX64.fullmatch(given_hash):
        raise IdentityRefused("user_hash must be 64 hex characters")
    now = time.time() if now is None else now
    if issued > now + settings.CHAT_IDENTITY_CLOCK_SKEW_SECONDS:
        raise IdentityRefused("issued_at is in the future")
    if now - issued > settings.CHAT_IDENTITY_MAX_AGE_SECONDS:
        raise IdentityRefused("issued_at is too old: compute user_hash again")
    # During a rotation both the new and the previous secret are accepted.
    for secret in (inbox.secret("identity_secret"), inbox.secret("previous_identity_secret")):
        if secret and hmac.compare_digest(user_hash(secret, user_id, issued), given_hash.lower()):
            return user_id
    raise IdentityRefused("user_hash does not match")
