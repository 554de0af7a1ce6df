"""Reads for the desk: lists and the ticket page, prefetched for the whole page."""

from __future__ import annotations

import base64
import binascii
import html as html_lib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import nh3
from django.db.models import BinaryField, Exists, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_inbox.email.parse import parse_email
from channels_inbox.email.tokens import strip_reply_prefixes
from channels_inbox.models import InboundEvent, InboundEventStatus
from customers.models import Identity, IdentityKind
from helpdesk.html import sanitize_html
from helpdesk.models import Attachment, Message, Ticket, TicketCC, TicketEvent, TicketStatus
from helpdesk.models.ticket import UNSOLVED_STATUSES
from helpdesk.permissions import team_ids_of, ticket_policy

PAGE_SIZE = 50

VIEWS: dict[str, str] = {
    "open": "All open",
    "mine": "Mine",
    "unassigned": "Unassigned",
    "my_teams": "My teams",
    "pending": "Pending",
    "solved": "Solved",
    "all": "All",
}


def view_queryset(user: Any, view: str) -> QuerySet[Ticket]:
    tickets = ticket_policy.visible(user)
    open_statuses = [TicketStatus.NEW, TicketStatus.OPEN]
    if view == "mine":
        return tickets.filter(assignee=user, status__in=UNSOLVED_STATUSES)
    if view == "unassigned":
        return tickets.filter(assignee__isnull=True, status__in=open_statuses)
    if view == "my_teams":
        return tickets.filter(team_id__in=team_ids_of(user), status__in=UNSOLVED_STATUSES)
    if view == "pending":
        return tickets.filter(status__in=[TicketStatus.PENDING, TicketStatus.ON_HOLD])
    if view == "solved":
        return tickets.filter(status__in=[TicketStatus.SOLVED, TicketStatus.CLOSED])
    if view == "all":
        return tickets
    return tickets.filter(status__in=open_statuses)


@dataclass
class Page:
    tickets: list[Ticket]
    next_cursor: str | None


def encode_cursor(ticket: Ticket) -> str:
    raw = f"{ticket.last_activity_at.isoformat()}|{ticket.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    """The position a cursor names, or None for anything this module did not write."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, pk = raw.partition("|")
        parsed = parse_datetime(when)
        position = int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # Our cursors always carry an offset; a naive time would be compared in the wrong zone.
    if parsed is None or timezone.is_naive(parsed):
        return None
    return parsed, position


