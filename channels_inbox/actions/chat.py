"""The chat visitor's write path: sessions, identify, messages, uploads, receipts, rating…

Called by the widget's HTTP API (channels_inbox/views/widget.py) and websocket
(channels_inbox/consumers.py), and by the desk for what agents do to a chat (seen,
transcript). Everything a visitor sends is hostile text: each input is checked here and
refused with a `ChatInputError` whose text is safe to show the visitor.

A visitor message takes the spine like every channel's: an InboundEvent keyed
`chat:<visitor hex>:<client_msg_id>` (a redelivery finds the stored one), processed inline
right away (the sweeper retries it if that failed), so the answer means "stored".
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.receive import insert_inbound_event
from channels_inbox.adapters.base import IdentityRef, InboundSender
from channels_inbox.adapters.chat import chat_payload, clean_proactive, dedupe_key, prechat_mode
from channels_inbox.chat import limits
from channels_inbox.chat.frames import AGENT_FALLBACK_NAME, agent_name
from channels_inbox.chat.identity import verify_identity
from channels_inbox.models import (
    ChatConversation,
    ChatProactiveShown,
    ChatStatus,
    ChatUpload,
    ChatVisitor,
    InboundEvent,
    InboundEventStatus,
    Inbox,
    OutboundDelivery,
)
from customers.actions.merge import do_merge_customers
from customers.actions.resolve import do_resolve_customer
from customers.models import Customer, Identity, IdentityKind
from customers.normalize import InvalidIdentity, normalize_email
from helpdesk.events import ChatRated, ChatSeen, append_event
from helpdesk.models import DeliveryStatus, Direction, Message, Ticket, TicketCC
from helpdesk.sideeffects import enqueue

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

    from helpdesk.models import User

logger = logging.getLogger(__name__)

# Files a visitor may hold uploaded but not yet sent.
MAX_PENDING_UPLOADS = 20
# Uploads never sent are removed after this; sent ones (copied into attachments) a while later.
UNUSED_UPLOAD_MAX_AGE = timedelta(days=1)
USED_UPLOAD_MAX_AGE = timedelta(days=7)
# A visitor's last_seen_at is written at most this often (polls come every few seconds).
SEEN_WRITE_INTERVAL = timedelta(seconds=30)
MAX_COMMENT_CHARS = 2000
MAX_URL_CHARS = 2000
MAX_TITLE_CHARS = 300
# Conversations the widget lists (newest first): all of them in practice, bounded for safety.
MAX_CONVERSATIONS = 200
# Characters of a listed conversation's newest message shown as its preview.
PREVIEW_CHARS = 140


class ChatInputError(ValueError):
    """The visitor's input is refused (→ 400); the text says why and is safe to show."""


class ChatNotFound(LookupError):
    """No such conversation for this visitor (→ 404): never says whether it exists."""


class ChatConflict(Exception):
    """Not in this state (→ 409): rating an open chat, rating twice."""


class ChatRateLimited(Exception):
    """Too many (→ 429)."""


class UploadTooLarge(ValueError):
    """Over CHAT_UPLOAD_MAX_BYTES (→ 413)."""


@dataclass(frozen=True)
class VisitorAuth:
    """Who a widget token speaks for: the visitor and, for a hosted-page token, the one
    conversation (ChatConversation.pk) it is limited to (None: all the visitor may read)."""

    visitor: ChatVisitor
    only_conversation_id: int | None = None


@dataclass
class ChatReceipt:
    conversation: ChatConversation | None
    message: Message | None
    duplicate: bool


# --- input -----------------------------------------------------------------------------------


