"""Twilio Messaging: SMS/MMS (`twilio_sms`) and WhatsApp through Twilio (`twilio_whatsapp`).

Inbound messages and status callbacks arrive at the same webhook URL as signed form POSTs
(channel-specs §1.1–1.3). Inbound messages are deduped on MessageSid, status callbacks on
(MessageSid, MessageStatus). Outbound goes through Twilio's REST client (twilio_common), with
this inbox's webhook URL as the per-message StatusCallback. See docs/channels.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from channels_inbox.adapters import register
from channels_inbox.adapters.api import attachment_url
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelAdapter,
    DeliveryError,
    DeliveryStatusUpdate,
    IdentityRef,
    InboundAttachment,
    InboundMessage,
    InboundSender,
    RawItem,
    ReplyWindow,
    SendResult,
    WebhookReply,
    WebhookRequest,
    WindowOption,
)
from channels_inbox.media import MediaTooLarge, fetch_media
from channels_inbox.twilio_common import (
    form_params,
    twilio_client,
    twilio_error,
    verify_twilio_signature,
)
from customers.models import IdentityKind
from customers.normalize import InvalidIdentity, normalize_phone

if TYPE_CHECKING:
    from channels_inbox.models import Inbox, OutboundDelivery
    from helpdesk.models import Ticket

SMS_MAX_CHARS = 1600
MMS_MAX_MEDIA = 10
MMS_MAX_BYTES = 5 * 1024 * 1024
MAX_INBOUND_MEDIA = 10
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})
# Twilio status → ours; the early states change nothing (a delivery starts queued).
STATUS_MAP = {
    "queued": "queued",
    "accepted": "queued",
    "scheduled": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "partially_delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
# The GSM 03.38 basic character set (+ extension table, which counts two).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> tuple[str, int]:
    """(encoding, segments) of one SMS body: GSM-7 160/153 characters, else UCS-2 70/67."""
    if all(c in GSM7_BASIC or c in GSM7_EXT for c in text):
        units = sum(2 if c in GSM7_EXT else 1 for c in text)
        return "GSM-7", 1 if units <= 160 else math.ceil(units / 153)
    # UCS-2 counts UTF-16 code units (an emoji is two).
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else math.ceil(units / 67)


def split_body(text: str, limit: int = SMS_MAX_CHARS) -> list[str]:
    """Parts of at most `limit` characters, cut at whitespace where there is any."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        cut = max(cut, rest.rfind("\n", 0, limit + 1))
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _one(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name) or [""]
    return values[0].replace("\x00", "")


