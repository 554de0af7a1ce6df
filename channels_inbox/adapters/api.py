"""The API channel: any system of the customer's posts messages in and receives replies.

Inbound: `POST /webhooks/api/<inbox-uuid>/` with a JSON body, signed as
`X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the raw body under the inbox's
signing secret>`. Outbound: each agent reply is POSTed to the inbox's `callback_url`,
signed the same way. See docs/ingest.md for the full contract.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_inbox.adapters import register
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelAdapter,
    DeliveryError,
    IdentityRef,
    InboundAttachment,
    InboundMessage,
    InboundSender,
    RawItem,
    SendResult,
    SignatureError,
    WebhookRequest,
)
from customers.models import IdentityKind
from customers.normalize import InvalidIdentity, normalize_email, normalize_phone

if TYPE_CHECKING:
    from channels_inbox.models import Inbox, OutboundDelivery

SIGNATURE_HEADER = "X-Switchboard-Signature"
# Signs the download URLs of a callback's attachments (channels_inbox/views/files.py).
ATTACHMENT_URL_SALT = "switchboard.api-callback-attachment"
DELIVERY_HEADER = "X-Switchboard-Delivery"
MAX_ATTACHMENTS = 20


def sign(secret: str, body: bytes) -> str:
    """The signature header value for a body: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _string(obj: Mapping[str, Any], key: str, *, required: bool = False, max_length: int = 255) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadPayload(f"'{key}' is required")
        return ""
    if not isinstance(value, str):
        raise BadPayload(f"'{key}' must be a string")
    # NUL cannot be stored by PostgreSQL and means nothing in text: dropped, not refused.
    value = value.replace("\x00", "")
    value = value.strip() if max_length <= 1000 else value
    if required and not value:
        raise BadPayload(f"'{key}' must not be empty")
    if len(value) > max_length:
        raise BadPayload(f"'{key}' is longer than {max_length} characters")
    return value