def clean_text(value: Any, name: str, *, max_chars: int, strip: bool = True) -> str:
    """A string or nothing: NUL removed (PostgreSQL cannot store it), at most max_chars."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ChatInputError(f"{name} must be a string")
    value = value.replace("\x00", "")
    if strip:
        value = value.strip()
    if len(value) > max_chars:
        raise ChatInputError(f"{name} is longer than {max_chars} characters")
    return value


def clean_email(value: Any) -> str:
    text = clean_text(value, "email", max_chars=320)
    if not text:
        return ""
    try:
        return normalize_email(text)
    except InvalidIdentity:
        raise ChatInputError("email is not a valid address") from None


def clean_page_url(value: Any, name: str = "url") -> str:
    """A page address as the widget reports it: kept only when it is http(s), else ''."""
    text = clean_text(value, name, max_chars=MAX_URL_CHARS)
    if not text:
        return ""
    try:
        scheme = urlsplit(text).scheme.lower()
    except ValueError:
        return ""
    if scheme not in ("http", "https") or any(c in text for c in "\r\n\t"):
        return ""
    return text


def parse_public_id(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _client_msg_id(value: Any) -> str:
    parsed = parse_public_id(value)
    if parsed is None:
        raise ChatInputError("client_msg_id must be a UUID")
    return str(parsed)


def _message_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ChatInputError("message_id must be a message id")
    return value


# --- reading a visitor's conversations --------------------------------------------------------


def _visitor_scope(visitor: ChatVisitor, *, only_conversation_id: int | None = None) -> Q:
    """The conversations a visitor may read: its own, and once verified its customer's in this
    inbox; a hosted-page token (`only_conversation_id`) only that one of them."""
    scope = Q(visitor_id=visitor.pk)
    if visitor.verified_user_id and visitor.customer_id is not None:
        scope |= Q(ticket__customer_id=visitor.customer_id)
    scope = Q(inbox_id=visitor.inbox_id) & scope
    if only_conversation_id is not None:
        scope &= Q(pk=only_conversation_id)
    return scope


def authenticate_visitor(inbox: Inbox, token: Any, *, now: float | None = None) -> VisitorAuth:
    """The visitor (and scope) a widget token of this inbox speaks for; BadToken otherwise.

    Used by the HTTP API and the websocket alike. A hosted-page token (tokens.scoped_visitor_token)
    names one conversation and expires with the email link; the conversation must still be the
    visitor's, in this inbox. The caller still checks origins (chat/origins.py).
    """
    from channels_inbox.chat.tokens import BadToken, read_visitor_claim

    claim = read_visitor_claim(token, inbox_public_token=inbox.public_token, now=now)
    visitor = ChatVisitor.objects.filter(inbox=inbox, public_id=claim.visitor_id).first()
    if visitor is None:
        raise BadToken("unknown visitor")
    visitor.inbox = inbox
    if claim.conversation_id is None:
        return VisitorAuth(visitor)
    conversation_pk = (
        ChatConversation.objects.filter(inbox=inbox, visitor=visitor, public_id=claim.conversation_id)
        .values_list("pk", flat=True)
        .first()
    )
    if conversation_pk is None:
        raise BadToken("unknown conversation")
    return VisitorAuth(visitor, only_conversation_id=conversation_pk)


def conversation_for_visitor(
    visitor: ChatVisitor, public_id: Any, *, only_conversation_id: int | None = None
) -> ChatConversation | None:
    """The visitor's conversation by its public id (str or UUID); None if it is not theirs
    (or not the one a hosted-page token is limited to)."""
    if not isinstance(public_id, uuid.UUID):
        public_id = parse_public_id(public_id)
        if public_id is None:
            return None
    return (
        ChatConversation.objects.filter(
            _visitor_scope(visitor, only_conversation_id=only_conversation_id), public_id=public_id
        )
        .select_related("ticket__assignee", "inbox", "visitor")
        .first()
    )


def visitor_conversations(visitor: ChatVisitor, *, only_conversation_id: int | None = None) -> list[ChatConversation]:
    """Newest first, at most MAX_CONVERSATIONS (one query), each annotated with its newest
    visitor-visible message (`preview_text`, `preview_direction`, `preview_at`) for the
    widget's history list."""
    return list(
        ChatConversation.objects.filter(_visitor_scope(visitor, only_conversation_id=only_conversation_id))
        .annotate(**_preview_annotations())
        .select_related("ticket__assignee", "inbox", "visitor")
        .order_by("-created_at", "-id")[: MAX_CONVERSATIONS + 1]
    )


def _preview_annotations() -> dict[str, Any]:
    from django.db.models import OuterRef, Subquery
    from django.db.models.functions import Substr

    newest = Message.objects.filter(
        Q(direction=Direction.OUTBOUND)
        | Q(direction=Direction.INBOUND, author_customer_id=OuterRef("ticket__customer_id")),
        ticket_id=OuterRef("ticket_id"),
    ).order_by("-created_at", "-id")
    return {
        "preview_text": Subquery(newest.annotate(short=Substr("text", 1, PREVIEW_CHARS)).values("short")[:1]),
        "preview_direction": Subquery(newest.values("direction")[:1]),
        "preview_at": Subquery(newest.values("created_at")[:1]),
    }


def open_conversation(visitor: ChatVisitor, *, only_conversation_id: int | None = None) -> ChatConversation | None:
    found = ChatConversation.objects.filter(visitor=visitor)
    if only_conversation_id is not None:
        found = found.filter(pk=only_conversation_id)
    return (
        found.exclude(status=ChatStatus.ENDED)
        .select_related("ticket__assignee", "inbox", "visitor")
        .order_by("-created_at", "-id")
        .first()
    )


def continuity_address(visitor: ChatVisitor) -> str:
    """The visitor's known address (continuity email, transcripts): a verified address of its
    verified customer, else the contact address it gave (identify, pre-chat form); '' if none."""
    verified = None
    if visitor.verified_user_id and visitor.customer_id is not None:
        verified = (
            Identity.objects.filter(customer_id=visitor.customer_id, kind=IdentityKind.EMAIL, verified=True)
            .order_by("id")
            .values_list("value", flat=True)
            .first()
        )
    if verified:
        return str(verified)
    if visitor.email:
        return visitor.email
    prechat = (
        ChatConversation.objects.filter(visitor=visitor)
        .exclude(prechat={})
        .order_by("-id")
        .values_list("prechat", flat=True)
        .first()
    )
    email = (prechat or {}).get("email") if isinstance(prechat, dict) else ""
    try:
        return normalize_email(email) if isinstance(email, str) and email else ""
    except InvalidIdentity:
        return ""