class TwilioMessagingAdapter(ChannelAdapter):
    """What SMS and WhatsApp through Twilio share."""

    whatsapp: ClassVar[bool] = False
    # Twilio's webhook forms are small (a message, its media URLs).
    max_body_bytes: ClassVar[int | None] = 64 * 1024
    secret_settings = ("auth_token", "api_key_sid", "api_key_secret")
    required_secrets = ("auth_token",)
    required_settings = ("account_sid",)
    settings_help: ClassVar[dict[str, str]] = {
        "account_sid": "Twilio Account SID (AC…)",
        "from_number": "The sending number in E.164 (+14155550100); or set messaging_service_sid",
        "messaging_service_sid": "Messaging Service SID (MG…) to send from, instead of from_number",
        "default_region": "Region for national numbers (e.g. GB)",
        "auth_token": "Auth Token (verifies webhooks; sends when no API key is set)",
        "api_key_sid": "API key SID (SK…) for sending and media (optional)",
        "api_key_secret": "API key secret (optional)",
    }

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        sid = str(values.get("account_sid") or "")
        if not sid.startswith("AC"):
            raise ValueError("account_sid must start with AC")
        if not values.get("from_number") and not values.get("messaging_service_sid"):
            raise ValueError("set from_number or messaging_service_sid")
        if values.get("from_number"):
            try:
                values["from_number"] = normalize_phone(str(values["from_number"]), values.get("default_region"))
            except InvalidIdentity as exc:
                raise ValueError(f"from_number: {exc}") from exc
        if values.get("api_key_sid") and not values.get("api_key_secret"):
            raise ValueError("api_key_sid needs api_key_secret")
        return values

    # --- inbound ---------------------------------------------------------------------------
    def verify(self, inbox: Inbox, request: WebhookRequest) -> None:
        # Form and JSON (bodySHA256) bodies, every value of a repeated key signed.
        verify_twilio_signature(inbox.secret("auth_token"), request)

    def _params(self, raw: bytes) -> dict[str, list[str]]:
        text = raw.decode("utf-8", "replace").lstrip()
        if text.startswith("{"):
            try:
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadPayload(f"body is not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise BadPayload("body must be a JSON object")
            return {str(k): [str(v)] for k, v in data.items() if isinstance(v, str | int | float)}
        return form_params(raw)

    def split(self, inbox: Inbox, request: WebhookRequest) -> list[RawItem]:
        params = self._params(request.body)
        sid = _one(params, "MessageSid") or _one(params, "SmsSid")
        if not SID.fullmatch(sid):
            raise BadPayload("MessageSid is missing or malformed")
        account = _one(params, "AccountSid")
        if account and account != inbox.settings.get("account_sid"):
            raise BadPayload("AccountSid is not this inbox's account")
        status = _one(params, "MessageStatus") or _one(params, "SmsStatus")
        if status and status != "received":
            if status not in STATUS_MAP:
                raise BadPayload(f"unknown MessageStatus {status[:40]!r}")
            return [RawItem(dedupe_key=f"status:{sid}:{status}", raw=request.body)]
        self._sender(inbox, params)  # refuses a missing or impossible From now, not later
        num = _one(params, "NumMedia") or "0"
        if not num.isdigit() or int(num) > MAX_INBOUND_MEDIA:
            raise BadPayload("NumMedia must be 0–10")
        return [RawItem(dedupe_key=sid, raw=request.body)]

    def _sender(self, inbox: Inbox, params: Mapping[str, list[str]]) -> str:
        raw_from = _one(params, "From")
        if not raw_from:
            raise BadPayload("From is missing")
        try:
            return normalize_phone(raw_from, inbox.settings.get("default_region") or None)
        except InvalidIdentity as exc:
            raise BadPayload(str(exc)) from exc

    def parse(
        self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]
    ) -> InboundMessage | DeliveryStatusUpdate | None:
        params = self._params(raw)
        sid = _one(params, "MessageSid") or _one(params, "SmsSid")
        status = _one(params, "MessageStatus") or _one(params, "SmsStatus")
        if status and status != "received":
            ours = STATUS_MAP.get(status)
            if ours is None or ours == "queued":
                return None
            code = _one(params, "ErrorCode")
            error = f"Twilio {status}" + (f", error {code}" if code else "") if ours == "failed" else ""
            return DeliveryStatusUpdate(provider_id=sid, status=ours, error=error, occurred_at=timezone.now())
        phone = self._sender(inbox, params)
        identities = [IdentityRef(IdentityKind.PHONE, phone)]
        name = _one(params, "ProfileName")[:200] if self.whatsapp else ""
        text = _one(params, "Body")
        metadata: dict[str, Any] = {}
        extras: dict[str, Any] = {"from": phone}
        if self.whatsapp:
            wa_id = _one(params, "WaId")
            if wa_id:
                extras["wa_id"] = wa_id[:64]
            replied = _one(params, "OriginalRepliedMessageSid")
            if replied:
                metadata["reply_to"] = {"external_id": replied[:64]}
        if _one(params, "ButtonPayload"):
            extras["button_payload"] = _one(params, "ButtonPayload")[:256]
        kind = _one(params, "MessageType").lower()
        attachments, skipped = self._media(inbox, params)
        if kind == "location" or (_one(params, "Latitude") and _one(params, "Longitude")):
            lat, lon = _one(params, "Latitude")[:32], _one(params, "Longitude")[:32]
            label = _one(params, "Address") or _one(params, "Label")
            text = f"Location: {lat}, {lon}" + (f" ({label[:200]})" if label else "")
            extras["location"] = {"latitude": lat, "longitude": lon}
        elif kind and kind not in ("text", "image", "video", "audio", "document", "sticker", "media", "button"):
            metadata["unsupported"] = {"type": kind[:40]}
        elif not text and not attachments and not skipped:
            metadata["unsupported"] = {"type": kind or "empty"}
        if skipped:
            metadata["media_skipped"] = skipped
        metadata[inbox.kind] = extras
        return InboundMessage(
            external_id=sid,
            sender=InboundSender(identities=identities, name=name),
            text=text,
            thread_key=f"{inbox.kind}:{phone}",
            attachments=attachments,
            metadata=metadata,
        )

    def _media(
        self, inbox: Inbox, params: Mapping[str, list[str]]
    ) -> tuple[list[InboundAttachment], list[dict[str, str]]]:
        num = _one(params, "NumMedia")
        count = min(int(num), MAX_INBOUND_MEDIA) if num.isdigit() else 0
        attachments: list[InboundAttachment] = []
        skipped: list[dict[str, str]] = []
        auth = self._auth(inbox)
        for i in range(count):
            url = _one(params, f"MediaUrl{i}")
            declared = _one(params, f"MediaContentType{i}")[:127]
            if not url:
                continue
            try:
                media = fetch_media(url, auth=auth)
            except MediaTooLarge as exc:
                skipped.append({"type": declared, "reason": f"too large ({exc})"})
                continue
            content_type = declared or media.content_type
            extension = content_type.rpartition("/")[2].split(";")[0][:10] or "bin"
            attachments.append(
                InboundAttachment(
                    filename=f"media-{i + 1}.{extension}", content=media.content, declared_type=content_type
                )
            )
        return attachments, skipped

    def _auth(self, inbox: Inbox) -> tuple[str, str]:
        key, secret = inbox.secret("api_key_sid"), inbox.secret("api_key_secret")
        if key and secret:
            return key, secret
        return str(inbox.settings.get("account_sid") or ""), inbox.secret("auth_token")

    def webhook_reply(self, inbox: Inbox, request: WebhookRequest, stored: int, duplicates: int) -> WebhookReply:
        # An empty TwiML answer: no automatic reply from Twilio's side.
        return WebhookReply(
            content_type="text/xml; charset=utf-8",
            body=b'<?xml version="1.0" encoding="UTF-8"?><Response/>',
        )

    # --- outbound --------------------------------------------------------------------------
    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        for identity in customer_identities:
            if identity.kind == IdentityKind.PHONE:
                return identity.value
        return ""

    def webhook_url(self, inbox: Inbox) -> str:
        return settings.SITE_URL + reverse("webhook", args=[inbox.kind, str(inbox.uuid)])

    def _client(self, inbox: Inbox) -> Any:
        return twilio_client(
            str(inbox.settings.get("account_sid") or ""),
            auth_token=inbox.secret("auth_token"),
            api_key=inbox.secret("api_key_sid"),
            api_secret=inbox.secret("api_key_secret"),
        )

    def _address(self, number: str) -> str:
        return f"whatsapp:{number}" if self.whatsapp else number

    def _create(self, inbox: Inbox, delivery: OutboundDelivery, **fields: Any) -> str:
        sender: dict[str, str] = {}
        if inbox.settings.get("messaging_service_sid"):
            sender["messaging_service_sid"] = str(inbox.settings["messaging_service_sid"])
        else:
            sender["from_"] = self._address(str(inbox.settings.get("from_number") or ""))
        try:
            message = self._client(inbox).messages.create(
                to=self._address(delivery.recipient),
                status_callback=self.webhook_url(inbox),
                **sender,
                **fields,
            )
        except Exception as exc:
            raise twilio_error(exc, "Twilio send") from exc
        return str(message.sid or "")

    def _media_urls(self, delivery: OutboundDelivery) -> list[str]:
        attachments = list(delivery.message.attachments.order_by("id"))
        if len(attachments) > MMS_MAX_MEDIA:
            raise DeliveryError(
                f"at most {MMS_MAX_MEDIA} files per message ({len(attachments)} attached)", retryable=False
            )
        total = sum(a.size for a in attachments)
        if total > MMS_MAX_BYTES:
            raise DeliveryError(
                f"the files total {total} bytes; Twilio accepts at most {MMS_MAX_BYTES} (5 MB) per message",
                retryable=False,
            )
        return [attachment_url(a) for a in attachments]


