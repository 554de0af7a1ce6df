"""Receiving raw email (an MTA pipe, an ESP webhook): store the bytes durably, then process.

IMAP polling stores its own way (with the folder's UID in the same transaction, see
actions/mailbox.py) but through the same `store_email` and the same processing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_inbox.actions.receive import insert_inbound_event
from channels_inbox.adapters.base import BadPayload, PayloadTooLarge
from channels_inbox.models import InboundEvent, Inbox


@dataclass
class EmailReceipt:
    event_id: int
    stored: bool  # False: a redelivery of a mail already stored


def strip_mbox_line(raw: bytes) -> bytes:
    """Drop the mbox `From sender date` line some MTAs put before the headers of a piped mail."""
    if raw.startswith(b"From "):
        _, _, rest = raw.partition(b"\n")
        return rest
    return raw


def email_dedupe_key(raw: bytes) -> str:
    """`mid:<Message-ID>`, or `sha256:<hash of the bytes>` for mail without one (or a silly one)."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:262_144])
        message_id = str(headers.get("Message-ID") or "").strip().strip("<>").strip()
    except Exception:  # noqa: BLE001 - any header we cannot read means: key by content
        message_id = ""
    if message_id and len(message_id) <= 240 and message_id.isprintable() and " " not in message_id:
        return f"mid:{message_id}"
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def content_digest(raw: bytes) -> str:
    """A hash of what a mail says (sender, subject, bodies, attachments), not of its bytes.

    Equal for copies of one mail however they were relayed or re-encoded (more Received
    lines, another MIME boundary from an ESP that rebuilt the message), different for
    another mail that reuses the Message-ID.
    """
    from channels_inbox.email.parse import parse_email

    mail = parse_email(raw)
    digest = hashlib.sha256()
    sender = mail.from_.address.lower() if mail.from_ else ""
    for part in (sender, mail.subject, mail.text.replace("\r\n", "\n").strip(), mail.html.strip()):
        digest.update(part.encode("utf-8", "replace") + b"\x00")
    for attachment in mail.attachments:
        digest.update(hashlib.sha256(attachment.content).digest())
    return digest.hexdigest()


def check_email_bytes(raw: bytes) -> None:
    if not raw.strip():
        raise BadPayload("empty message")
    if len(raw) > settings.EMAIL_MAX_BYTES:
        raise PayloadTooLarge(f"message of {len(raw)} bytes is over EMAIL_MAX_BYTES ({settings.EMAIL_MAX_BYTES})")


def store_email(
    inbox: Inbox, raw: bytes, *, dedupe_key: str, source: str, extra_headers: Mapping[str, str] | None = None
) -> EmailReceipt:
    """Store one raw mail as an InboundEvent (inside the caller's transaction); process after commit.

    `extra_headers`: facts from the way in that the raw bytes do not carry (an ESP's
    envelope recipient, spam score…), kept in the event's headers for the parser.
    """
    from channels_inbox.tasks import process_inbound
    from helpdesk.sideeffects import enqueue

    headers = {**(extra_headers or {}), "content-type": "message/rfc822", "source": source[:100]}
    event_id, created = insert_inbound_event(
        inbox, dedupe_key=dedupe_key, payload=raw, headers=headers, due=timezone.now()
    )
    if not created and dedupe_key.startswith("mid:"):
        # The same Message-ID is a redelivery (the same mail, perhaps with more Received
        # lines or rebuilt by an ESP) or another mail reusing the id (broken mailers, forms).
        # That one is kept as a mail of its own, its id marked as a variant, never dropped.
        stored = InboundEvent.objects.filter(pk=event_id).values_list("payload", flat=True).get()
        digest = content_digest(raw)
        if content_digest(bytes(stored)) != digest:
            event_id, created = insert_inbound_event(
                inbox,
                dedupe_key=f"{dedupe_key[:220]}#{digest[:16]}",
                payload=raw,
                headers={**headers, "message-id-variant": digest[:16]},
                due=timezone.now(),
            )
    if created:
        enqueue(process_inbound, event_id)
    return EmailReceipt(event_id=event_id, stored=created)


def do_receive_email(inbox: Inbox, raw: bytes, *, source: str, dedupe_key: str = "") -> EmailReceipt:
    """Store a raw mail for an email inbox. Raises BadPayload / PayloadTooLarge (nothing stored)."""
    if inbox.kind != "email":
        raise BadPayload(f"inbox {inbox.slug} is a {inbox.kind} inbox, not an email inbox")
    check_email_bytes(raw)
    with transaction.atomic():
        return store_email(inbox, raw, dedupe_key=dedupe_key or email_dedupe_key(raw), source=source)
