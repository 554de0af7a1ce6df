"""The web form channel: a customer fills the help center's form, agents answer by email.

Inbound: `/help/<inbox-slug>/new/` (knowledge_base/views.py) validates the form and stores the
submission with `do_receive_web_form` (channels_inbox/actions/receive_web_form.py) as an
InboundEvent whose payload is our own JSON (`web_form_payload`), keyed by the form's
per-render nonce: a double submit or a browser retry finds the stored one. Attachments travel
inside that payload, base64, within the reply limits (ATTACHMENT_MAX_BYTES per file,
REPLY_ATTACHMENTS_MAX_FILES / _TOTAL_BYTES in all): the event is then self-contained, like
every other channel's raw payload, and can be replayed after a failure.

`parse` turns it into an InboundMessage from the customer's email identity; every
submission is a new request (thread_by_customer False).

Outbound: there is no web channel to answer on. `send` hands the delivery to the email
inbox named by the `reply_email_inbox` setting, which sends it exactly like an email
ticket's reply: from its address, with the subject token `[#N]` and its signed reply
address, so the customer's email answer lands on this ticket (helpdesk/actions/ingest.py
looks up named tickets in every inbox). See docs/channels.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.utils.dateparse import parse_datetime

from channels_inbox.adapters import get_adapter, register
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelAdapter,
    DeliveryError,
    IdentityRef,
    InboundAttachment,
    InboundMessage,
    InboundSender,
    SendResult,
)
from customers.models import IdentityKind
from customers.normalize import InvalidIdentity, normalize_email

if TYPE_CHECKING:
    from channels_inbox.models import Inbox, OutboundDelivery

PAYLOAD_VERSION = 1
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
MAX_TITLE_CHARS = 200
MAX_INTRO_CHARS = 2000


def dedupe_key(nonce: str) -> str:
    return f"web_form:{nonce}"


def setting_flag(inbox: Inbox, name: str, default: bool) -> bool:
    value = (inbox.settings or {}).get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def web_form_payload(
    *,
    nonce: str,
    name: str,
    email: str,
    subject: str,
    message: str,
    attachments: list[tuple[str, str, bytes]],
    submitted_at: str,
) -> bytes:
    """The stored form of one submission (an InboundEvent's payload). `attachments`:
    (filename, content type, content)."""
    body = {
        "v": PAYLOAD_VERSION,
        "nonce": nonce,
        "name": name,
        "email": email,
        "subject": subject,
        "message": message,
        "attachments": [
            {"filename": filename, "content_type": content_type, "data": base64.b64encode(content).decode("ascii")}
            for filename, content_type, content in attachments
        ],
        "submitted_at": submitted_at,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise BadPayload(f"web form payload: {key!r} must be a string")
    return value.replace("\x00", "")


@register
class WebFormAdapter(ChannelAdapter):
    kind = "web_form"
    label = "Web form"
    # Submissions come through the help center's form (/help/<slug>/new/), never the webhook door.
    accepts_webhooks = False
    settings_help = {
        "reply_email_inbox": "slug of an email inbox: agents' replies go out by email through it (required)",
        "title": "the form's heading (default: 'Contact support')",
        "intro": "text above the form",
        "require_subject": "true or false (default): the subject field must be filled",
        "allow_attachments": "true (default) or false: the customer may attach files",
    }
    required_settings = ("reply_email_inbox",)

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        from channels_inbox.models import Inbox

        slug = str(values.get("reply_email_inbox") or "").strip()
        if not Inbox.objects.filter(slug=slug, kind="email").exists():
            raise ValueError(f"reply_email_inbox: no email inbox {slug!r}")
        values["reply_email_inbox"] = slug
        for name, limit in (("title", MAX_TITLE_CHARS), ("intro", MAX_INTRO_CHARS)):
            if values.get(name) is not None and (not isinstance(values[name], str) or len(values[name]) > limit):
                raise ValueError(f"{name} must be text of at most {limit} characters")
        for name in ("require_subject", "allow_attachments"):
            raw = values.get(name)
            if raw is None:
                continue
            if not isinstance(raw, bool) and str(raw).strip().lower() not in _TRUE | _FALSE:
                raise ValueError(f"{name} must be true or false")
            values[name] = raw if isinstance(raw, bool) else str(raw).strip().lower() in _TRUE
        return values

    # --- inbound ---------------------------------------------------------------------------
    def parse(self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]) -> InboundMessage:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadPayload(f"web form payload is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != PAYLOAD_VERSION:
            raise BadPayload("not a web form payload")
        nonce = _str(data, "nonce")
        if not nonce:
            raise BadPayload("web form payload without a nonce")
        try:
            email = normalize_email(_str(data, "email"))
        except InvalidIdentity as exc:
            raise BadPayload(str(exc)) from exc
        attachments = []
        items = data.get("attachments") or []
        if not isinstance(items, list):
            raise BadPayload("web form payload: 'attachments' must be a list")
        for item in items:
            if not isinstance(item, dict):
                raise BadPayload("web form payload: each attachment must be an object")
            try:
                content = base64.b64decode(_str(item, "data"), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadPayload("web form payload: attachment data is not base64") from exc
            attachments.append(
                InboundAttachment(
                    filename=_str(item, "filename") or "attachment",
                    content=content,
                    declared_type=_str(item, "content_type"),
                )
            )
        submitted = _str(data, "submitted_at")
        return InboundMessage(
            external_id=dedupe_key(nonce),
            sender=InboundSender(identities=[IdentityRef(IdentityKind.EMAIL, email)], name=_str(data, "name")),
            # Plain text as typed: never HTML (the ingest stores it as text, the desk escapes it).
            text=_str(data, "message"),
            subject=_str(data, "subject"),
            attachments=attachments,
            sent_at=parse_datetime(submitted) if submitted else None,
            metadata={"web_form": {"nonce": nonce}},
            # Each submission is a new request, never a follow-up of the customer's last ticket.
            thread_by_customer=False,
        )

    # --- outbound --------------------------------------------------------------------------
    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        for identity in customer_identities:
            if identity.kind == IdentityKind.EMAIL:
                return identity.value
        return ""

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        """By email, through `reply_email_inbox` (its address, reply token and transport)."""
        email_inbox = reply_inbox(inbox)
        if email_inbox is None:
            raise DeliveryError(
                f"web form inbox {inbox.slug}: reply_email_inbox is not an active email inbox", retryable=False
            )
        return get_adapter("email").send(email_inbox, delivery)


def reply_inbox(inbox: Inbox) -> Inbox | None:
    """The active email inbox a web form inbox answers through (None: not configured/inactive)."""
    from channels_inbox.models import Inbox

    slug = str((inbox.settings or {}).get("reply_email_inbox") or "")
    if not slug:
        return None
    return Inbox.objects.filter(slug=slug, kind="email", is_active=True).first()