@register
class TwilioSmsAdapter(TwilioMessagingAdapter):
    kind = "twilio_sms"
    label = "SMS (Twilio)"

    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        from customers.actions.opt_out import is_phone_opted_out

        for identity in customer_identities:
            if identity.kind == IdentityKind.PHONE and not is_phone_opted_out(identity.value):
                return identity.value
        return ""

    def after_ingest(self, inbox: Inbox, results: list[Any]) -> None:
        """STOP and START (the whole body, any case) set or clear the number's opt-out."""
        from customers.actions.opt_out import do_set_phone_opt_out

        for result in results:
            message = getattr(result, "message", None)
            if message is None or getattr(result, "duplicate", False) or message.author_customer_id is None:
                continue
            word = message.text.strip().upper()
            if word not in OPT_OUT_WORDS and word not in OPT_IN_WORDS:
                continue
            phone = (message.metadata.get(self.kind) or {}).get("from", "")
            if phone:
                do_set_phone_opt_out(
                    message.author_customer_id, phone, opted_out=word in OPT_OUT_WORDS, at=timezone.now()
                )

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        from customers.actions.opt_out import is_phone_opted_out

        if is_phone_opted_out(delivery.recipient):
            raise DeliveryError(
                f"{delivery.recipient} has opted out of SMS (texted STOP); they must text START first",
                retryable=False,
            )
        media = self._media_urls(delivery)
        parts = split_body(delivery.message.text) or [""]
        if len(parts) > settings.TWILIO_SMS_MAX_PARTS:
            raise DeliveryError(
                f"the reply needs {len(parts)} SMS of up to {SMS_MAX_CHARS} characters; "
                f"at most {settings.TWILIO_SMS_MAX_PARTS} are sent (TWILIO_SMS_MAX_PARTS): shorten it",
                retryable=False,
            )
        # Twilio's answer ids: the first part's is the delivery's (status callbacks follow it).
        ids: list[str] = []
        for index, part in enumerate(parts):
            fields: dict[str, Any] = {"body": part}
            if media and index == 0:
                fields["media_url"] = media
            ids.append(self._create(inbox, delivery, **fields))
        _record_sms_metadata(delivery, parts, ids)
        return SendResult(provider_id=ids[0])


