"""Meta's messaging channels: WhatsApp Cloud API, Messenger and Instagram.

All three share Meta's webhook mechanics: a GET handshake (`hub.mode=subscribe`,
`hub.verify_token`, `hub.challenge`), and POSTs signed with
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>` (the raw bytes as sent:
Meta escapes non-ASCII as \\uXXXX, so re-serialised JSON would not match). One POST may carry
several entries, each several changes / messaging events: each becomes one stored item.

Sending goes through the Graph API with the inbox's access token. Free-form replies are allowed
within 24 h of the customer's last message; outside it WhatsApp allows approved templates only,
Messenger and Instagram the HUMAN_AGENT tag up to 7 days.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from django.conf import settings

from channels_inbox.adapters import register
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelAdapter,
    ChannelEvent,
    DeliveryError,
    DeliveryStatusUpdate,
    IdentityRef,
    InboundAttachment,
    InboundMessage,
    InboundSender,
    RawItem,
    ReplyWindow,
    SendResult,
    SignatureError,
    WebhookReply,
    WebhookRequest,
    WindowOption,
)
from customers.models import IdentityKind
from customers.normalize import InvalidIdentity, normalize_phone

if TYPE_CHECKING:
    from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery
    from helpdesk.models import Ticket

GRAPH = "https://graph.facebook.com"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY_BYTES = 3 * 1024 * 1024
WHATSAPP_TEXT_MAX = 4096
MESSENGER_TEXT_MAX = 2000
WINDOW_HOURS = 24
HUMAN_AGENT_HOURS = 24 * 7
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
STATUSES = ("sent", "delivered", "read", "failed")
MEDIA_EXTENSIONS = {"image": "jpg", "audio": "ogg", "video": "mp4", "document": "bin", "sticker": "webp"}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadPayload(f"body is not JSON: {exc}") from exc


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadPayload(f"'{what}' must be a list")
    return value


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadPayload(f"'{what}' must be an object")
    return value


def _str(value: Any) -> str:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value).replace("\x00", "")
    return ""


def _seconds(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _ago(closes: datetime | None, hours: float) -> str:
    if closes is None:
        return "the customer has not written to this inbox yet"
    from django.utils import timezone
    from django.utils.timesince import timesince

    last = closes - timedelta(hours=hours)
    return f"the customer last wrote {timesince(last, timezone.now())} ago"


class MetaAdapter(ChannelAdapter):
    """What the three Meta channels share: handshake, signature, Graph calls."""

    generated_secrets = ("verify_token",)
    secret_settings = ("app_secret", "access_token")
    required_secrets = ("app_secret", "access_token")
    max_body_bytes = MAX_BODY_BYTES
    own_id_setting: ClassVar[str] = ""

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        own = values.get(self.own_id_setting)
        if own is not None:
            values[self.own_id_setting] = str(own).strip()
        version = values.get("graph_version")
        if version is not None and (not isinstance(version, str) or not version.strip().startswith("v")):
            raise ValueError("graph_version must look like v21.0")
        return values

    def graph_url(self, inbox: Inbox, path: str) -> str:
        version = str(inbox.settings.get("graph_version") or settings.META_GRAPH_VERSION)
        return f"{GRAPH}/{version}/{path}"

    def bearer(self, inbox: Inbox) -> dict[str, str]:
        return {"Authorization": f"Bearer {inbox.secret('access_token')}"}

    # --- inbound ---------------------------------------------------------------------------
    def handshake(self, inbox: Inbox, request: WebhookRequest) -> WebhookReply | None:
        mode = request.query.get("hub.mode", "")
        token = request.query.get("hub.verify_token", "")
        ours = inbox.secret("verify_token")
        if mode == "subscribe" and ours and hmac.compare_digest(token.encode(), ours.encode()):
            return WebhookReply(200, "text/plain; charset=utf-8", request.query.get("hub.challenge", "").encode())
        return WebhookReply(403, "text/plain; charset=utf-8", b"forbidden")

    def verify(self, inbox: Inbox, request: WebhookRequest) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given.startswith("sha256="):
            raise SignatureError(f"missing or malformed {SIGNATURE_HEADER} header")
        secret = inbox.secret("app_secret")
        if not secret:
            raise SignatureError("the inbox has no app_secret")
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise SignatureError("signature does not match")

    def post_graph(self, inbox: Inbox, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        from channels_inbox.media import http_client, provider_error

        try:
            with http_client() as http:
                response = http.post(self.graph_url(inbox, path), json=body, headers=self.bearer(inbox))
        except httpx.HTTPError as exc:
            raise provider_error(exc, what) from exc
        if not response.is_success:
            raise provider_error(response, what)
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}


def _skipped(metadata: dict[str, Any], kind: str, reason: str) -> None:
    metadata.setdefault("media_skipped", []).append({"type": kind, "reason": reason[:300]})


# --- WhatsApp Cloud API ---------------------------------------------------------------------
@register
class WhatsAppAdapter(MetaAdapter):
    kind = "whatsapp"
    label = "WhatsApp (Cloud API)"
    own_id_setting = "phone_number_id"
    settings_help = {
        "phone_number_id": "The WhatsApp Business phone number id (Meta App Dashboard → WhatsApp → API setup)",
        "graph_version": "Graph API version, e.g. v21.0 (default: META_GRAPH_VERSION)",
        "templates": "Approved message templates: a list of {name, language, body, params}",
    }
    required_settings = ("phone_number_id",)

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        templates = values.get("templates")
        if isinstance(templates, str):
            try:
                templates = json.loads(templates)
            except json.JSONDecodeError as exc:
                raise ValueError(f"templates is not JSON: {exc}") from exc
        if templates is not None:
            if not isinstance(templates, list) or not all(
                isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"] for t in templates
            ):
                raise ValueError("templates must be a list of {name, language, body, params}")
            values["templates"] = templates
        return values

    def split(self, inbox: Inbox, request: WebhookRequest) -> list[RawItem]:
        data = _obj(_json(request.body), "body")
        if data.get("object") != "whatsapp_business_account":
            raise BadPayload("'object' must be 'whatsapp_business_account'")
        ours = str(inbox.settings.get("phone_number_id") or "")
        items: list[RawItem] = []
        for entry in _list(data.get("entry"), "entry"):
            for change in _list(_obj(entry, "entry").get("changes"), "changes"):
                change = _obj(change, "change")
                if change.get("field") != "messages":
                    continue
                value = _obj(change.get("value"), "value")
                metadata = _obj(value.get("metadata"), "metadata")
                if _str(metadata.get("phone_number_id")) != ours:
                    raise BadPayload("metadata.phone_number_id is not this inbox's number")
                contacts = _list(value.get("contacts"), "contacts")
                for message in _list(value.get("messages"), "messages"):
                    message = _obj(message, "message")
                    mid = _str(message.get("id"))
                    if not mid or not (_str(message.get("from")) or _str(message.get("user_id"))):
                        raise BadPayload("a message needs 'id' and 'from' (or 'user_id')")
                    items.append(RawItem(mid[:255], _item("message", message, contacts, metadata)))
                for status in _list(value.get("statuses"), "statuses"):
                    status = _obj(status, "status")
                    sid, state = _str(status.get("id")), _str(status.get("status"))
                    if not sid or not state:
                        raise BadPayload("a status needs 'id' and 'status'")
                    items.append(RawItem(f"status:{sid}:{state}"[:255], _item("status", status, contacts, metadata)))
        return items

    def parse(
        self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]
    ) -> InboundMessage | DeliveryStatusUpdate | ChannelEvent | None:
        data = _obj(_json(raw), "item")
        item = _obj(data.get("item"), "item")
        if data.get("kind") == "status":
            return self._status(item)
        return self._message(inbox, item, _list(data.get("contacts"), "contacts"))

    def _status(self, item: dict[str, Any]) -> DeliveryStatusUpdate | None:
        state = _str(item.get("status"))
        if state not in STATUSES:
            return None  # e.g. "played" for voice: not a delivery state of ours
        error = ""
        errors = item.get("errors")
        if state == "failed" and isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            error = f"{_str(first.get('title')) or _str(first.get('message'))} ({_str(first.get('code'))})"
        return DeliveryStatusUpdate(
            provider_id=_str(item.get("id")), status=state, error=error, occurred_at=_seconds(item.get("timestamp"))
        )

    def _message(self, inbox: Inbox, item: dict[str, Any], contacts: list[Any]) -> InboundMessage | ChannelEvent:
        sender_phone = _str(item.get("from"))
        user_id = _str(item.get("user_id"))
        identities: list[IdentityRef] = []
        if sender_phone:
            try:
                identities.append(IdentityRef(IdentityKind.PHONE, normalize_phone(sender_phone)))
            except InvalidIdentity as exc:
                raise BadPayload(str(exc)) from exc
        if user_id:
            identities.append(IdentityRef(IdentityKind.WHATSAPP, user_id[:255]))
        name = ""
        for contact in contacts:
            if isinstance(contact, dict) and (
                not sender_phone or _str(contact.get("wa_id")) in ("", sender_phone) or len(contacts) == 1
            ):
                profile = contact.get("profile")
                if isinstance(profile, dict):
                    name = _str(profile.get("name"))[:200]
                    break
        kind = _str(item.get("type"))
        metadata: dict[str, Any] = {}
        text = ""
        attachments: list[InboundAttachment] = []
        body = item.get(kind) if kind else None
        body = body if isinstance(body, dict) else {}
        if kind == "reaction":
            return Reaction(_str(body.get("message_id")), _str(body.get("emoji")), _seconds(item.get("timestamp")))
        if kind == "text":
            text = _str(body.get("body"))
        elif kind in MEDIA_TYPES:
            text = _str(body.get("caption"))
            attachment = self._media(inbox, kind, body, metadata)
            if attachment is not None:
                attachments.append(attachment)
        elif kind == "location":
            where = f"{body.get('latitude')}, {body.get('longitude')}"
            label = ", ".join(x for x in (_str(body.get("name")), _str(body.get("address"))) if x)
            text = f"Location: {where}" + (f" ({label})" if label else "")
        elif kind == "interactive":
            reply = body.get("button_reply") or body.get("list_reply")
            if isinstance(reply, dict):
                text = _str(reply.get("title"))
                metadata["whatsapp"] = {"reply_id": _str(reply.get("id"))}
            else:
                metadata["unsupported"] = {"type": f"interactive:{_str(body.get('type'))}"}
        elif kind == "button":
            text = _str(body.get("text"))
            metadata["whatsapp"] = {"payload": _str(body.get("payload"))}
        else:
            metadata["unsupported"] = {"type": kind or "unknown"}
        context = item.get("context")
        if isinstance(context, dict) and _str(context.get("id")):
            metadata["reply_to"] = {"external_id": _str(context.get("id"))}
        if isinstance(item.get("referral"), dict):
            metadata.setdefault("whatsapp", {})["referral"] = item["referral"]
        return InboundMessage(
            external_id=_str(item.get("id"))[:255],
            sender=InboundSender(identities=identities, name=name),
            text=text,
            thread_key=f"wa:{sender_phone or user_id}"[:255],
            attachments=attachments,
            sent_at=_seconds(item.get("timestamp")),
            metadata=metadata,
        )

    def _media(
        self, inbox: Inbox, kind: str, body: dict[str, Any], metadata: dict[str, Any]
    ) -> InboundAttachment | None:
        from channels_inbox.media import MediaTooLarge, MediaUnavailable, fetch_media, http_client

        media_id = _str(body.get("id"))
        filename = _str(body.get("filename"))[:200] or f"{kind}-{media_id or 'file'}.{MEDIA_EXTENSIONS[kind]}"
        if not media_id:
            _skipped(metadata, kind, "no media id")
            return None
        try:
            with http_client() as http:
                response = http.get(self.graph_url(inbox, media_id), headers=self.bearer(inbox))
        except httpx.HTTPError as exc:
            raise MediaUnavailable(f"WhatsApp media lookup failed: {exc.__class__.__name__}", retryable=True) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise MediaUnavailable(f"WhatsApp media lookup: HTTP {response.status_code}", retryable=True)
        try:
            info = response.json() if response.is_success else None
        except ValueError:
            info = None
        if not isinstance(info, dict) or not _str(info.get("url")):
            _skipped(metadata, kind, f"media lookup failed: HTTP {response.status_code}")
            return None
        try:
            media = fetch_media(_str(info["url"]), headers=self.bearer(inbox))
        except MediaTooLarge as exc:
            _skipped(metadata, kind, f"too large: {exc}")
            return None
        except MediaUnavailable as exc:
            if exc.retryable:
                raise
            _skipped(metadata, kind, str(exc))
            return None
        expected = _str(info.get("sha256")) or _str(body.get("sha256"))
        if expected and not hmac.compare_digest(hashlib.sha256(media.content).hexdigest(), expected.lower()):
            _skipped(metadata, kind, "sha256 does not match")
            return None
        declared = _str(info.get("mime_type")) or _str(body.get("mime_type")) or media.content_type
        return InboundAttachment(filename=filename, content=media.content, declared_type=declared.split(";")[0])

    # --- outbound --------------------------------------------------------------------------
    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        for identity in customer_identities:
            if identity.kind == IdentityKind.PHONE:
                return identity.value
        return ""

    def reply_window(self, inbox: Inbox, ticket: Ticket) -> ReplyWindow | None:
        from channels_inbox.window import is_open, window_closes_at

        closes = window_closes_at(inbox, ticket, hours=WINDOW_HOURS)
        templates = [t for t in inbox.settings.get("templates") or [] if isinstance(t, dict) and t.get("name")]
        return ReplyWindow(
            open=is_open(closes),
            closes_at=closes,
            reason=f"WhatsApp allows free-form replies only within 24 hours of the customer's last message; "
            f"{_ago(closes, WINDOW_HOURS)}; only approved templates can be sent now",
            options=tuple(
                WindowOption(
                    "template",
                    str(t["name"]),
                    label=str(t["name"]),
                    language=str(t.get("language", "")),
                    body=str(t.get("body", "")),
                    params=int(t.get("params", 0) or 0),
                )
                for t in templates
            ),
        )

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        from channels_inbox.window import is_open, window_closes_at

        message = delivery.message
        metadata = message.metadata if isinstance(message.metadata, dict) else {}
        template = metadata.get("template")
        to = delivery.recipient.removeprefix("whatsapp:").lstrip("+")
        if not to:
            raise DeliveryError("no WhatsApp number to send to", retryable=False)
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        if isinstance(template, dict) and template.get("name"):
            body["type"] = "template"
            body["template"] = {
                "name": str(template["name"]),
                "language": {"code": str(template.get("language") or "en")},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": str(p)} for p in template.get("params") or []],
                    }
                ],
            }
        else:
            if not is_open(window_closes_at(inbox, message.ticket, hours=WINDOW_HOURS)):
                raise DeliveryError("outside WhatsApp's 24-hour window: send an approved template", retryable=False)
            body["type"] = "text"
            body["text"] = {"body": message.text[:WHATSAPP_TEXT_MAX]}
        phone_number_id = str(inbox.settings.get("phone_number_id") or "")
        answer = self.post_graph(inbox, f"{phone_number_id}/messages", body, "WhatsApp send")
        messages = answer.get("messages")
        provider_id = ""
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            provider_id = _str(messages[0].get("id"))[:255]
        return SendResult(provider_id=provider_id)


def _item(kind: str, item: dict[str, Any], contacts: list[Any], metadata: dict[str, Any]) -> bytes:
    return json.dumps(
        {"kind": kind, "item": item, "contacts": contacts, "metadata": metadata}, separators=(",", ":")
    ).encode()


class Reaction(ChannelEvent):
    """A customer's reaction to a message (an empty emoji removes theirs)."""

    def __init__(self, message_id: str, emoji: str, at: datetime | None) -> None:
        self.message_id, self.emoji, self.at = message_id, emoji, at

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        from django.db import transaction
        from django.utils import timezone

        from helpdesk.events import MessageReacted, append_event
        from helpdesk.models import Message, Ticket

        if not self.message_id:
            return False
        with transaction.atomic():
            found = Message.objects.filter(inbox=inbox, external_id=self.message_id).first()
            if found is None:
                # A reaction to one of our replies: known by its delivery's provider id.
                from channels_inbox.models import OutboundDelivery

                delivery = OutboundDelivery.objects.filter(inbox=inbox, provider_id=self.message_id).first()
                found = delivery.message if delivery is not None else None
            if found is None:
                return False
            ticket = Ticket.objects.select_for_update().get(pk=found.ticket_id)
            message = Message.objects.select_for_update().get(pk=found.pk)
            metadata = dict(message.metadata or {})
            reactions = [r for r in metadata.get("reactions") or [] if r.get("by") != "customer"]
            if self.emoji:
                at = (self.at or timezone.now()).isoformat()
                reactions.append({"emoji": self.emoji, "by": "customer", "at": at})
            metadata["reactions"] = reactions
            message.metadata = metadata
            message.save(update_fields=["metadata"])
            append_event(
                ticket,
                MessageReacted(message_id=message.pk, emoji=self.emoji, by="customer"),
                customer=message.author_customer if message.author_customer_id else None,
                message=message,
            )
        return True


