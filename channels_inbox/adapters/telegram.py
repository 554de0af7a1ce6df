"""The Telegram bot channel: a bot's private and group chats become tickets.

Inbound: Telegram POSTs one update per request to `/webhooks/telegram/<inbox-uuid>/`
(registered with setWebhook, see channels_inbox/actions/telegram.py), carrying the inbox's
`webhook_secret` in `X-Telegram-Bot-Api-Secret-Token` (no HMAC: compared in constant time).
Dedupe on `update:<update_id>`. A message is `<chat.id>:<message_id>`; an album (parts with
one `media_group_id`, arriving as separate updates) is one message `<chat.id>:album:<id>`;
an `edited_message` updates the stored message (`metadata["edits"]` keeps earlier texts).
Files are fetched with getFile + the file URL (Telegram serves at most 20 MB to bots).

Outbound: sendMessage (text split at 4096 characters), sendPhoto/sendDocument for files.
The bot token is in every API URL's path: it is redacted from every error we keep or show.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from channels_inbox.adapters import register
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelAdapter,
    ChannelEvent,
    DeliveryDeferred,
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
from channels_inbox.media import MediaTooLarge, MediaUnavailable, fetch_media, http_client
from customers.models import IdentityKind

if TYPE_CHECKING:
    from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery

logger = logging.getLogger(__name__)

# Bot API URLs carry the token in their path (/bot<token>/, /file/bot<token>/).
TOKEN_IN_URL = re.compile(r"bot\d+:[A-Za-z0-9_-]+")


class RedactBotTokens(logging.Filter):
    """httpx logs every request's URL at INFO: the bot token is taken out of the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "bot" in message and TOKEN_IN_URL.search(message):
            record.msg, record.args = TOKEN_IN_URL.sub("bot<token>", message), ()
        return True


logging.getLogger("httpx").addFilter(RedactBotTokens())

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# Telegram's own limits.
DOWNLOAD_MAX_BYTES = 20 * 1024 * 1024
TEXT_MAX_CHARS = 4096
PHOTO_MAX_BYTES = 10 * 1024 * 1024
SECRET_ALPHABET = frozenset(string.ascii_letters + string.digits + "_-")
GROUP_CHAT_TYPES = ("group", "supergroup")
# Media kinds, in the order they are looked for; photo is a list of sizes (the largest taken).
MEDIA_KINDS = ("photo", "document", "video", "animation", "audio", "voice", "video_note", "sticker")
DEFAULT_NAMES = {
    "photo": "photo.jpg",
    "voice": "voice.ogg",
    "video": "video.mp4",
    "video_note": "video_note.mp4",
    "animation": "animation.mp4",
    "audio": "audio.mp3",
    "sticker": "sticker.webp",
    "document": "document",
}
# Service messages (members joining, a pinned message, a new title): not from the customer.
SERVICE_KEYS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
        "write_access_allowed",
        "chat_shared",
        "users_shared",
        "boost_added",
        "chat_background_set",
    }
)
# Fields every message has; the first other key names an unsupported message's type.
ENVELOPE_KEYS = frozenset(
    {
        "message_id",
        "message_thread_id",
        "from",
        "sender_chat",
        "sender_boost_count",
        "sender_business_bot",
        "date",
        "edit_date",
        "chat",
        "business_connection_id",
        "forward_origin",
        "is_topic_message",
        "is_automatic_forward",
        "reply_to_message",
        "external_reply",
        "quote",
        "reply_to_story",
        "via_bot",
        "has_protected_content",
        "is_from_offline",
        "media_group_id",
        "author_signature",
        "entities",
        "caption_entities",
        "link_preview_options",
        "show_caption_above_media",
        "has_media_spoiler",
        "reply_markup",
        "effect_id",
        "text",
        "caption",
    }
)


def api_base() -> str:
    return str(settings.TELEGRAM_API_BASE).rstrip("/")


def bot_token(inbox: Inbox) -> str:
    token = inbox.secret("bot_token")
    if not token:
        raise DeliveryError("the inbox has no bot_token (set it in the inbox settings)", retryable=False)
    return token


def redact(text: str, token: str) -> str:
    """`text` without the bot token (it is part of every API and file URL)."""
    return text.replace(token, "<token>") if token else text


