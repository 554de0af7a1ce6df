"""Telegram: connecting a bot's webhook, and the changes its updates make to stored messages.

- `do_set_telegram_webhook` / `telegram_webhook_info`: setWebhook / getWebhookInfo for an
  inbox (the settings screen's "Connect webhook" button, `manage.py telegram_webhook`).
- `do_apply_telegram_edit`: an `edited_message` updates the stored message's text, keeps the
  previous text in `metadata["edits"]` and appends MessageEdited. An edit that arrives before
  its original is stored as the message (`metadata["telegram"]["edited_first"]`); the late
  original then only adds its text to the history and its files (`do_record_late_original`).
- `do_add_album_part`: an album's parts (one update each) become one message: the first part
  processed creates it, the others add their files and captions.

These run inside the transaction that processes the stored event (process.py). Updates of
one message are serialized by a lock on (inbox, external_id): an advisory lock on PostgreSQL
(SQLite serializes writers anyway), and the (inbox, external_id) unique constraint behind it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from channels_inbox.adapters.base import DeliveryError
from channels_inbox.adapters.telegram import bot_token, call_api
from helpdesk.attachments import store_attachment
from helpdesk.events import MessageEdited, append_event
from helpdesk.models import Message, Ticket

if TYPE_CHECKING:
    from channels_inbox.adapters.base import InboundMessage
    from channels_inbox.models import InboundEvent, Inbox

ALLOWED_UPDATES = ["message", "edited_message"]
WEBHOOK_PORTS = (443, 80, 88, 8443)


# --- the webhook ---------------------------------------------------------------------------
def telegram_webhook_url(inbox: Inbox) -> str:
    from channels_inbox.actions.inboxes import webhook_url

    return webhook_url(inbox)


def do_set_telegram_webhook(inbox: Inbox) -> str:
    """Point the bot's webhook at this inbox (setWebhook with its secret token); a summary.

    Raises DeliveryError (Telegram's description, never the token) when Telegram refuses.
    """
    if inbox.kind != "telegram":
        raise DeliveryError(f"{inbox.name} is not a Telegram inbox", retryable=False)
    token = bot_token(inbox)
    url = telegram_webhook_url(inbox)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme != "https" or port not in WEBHOOK_PORTS:
        raise DeliveryError(
            f"Telegram needs an HTTPS webhook on port 443, 80, 88 or 8443; SITE_URL gives {url}", retryable=False
        )
    secret = inbox.secret("webhook_secret")
    if not secret:
        raise DeliveryError("the inbox has no webhook_secret (rotate it to make one)", retryable=False)
    call_api(
        token,
        "setWebhook",
        json_body={
            "url": url,
            "secret_token": secret,
            "allowed_updates": ALLOWED_UPDATES,
            "max_connections": settings.TELEGRAM_MAX_CONNECTIONS,
        },
    )
    bot = inbox.settings.get("bot_username")
    who = f"@{bot}" if bot else "the bot"
    return f"Telegram now delivers {who}'s messages and edits to {url}"


def telegram_webhook_info(inbox: Inbox) -> dict[str, Any]:
    """getWebhookInfo, for the settings screen: the URL Telegram calls, its queue, its last error."""
    info = call_api(bot_token(inbox), "getWebhookInfo")
    info = info if isinstance(info, dict) else {}
    last_error_date = info.get("last_error_date")
    return {
        "url": str(info.get("url") or ""),
        "connected": info.get("url") == telegram_webhook_url(inbox),
        "pending_update_count": int(info.get("pending_update_count") or 0),
        "last_error_message": str(info.get("last_error_message") or ""),
        "last_error_at": (
            datetime.fromtimestamp(last_error_date, tz=UTC)
            if isinstance(last_error_date, int) and last_error_date > 0
            else None
        ),
        "max_connections": info.get("max_connections"),
        "allowed_updates": info.get("allowed_updates") or [],
    }


# --- edits and albums ------------------------------------------------------------------------
def do_apply_telegram_edit(inbox: Inbox, event: InboundEvent, inbound: InboundMessage) -> bool:
    """An edited message: the stored one's text replaced, the previous kept in `edits`."""
    with transaction.atomic():
        message = _locked_message(inbox, inbound.external_id)
        if message is None:
            # The edit came first: it is stored as the message; the original adds its history.
            inbound.metadata["telegram"]["edited_first"] = True
            message = _ingest(inbox, event, inbound)
            if message is None:
                return True
        meta = dict(message.metadata.get("telegram") or {})
        new = dict(inbound.metadata["telegram"])
        edit_date = new.get("edit_date")
        known = meta.get("edit_date")
        if isinstance(known, int) and isinstance(edit_date, int) and edit_date <= known:
            return False  # an older edit than the one shown
        if "media_group_id" in meta:
            captions = dict(meta.get("captions") or {})
            captions[str(new["message_id"])] = inbound.text
            meta["captions"] = captions
            text = _album_text(meta)
        else:
            text = inbound.text
        meta["edit_date"] = edit_date
        event.message = message
        if text == message.text:
            message.metadata = {**message.metadata, "telegram": meta}
            message.save(update_fields=["metadata"])
            return False
        at = datetime.fromtimestamp(edit_date, tz=UTC) if isinstance(edit_date, int) else timezone.now()
        edits = [*(message.metadata.get("edits") or []), {"text": message.text, "at": at.isoformat()}]
        message.metadata = {**message.metadata, "telegram": meta, "edits": edits}
        message.text = text
        message.save(update_fields=["text", "metadata"])
        _edited(message)
        return True


def do_record_late_original(inbox: Inbox, event: InboundEvent, inbound: InboundMessage) -> bool:
    """The original of a message stored from its edit: its text joins the history (first),
    its files join the message."""
    with transaction.atomic():
        message = _locked_message(inbox, inbound.external_id)
        if message is None:
            return _ingest(inbox, event, inbound) is None
        meta = dict(message.metadata.get("telegram") or {})
        event.message = message
        if not meta.get("edited_first") or meta.get("original_received"):
            return False
        meta["original_received"] = True
        metadata = {**message.metadata, "telegram": meta}
        edit_date = meta.get("edit_date")
        at = datetime.fromtimestamp(edit_date, tz=UTC) if isinstance(edit_date, int) else timezone.now()
        if inbound.text != message.text:
            metadata["edits"] = [{"text": inbound.text, "at": at.isoformat()}, *(message.metadata.get("edits") or [])]
        skipped = [s for s in metadata.get("media_skipped") or [] if s.get("reason") != "sent with an edit"]
        skipped += inbound.metadata.get("media_skipped") or []
        metadata.pop("media_skipped", None)
        if skipped:
            metadata["media_skipped"] = skipped
        for attachment in inbound.attachments:
            store_attachment(message, attachment.filename, attachment.content, attachment.declared_type)
        message.metadata = metadata
        message.save(update_fields=["metadata"])
        if "edits" in metadata:
            _edited(message)
        return True


def do_add_album_part(inbox: Inbox, event: InboundEvent, inbound: InboundMessage) -> bool:
    """One part of an album: the album's message is created by the first part processed,
    whichever it is; the others add their files and captions (each part once)."""
    with transaction.atomic():
        message = _locked_message(inbox, inbound.external_id)
        if message is None:
            message = _ingest(inbox, event, inbound)
            if message is None:
                return True
        event.message = message
        meta = dict(message.metadata.get("telegram") or {})
        part = inbound.metadata["telegram"]
        parts = list(meta.get("parts") or [])
        media_parts = list(meta.get("media_parts") or [])
        metadata = {**message.metadata, "telegram": meta}
        skipped = list(metadata.get("media_skipped") or [])
        if part["message_id"] in parts:
            if part["message_id"] in media_parts:
                return False
            # The original of a part first seen as an edit: only its files are new.
            stale = next((s for s in skipped if s.get("reason") == "sent with an edit"), None)
            if stale is not None:
                skipped.remove(stale)
        else:
            meta["parts"] = sorted([*parts, part["message_id"]])
            meta["captions"] = {**(meta.get("captions") or {}), **(part.get("captions") or {})}
        meta["media_parts"] = sorted([*media_parts, part["message_id"]])
        metadata.pop("media_skipped", None)
        skipped += inbound.metadata.get("media_skipped") or []
        if skipped:
            metadata["media_skipped"] = skipped
        if "reply_to" in inbound.metadata and "reply_to" not in metadata:
            metadata["reply_to"] = inbound.metadata["reply_to"]
        for attachment in inbound.attachments:
            store_attachment(message, attachment.filename, attachment.content, attachment.declared_type)
        message.metadata = metadata
        message.text = _album_text(meta)
        message.save(update_fields=["text", "metadata"])
        return True


def _album_text(meta: dict[str, Any]) -> str:
    captions = meta.get("captions") or {}
    ordered = sorted(captions.items(), key=lambda item: int(item[0]))
    return "\n\n".join(text for _, text in ordered if text)


def _edited(message: Message) -> None:
    ticket = Ticket.objects.select_for_update().get(pk=message.ticket_id)
    append_event(ticket, MessageEdited(message_id=message.pk), customer=message.author_customer, message=message)


def _locked_message(inbox: Inbox, external_id: str) -> Message | None:
    """The stored message, row-locked, after taking the (inbox, external_id) lock: two parts
    of one album (or an edit and its original) are applied one after the other."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"telegram:{inbox.pk}:{external_id}"]
            )
    return Message.objects.select_for_update().filter(inbox=inbox, external_id=external_id).first()


def _ingest(inbox: Inbox, event: InboundEvent, inbound: InboundMessage) -> Message | None:
    """Store `inbound` as a new message on its ticket (None), or return the stored message
    with its external id (locked) when one got there first."""
    from customers.actions.resolve import do_resolve_customers
    from helpdesk.actions.ingest import IngestItem, do_ingest_messages

    try:
        with transaction.atomic():
            customer = do_resolve_customers([inbound.sender], seen_at=[inbound.sent_at or timezone.now()])[0]
            result = do_ingest_messages(inbox=inbox, items=[IngestItem(inbound, customer)])[0]
    except IntegrityError:
        return Message.objects.select_for_update().get(inbox=inbox, external_id=inbound.external_id)
    if result.duplicate and result.message is not None:
        return Message.objects.select_for_update().get(pk=result.message.pk)
    event.message = result.message
    return None