# --- Messenger and Instagram ----------------------------------------------------------------
class PageMessagingAdapter(MetaAdapter):
    """Messenger and Instagram: `entry[].messaging[]` events, PSID / IGSID senders."""

    object_name: ClassVar[str]
    identity_kind: ClassVar[str]

    def split(self, inbox: Inbox, request: WebhookRequest) -> list[RawItem]:
        data = _obj(_json(request.body), "body")
        if data.get("object") != self.object_name:
            raise BadPayload(f"'object' must be '{self.object_name}'")
        items: list[RawItem] = []
        for entry in _list(data.get("entry"), "entry"):
            for event in _list(_obj(entry, "entry").get("messaging"), "messaging"):
                event = _obj(event, "messaging event")
                sender = _str(_obj(event.get("sender"), "sender").get("id"))
                if not sender:
                    raise BadPayload("'sender.id' is required")
                message = event.get("message")
                key = ""
                if isinstance(message, dict):
                    if message.get("is_echo"):
                        continue
                    key = _str(message.get("mid"))
                    if not key:
                        raise BadPayload("'message.mid' is required")
                else:
                    key = _event_key(event, sender)
                if not key:
                    continue  # postbacks, referrals, reactions of other shapes: not stored
                items.append(RawItem(key[:255], json.dumps(event, separators=(",", ":")).encode()))
        return items

    def parse(
        self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]
    ) -> InboundMessage | DeliveryStatusUpdate | ChannelEvent | None:
        event = _obj(_json(raw), "event")
        sender = _str(_obj(event.get("sender"), "sender").get("id"))
        message = event.get("message")
        postback = event.get("postback")
        if isinstance(postback, dict) and not isinstance(message, dict):
            # A button the customer tapped: its title is what they "said".
            mid = _str(postback.get("mid")) or f"postback:{sender}:{_str(event.get('timestamp'))}"
            message = {"mid": mid, "text": _str(postback.get("title")) or _str(postback.get("payload"))}
        if not isinstance(message, dict):
            reaction = event.get("reaction")
            if isinstance(reaction, dict):
                emoji = _str(reaction.get("emoji")) if reaction.get("action") != "unreact" else ""
                return Reaction(_str(reaction.get("mid")), emoji, _millis(event.get("timestamp")))
            for name in ("read", "delivery"):
                mark = event.get(name)
                if isinstance(mark, dict):
                    # Messenger sends a watermark; Instagram's messaging_seen names the last
                    # message seen: everything sent before the event's time was read.
                    at = _millis(mark.get("watermark")) or _millis(event.get("timestamp"))
                    if at is None:
                        return None
                    return Watermark(sender, "read" if name == "read" else "delivered", at)
            return None
        metadata: dict[str, Any] = {}
        attachments: list[InboundAttachment] = []
        for index, attachment in enumerate(_list(message.get("attachments"), "attachments")):
            if not isinstance(attachment, dict):
                continue
            kind = _str(attachment.get("type")) or "file"
            payload = attachment.get("payload")
            url = _str(payload.get("url")) if isinstance(payload, dict) else ""
            if not url:
                _skipped(metadata, kind, "no URL")
                continue
            fetched = self._fetch(kind, url, index, metadata)
            if fetched is not None:
                attachments.append(fetched)
        if message.get("is_deleted"):
            metadata[self.kind] = {"deleted": True}
        if message.get("is_unsupported"):
            metadata["unsupported"] = {"type": "unsupported"}
        reply_to = message.get("reply_to")
        if isinstance(reply_to, dict) and _str(reply_to.get("mid")):
            metadata["reply_to"] = {"external_id": _str(reply_to.get("mid"))}
        quick = message.get("quick_reply")
        if isinstance(quick, dict):
            metadata.setdefault(self.kind, {})["quick_reply"] = _str(quick.get("payload"))
        text = _str(message.get("text"))
        if not text and not attachments and "unsupported" not in metadata and "media_skipped" not in metadata:
            metadata["unsupported"] = {"type": "empty"}
        return InboundMessage(
            external_id=_str(message.get("mid"))[:255],
            sender=InboundSender(identities=[IdentityRef(self.identity_kind, sender[:255])]),
            text=text,
            thread_key=f"{self.kind}:{sender}"[:255],
            attachments=attachments,
            sent_at=_millis(event.get("timestamp")),
            metadata=metadata,
        )

    def _fetch(self, kind: str, url: str, index: int, metadata: dict[str, Any]) -> InboundAttachment | None:
        from channels_inbox.media import MediaTooLarge, MediaUnavailable, fetch_media

        try:
            media = fetch_media(url)
        except MediaTooLarge as exc:
            _skipped(metadata, kind, f"too large: {exc}")
            return None
        except MediaUnavailable as exc:
            if exc.retryable:
                raise
            _skipped(metadata, kind, str(exc))
            return None
        name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1][:100] or f"{kind}-{index + 1}"
        return InboundAttachment(filename=name, content=media.content, declared_type=media.content_type)

    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        for identity in customer_identities:
            if identity.kind == self.identity_kind:
                return identity.value
        return ""

    def reply_window(self, inbox: Inbox, ticket: Ticket) -> ReplyWindow | None:
        from channels_inbox.window import is_open, window_closes_at

        closes = window_closes_at(inbox, ticket, hours=WINDOW_HOURS)
        agent_closes = window_closes_at(inbox, ticket, hours=HUMAN_AGENT_HOURS)
        if is_open(agent_closes) and not is_open(closes):
            return ReplyWindow(
                open=False,
                closes_at=closes,
                reason=f"{self.label} allows free-form replies within 24 hours of the customer's last message; "
                f"{_ago(closes, WINDOW_HOURS)}; a human agent may still reply for up to 7 days with the "
                "HUMAN_AGENT tag",
                options=(WindowOption("tag", "HUMAN_AGENT", label="Human agent reply (up to 7 days)"),),
            )
        return ReplyWindow(
            open=is_open(closes),
            closes_at=closes,
            reason=f"{self.label} allows replies only within 7 days of the customer's last message; "
            f"{_ago(closes, WINDOW_HOURS)}; wait for the customer to write again",
        )

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        from channels_inbox.window import is_open, window_closes_at

        message = delivery.message
        metadata = message.metadata if isinstance(message.metadata, dict) else {}
        if not delivery.recipient:
            raise DeliveryError(f"no {self.label} user to send to", retryable=False)
        body: dict[str, Any] = {
            "recipient": {"id": delivery.recipient},
            "messaging_type": "RESPONSE",
            "message": {"text": message.text[:MESSENGER_TEXT_MAX]},
        }
        if metadata.get("tag") == "HUMAN_AGENT":
            if not is_open(window_closes_at(inbox, message.ticket, hours=HUMAN_AGENT_HOURS)):
                raise DeliveryError(f"over 7 days since the customer wrote: {self.label} refuses it", retryable=False)
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        elif not is_open(window_closes_at(inbox, message.ticket, hours=WINDOW_HOURS)):
            raise DeliveryError(
                f"outside {self.label}'s 24-hour window: reply with the HUMAN_AGENT tag", retryable=False
            )
        own = str(inbox.settings.get(self.own_id_setting) or "")
        answer = self.post_graph(inbox, f"{own}/messages", body, f"{self.label} send")
        return SendResult(provider_id=_str(answer.get("message_id"))[:255])