def api_url(token: str, method: str) -> str:
    return f"{api_base()}/bot{token}/{method}"


def file_url(token: str, file_path: str) -> str:
    return f"{api_base()}/file/bot{token}/{file_path}"


class TelegramError(DeliveryError):
    """A Bot API call that failed; `error_code`, `retry_after` as Telegram answered."""

    def __init__(self, message: str, *, retryable: bool, error_code: int = 0, retry_after: int | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.error_code = error_code
        self.retry_after = retry_after


def call_api(
    token: str,
    method: str,
    *,
    json_body: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
    http: httpx.Client | None = None,
) -> Any:
    """POST a Bot API method; its `result`, or TelegramError (token redacted)."""
    owned = http is None
    client = http or http_client()
    try:
        if files is not None:
            response = client.post(api_url(token, method), data=data, files=files)
        else:
            response = client.post(api_url(token, method), json=json_body or {})
    except httpx.HTTPError as exc:
        raise TelegramError(
            redact(f"Telegram {method}: {exc.__class__.__name__}: {exc}", token), retryable=True
        ) from None
    finally:
        if owned:
            client.close()
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        retryable = response.status_code == 429 or response.status_code >= 500
        raise TelegramError(
            redact(f"Telegram {method}: HTTP {response.status_code}", token),
            retryable=retryable,
            error_code=response.status_code,
        )
    if answer.get("ok") is True:
        return answer.get("result")
    code = _int(answer.get("error_code")) or response.status_code
    description = str(answer.get("description") or f"HTTP {response.status_code}")[:500]
    parameters = answer.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    raise TelegramError(
        redact(f"Telegram {method}: {description}", token),
        retryable=code == 429 or code >= 500,
        error_code=code,
        retry_after=retry_after if isinstance(retry_after, int) and not isinstance(retry_after, bool) else None,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _timestamp(value: Any) -> datetime | None:
    number = _int(value)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(number, tz=UTC)


def external_id(chat_id: int, message: Mapping[str, Any]) -> str:
    group = message.get("media_group_id")
    if isinstance(group, str) and group:
        return f"{chat_id}:album:{group}"[:255]
    return f"{chat_id}:{message.get('message_id')}"


@register
class TelegramAdapter(ChannelAdapter):
    kind = "telegram"
    label = "Telegram"
    generated_secrets = ("webhook_secret",)
    secret_settings = ("bot_token",)
    required_secrets = ("bot_token",)
    settings_help = {
        "bot_username": "the bot's @username (shown to agents; optional)",
        "bot_token": "the token BotFather gave for the bot (stored as a secret; required)",
    }
    # One update per POST; Telegram's own updates are small (files come by getFile).
    max_body_bytes = 1024 * 1024

    def new_secrets(self) -> dict[str, str]:
        # setWebhook's secret_token: 1–256 characters of [A-Za-z0-9_-] (token_urlsafe's alphabet).
        return {
            name: "".join(c for c in secrets.token_urlsafe(48) if c in SECRET_ALPHABET)[:256]
            for name in self.generated_secrets
        }

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        username = str(values.get("bot_username") or "").strip().lstrip("@")
        if username and not all(c in SECRET_ALPHABET and c != "-" for c in username):
            raise ValueError("bot_username: letters, digits and _ only")
        if "bot_username" in values:
            values["bot_username"] = username
        return values

    # --- inbound ---------------------------------------------------------------------------
    def verify(self, inbox: Inbox, request: WebhookRequest) -> None:
        given = request.header(SECRET_HEADER)
        if not given:
            raise SignatureError(f"missing {SECRET_HEADER} header")
        for name in ("webhook_secret", "previous_webhook_secret"):
            expected = inbox.secret(name)
            if expected and hmac_equal(expected, given):
                return
        raise SignatureError(f"{SECRET_HEADER} does not match")

    def split(self, inbox: Inbox, request: WebhookRequest) -> list[RawItem]:
        update = _load(request.body)
        return [RawItem(dedupe_key=f"update:{update['update_id']}", raw=request.body)]

    def parse(self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]) -> InboundMessage | ChannelEvent | None:
        from helpdesk.models import Message

        update = _load(raw)
        if isinstance(update.get("message"), dict):
            message = update["message"]
            if _ignored(message):
                return None
            inbound = self.inbound(inbox, message)
            if message.get("media_group_id"):
                return AlbumPart(inbound)
            edited = (
                Message.objects.filter(
                    inbox=inbox, external_id=inbound.external_id, metadata__telegram__edited_first=True
                )
                .values_list("pk", flat=True)
                .first()
            )
            return LateOriginal(inbound) if edited else inbound
        if isinstance(update.get("edited_message"), dict):
            message = update["edited_message"]
            if _ignored(message):
                return None
            # An edit changes the text; its files come with the original (if it is late).
            return MessageEdit(self.inbound(inbox, message, download=False))
        # Other updates (callback_query, my_chat_member, ...): kept as ignored events.
        return None

    def inbound(self, inbox: Inbox, message: Mapping[str, Any], *, download: bool = True) -> InboundMessage:
        """A Telegram Message object as an InboundMessage (files fetched unless `download`)."""
        chat = message["chat"]
        sender = message["from"]
        chat_id = chat["id"]
        message_id = message["message_id"]
        name = " ".join(str(sender.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
        username = str(sender.get("username") or "")
        language = str(sender.get("language_code") or "")[:16]
        chat_type = str(chat.get("type") or "private")
        meta: dict[str, Any] = {
            "chat_id": chat_id,
            "chat_type": chat_type,
            "message_id": message_id,
        }
        if username:
            meta["username"] = username
        if chat_type in GROUP_CHAT_TYPES and chat.get("title"):
            meta["chat_title"] = str(chat["title"])[:255]
        group = message.get("media_group_id")
        text = str(message.get("text") or "") if isinstance(message.get("text"), str) else ""
        caption = str(message.get("caption") or "") if isinstance(message.get("caption"), str) else ""
        text = text or caption
        if isinstance(group, str) and group:
            meta["media_group_id"] = group
            meta["parts"] = [message_id]
            # The parts whose files are on the message (an edit's come with its original).
            meta["media_parts"] = [message_id] if download else []
            meta["captions"] = {str(message_id): caption} if caption else {}
        edit_date = _int(message.get("edit_date"))
        if edit_date is not None:
            meta["edit_date"] = edit_date
        metadata: dict[str, Any] = {"telegram": meta}
        in_reply_to: list[str] = []
        reply = message.get("reply_to_message")
        if isinstance(reply, dict) and _int(reply.get("message_id")) is not None:
            quoted = external_id(chat_id, reply)
            metadata["reply_to"] = {"external_id": quoted}
            in_reply_to.append(quoted)
        attachments: list[InboundAttachment] = []
        skipped: list[dict[str, str]] = []
        kind = next((k for k in MEDIA_KINDS if message.get(k)), "")
        if kind:
            file = message[kind]
            if kind == "photo":
                sizes = [p for p in file if isinstance(p, dict)] if isinstance(file, list) else []
                file = max(sizes, key=_photo_size) if sizes else None
            if isinstance(file, dict) and isinstance(file.get("file_id"), str):
                filename = str(file.get("file_name") or "") or DEFAULT_NAMES[kind]
                if kind == "sticker" and file.get("is_animated"):
                    filename = "sticker.tgs"
                elif kind == "sticker" and file.get("is_video"):
                    filename = "sticker.webm"
                if download:
                    got = self._download(inbox, file, filename, kind)
                    if isinstance(got, InboundAttachment):
                        attachments.append(got)
                    else:
                        skipped.append(got)
                else:
                    skipped.append({"filename": filename, "type": kind, "reason": "sent with an edit"})
        elif isinstance(message.get("location"), dict) or isinstance(message.get("venue"), dict):
            venue = message.get("venue") if isinstance(message.get("venue"), dict) else {}
            location = venue.get("location") if venue else message.get("location")
            if isinstance(location, dict):
                lat, lon = location.get("latitude"), location.get("longitude")
                label = f"{venue.get('title')}, {venue.get('address')}: " if venue else ""
                text = f"📍 {label}{lat}, {lon} https://www.openstreetmap.org/?mlat={lat}&mlon={lon}"
                meta["location"] = {"latitude": lat, "longitude": lon}
        elif not text:
            kind = next((k for k in message if k not in ENVELOPE_KEYS), "unknown")
            metadata["unsupported"] = {"type": kind[:50]}
        if skipped:
            metadata["media_skipped"] = skipped
        return InboundMessage(
            external_id=external_id(chat_id, message),
            sender=InboundSender(
                identities=[IdentityRef(IdentityKind.TELEGRAM, str(sender["id"]))],
                name=(name or username)[:200],
                language=language,
            ),
            text=text,
            # A chat is one conversation (a group's as much as a private one's): its latest
            # ticket (reopened when solved; a follow-up when closed).
            thread_key=f"telegram:{chat_id}",
            in_reply_to=in_reply_to,
            attachments=attachments,
            sent_at=_timestamp(message.get("date")),
            metadata=metadata,
        )

    def _download(
        self, inbox: Inbox, file: Mapping[str, Any], filename: str, kind: str
    ) -> InboundAttachment | dict[str, str]:
        """The file, or its `media_skipped` entry; MediaUnavailable (retried) on a passing failure."""
        limit = min(DOWNLOAD_MAX_BYTES, settings.CHANNEL_MEDIA_MAX_BYTES, settings.ATTACHMENT_MAX_BYTES)
        entry = {"filename": filename, "type": kind}
        size = _int(file.get("file_size"))
        if size is not None and size > limit:
            return {**entry, "reason": f"{size} bytes, over {limit}"}
        token = inbox.secret("bot_token")
        if not token:
            return {**entry, "reason": "the inbox has no bot_token"}
        try:
            info = call_api(token, "getFile", json_body={"file_id": file["file_id"]})
        except TelegramError as exc:
            if exc.retryable:
                raise MediaUnavailable(str(exc), retryable=True) from None
            return {**entry, "reason": str(exc)[:300]}
        path = info.get("file_path") if isinstance(info, dict) else None
        if not isinstance(path, str) or not path:
            return {**entry, "reason": "Telegram gave no file_path (over 20 MB?)"}
        try:
            media = fetch_media(file_url(token, path), max_bytes=limit)
        except MediaTooLarge as exc:
            return {**entry, "reason": redact(str(exc), token)}
        except MediaUnavailable as exc:
            if exc.retryable:
                raise MediaUnavailable(redact(str(exc), token), retryable=True) from None
            return {**entry, "reason": redact(str(exc), token)[:300]}
        if filename == DEFAULT_NAMES.get(kind) and "." in path.rsplit("/", 1)[-1]:
            filename = path.rsplit("/", 1)[-1]
        declared = str(file.get("mime_type") or "") or media.content_type
        return InboundAttachment(filename=filename, content=media.content, declared_type=declared[:127])

    # --- outbound --------------------------------------------------------------------------
    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        # A private chat's id is the user's id.
        for identity in customer_identities:
            if identity.kind == IdentityKind.TELEGRAM and identity.value:
                return identity.value
        return ""

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        token = bot_token(inbox)
        message = delivery.message
        chat_id, reply_to = self._chat_of(inbox, delivery)
        if not chat_id:
            raise DeliveryError("no Telegram chat to send to", retryable=False)
        provider_ids: list[str] = []
        try:
            with http_client() as http:
                for i, chunk in enumerate(split_text(message.text or "")):
                    body: dict[str, Any] = {"chat_id": _chat_value(chat_id), "text": chunk}
                    if reply_to is not None and i == 0:
                        body["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
                    result = call_api(token, "sendMessage", json_body=body, http=http)
                    provider_ids.append(_provider_id(chat_id, result))
                for attachment in message.attachments.order_by("id"):
                    method, field = ("sendDocument", "document")
                    if attachment.content_type in ("image/jpeg", "image/png", "image/webp") and (
                        attachment.size <= PHOTO_MAX_BYTES
                    ):
                        method, field = ("sendPhoto", "photo")
                    with attachment.file.open("rb") as handle:
                        content = handle.read()
                    result = call_api(
                        token,
                        method,
                        data={"chat_id": str(chat_id)},
                        files={field: (attachment.filename, content, attachment.content_type)},
                        http=http,
                    )
                    provider_ids.append(_provider_id(chat_id, result))
        except TelegramError as exc:
            if exc.error_code == 429 and exc.retry_after:
                raise DeliveryDeferred(exc.retry_after, str(exc)) from None
            if exc.error_code == 403:
                raise DeliveryError(
                    f"the customer blocked the bot or never started a chat with it ({exc})", retryable=False
                ) from None
            raise
        return SendResult(provider_id=provider_ids[0] if provider_ids else "")

    def _chat_of(self, inbox: Inbox, delivery: OutboundDelivery) -> tuple[str, int | None]:
        """The ticket's chat (its latest inbound Telegram message's), else the recipient; and
        in a group chat the message to reply to (so the customer sees what is answered)."""
        from helpdesk.models import Direction, Message

        latest = (
            Message.objects.filter(
                ticket_id=delivery.message.ticket_id,
                inbox=inbox,
                direction=Direction.INBOUND,
                metadata__telegram__chat_id__isnull=False,
            )
            .order_by("-id")
            .values_list("metadata", flat=True)
            .first()
        )
        meta = latest.get("telegram") if isinstance(latest, dict) else None
        if isinstance(meta, dict) and _int(meta.get("chat_id")) is not None:
            reply_to = None
            if meta.get("chat_type") in GROUP_CHAT_TYPES:
                reply_to = _int(meta.get("message_id"))
            return str(meta["chat_id"]), reply_to
        return delivery.recipient, None


class MessageEdit(ChannelEvent):
    def __init__(self, inbound: InboundMessage) -> None:
        self.inbound = inbound

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        from channels_inbox.actions.telegram import do_apply_telegram_edit

        return do_apply_telegram_edit(inbox, event, self.inbound)


class AlbumPart(ChannelEvent):
    def __init__(self, inbound: InboundMessage) -> None:
        self.inbound = inbound

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        from channels_inbox.actions.telegram import do_add_album_part

        return do_add_album_part(inbox, event, self.inbound)


class LateOriginal(ChannelEvent):
    """The original of a message whose edit came first (and was stored as the message)."""

    def __init__(self, inbound: InboundMessage) -> None:
        self.inbound = inbound

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        from channels_inbox.actions.telegram import do_record_late_original

        return do_record_late_original(inbox, event, self.inbound)


def hmac_equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def split_text(text: str, limit: int = TEXT_MAX_CHARS) -> list[str]:
    """Chunks of at most `limit` characters, cut at a line break or space where there is one."""
    text = text.strip()
    chunks: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit + 1)
        if cut < limit // 2:
            cut = limit
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks


def _chat_value(chat_id: str) -> int | str:
    try:
        return int(chat_id)
    except ValueError:
        return chat_id  # an @channelusername


def _provider_id(chat_id: str, result: Any) -> str:
    message_id = result.get("message_id") if isinstance(result, dict) else None
    return f"{chat_id}:{message_id}" if message_id is not None else ""


def _photo_size(photo: Mapping[str, Any]) -> int:
    return (_int(photo.get("width")) or 0) * (_int(photo.get("height")) or 0) or (_int(photo.get("file_size")) or 0)


def _ignored(message: Mapping[str, Any]) -> bool:
    """Messages that are no customer's: from bots, without a sender, or service messages."""
    sender = message.get("from")
    if not isinstance(sender, dict) or sender.get("is_bot") is True:
        return True
    return any(key in message for key in SERVICE_KEYS)


def _load(raw: bytes) -> dict[str, Any]:
    try:
        update = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadPayload(f"body is not JSON: {exc}") from None
    if not isinstance(update, dict):
        raise BadPayload("body must be a JSON object (a Telegram Update)")
    if _int(update.get("update_id")) is None:
        raise BadPayload("'update_id' must be an integer")
    for key in ("message", "edited_message"):
        message = update.get(key)
        if message is None:
            continue
        if not isinstance(message, dict):
            raise BadPayload(f"'{key}' must be an object")
        chat = message.get("chat")
        if not isinstance(chat, dict) or _int(chat.get("id")) is None:
            raise BadPayload(f"'{key}.chat.id' must be an integer")
        if _int(message.get("message_id")) is None:
            raise BadPayload(f"'{key}.message_id' must be an integer")
        sender = message.get("from")
        if sender is not None and (not isinstance(sender, dict) or _int(sender.get("id")) is None):
            raise BadPayload(f"'{key}.from.id' must be an integer")
        group = message.get("media_group_id")
        if group is not None and not isinstance(group, str):
            raise BadPayload(f"'{key}.media_group_id' must be a string")
    return update
