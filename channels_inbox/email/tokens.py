"""How a reply finds its ticket again: the ticket token in the subject, and a signed reply address.

Subject: `… [#1042]` — readable, survives every mail client; a stranger can type it, so
it only counts for a participant of the ticket (threading checks that).
Reply address: `support+1042-k3m9x2qa7d@example.com` — the ticket number and a truncated
HMAC under the inbox's `reply_token_secret`, so it cannot be made up for another ticket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channels_inbox.models import Inbox

_SUBJECT_TOKEN = re.compile(r"\[#(\d{1,18})\]")
_PLUS = re.compile(r"^(?P<local>[^+@]+)\+(?P<number>\d{1,18})-(?P<sig>[a-z2-7]{10})@(?P<domain>[^@]+)$", re.I)


def subject_token(number: int) -> str:
    return f"[#{number}]"


def subject_with_token(subject: str, number: int) -> str:
    """`Re: <subject> [#N]`, with one Re: and one token however often it went back and forth."""
    token = subject_token(number)
    base = _SUBJECT_TOKEN.sub("", subject or "").strip()
    base = strip_reply_prefixes(base)
    return f"Re: {base} {token}".replace("  ", " ") if base else f"Re: {token}"


_PREFIX = re.compile(r"^\s*((re|aw|sv|vs|odp|ответ|回复|答复|fw|fwd|wg)(\[\d+\])?\s*[:：]\s*)+", re.I)


def strip_reply_prefixes(subject: str) -> str:
    return _PREFIX.sub("", subject).strip()


def numbers_in_subject(subject: str) -> list[int]:
    return [int(n) for n in _SUBJECT_TOKEN.findall(subject or "")]


def _signature(inbox: Inbox, number: int) -> str:
    key = inbox.secret("reply_token_secret").encode()
    digest = hmac.new(key, f"{inbox.uuid}:{number}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:10]


def reply_address(inbox: Inbox, number: int) -> str:
    """The inbox address with the ticket's signed token: `local+<number>-<sig>@domain`."""
    address = str(inbox.settings.get("address") or "")
    local, _, domain = address.rpartition("@")
    if not local or not inbox.secret("reply_token_secret"):
        return address
    return f"{local}+{number}-{_signature(inbox, number)}@{domain}"


def numbers_in_addresses(inbox: Inbox, addresses: Iterable[str]) -> list[int]:
    """Ticket numbers of the validly signed reply addresses among `addresses`, in order."""
    if not inbox.secret("reply_token_secret"):
        return []
    found: list[int] = []
    for address in addresses:
        match = _PLUS.match((address or "").strip())
        if not match:
            continue
        number = int(match["number"])
        if hmac.compare_digest(_signature(inbox, number), match["sig"].lower()) and number not in found:
            found.append(number)
    return found