def ticket_page(user: Any, view: str, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """One page of a view, newest activity first, by cursor (last_activity_at, id)."""
    tickets = view_queryset(user, view).select_related("customer", "assignee", "team", "inbox")
    position = decode_cursor(cursor) if cursor else None
    if position is not None:
        when, pk = position
        tickets = tickets.filter(Q(last_activity_at__lt=when) | Q(last_activity_at=when, id__lt=pk))
    rows = list(tickets.order_by("-last_activity_at", "-id")[: size + 1])
    next_cursor = encode_cursor(rows[size - 1]) if len(rows) > size else None
    return Page(tickets=rows[:size], next_cursor=next_cursor)


def ticket_timeline(ticket: Ticket) -> list[Message | TicketEvent]:
    """Messages and the events worth showing between them, in order.

    Each message gets `mail` (an EmailView for email, else None) and `listed_attachments`
    (its attachments without the inline images its HTML shows).
    """
    messages = list(
        ticket.messages.select_related("author_customer", "author_agent", "inbox")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")), "deliveries")
        .annotate(has_raw=Exists(InboundEvent.objects.filter(message_id=OuterRef("pk"))))
    )
    for message in messages:
        attachments = list(message.attachments.all())
        shown_inline = inline_images_shown(message, attachments)
        message.listed_attachments = [a for a in attachments if a.pk not in shown_inline]  # type: ignore[attr-defined]
        message.mail = email_view(message, ticket) if message.channel == "email" else None  # type: ignore[attr-defined]
    shown = ["status_changed", "assigned", "team_changed", "priority_changed", "followup_created", "created"]
    events = list(ticket.events.filter(type__in=shown).select_related("actor", "actor_customer"))
    timeline: list[Message | TicketEvent] = [*messages, *events]
    timeline.sort(key=lambda item: (item.created_at, 0 if isinstance(item, TicketEvent) else 1))
    return timeline


def events_after(ticket: Ticket, seq: int, limit: int = 500) -> list[TicketEvent]:
    return list(ticket.events.filter(seq__gt=seq).order_by("seq")[:limit])


# --- email on the ticket page ---------------------------------------------------------------

# Image types a browser shows from an inline `cid:` reference (no SVG: it can carry script).
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Inline images one HTML view embeds at most (bytes); beyond it the rest stay listed as files.
INLINE_EMBED_MAX_BYTES = 8 * 1024 * 1024
_CID_REF = re.compile(r"""\bcid:([^"'\s<>]+)""", re.I)
_SUBJECT_TOKEN = re.compile(r"\[#\d{1,18}\]")


@dataclass
class EmailView:
    """What the timeline shows of one email message (from its metadata["email"])."""

    sender: str
    to: list[str]
    cc: list[str]
    # The message's own subject; "" when it is the ticket's (give or take Re: and the token).
    subject: str
    # The new part of a reply; the full text is shown behind "Show quoted text" when it differs.
    visible_text: str
    full_text: str
    has_quote: bool
    parse_error: str
    automatic: str
    has_html: bool
    has_raw: bool
    over_limit: list[dict[str, Any]] = field(default_factory=list)


def _same_subject(a: str, b: str) -> bool:
    def norm(subject: str) -> str:
        return " ".join(strip_reply_prefixes(_SUBJECT_TOKEN.sub(" ", subject or "")).split()).casefold()

    return norm(a) == norm(b)


def _strings(value: Any, limit: int = 50) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [str(v) for v in value[:limit] if v]
    return []


def email_view(message: Message, ticket: Ticket) -> EmailView:
    meta = message.metadata.get("email") if isinstance(message.metadata, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    full_text = message.text or ""
    visible = meta.get("visible_text")
    visible_text = visible if isinstance(visible, str) and visible.strip() else full_text
    subject = str(meta.get("subject") or "")
    over_limit = [
        {"filename": str(item.get("filename") or "attachment"), "size": int(item.get("size") or 0)}
        for item in meta.get("attachments_over_limit") or []
        if isinstance(item, dict)
    ]
    return EmailView(
        sender=str(meta.get("from") or ""),
        to=_strings(meta.get("to")),
        cc=_strings(meta.get("cc")),
        subject="" if not subject or _same_subject(subject, ticket.subject) else subject,
        visible_text=visible_text,
        full_text=full_text,
        has_quote=bool(full_text.strip()) and visible_text.strip() != full_text.strip(),
        parse_error=str(meta.get("parse_error") or ""),
        automatic=str(meta.get("automatic") or ""),
        has_html=bool(message.html),
        has_raw=bool(getattr(message, "has_raw", False)),
        over_limit=over_limit,
    )


def cid_references(html: str) -> set[str]:
    """The Content-IDs an HTML body refers to as `cid:…` (RFC 2392: URL-encoded), lower-cased."""
    return {unquote(html_lib.unescape(ref)).strip("<>").lower() for ref in _CID_REF.findall(html or "")}


def embedded_images(message: Message, attachments: list[Attachment]) -> dict[str, Attachment]:
    """Content-ID (lower-cased) → the attachment the HTML view embeds for it.

    Only attachments of this message with that Content-ID and a safe image type, at most
    INLINE_EMBED_MAX_BYTES together (the first ones, in order); every other `cid:`
    reference stays as it is (a broken image).
    """
    if not message.html:
        return {}
    refs = cid_references(message.html)
    chosen: dict[str, Attachment] = {}
    total = 0
    for attachment in sorted(attachments, key=lambda a: a.pk):
        cid = attachment.content_id.lower()
        if not cid or cid not in refs or cid in chosen or attachment.content_type not in INLINE_IMAGE_TYPES:
            continue
        if total + attachment.size > INLINE_EMBED_MAX_BYTES:
            continue
        chosen[cid] = attachment
        total += attachment.size
    return chosen


def inline_images_shown(message: Message, attachments: list[Attachment]) -> set[int]:
    """Ids of the inline attachments the message's HTML view shows (not listed again as files)."""
    return {a.pk for a in embedded_images(message, attachments).values() if a.inline}


def _data_url(attachment: Attachment) -> str | None:
    try:
        with attachment.file.open("rb") as handle:
            content = handle.read()
    except FileNotFoundError:
        return None
    return f"data:{attachment.content_type};base64,{base64.b64encode(content).decode()}"


def message_html_body(message: Message) -> str:
    """The message's stored HTML, sanitized once more, with its `cid:` images embedded.

    Embedded as data: URLs, not linked: the HTML is shown in a sandboxed frame, whose
    opaque origin makes every request from it cross-site, so the browser sends no session
    cookie (SameSite) and an attachment URL would only find the sign-in page.
    """
    if not message.html:
        return ""
    chosen = embedded_images(message, list(message.attachments.exclude(content_id="")))
    urls = {cid: url for cid, attachment in chosen.items() if (url := _data_url(attachment))}

    def rewrite(element: str, attribute: str, value: str) -> str | None:
        if element == "img" and attribute == "src" and value[:4].lower() == "cid:":
            return urls.get(unquote(value[4:]).strip("<>").lower(), value)
        return value

    return nh3.clean(
        sanitize_html(message.html),
        attribute_filter=rewrite,
        link_rel="noopener noreferrer nofollow",
        url_schemes={"http", "https", "mailto", "tel", "cid"},
    )


def raw_email(message: Message) -> bytes | None:
    """The raw bytes the message was made from (its first inbound event), or None if none are kept."""
    if message.channel != "email":
        return None
    payload = InboundEvent.objects.filter(message=message).order_by("id").values_list("payload", flat=True).first()
    raw = bytes(payload) if payload is not None else b""
    return raw or None


def ticket_ccs(ticket: Ticket) -> list[TicketCC]:
    """The ticket's CCs with their customers and email identities (`email_identities`), prefetched."""
    identities = Identity.objects.filter(kind=IdentityKind.EMAIL).order_by("id")
    return list(
        ticket.ccs.select_related("customer")
        .prefetch_related(Prefetch("customer__identities", queryset=identities, to_attr="email_identities"))
        .order_by("created_at", "id")
    )


# --- held inbound events ------------------------------------------------------------------

HELD_PAGE_SIZE = 100
# Enough of a payload to hold any sane mail's header block.
_HEAD_BYTES = 65_536


@dataclass
class HeldEvent:
    event: InboundEvent
    is_email: bool
    sender: str
    subject: str


@dataclass
class HeldPage:
    events: list[HeldEvent]
    next_before: int | None


def held_event_count() -> int:
    return InboundEvent.objects.filter(status=InboundEventStatus.HELD).count()


def _header_block(head: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end != -1:
            return head[: end + len(separator)]
    return head


def held_events_page(before: int | None = None, size: int = HELD_PAGE_SIZE) -> HeldPage:
    """Held events, newest first, by cursor (id); an email's From and Subject read from its headers.

    Only the start of each payload is read from the database (a held mail may be megabytes).
    """
    events = (
        InboundEvent.objects.filter(status=InboundEventStatus.HELD)
        .select_related("inbox")
        .defer("payload")
        .annotate(head=Substr("payload", 1, _HEAD_BYTES, output_field=BinaryField()))
        .order_by("-id")
    )
    if before is not None:
        events = events.filter(id__lt=before)
    rows = list(events[: size + 1])
    result = []
    for event in rows[:size]:
        is_email = event.inbox.kind == "email"
        sender = subject = ""
        if is_email:
            head = bytes(getattr(event, "head", None) or b"")
            mail = parse_email(_header_block(head))
            if mail.from_ is not None:
                sender = f"{mail.from_.name} <{mail.from_.address}>" if mail.from_.name else mail.from_.address
            subject = mail.subject
        result.append(HeldEvent(event=event, is_email=is_email, sender=sender, subject=subject))
    return HeldPage(events=result, next_before=rows[size - 1].pk if len(rows) > size else None)
