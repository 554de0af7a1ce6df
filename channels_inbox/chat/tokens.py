"""Signed tokens the widget holds: the visitor's own, and links into one conversation.

A visitor token names one ChatVisitor of one inbox and is signed with SECRET_KEY under its
own salt; it carries no expiry (the browser keeps it as long as it keeps its storage), and
it is only ever checked against the inbox it names. A conversation link (sent by email to
a visitor who left) is timestamped and expires. The hosted page it opens hands out a
*scoped* visitor token: `inbox:visitor:conversation:expiry`, good for that one
conversation only and only until the link expires (it can never list or open another).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from django.core import signing

VISITOR_SALT = "switchboard.chat-visitor"
CONVERSATION_LINK_SALT = "switchboard.chat-conversation-link"
FILE_SALT = "switchboard.chat-file"
SCOPED_SALT = "switchboard.chat-visitor-scoped"


class BadToken(Exception):
    """The token is not one we signed, or not for this inbox (→ 401)."""


@dataclass(frozen=True)
class VisitorClaim:
    inbox_token: str
    visitor_id: uuid.UUID
    # Set for a hosted-page token: the one conversation (public id) it may use.
    conversation_id: uuid.UUID | None = None
    # Unix time a scoped token stops working (None: a plain visitor token never expires).
    expires_at: int | None = None


def visitor_token(inbox_public_token: str, visitor_public_id: uuid.UUID) -> str:
    return signing.Signer(salt=VISITOR_SALT).sign(f"{inbox_public_token}:{visitor_public_id.hex}")


def read_visitor_token(token: str, *, inbox_public_token: str) -> uuid.UUID:
    """The visitor's public id from a token issued for this inbox; BadToken otherwise."""
    if not isinstance(token, str) or not token or len(token) > 200:
        raise BadToken("missing or malformed visitor token")
    try:
        value = signing.Signer(salt=VISITOR_SALT).unsign(token)
    except signing.BadSignature as exc:
        raise BadToken("visitor token is not valid") from exc
    inbox_part, _, visitor_part = value.rpartition(":")
    if inbox_part != inbox_public_token:
        raise BadToken("visitor token is for another inbox")
    try:
        return uuid.UUID(hex=visitor_part)
    except ValueError as exc:
        raise BadToken("visitor token is not valid") from exc


def scoped_visitor_token(
    inbox_public_token: str, visitor_public_id: uuid.UUID, conversation_public_id: uuid.UUID, *, expires_at: int
) -> str:
    """A visitor token limited to one conversation until `expires_at` (Unix seconds)."""
    value = f"{inbox_public_token}:{visitor_public_id.hex}:{conversation_public_id.hex}:{int(expires_at)}"
    return signing.Signer(salt=SCOPED_SALT).sign(value)


def read_visitor_claim(token: str, *, inbox_public_token: str, now: float | None = None) -> VisitorClaim:
    """What a widget token (plain or scoped) allows, for this inbox; BadToken otherwise
    (not ours, another inbox's, or a scoped token past its expiry)."""
    if not isinstance(token, str) or not token or len(token) > 300:
        raise BadToken("missing or malformed visitor token")
    try:
        return VisitorClaim(inbox_public_token, read_visitor_token(token, inbox_public_token=inbox_public_token))
    except BadToken:
        pass
    try:
        value = signing.Signer(salt=SCOPED_SALT).unsign(token)
    except signing.BadSignature as exc:
        raise BadToken("visitor token is not valid") from exc
    parts = value.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != inbox_public_token:
        raise BadToken("visitor token is for another inbox")
    try:
        visitor_id, conversation_id, expires_at = uuid.UUID(hex=parts[1]), uuid.UUID(hex=parts[2]), int(parts[3])
    except ValueError as exc:
        raise BadToken("visitor token is not valid") from exc
    if (time.time() if now is None else now) >= expires_at:
        raise BadToken("the conversation link has expired")
    return VisitorClaim(inbox_public_token, visitor_id, conversation_id, expires_at)


def conversation_link_token(conversation_public_id: uuid.UUID) -> str:
    return signing.TimestampSigner(salt=CONVERSATION_LINK_SALT).sign(conversation_public_id.hex)


def read_conversation_link_token(token: str, *, max_age_seconds: int) -> uuid.UUID:
    try:
        value = signing.TimestampSigner(salt=CONVERSATION_LINK_SALT).unsign(token, max_age=max_age_seconds)
        return uuid.UUID(hex=value)
    except (signing.BadSignature, ValueError) as exc:
        raise BadToken("the link is not valid or has expired") from exc


def read_conversation_link(token: str, *, max_age_seconds: int) -> tuple[uuid.UUID, int]:
    """(conversation public id, Unix time the link expires) of a valid, unexpired link."""
    conversation_id = read_conversation_link_token(token, max_age_seconds=max_age_seconds)
    try:
        signed_at = signing.b62_decode(token.rsplit(":", 2)[-2])
    except (IndexError, ValueError) as exc:
        raise BadToken("the link is not valid or has expired") from exc
    return conversation_id, signed_at + max_age_seconds


def file_token(attachment_id: int, visitor_public_id: uuid.UUID) -> str:
    """A download token for one attachment, good for one visitor only."""
    return signing.TimestampSigner(salt=FILE_SALT).sign(f"{attachment_id}:{visitor_public_id.hex}")


def read_file_token(token: str, *, max_age_seconds: int) -> tuple[int, uuid.UUID]:
    try:
        value = signing.TimestampSigner(salt=FILE_SALT).unsign(token, max_age=max_age_seconds)
        attachment, _, visitor = value.partition(":")
        return int(attachment), uuid.UUID(hex=visitor)
    except (signing.BadSignature, ValueError) as exc:
        raise BadToken("the file link is not valid or has expired") from exc