# --- sessions and identity ---------------------------------------------------------------------


def do_start_chat_session(
    inbox: Inbox,
    *,
    visitor: ChatVisitor | None,
    site: str,
    url: Any = "",
    title: Any = "",
    referrer: Any = "",
    locale: Any = "",
    user_agent: str = "",
) -> ChatVisitor:
    """The visitor a widget session runs as: the token's (its page details updated), or a new one.

    A new visitor has no Customer yet (a page view is not a contact): its first message's
    ingest resolves one from its chat_visitor identity. `site` is the website a new visitor's
    token is for; an existing visitor's `site_origin` never changes (the view starts a new
    visitor for another site), so removing a site from allowed_origins revokes its tokens.
    """
    url = clean_page_url(url)
    title = clean_text(title, "title", max_chars=MAX_TITLE_CHARS)
    referrer = clean_page_url(referrer, "referrer")
    locale = clean_text(locale, "locale", max_chars=16)
    user_agent = user_agent.replace("\x00", "")[:400]
    now = timezone.now()
    with transaction.atomic():
        if visitor is not None:
            visitor = ChatVisitor.objects.select_for_update().get(pk=visitor.pk)
            visitor.current_url, visitor.page_title = url or visitor.current_url, title or visitor.page_title
            visitor.referrer = referrer or visitor.referrer
            visitor.locale = locale or visitor.locale
            visitor.user_agent = user_agent or visitor.user_agent
            visitor.last_seen_at = now
            visitor.save(
                update_fields=["current_url", "page_title", "referrer", "locale", "user_agent", "last_seen_at"]
            )
            return visitor
        return ChatVisitor.objects.create(
            inbox=inbox,
            public_id=uuid.uuid4(),
            customer=None,
            site_origin=site,
            current_url=url,
            page_title=title,
            referrer=referrer,
            locale=locale,
            user_agent=user_agent,
            last_seen_at=now,
        )


def _anonymous(customer_id: int) -> bool:
    """A visitor's own customer: nothing but chat_visitor identities (nobody else's history)."""
    kinds = set(Identity.objects.filter(customer_id=customer_id).values_list("kind", flat=True))
    return kinds <= {IdentityKind.CHAT_VISITOR}


def do_identify_chat_visitor(
    visitor: ChatVisitor,
    *,
    user_id: Any = None,
    email: Any = None,
    name: Any = None,
    user_hash: Any = None,
    issued_at: Any = None,
) -> ChatVisitor:
    """`Switchboard.identify(...)`. Returns the visitor the widget continues as.

    With a `user_hash`: verified (chat/identity.py) or IdentityRefused with nothing changed.
    The visitor then belongs to the customer holding `external:<inbox uuid>:<user_id>` (made
    if new; its name filled from `name` when empty), and its chat_visitor identity with it;
    an anonymous customer it had is merged into that one so its earlier chats show. A browser
    verified as another user gets a new visitor (returned: the widget must keep its new
    token), all in one transaction.
    The hash covers only user_id and issued_at: `email` and `name` are the visitor's contact
    details in every case — never an identity, never used to find or merge a customer.
    """
    name = clean_text(name, "name", max_chars=200)
    email = clean_email(email)
    if not limits.allow_identify(visitor.public_id):
        raise ChatRateLimited("too many identify calls; wait a minute")
    if user_hash in (None, ""):
        with transaction.atomic():
            visitor = ChatVisitor.objects.select_for_update().get(pk=visitor.pk)
            visitor.name = name or visitor.name
            visitor.email = email or visitor.email
            visitor.save(update_fields=["name", "email"])
        return visitor
    inbox = visitor.inbox
    user = verify_identity(inbox, user_id=user_id, issued_at=issued_at, given_hash=user_hash)
    external = f"{inbox.uuid}:{user}"
    now = timezone.now()
    with transaction.atomic():
        visitor = ChatVisitor.objects.select_for_update().select_related("inbox").get(pk=visitor.pk)
        if visitor.verified_user_id and visitor.verified_user_id != user:
            # Another user on this browser: a visitor of their own (the old one keeps its chats).
            visitor = ChatVisitor.objects.create(
                inbox=inbox,
                public_id=uuid.uuid4(),
                customer=None,
                site_origin=visitor.site_origin,
                current_url=visitor.current_url,
                page_title=visitor.page_title,
                referrer=visitor.referrer,
                locale=visitor.locale,
                user_agent=visitor.user_agent,
                last_seen_at=now,
            )
        hex_id = visitor.public_id.hex
        held = (
            Identity.objects.filter(kind=IdentityKind.CHAT_VISITOR, value=hex_id)
            .values_list("customer_id", flat=True)
            .first()
        )
        # By the external id alone (the visitor's own customer must not become the known one).
        target = do_resolve_customer(
            InboundSender(identities=[IdentityRef(IdentityKind.EXTERNAL, external)], name=name), seen_at=now
        )
        if held is None:
            # No message yet: the first one's ingest finds the known customer by this identity.
            Identity.objects.bulk_create(
                [Identity(customer=target, kind=IdentityKind.CHAT_VISITOR, value=hex_id, raw_value=hex_id)],
                ignore_conflicts=True,
            )
        source_id = held if held is not None else visitor.customer_id
        if source_id is not None and source_id != target.pk:
            source = Customer.objects.get(pk=source_id)
            if _anonymous(source_id):
                # An anonymous visitor's own customer: its chats become the known customer's.
                # Its visitors first (a merge deletes the source, and visitors cascade with it).
                ChatVisitor.objects.filter(customer_id=source_id).update(customer=target)
                do_merge_customers(source, into=target, actor=None)
            else:
                # The desk merged this visitor into someone else meanwhile: only the visitor moves.
                Identity.objects.filter(kind=IdentityKind.CHAT_VISITOR, value=hex_id).update(customer=target)
        visitor.customer = target
        visitor.verified_user_id = user
        visitor.verified_at = now
        visitor.name = name or visitor.name
        visitor.email = email or visitor.email
        visitor.save(update_fields=["customer", "verified_user_id", "verified_at", "name", "email"])
    return visitor