@register
class TwilioWhatsAppAdapter(TwilioMessagingAdapter):
    kind = "twilio_whatsapp"
    label = "WhatsApp (Twilio)"
    whatsapp = True
    settings_help: ClassVar[dict[str, str]] = {
        **TwilioMessagingAdapter.settings_help,
        "templates": "Approved Content templates: [{content_sid, name, language, body, params}]",
    }

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        templates = values.get("templates") or []
        if isinstance(templates, str):
            try:
                templates = json.loads(templates)
            except json.JSONDecodeError as exc:
                raise ValueError(f"templates is not JSON: {exc}") from exc
        if not isinstance(templates, list) or not all(
            isinstance(t, dict) and str(t.get("content_sid") or "").startswith("HX") for t in templates
        ):
            raise ValueError("templates must be a list of {content_sid: 'HX…', name, language, body, params}")
        values["templates"] = templates
        return values

    def _templates(self, inbox: Inbox) -> list[dict[str, Any]]:
        templates = inbox.settings.get("templates") or []
        return [t for t in templates if isinstance(t, dict) and t.get("content_sid")]

    def reply_window(self, inbox: Inbox, ticket: Ticket) -> ReplyWindow:
        from channels_inbox.window import is_open, window_closes_at

        closes_at = window_closes_at(inbox, ticket, hours=24)
        options = tuple(
            WindowOption(
                kind="template",
                name=str(t["content_sid"]),
                label=str(t.get("name") or t["content_sid"]),
                language=str(t.get("language") or ""),
                body=str(t.get("body") or ""),
                params=int(t.get("params") or 0),
            )
            for t in self._templates(inbox)
        )
        if is_open(closes_at):
            return ReplyWindow(open=True, closes_at=closes_at, options=options)
        reason = (
            "The customer has not written on WhatsApp in the last 24 hours: only an approved template may be sent."
            if closes_at
            else "The customer has never written to this WhatsApp number: only an approved template may be sent."
        )
        return ReplyWindow(open=False, closes_at=closes_at, reason=reason, options=options)

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        message = delivery.message
        template = message.metadata.get("template") if isinstance(message.metadata, dict) else None
        if isinstance(template, dict) and template.get("name"):
            known = {str(t["content_sid"]) for t in self._templates(inbox)}
            name = str(template["name"])
            if name not in known:
                raise DeliveryError(f"template {name!r} is not configured on this inbox", retryable=False)
            params = template.get("params") or []
            variables = {str(i + 1): str(v) for i, v in enumerate(params)}
            sid = self._create(inbox, delivery, content_sid=name, content_variables=json.dumps(variables))
            return SendResult(provider_id=sid)
        window = self.reply_window(inbox, message.ticket)
        if not window.open:
            raise DeliveryError(f"outside the 24-hour WhatsApp window: {window.reason}", retryable=False)
        fields: dict[str, Any] = {"body": message.text}
        media = self._media_urls(delivery)
        if media:
            fields["media_url"] = media
        return SendResult(provider_id=self._create(inbox, delivery, **fields))


def _record_sms_metadata(delivery: OutboundDelivery, parts: list[str], ids: list[str]) -> None:
    """Segments per part for the agent (what the customer's carrier bills)."""
    from helpdesk.models import Message

    info = []
    for part, sid in zip(parts, ids, strict=True):
        encoding, segments = sms_segments(part)
        info.append({"sid": sid, "chars": len(part), "encoding": encoding, "segments": segments})
    metadata = dict(delivery.message.metadata or {})
    metadata["twilio_sms"] = {"parts": info, "segments": sum(p["segments"] for p in info)}
    Message.objects.filter(pk=delivery.message_id).update(metadata=metadata)