def _event_key(event: dict[str, Any], sender: str) -> str:
    """The dedupe key of a messaging event that is not a message ('' for one we ignore)."""
    for name in ("read", "delivery"):
        mark = event.get(name)
        if isinstance(mark, dict):
            point = _str(mark.get("watermark")) or _str(mark.get("mid")) or _str(event.get("timestamp"))
            if point:
                return f"{name}:{sender}:{point}"
    reaction = event.get("reaction")
    if isinstance(reaction, dict) and _str(reaction.get("mid")):
        return f"reaction:{_str(reaction.get('mid'))}:{sender}:{_str(event.get('timestamp'))}"
    postback = event.get("postback")
    if isinstance(postback, dict):
        return _str(postback.get("mid")) or f"postback:{sender}:{_str(event.get('timestamp'))}"
    return ""


class Watermark(ChannelEvent):
    """Everything we sent this user up to `at` was delivered / read."""

    def __init__(self, sender: str, status: str, at: datetime) -> None:
        self.sender, self.status, self.at = sender, status, at

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        from channels_inbox.actions.delivery import do_apply_delivery_status
        from channels_inbox.models import OutboundDelivery

        deliveries = (
            OutboundDelivery.objects.filter(inbox=inbox, recipient=self.sender, sent_at__lte=self.at)
            .exclude(provider_id="")
            .order_by("id")
        )
        changed = False
        for delivery in deliveries:
            update = DeliveryStatusUpdate(provider_id=delivery.provider_id, status=self.status, occurred_at=self.at)
            changed = do_apply_delivery_status(inbox, update) or changed
        return changed


@register
class MessengerAdapter(PageMessagingAdapter):
    kind = "messenger"
    label = "Messenger"
    object_name = "page"
    identity_kind = IdentityKind.MESSENGER
    own_id_setting = "page_id"
    settings_help = {
        "page_id": "The Facebook Page id",
        "graph_version": "Graph API version, e.g. v21.0 (default: META_GRAPH_VERSION)",
    }
    required_settings = ("page_id",)


@register
class InstagramAdapter(PageMessagingAdapter):
    kind = "instagram"
    label = "Instagram"
    object_name = "instagram"
    identity_kind = IdentityKind.INSTAGRAM
    own_id_setting = "ig_id"
    settings_help = {
        "ig_id": "The Instagram professional account id (or the linked Page id with Facebook Login)",
        "graph_version": "Graph API version, e.g. v21.0 (default: META_GRAPH_VERSION)",
    }
    required_settings = ("ig_id",)