def do_reset_chat_visitor(visitor: ChatVisitor) -> None:
    """`Switchboard.reset()` (the website's logout): the visitor loses its verified scope and
    contact details, so its token reads only this browser's own chats; the widget then drops
    the token and starts a new visitor."""
    with transaction.atomic():
        ChatVisitor.objects.filter(pk=visitor.pk).update(verified_user_id="", verified_at=None, name="", email="")
    visitor.verified_user_id, visitor.verified_at, visitor.name, visitor.email = "", None, "", ""


def do_touch_chat_visitor(visitor: ChatVisitor) -> None:
    """The visitor is here (a poll): last_seen_at, written at most every SEEN_WRITE_INTERVAL."""
    now = timezone.now()
    if visitor.last_seen_at is None or now - visitor.last_seen_at > SEEN_WRITE_INTERVAL:
        ChatVisitor.objects.filter(pk=visitor.pk).update(last_seen_at=now)
        visitor.last_seen_at = now


# --- messages and uploads ------------------------------------------------------------------------


def _prechat(inbox: Inbox, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ChatInputError("prechat must be an object")
    if set(value) - {"name", "email", "message"}:
        raise ChatInputError("prechat takes name, email and message")
    result = {
        "name": clean_text(value.get("name"), "prechat name", max_chars=200),
        "email": clean_email(value.get("email")),
        "message": clean_text(value.get("message"), "prechat message", max_chars=1000),
    }
    return {k: v for k, v in result.items() if v}


def _upload_ids(value: Any) -> list[uuid.UUID]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ChatInputError("uploads must be a list of upload ids")
    if len(value) > settings.CHAT_MESSAGE_MAX_FILES:
        raise ChatInputError(f"at most {settings.CHAT_MESSAGE_MAX_FILES} files per message")
    ids = []
    for item in value:
        parsed = parse_public_id(item)
        if parsed is None:
            raise ChatInputError("uploads must be a list of upload ids")
        ids.append(parsed)
    if len(set(ids)) != len(ids):
        raise ChatInputError("an upload is named twice")
    return ids


def _new_thread_key(visitor: ChatVisitor) -> str:
    """The key of the visitor's next conversation: derived, not random, so two messages sent at
    once without a conversation open one conversation, not two."""
    n = ChatConversation.objects.filter(visitor=visitor).count()
    while True:
        key = uuid.uuid5(visitor.public_id, f"conversation:{n}").hex
        ticket = Ticket.objects.filter(inbox_id=visitor.inbox_id, thread_key=key).order_by("-id").first()
        if ticket is None:
            return key
        conversation = ChatConversation.objects.filter(ticket=ticket).first()
        if conversation is not None and conversation.status != ChatStatus.ENDED:
            return key
        n += 1


def do_receive_chat_message(
    visitor: ChatVisitor,
    *,
    conversation: Any,
    client_msg_id: Any,
    text: Any,
    uploads: Any = None,
    prechat: Any = None,
    only_conversation_id: int | None = None,
    ip: str | None = None,
) -> ChatReceipt:
    """Store and process one visitor message; the same receipt again for a redelivery.

    `conversation` is a public id or None (the visitor's open conversation, else a new one);
    a message to an ended conversation starts a new one — except with a hosted-page token
    (`only_conversation_id`), which may write to its one conversation only (ChatConflict once
    it ended). `ip` is the client's address for the per-address limits (messages per minute,
    new conversations per hour). Raises ChatInputError, ChatNotFound (not the visitor's
    conversation), ChatConflict or ChatRateLimited.
    """
    cmid = _client_msg_id(client_msg_id)
    inbox = visitor.inbox
    key = dedupe_key(visitor.public_id.hex, cmid)
    stored = InboundEvent.objects.filter(inbox=inbox, dedupe_key=key).values_list("pk", "status").first()
    if stored is not None:
        if stored[1] == InboundEventStatus.PENDING:
            do_process_inbound_event(stored[0])
        return _receipt(inbox, key, duplicate=True)
    body = clean_text(text, "text", max_chars=settings.CHAT_MESSAGE_MAX_CHARS, strip=False)
    if body.strip() == "":
        body = ""
    upload_ids = _upload_ids(uploads)
    if not body and not upload_ids:
        raise ChatInputError("a message needs text or files")
    answers = _prechat(inbox, prechat)
    conv: ChatConversation | None
    if conversation is not None:
        conv = conversation_for_visitor(visitor, conversation, only_conversation_id=only_conversation_id)
        if conv is None:
            raise ChatNotFound("no such conversation")
    elif only_conversation_id is not None:
        conv = conversation_for_visitor_pk(visitor, only_conversation_id)
    else:
        conv = open_conversation(visitor)
    if conv is not None and conv.status == ChatStatus.ENDED:
        if only_conversation_id is not None:
            raise ChatConflict("this chat has ended; start a new one on the website, or answer by email")
        conv = None
    if conv is None:
        for field in ("name", "email"):
            given = answers.get(field) or getattr(visitor, field)
            if prechat_mode(inbox, field) == "required" and not given:
                raise ChatInputError(f"please give your {field} first")
    if ip is not None and not limits.allow_ip_message(ip):
        raise ChatRateLimited("too many messages from your address; wait a minute")
    if not limits.allow_message(visitor.public_id):
        raise ChatRateLimited("too many messages; wait a moment")
    if conv is None and ip is not None and not limits.allow_ip_conversation(ip):
        raise ChatRateLimited("too many new chats from your address; try again later")
    thread_key = conv.ticket.thread_key if conv is not None else _new_thread_key(visitor)
    now = timezone.now()
    with transaction.atomic():
        locked = ChatVisitor.objects.select_for_update().get(pk=visitor.pk)
        found = []
        if upload_ids:
            found = list(
                ChatUpload.objects.select_for_update().filter(
                    public_id__in=upload_ids, visitor=locked, used_at__isnull=True
                )
            )
            if len(found) != len(upload_ids):
                raise ChatInputError("an upload is unknown or was sent already")
        fields = ["last_seen_at"]
        for field in ("name", "email"):
            if answers.get(field) and not getattr(locked, field) and not locked.verified_user_id:
                setattr(locked, field, answers[field])
                fields.append(field)
        locked.last_seen_at = now
        locked.save(update_fields=fields)
        payload = chat_payload(
            visitor_hex=visitor.public_id.hex,
            client_msg_id=cmid,
            thread_key=thread_key,
            text=body,
            uploads=[u.hex for u in upload_ids],
            name=locked.name,
            # The identify email is contact data, never an identity (docs/chat.md).
            verified_email="",
            url=locked.current_url,
            title=locked.page_title,
            prechat=answers if conv is None else None,
        )
        event_id, created = insert_inbound_event(inbox, dedupe_key=key, payload=payload, headers={}, due=now)
        if created and found:
            ChatUpload.objects.filter(pk__in=[u.pk for u in found]).update(used_at=now)
    outcome = do_process_inbound_event(event_id, batch_size=1)
    if outcome not in ("processed", "already", "ignored"):
        logger.warning("chat message %s stored, processing %s (the sweeper retries it)", key, outcome)
    link_visitor_customer(visitor)
    return _receipt(inbox, key, duplicate=not created)


def link_visitor_customer(visitor: ChatVisitor) -> None:
    """Read back the customer the visitor's first message gave it: the chat adapter's
    after_ingest sets it in the ingest's own transaction (a page view makes none). A visitor
    that has a customer keeps it, and costs no query."""
    if visitor.customer_id is None:
        visitor.customer_id = ChatVisitor.objects.filter(pk=visitor.pk).values_list("customer_id", flat=True).first()


def conversation_for_visitor_pk(visitor: ChatVisitor, pk: int) -> ChatConversation | None:
    """The visitor's own conversation by its row id (a hosted-page token names one)."""
    return (
        ChatConversation.objects.filter(_visitor_scope(visitor, only_conversation_id=pk))
        .select_related("ticket__assignee", "inbox", "visitor")
        .first()
    )


def _receipt(inbox: Inbox, key: str, *, duplicate: bool) -> ChatReceipt:
    message = (
        Message.objects.filter(inbox=inbox, external_id=key)
        .select_related("author_customer", "author_agent")
        .prefetch_related("attachments")
        .first()
    )
    conversation = None
    if message is not None:
        conversation = (
            ChatConversation.objects.filter(ticket_id=message.ticket_id)
            .select_related("ticket__assignee", "inbox", "visitor")
            .first()
        )
    return ChatReceipt(conversation=conversation, message=message, duplicate=duplicate)


def do_store_chat_upload(visitor: ChatVisitor, *, upload: UploadedFile, ip: str | None = None) -> ChatUpload:
    """Keep a file for the visitor's next message: size-checked, type sniffed from the bytes,
    the name made safe; stored under a random name. `ip`: the client's address, whose uploads
    may total CHAT_IP_UPLOAD_BYTES_PER_HOUR."""
    from helpdesk.attachments import safe_filename, sniff_content_type

    limit = min(settings.CHAT_UPLOAD_MAX_BYTES, settings.ATTACHMENT_MAX_BYTES)
    if upload.size is None or upload.size > limit:
        raise UploadTooLarge(f"files may be at most {limit} bytes")
    if not limits.allow_upload(visitor.public_id):
        raise ChatRateLimited("too many uploads; wait a moment")
    if ip is not None and not limits.allow_ip_upload_bytes(ip, upload.size):
        raise ChatRateLimited("too many bytes uploaded from your address; try again later")
    if ChatUpload.objects.filter(visitor=visitor, used_at__isnull=True).count() >= MAX_PENDING_UPLOADS:
        raise ChatInputError(f"at most {MAX_PENDING_UPLOADS} files may wait to be sent")
    content = upload.read(limit + 1)
    if len(content) > limit:
        raise UploadTooLarge(f"files may be at most {limit} bytes")
    if not content:
        raise ChatInputError("the file is empty")
    declared = str(upload.content_type or "")[:127]
    item = ChatUpload(
        visitor=visitor,
        filename=safe_filename(str(upload.name or "")),
        content_type=sniff_content_type(content, declared),
        size=len(content),
    )
    item.file.save(item.public_id.hex, ContentFile(content), save=False)
    item.save()
    return item


def do_remove_stale_chat_uploads(now: datetime | None = None) -> int:
    """Uploads never sent within a day (and sent ones after a week: their bytes live on as
    attachments) are deleted with their files."""
    now = now or timezone.now()
    stale = ChatUpload.objects.filter(
        Q(used_at__isnull=True, created_at__lt=now - UNUSED_UPLOAD_MAX_AGE)
        | Q(used_at__isnull=False, used_at__lt=now - USED_UPLOAD_MAX_AGE)
    ).order_by("id")[:1000]
    removed = 0
    for upload in stale:
        try:
            upload.file.delete(save=False)
        except OSError:
            logger.warning("could not delete the file of %s", upload, exc_info=True)
        upload.delete()
        removed += 1
    return removed


# --- receipts, page, typing ------------------------------------------------------------------------


def do_mark_chat_read(conversation: ChatConversation, *, message_id: Any) -> bool:
    """The visitor has read up to `message_id`: their chat deliveries up to it move to READ
    (forward only), `visitor_read_message_id` moves on. False if it was no step forward."""
    from channels_inbox.actions.delivery import do_record_delivery_status

    mid = _message_id(message_id)
    if mid <= conversation.visitor_read_message_id:
        return False
    # Clamped to the conversation's newest public message up to it: the answer never tells
    # whether some other id (a note, another ticket's message) exists.
    mid = (
        Message.objects.filter(
            ticket_id=conversation.ticket_id, direction__in=[Direction.INBOUND, Direction.OUTBOUND], pk__lte=mid
        )
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
        or 0
    )
    if mid <= conversation.visitor_read_message_id:
        return False
    with transaction.atomic():
        # Lock order as delivery → ticket everywhere (channels_inbox/actions/delivery.py).
        deliveries = list(
            OutboundDelivery.objects.select_for_update()
            .filter(
                message__ticket_id=conversation.ticket_id,
                inbox_id=conversation.inbox_id,
                message_id__lte=mid,
                status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED],
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Then chat → ticket, as helpdesk/actions/chats.py locks them.
        conv = ChatConversation.objects.select_for_update().get(pk=conversation.pk)
        if mid <= conv.visitor_read_message_id:
            return False
        conv.visitor_read_message_id = mid
        conv.save(update_fields=["visitor_read_message_id"])
        conversation.visitor_read_message_id = mid
        for delivery_id in deliveries:
            do_record_delivery_status(delivery_id, DeliveryStatus.READ)
    return True


def do_mark_chat_seen(conversation: ChatConversation, *, actor: User | None, message_id: int) -> bool:
    """An agent has seen the visitor's messages up to `message_id`: a ChatSeen event (the
    widget's "Seen") when that moves forward; False otherwise."""
    mid = _message_id(message_id)
    with transaction.atomic():
        # Chat → ticket, the order helpdesk/actions/chats.py locks them in.
        conv = ChatConversation.objects.select_for_update().get(pk=conversation.pk)
        ticket = Ticket.objects.select_for_update().get(pk=conversation.ticket_id)
        if mid <= conv.agent_read_message_id:
            return False
        conv.agent_read_message_id = mid
        conv.save(update_fields=["agent_read_message_id"])
        conversation.agent_read_message_id = mid
        append_event(ticket, ChatSeen(message_id=mid), actor=actor)
    return True


def _publish_visitor(ticket_id: int, visitor: ChatVisitor, *, typing: bool) -> None:
    """`chat.visitor` on the ticket's group (the desk shows typing and the current page)."""
    from helpdesk.realtime import _batch_for_this_transaction, ticket_group

    message = {
        "type": "chat.visitor",
        "ticket_id": ticket_id,
        "visitor": visitor.public_id.hex,
        "typing": typing,
        "url": visitor.current_url,
        "title": visitor.page_title,
    }
    _batch_for_this_transaction().add([ticket_group(ticket_id)], message)


def do_record_chat_page(visitor: ChatVisitor, *, url: Any, title: Any) -> None:
    """The page the visitor is on now; the agents of its open chat see it live."""
    url = clean_page_url(url)
    title = clean_text(title, "title", max_chars=MAX_TITLE_CHARS)
    if not limits.allow_ping(visitor.public_id):
        raise ChatRateLimited("too many page reports")
    with transaction.atomic():
        ChatVisitor.objects.filter(pk=visitor.pk).update(current_url=url, page_title=title, last_seen_at=timezone.now())
        visitor.current_url, visitor.page_title = url, title
        conv = open_conversation(visitor)
        if conv is not None:
            _publish_visitor(conv.ticket_id, visitor, typing=False)


def publish_visitor_typing(visitor: ChatVisitor, conversation: ChatConversation, *, typing: Any) -> None:
    """The visitor types (or stopped): told to the desk, stored nowhere."""
    if not isinstance(typing, bool):
        raise ChatInputError("typing must be true or false")
    if not limits.allow_ping(visitor.public_id):
        raise ChatRateLimited("too many typing reports")
    if conversation.status != ChatStatus.ENDED:
        _publish_visitor(conversation.ticket_id, visitor, typing=typing)


def do_mark_proactive_shown(visitor: ChatVisitor, *, rule: Any) -> None:
    key = clean_text(rule, "rule", max_chars=64)
    try:
        rules = clean_proactive(visitor.inbox.settings.get("proactive"))
    except ValueError:
        rules = []
    if key not in {r["key"] for r in rules}:
        raise ChatInputError("no such proactive rule")
    ChatProactiveShown.objects.bulk_create([ChatProactiveShown(visitor=visitor, rule_key=key)], ignore_conflicts=True)


def proactive_shown(visitor: ChatVisitor) -> list[str]:
    return sorted(ChatProactiveShown.objects.filter(visitor=visitor).values_list("rule_key", flat=True))


# --- end, rating, transcript ----------------------------------------------------------------------


def do_end_chat_by_visitor(conversation: ChatConversation) -> ChatConversation:
    """The visitor closes the chat (helpdesk/actions/chats.py does the closing)."""
    from helpdesk.actions.chats import do_end_chat

    if conversation.status != ChatStatus.ENDED:
        do_end_chat(conversation, actor=None, by="visitor")
    return ChatConversation.objects.select_related("ticket__assignee", "inbox", "visitor").get(pk=conversation.pk)


def do_rate_chat(conversation: ChatConversation, *, rating: Any, comment: Any = "") -> ChatConversation:
    """The visitor's satisfaction rating: once, only after the chat ended (ChatConflict else)."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ChatInputError("rating must be a whole number from 1 to 5")
    text = clean_text(comment, "comment", max_chars=MAX_COMMENT_CHARS)
    with transaction.atomic():
        # Chat → ticket, the order helpdesk/actions/chats.py locks them in.
        conv = ChatConversation.objects.select_for_update().get(pk=conversation.pk)
        ticket = Ticket.objects.select_for_update().get(pk=conversation.ticket_id)
        if conv.status != ChatStatus.ENDED:
            raise ChatConflict("a chat can be rated once it has ended")
        if conv.rating is not None:
            raise ChatConflict("this chat has been rated already")
        conv.rating, conv.rating_comment, conv.rated_at = rating, text, timezone.now()
        conv.save(update_fields=["rating", "rating_comment", "rated_at"])
        append_event(ticket, ChatRated(rating=rating, has_comment=bool(text)), customer=ticket.customer)
    return ChatConversation.objects.select_related("ticket__assignee", "inbox", "visitor").get(pk=conversation.pk)


def do_request_chat_transcript(
    conversation: ChatConversation,
    *,
    email: Any = None,
    actor: User | None,
    visitor: ChatVisitor | None = None,
    ip: str | None = None,
) -> str:
    """Email the conversation's public messages (a Celery task); returns the address.

    An agent (`actor`) must be allowed to reply on the ticket and may name any address
    (default: the visitor's known one). A visitor (actor None; `visitor` is the one asking,
    default the conversation's) gets it only at its known address — its contact email or its
    verified customer's address; a body `email` is taken only while it has none (it becomes
    its contact email), so the widget is no mail relay. Visitors are limited per hour, per
    visitor and per client address (`ip`).
    """
    from channels_inbox.tasks import send_chat_transcript
    from helpdesk.permissions import ticket_policy

    if actor is not None:
        if not ticket_policy.can_reply(actor, conversation.ticket):
            raise PermissionDenied("you may not send this chat's transcript")
        address = clean_email(email) or continuity_address(conversation.visitor)
        if not address:
            raise ChatInputError("an email address is needed for the transcript")
        with transaction.atomic():
            enqueue(send_chat_transcript, conversation.pk, address)
        return address
    asking = visitor or conversation.visitor
    given = clean_email(email)
    known = continuity_address(asking)
    if known and given and given != known:
        raise ChatInputError("the transcript goes to the address you gave before; leave the email out")
    address = known or given
    if not address:
        raise ChatInputError("an email address is needed for the transcript")
    if not limits.allow_transcript(asking.public_id):
        raise ChatRateLimited("too many transcripts requested; try again later")
    if ip is not None and not limits.allow_ip_transcript(ip):
        raise ChatRateLimited("too many transcripts requested from your address; try again later")
    with transaction.atomic():
        if not known:
            # The first address this visitor gives: its contact email from now on.
            ChatVisitor.objects.filter(pk=asking.pk, email="").update(email=address)
            asking.email = asking.email or address
        enqueue(send_chat_transcript, conversation.pk, address)
    return address


def transcript_text(conversation: ChatConversation) -> str:
    messages = (
        Message.objects.filter(ticket_id=conversation.ticket_id, direction__in=[Direction.INBOUND, Direction.OUTBOUND])
        .select_related("author_agent", "author_customer")
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )
    lines = [f"Chat transcript — {conversation.inbox.name}", ""]
    for message in messages:
        if message.direction == Direction.INBOUND:
            who = (message.author_customer.name if message.author_customer else "") or "You"
        else:
            who = agent_name(message.author_agent) or AGENT_FALLBACK_NAME
        when = message.created_at.strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"[{when}] {who}:")
        lines.extend(f"  {line}" for line in (message.text or "").splitlines() or [""])
        for attachment in message.attachments.all():
            lines.append(f"  (file: {attachment.filename}, {attachment.size} bytes)")
        lines.append("")
    return "\n".join(lines)


def do_send_chat_transcript(conversation_id: int, email: str) -> bool:
    """The transcript task's work: send_mail the plain text, set transcript_sent_at."""
    conversation = (
        ChatConversation.objects.select_related("inbox", "ticket", "visitor").filter(pk=conversation_id).first()
    )
    if conversation is None:
        return False
    subject = f"Your chat with {conversation.inbox.name} [#{conversation.ticket.number}]"
    send_mail(subject, transcript_text(conversation), settings.DEFAULT_FROM_EMAIL, [email], fail_silently=False)
    ChatConversation.objects.filter(pk=conversation_id).update(transcript_sent_at=timezone.now())
    return True


# --- continuity by email ----------------------------------------------------------------------------


def do_queue_chat_continuity_email(
    delivery: OutboundDelivery, *, visitor: ChatVisitor | None = None
) -> OutboundDelivery | None:
    """The visitor left: the same reply, once more, through the chat inbox's
    `continuity_email_inbox` to the visitor's address (an outbox row, sent by `deliver`).

    Its signed reply address leads the visitor's answer back to this ticket, which takes mail
    only from its customer and CCs (helpdesk/actions/ingest.py, `_Threads.writer`): an address
    nobody holds becomes an (unverified) email identity of the ticket's own customer; only an
    address another customer holds makes that customer a CC (and what it writes is never shown
    in the widget, chat/frames.py). None when there is no email inbox, no address, or it was
    queued already (a retried send). `visitor`: whose address (default: the delivery's
    recipient visitor; the adapter passes the conversation's own).
    """
    from channels_inbox.tasks import deliver

    inbox = delivery.inbox
    slug = str(inbox.settings.get("continuity_email_inbox") or "")
    if not slug:
        return None
    email_inbox = Inbox.objects.filter(slug=slug, kind="email", is_active=True).first()
    if email_inbox is None:
        logger.warning("chat inbox %s: continuity_email_inbox %r is not an active email inbox", inbox.pk, slug)
        return None
    if visitor is None:
        # Without the conversation's visitor (the caller's choice), the delivery's recipient.
        try:
            visitor_id = uuid.UUID(hex=delivery.recipient)
        except ValueError:
            return None
        visitor = ChatVisitor.objects.filter(inbox=inbox, public_id=visitor_id).first()
    address = continuity_address(visitor) if visitor is not None else ""
    if not address:
        return None
    now = timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=delivery.message.ticket_id)
        if OutboundDelivery.objects.filter(message_id=delivery.message_id, inbox=email_inbox).exists():
            return None
        holder = (
            Identity.objects.filter(kind=IdentityKind.EMAIL, value=address)
            .values_list("customer_id", flat=True)
            .first()
        )
        if holder is None:
            Identity.objects.bulk_create(
                [Identity(customer_id=ticket.customer_id, kind=IdentityKind.EMAIL, value=address, raw_value=address)],
                ignore_conflicts=True,
            )
            holder = (
                Identity.objects.filter(kind=IdentityKind.EMAIL, value=address)
                .values_list("customer_id", flat=True)
                .first()
            )
        if holder is not None and holder != ticket.customer_id:
            TicketCC.objects.bulk_create([TicketCC(ticket=ticket, customer_id=holder)], ignore_conflicts=True)
        copy = OutboundDelivery.objects.create(
            message_id=delivery.message_id, inbox=email_inbox, recipient=address, next_attempt_at=now
        )
        enqueue(deliver, copy.pk)
    return copy