@register
class ApiAdapter(ChannelAdapter):
    kind = "api"
    label = "API"
    generated_secrets = ("signing_secret",)
    settings_help = {
        "callback_url": "HTTPS URL that receives agent replies as signed POSTs",
    }

    # --- inbound ---------------------------------------------------------------------------
    def verify(self, inbox: Inbox, request: WebhookRequest) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given.startswith("sha256="):
            raise SignatureError(f"missing or malformed {SIGNATURE_HEADER} header")
        # During a rotation both the new and the previous secret are accepted.
        candidates = [inbox.secret("signing_secret"), inbox.secret("previous_signing_secret")]
        for secret in candidates:
            if secret and hmac.compare_digest(sign(secret, request.body), given):
                return
        raise SignatureError("signature does not match")

    def split(self, inbox: Inbox, request: WebhookRequest) -> list[RawItem]:
        message = self.parse(inbox, request.body, request.headers)
        return [RawItem(dedupe_key=message.external_id, raw=request.body)]

    def parse(self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]) -> InboundMessage:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadPayload(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadPayload("body must be a JSON object")
        external_id = _string(data, "external_id", required=True)
        sender_data = data.get("sender")
        if not isinstance(sender_data, dict):
            raise BadPayload("'sender' must be an object")
        identifier = _string(sender_data, "identifier", required=True)
        identities = [IdentityRef(IdentityKind.EXTERNAL, external_identity(inbox, identifier))]
        try:
            email = _string(sender_data, "email", max_length=320)
            if email:
                identities.append(IdentityRef(IdentityKind.EMAIL, normalize_email(email)))
            phone = _string(sender_data, "phone", max_length=64)
            if phone:
                identities.append(IdentityRef(IdentityKind.PHONE, normalize_phone(phone)))
        except InvalidIdentity as exc:
            raise BadPayload(str(exc)) from exc
        text = _string(data, "text", max_length=100_000)
        html = _string(data, "html", max_length=500_000)
        sent_at = None
        if data.get("sent_at") is not None:
            sent_at = parse_datetime(_string(data, "sent_at")) if isinstance(data["sent_at"], str) else None
            if sent_at is None:
                raise BadPayload("'sent_at' must be an ISO 8601 date-time")
            if timezone.is_naive(sent_at):
                raise BadPayload("'sent_at' must carry a time zone offset")
        attachments = self._attachments(data.get("attachments"))
        if not text and not html and not attachments:
            raise BadPayload("a message needs 'text', 'html' or 'attachments'")
        return InboundMessage(
            external_id=external_id,
            sender=InboundSender(identities=identities, name=_string(sender_data, "name", max_length=200)),
            text=text,
            html=html,
            subject=_string(data, "subject", max_length=300),
            thread_key=_string(data, "thread_key"),
            attachments=attachments,
            sent_at=sent_at,
        )

    def _attachments(self, value: Any) -> list[InboundAttachment]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise BadPayload("'attachments' must be a list")
        if len(value) > MAX_ATTACHMENTS:
            raise BadPayload(f"at most {MAX_ATTACHMENTS} attachments")
        result = []
        for item in value:
            if not isinstance(item, dict):
                raise BadPayload("each attachment must be an object")
            filename = _string(item, "filename", required=True)
            encoded = _string(item, "data", required=True, max_length=settings.WEBHOOK_MAX_BODY_BYTES)
            try:
                content = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadPayload(f"attachment {filename!r}: 'data' is not base64") from exc
            if len(content) > settings.ATTACHMENT_MAX_BYTES:
                raise BadPayload(f"attachment {filename!r} is over {settings.ATTACHMENT_MAX_BYTES} bytes")
            result.append(
                InboundAttachment(
                    filename=filename,
                    content=content,
                    declared_type=_string(item, "content_type", max_length=127),
                )
            )
        return result

    # --- outbound --------------------------------------------------------------------------
    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        prefix = f"{inbox.uuid}:"
        for identity in customer_identities:
            if identity.kind == IdentityKind.EXTERNAL and identity.value.startswith(prefix):
                return identity.value[len(prefix) :]
        return ""

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        url = str(inbox.settings.get("callback_url") or "")
        if not url:
            raise DeliveryError("the inbox has no callback_url", retryable=False)
        message = delivery.message
        body = json.dumps(
            {
                "event": "message.created",
                "delivery_id": delivery.pk,
                "recipient": {"identifier": delivery.recipient},
                "ticket": {"number": message.ticket.number, "thread_key": message.ticket.thread_key},
                "message": {
                    "id": message.pk,
                    "text": message.text,
                    "html": message.html,
                    "created_at": message.created_at.isoformat(),
                    "author": {"name": message.author_agent.display_name if message.author_agent else ""},
                    # Described, never embedded: the callback stays small whatever is attached;
                    # the receiver fetches each file from its signed, expiring URL.
                    "attachments": [
                        {
                            "filename": a.filename,
                            "content_type": a.content_type,
                            "size": a.size,
                            "sha256": a.sha256,
                            "url": attachment_url(a),
                        }
                        for a in message.attachments.order_by("id")
                    ],
                },
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Switchboard/1.0",
            SIGNATURE_HEADER: sign(inbox.secret("signing_secret"), body),
            # Receivers dedupe on this: a delivery may be retried after a lost answer.
            DELIVERY_HEADER: str(delivery.pk),
        }
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=settings.DELIVERY_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"callback unreachable: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise DeliveryError(f"callback answered HTTP {response.status_code}")
        if response.status_code >= 300:
            raise DeliveryError(f"callback refused the message: HTTP {response.status_code}", retryable=False)
        provider_id = ""
        try:
            answer = response.json()
            if isinstance(answer, dict) and isinstance(answer.get("id"), (str, int)):
                provider_id = str(answer["id"])[:255]
        except ValueError:
            pass
        return SendResult(provider_id=provider_id)


def attachment_url(attachment: Any) -> str:
    """The absolute download URL of an outbound attachment: signed, valid for
    API_ATTACHMENT_URL_MAX_AGE_SECONDS, tied to the file's id and sha256."""
    token = signing.TimestampSigner(salt=ATTACHMENT_URL_SALT).sign(f"{attachment.pk}.{attachment.sha256}")
    return settings.SITE_URL + reverse("api_attachment", args=[token])


def read_attachment_token(token: str) -> tuple[int, str]:
    """The (attachment id, sha256) a download URL names; BadSignature (or SignatureExpired) if
    it is forged, altered or too old."""
    value = signing.TimestampSigner(salt=ATTACHMENT_URL_SALT).unsign(
        token, max_age=settings.API_ATTACHMENT_URL_MAX_AGE_SECONDS
    )
    pk, _, digest = value.partition(".")
    if not (pk.isascii() and pk.isdigit() and len(pk) < 19) or len(digest) != 64:
        raise signing.BadSignature("malformed attachment token")
    return int(pk), digest


def external_identity(inbox: Inbox, identifier: str) -> str:
    """An API sender's identity value, namespaced by inbox: two systems' ids never collide."""
    return f"{inbox.uuid}:{identifier}"
