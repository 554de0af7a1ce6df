"""Raw RFC 822 bytes → `ParsedEmail`: the one parser behind IMAP, the MTA pipe and ESP webhooks.

Never raises: whatever the bytes, the result says what could be read, and `error` says
what could not. The raw bytes are never changed or dropped here (the caller stored them).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime


@dataclass
class EmailAddress:
    name: str
    address: str  # the addr-spec as written (not normalized)


@dataclass
class ParsedAttachment:
    filename: str
    content: bytes
    content_type: str
    content_id: str = ""  # without <>
    inline: bool = False


@dataclass
class RecipientReport:
    """One recipient's block of a delivery status notification (RFC 3464)."""

    address: str
    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # e.g. 5.1.1
    diagnostic: str = ""


@dataclass
class DeliveryReport:
    """A `multipart/report`: a bounce (delivery-status), a read receipt, a complaint."""

    report_type: str  # delivery-status, disposition-notification, feedback-report…
    original_message_id: str = ""
    recipients: list[RecipientReport] = field(default_factory=list)


@dataclass
class ParsedEmail:
    message_id: str = ""  # without <>
    in_reply_to: list[str] = field(default_factory=list)  # without <>
    references: list[str] = field(default_factory=list)  # without <>, oldest first
    subject: str = ""
    from_: EmailAddress | None = None
    reply_to: list[EmailAddress] = field(default_factory=list)
    to: list[EmailAddress] = field(default_factory=list)
    cc: list[EmailAddress] = field(default_factory=list)
    # Where it was delivered: Delivered-To, X-Original-To, Envelope-To (addresses only).
    delivered_to: list[str] = field(default_factory=list)
    # None: no Return-Path header; "": the null sender (<>).
    return_path: str | None = None
    date: datetime | None = None
    text: str = ""
    html: str = ""
    # The new part of a reply, without the quoted history and the signature.
    visible_text: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    # Why the mail is machine-made ("" for a person's mail), e.g. "Auto-Submitted: auto-replied".
    automatic: str = ""
    report: DeliveryReport | None = None
    # Headers worth keeping with the message (decoded), e.g. List-Id, Auto-Submitted.
    headers: dict[str, str] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    # Set when the message could not be read (the raw bytes are kept by the caller).
    error: str = ""
    sha256: str = ""


_ID = re.compile(r"<([^<>\s]{1,250})>")


def _ids(value: str) -> list[str]:
    found = _ID.findall(value or "")
    if not found and value and value.strip() and " " not in value.strip():
        found = [value.strip().strip("<>")]
    return found


def _header(msg: Message, name: str) -> str:
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        return str(make_header(decode_header(str(raw)))).strip()
    except Exception:  # noqa: BLE001 - an undecodable header is kept as written
        return str(raw).strip()


def _addresses(msg: Message, name: str) -> list[EmailAddress]:
    values = [str(v) for v in msg.get_all(name, [])]
    result = []
    for display, addr in getaddresses(values):
        if addr and "@" in addr:
            with contextlib.suppress(Exception):  # a broken display name is only cosmetic
                display = str(make_header(decode_header(display)))
            result.append(EmailAddress(name=display.strip(), address=addr.strip()))
    return result


def _decode(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse raw mail; never raises."""
    result = ParsedEmail(sha256=hashlib.sha256(raw).hexdigest())
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        result.message_id = next(iter(_ids(_header(msg, "Message-ID"))), "")
        result.in_reply_to = _ids(_header(msg, "In-Reply-To"))
        result.references = _ids(_header(msg, "References"))
        result.subject = _header(msg, "Subject")
        senders = _addresses(msg, "From")
        result.from_ = senders[0] if senders else None
        result.reply_to = _addresses(msg, "Reply-To")
        result.to = _addresses(msg, "To")
        result.cc = _addresses(msg, "Cc")
        date = _header(msg, "Date")
        if date:
            try:
                result.date = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                result.date = None
        for part in msg.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
            filename = part.get_filename()
            if ctype == "text/plain" and not filename and disposition != "attachment" and not result.text:
                result.text = _decode(part)
            elif ctype == "text/html" and not filename and disposition != "attachment" and not result.html:
                result.html = _decode(part)
            else:
                content = part.get_payload(decode=True)
                if isinstance(content, bytes):
                    result.attachments.append(
                        ParsedAttachment(
                            filename=str(filename or "attachment"),
                            content=content,
                            content_type=ctype,
                            content_id=(part.get("Content-ID") or "").strip().strip("<>"),
                            inline=disposition == "inline",
                        )
                    )
        result.visible_text = result.text
    except Exception as exc:  # noqa: BLE001 - the boundary: a mail that cannot be read is kept raw
        result.error = f"{exc.__class__.__name__}: {exc}"
    return result
