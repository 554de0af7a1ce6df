"""Signed tokens the widget holds: the visitor's own, and links into one conversation.

A visitor token names one ChatVisitor of one inbox and is signed with SECRET_KEY under its
own salt; it carries no expiry (the browser keeps it as long as it keeps its storage), and
it is only ever checked against the inbox it names. A conversation link (sent by email to
a visitor who left) is timestamped and expires.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.core import signing

VISITOR_SALT = "switchboard.chat-visitor"
CONVERSATION_LINK_SALT = "switchboard.chat-conversation-link"
FILE_SALT = "switchboard.chat-file"


class BadToken(Exception):
    """The token is not one we signed, or not for this inbox (→ 401)."""


@dataclass(frozen=True)
class VisitorClaim:
    inbox_token: str
    visitor_id: uuid.UUID


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


def conversation_link_token(conversation_public_id: uuid.UUID) -> str:
    return signing.TimestampSigner(salt=CONVERSATION_LINK_SALT).sign(conversation_public_id.hex)


def read_conversation_link_token(token: str, *, max_age_seconds: int) -> uuid.UUID:
    try:
        value = signing.TimestampSigner(salt=CONVERSATION_LINK_SALT).unsign(token, max_age=max_age_seconds)
        return uuid.UUID(hex=value)
    except (signing.BadSignature, ValueError) as exc:
        raise BadToken("the link is not valid or has expired") from exc


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
