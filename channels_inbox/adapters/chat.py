"""The live-chat channel: the website widget's visitors write in, agents answer live.

Inbound: the widget's HTTP API and websocket (channels_inbox/views/widget.py,
channels_inbox/consumers.py) store each visitor message as an InboundEvent whose payload
is our own JSON (`chat_payload`), then process it inline; `parse` turns it into an
InboundMessage from the visitor's `chat_visitor` identity, threaded by the conversation's
key. `after_ingest` opens the ChatConversation of a new ticket and queues its routing.

Outbound: the visitor's live copy of an agent reply leaves with the reply's `reply_added`
event; `send` only decides what happens when nobody is there to see it: a visitor seen a
moment ago may be back (the delivery waits), one who left gets the reply by email through
the inbox's `continuity_email_inbox` when an address is known. See docs/chat.md.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_inbox.adapters import register
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelAdapter,
    DeliveryDeferred,
    DeliveryError,
    IdentityRef,
    InboundAttachment,
    InboundMessage,
    InboundSender,
    SendResult,
)
from customers.models import IdentityKind

if TYPE_CHECKING:
    from channels_inbox.models import ChatVisitor, Inbox, OutboundDelivery

PAYLOAD_VERSION = 1
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRECHAT_MODES = ("off", "optional", "required")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
DEFAULT_COLOR = "#2563eb"
MAX_PROACTIVE_RULES = 20


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def _json_setting(value: Any, name: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except (ValueError, RecursionError):
            raise ValueError(f"{name} must be JSON") from None
    return value


def clean_office_hours(value: Any) -> dict[str, Any] | None:
    """`{"tz": "Europe/Prague", "days": {"mon": [["09:00", "17:00"]], …}}`, validated (None: always open)."""
    value = _json_setting(value, "office_hours")
    if value in (None, {}, ""):
        return None
    if not isinstance(value, dict) or set(value) - {"tz", "days"}:
        raise ValueError('office_hours must be {"tz": "<IANA zone>", "days": {"mon": [["09:00","17:00"]], …}}')
    tz = value.get("tz") or "UTC"
    if not isinstance(tz, str):
        raise ValueError("office_hours.tz must be a time zone name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"office_hours.tz: unknown time zone {tz!r}") from None
    days = value.get("days") or {}
    if not isinstance(days, dict) or set(days) - set(DAYS):
        raise ValueError(f"office_hours.days must map {', '.join(DAYS)} to lists of [from, to]")
    clean: dict[str, list[list[str]]] = {}
    for day, spans in days.items():
        if not isinstance(spans, list) or len(spans) > 10:
            raise ValueError(f"office_hours.days.{day} must be a list of [from, to] (at most 10)")
        clean[day] = []
        for span in spans:
            if (
                not isinstance(span, list)
                or len(span) != 2
                or not all(isinstance(t, str) and _HHMM.match(t) for t in span)
                or span[0] >= span[1]
            ):
                raise ValueError(f'office_hours.days.{day}: each span is ["HH:MM", "HH:MM"], from before to')
            clean[day].append([span[0], span[1]])
    return {"tz": tz, "days": clean}


def is_online(inbox: Inbox, now: datetime | None = None) -> bool:
    """Within the inbox's office hours now (no office hours: always)."""
    try:
        hours = clean_office_hours(inbox.settings.get("office_hours"))
    except ValueError:
        return True
    if hours is None:
        return True
    local = (now or timezone.now()).astimezone(ZoneInfo(hours["tz"]))
    spans = hours["days"].get(DAYS[local.weekday()], [])
    hhmm = local.strftime("%H:%M")
    return any(start <= hhmm < end for start, end in spans)


def office_hours_text(inbox: Inbox) -> str:
    """ "mon 09:00–12:00, 13:00–17:00; tue …  (Europe/Prague)", or '' without office hours."""
    try:
        hours = clean_office_hours(inbox.settings.get("office_hours"))
    except ValueError:
        return ""
    if not hours:
        return ""
    parts = [f"{day} " + ", ".join(f"{a}–{b}" for a, b in hours["days"][day]) for day in DAYS if hours["days"].get(day)]
    return "; ".join(parts) + f" ({hours['tz']})"


def clean_proactive(value: Any) -> list[dict[str, Any]]:
    value = _json_setting(value, "proactive")
    if value in (None, ""):
        return []
    if not isinstance(value, list) or len(value) > MAX_PROACTIVE_RULES:
        raise ValueError(f"proactive must be a JSON list of at most {MAX_PROACTIVE_RULES} rules")
    rules, keys = [], set()
    for rule in value:
        if not isinstance(rule, dict) or set(rule) - {"key", "url_contains", "after_seconds", "message"}:
            raise ValueError('each proactive rule is {"key", "url_contains", "after_seconds", "message"}')
        key, message = rule.get("key"), rule.get("message")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key) or key in keys:
            raise ValueError("proactive rule keys are unique, 1–64 of A-Z a-z 0-9 _ . -")
        if not isinstance(message, str) or not message.strip() or len(message) > 1000:
            raise ValueError(f"proactive rule {key}: message must be 1–1000 characters")
        contains = rule.get("url_contains", "")
        if not isinstance(contains, str) or len(contains) > 500:
            raise ValueError(f"proactive rule {key}: url_contains must be a string")
        after = rule.get("after_seconds", 0)
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= 86400:
            raise ValueError(f"proactive rule {key}: after_seconds must be 0–86400")
        keys.add(key)
        rules.append({"key": key, "url_contains": contains, "after_seconds": after, "message": message.strip()})
    return rules


def prechat_mode(inbox: Inbox, name: str) -> str:
    value = str(inbox.settings.get(f"prechat_{name}") or "off").strip().lower()
    return value if value in PRECHAT_MODES else "off"


def inbox_color(inbox: Inbox) -> str:
    value = str(inbox.settings.get("color") or "")
    return value.lower() if _COLOR.match(value) else DEFAULT_COLOR


def inbox_position(inbox: Inbox) -> str:
    return "left" if str(inbox.settings.get("position") or "") == "left" else "right"


def chat_payload(
    *,
    visitor_hex: str,
    client_msg_id: str,
    thread_key: str,
    text: str,
    uploads: list[str],
    name: str = "",
    verified_email: str = "",
    url: str = "",
    title: str = "",
    prechat: dict[str, str] | None = None,
) -> bytes:
    """The stored form of one visitor message (an InboundEvent's payload)."""
    body = {
        "v": PAYLOAD_VERSION,
        "visitor": visitor_hex,
        "client_msg_id": client_msg_id,
        "thread_key": thread_key,
        "text": text,
        "uploads": uploads,
        "name": name,
        "verified_email": verified_email,
        "url": url,
        "title": title,
        "prechat": prechat or {},
        "sent_at": timezone.now().isoformat(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def dedupe_key(visitor_hex: str, client_msg_id: str) -> str:
    return f"chat:{visitor_hex}:{client_msg_id}"


@register
class ChatAdapter(ChannelAdapter):
    kind = "chat"
    label = "Live chat"
    generated_secrets = ("identity_secret",)
    # Visitors write through /widget/v1/ (token auth), never through the generic webhook door.
    accepts_webhooks = False
    settings_help = {
        "color": f"the widget's colour, #rrggbb (default {DEFAULT_COLOR})",
        "position": "right (default) or left: where the launcher sits",
        "greeting": "first line the widget shows, e.g. 'Hi! How can we help?'",
        "offline_message": "shown outside office hours (messages are still taken)",
        "office_hours": 'JSON {"tz": "Europe/Prague", "days": {"mon": [["09:00","12:00"],["13:00","17:00"]], …}}'
        " (empty: always online)",
        "prechat_name": "pre-chat form's name field: off (default), optional or required",
        "prechat_email": "pre-chat form's email field: off (default), optional or required",
        "prechat_message": "text above the pre-chat form",
        "allowed_origins": "websites that may embed the widget, space or comma separated, e.g. https://shop.example",
        "proactive": 'JSON list of {"key", "url_contains", "after_seconds", "message"}: shown once per visitor',
        "csat": "true (default) or false: ask for a rating when the chat ends",
        "sound": "true (default) or false: a sound on new agent messages",
        "continuity_email_inbox": "slug of an email inbox: replies to a visitor who left go out by email through it",
        "locale": "the widget's language when the page names none (en, zh-Hans, cs, ru)",
    }

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        from channels_inbox.chat.origins import normalize_origin

        values = super().clean_settings(values)
        if values.get("color") not in (None, ""):
            if not isinstance(values["color"], str) or not _COLOR.match(values["color"]):
                raise ValueError("color must be #rrggbb")
            values["color"] = values["color"].lower()
        if values.get("position") not in (None, "", "right", "left"):
            raise ValueError("position must be right or left")
        for name in ("prechat_name", "prechat_email"):
            if values.get(name) not in (None, "", *PRECHAT_MODES):
                raise ValueError(f"{name} must be off, optional or required")
        for name in ("greeting", "offline_message", "prechat_message"):
            if values.get(name) is not None and (not isinstance(values[name], str) or len(values[name]) > 1000):
                raise ValueError(f"{name} must be text of at most 1000 characters")
        if "office_hours" in values:
            values["office_hours"] = clean_office_hours(values["office_hours"])
        if "proactive" in values:
            values["proactive"] = clean_proactive(values["proactive"])
        for name in ("csat", "sound"):
            if values.get(name) is not None:
                raw = values[name]
                if not isinstance(raw, bool) and str(raw).strip().lower() not in _TRUE | _FALSE:
                    raise ValueError(f"{name} must be true or false")
                values[name] = _flag(raw, True)
        if values.get("allowed_origins") not in (None, ""):
            raw = values["allowed_origins"]
            items = raw.replace(",", " ").split() if isinstance(raw, str) else raw
            if not isinstance(items, list):
                raise ValueError("allowed_origins must be origins separated by spaces or commas")
            clean = []
            for item in items:
                origin = normalize_origin(item) if isinstance(item, str) else ""
                if not origin:
                    raise ValueError(f"allowed_origins: {item!r} is not an origin like https://shop.example")
                clean.append(origin)
            values["allowed_origins"] = " ".join(dict.fromkeys(clean))
        slug = values.get("continuity_email_inbox")
        if slug not in (None, ""):
            from channels_inbox.models import Inbox

            if not Inbox.objects.filter(slug=str(slug), kind="email").exists():
                raise ValueError(f"continuity_email_inbox: no email inbox {slug!r}")
        return values

    # --- inbound ---------------------------------------------------------------------------
    def parse(self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]) -> InboundMessage:
        from channels_inbox.models import ChatUpload

        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadPayload(f"chat payload is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != PAYLOAD_VERSION:
            raise BadPayload("not a chat message payload")
        visitor, client_msg_id = data.get("visitor"), data.get("client_msg_id")
        thread_key = data.get("thread_key")
        if not (
            isinstance(visitor, str)
            and isinstance(client_msg_id, str)
            and isinstance(thread_key, str)
            and visitor
            and client_msg_id
            and thread_key
        ):
            raise BadPayload("chat payload needs visitor, client_msg_id and thread_key")
        identities = [IdentityRef(IdentityKind.CHAT_VISITOR, visitor)]
        # Only an address that came with a verified identify: an unverified one is contact
        # details of the visitor, never an identity (it would claim another customer's history).
        verified_email = data.get("verified_email") or ""
        if isinstance(verified_email, str) and verified_email:
            identities.append(IdentityRef(IdentityKind.EMAIL, verified_email))
        attachments = []
        upload_ids = [u for u in (data.get("uploads") or []) if isinstance(u, str)]
        if upload_ids:
            ids = []
            for value in upload_ids:
                try:
                    ids.append(uuid.UUID(value))
                except ValueError:
                    continue
            uploads = ChatUpload.objects.filter(public_id__in=ids, visitor__public_id=uuid.UUID(hex=visitor))
            for upload in sorted(uploads, key=lambda u: upload_ids.index(u.public_id.hex)):
                try:
                    with upload.file.open("rb") as handle:
                        content = handle.read()
                except (FileNotFoundError, OSError):
                    continue
                attachments.append(
                    InboundAttachment(filename=upload.filename, content=content, declared_type=upload.content_type)
                )
        sent_at = parse_datetime(data["sent_at"]) if isinstance(data.get("sent_at"), str) else None
        metadata: dict[str, Any] = {
            "chat": {
                "visitor": visitor,
                "client_msg_id": client_msg_id,
                "url": str(data.get("url") or "")[:2000],
                "title": str(data.get("title") or "")[:300],
            }
        }
        if isinstance(data.get("prechat"), dict) and data["prechat"]:
            metadata["chat"]["prechat"] = data["prechat"]
        return InboundMessage(
            external_id=dedupe_key(visitor, client_msg_id),
            sender=InboundSender(identities=identities, name=str(data.get("name") or "")[:200]),
            text=str(data.get("text") or ""),
            thread_key=thread_key,
            attachments=attachments,
            sent_at=sent_at,
            metadata=metadata,
            thread_by_customer=False,
        )

    def after_ingest(self, inbox: Inbox, results: list[Any]) -> None:
        """Give a visitor without a customer its ticket's (a page view makes none), open the
        ChatConversation of each new chat ticket, and queue its routing."""
        from channels_inbox.models import ChatConversation, ChatStatus, ChatVisitor
        from helpdesk.sideeffects import enqueue

        _adopt_customers(inbox, results)
        new = [r for r in results if r.created_ticket and r.message is not None and r.ticket is not None]
        if not new:
            return
        chat_of = {r.ticket.pk: (r.message.metadata or {}).get("chat") or {} for r in new}
        visitors = {
            v.public_id.hex: v
            for v in ChatVisitor.objects.filter(
                inbox=inbox, public_id__in=[uuid.UUID(hex=c["visitor"]) for c in chat_of.values() if c.get("visitor")]
            )
        }
        wanted: dict[uuid.UUID, Any] = {}
        for result in new:
            try:
                wanted[uuid.UUID(hex=result.ticket.thread_key)] = result
            except ValueError:
                continue
        taken = set(ChatConversation.objects.filter(public_id__in=list(wanted)).values_list("public_id", flat=True))
        now = timezone.now()
        created = []
        for result in new:
            chat = chat_of[result.ticket.pk]
            visitor = visitors.get(chat.get("visitor", ""))
            if visitor is None:
                continue
            try:
                public_id = uuid.UUID(hex=result.ticket.thread_key)
            except ValueError:
                public_id = uuid.uuid4()
            if public_id in taken:
                # A follow-up of a closed ticket keeps its thread key: a conversation of its own.
                public_id = uuid.uuid4()
            taken.add(public_id)
            created.append(
                ChatConversation(
                    ticket=result.ticket,
                    public_id=public_id,
                    inbox=inbox,
                    visitor=visitor,
                    status=ChatStatus.WAITING,
                    prechat=chat.get("prechat") or {},
                    started_url=chat.get("url", "")[:2000],
                    queued_at=now,
                )
            )
        if not created:
            return
        ChatConversation.objects.bulk_create(created)
        from helpdesk.tasks import route_chat

        for conversation in ChatConversation.objects.filter(ticket_id__in=[c.ticket_id for c in created]):
            enqueue(route_chat, conversation.pk)

    # --- outbound --------------------------------------------------------------------------
    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        """The customer's chat visitor of this inbox (its latest), '' if none."""
        from channels_inbox.models import ChatVisitor

        values = []
        for identity in customer_identities:
            if identity.kind == IdentityKind.CHAT_VISITOR:
                try:
                    values.append(uuid.UUID(hex=identity.value))
                except ValueError:
                    continue
        if not values:
            return ""
        found = (
            ChatVisitor.objects.filter(inbox=inbox, public_id__in=values)
            .order_by("-last_seen_at", "-id")
            .values_list("public_id", flat=True)
            .first()
        )
        return found.hex if found else ""

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        """Live, deferred while the visitor may be back, or continued by email (docs/chat.md).

        The visitor is the conversation's own (`ticket.chat.visitor`), never "the customer's
        latest device": a verified customer's laptop being open says nothing about whether the
        phone that chatted saw the reply. Only a ticket without a chat row falls back to the
        recipient identity's visitor."""
        from channels_inbox.chat import presence

        visitor = conversation_visitor(inbox, delivery)
        now = time.time()
        where, wait = whereabouts(
            connected=presence.is_connected(visitor.public_id, now=now),
            seen=_seen(visitor, presence.last_seen(visitor.public_id)),
            waiting_since=delivery.created_at.timestamp() if delivery.created_at else now,
            now=now,
        )
        if where == HERE:
            # The live copy went out with the reply's reply_added event (unread → the sweep).
            return SendResult(provider_id=f"chat:{delivery.pk}")
        if where == MAYBE_BACK:
            raise DeliveryDeferred(wait, "the visitor may be back in a moment")
        queue_continuity_email(delivery, visitor)
        # Without an address the reply waits in the conversation: shown on the next visit.
        return SendResult(provider_id=f"chat:{delivery.pk}")


def _adopt_customers(inbox: Inbox, results: list[Any]) -> None:
    """A visitor's first message resolved (or made) its customer: the visitor now belongs to it.
    Only where the visitor has none yet (`customer__isnull`), so a verified identify that got
    there first is never overwritten."""
    from channels_inbox.models import ChatVisitor

    owners: dict[uuid.UUID, int] = {}
    for result in results:
        # Only a visitor's first message (it always opens a ticket) finds it without a customer:
        # later ones skip the UPDATE.
        if not result.created_ticket or result.message is None or result.ticket is None:
            continue
        customer_id = result.message.author_customer_id or result.ticket.customer_id
        hex_id = ((result.message.metadata or {}).get("chat") or {}).get("visitor")
        if not customer_id or not isinstance(hex_id, str):
            continue
        try:
            owners.setdefault(uuid.UUID(hex=hex_id), customer_id)
        except ValueError:
            continue
    for public_id, customer_id in owners.items():
        ChatVisitor.objects.filter(inbox=inbox, public_id=public_id, customer__isnull=True).update(
            customer_id=customer_id
        )


# --- where the visitor is: live, maybe back, or gone (send and the continuity sweep) --------------

HERE, MAYBE_BACK, GONE = "here", "maybe_back", "gone"
# A delivery waits for a visitor who "may be back" at most this many CHAT_AWAY_AFTER_SECONDS in
# total (counted from its creation): a flapping connection cannot keep it waiting for ever.
MAX_DEFER_FACTOR = 10
# The continuity sweep looks at chat deliveries sent within this window (index
# delivery_sent_time_idx), CONTINUITY_BATCH at a time, oldest first.
CONTINUITY_WINDOW = timedelta(days=1)
CONTINUITY_BATCH = 500


def whereabouts(*, connected: bool, seen: float | None, waiting_since: float, now: float) -> tuple[str, float]:
    """(HERE | MAYBE_BACK | GONE, seconds to wait): connected now → HERE; seen less than
    CHAT_AWAY_AFTER_SECONDS ago → MAYBE_BACK (a page navigation), unless the delivery has waited
    MAX_DEFER_FACTOR × that already → GONE."""
    if connected:
        return HERE, 0.0
    away_after = float(settings.CHAT_AWAY_AFTER_SECONDS)
    limit_left = waiting_since + MAX_DEFER_FACTOR * away_after - now
    if seen is not None and now - seen < away_after and limit_left > 0:
        return MAYBE_BACK, max(1.0, min(away_after - (now - seen) + 1, limit_left + 1))
    return GONE, 0.0


def _seen(visitor: ChatVisitor, cached: float | None) -> float | None:
    if cached is not None:
        return cached
    return visitor.last_seen_at.timestamp() if visitor.last_seen_at is not None else None


def conversation_visitor(inbox: Inbox, delivery: OutboundDelivery) -> ChatVisitor:
    """The visitor of the delivery's conversation; without a chat row, the recipient's."""
    from channels_inbox.models import ChatConversation, ChatVisitor

    chat = ChatConversation.objects.filter(ticket_id=delivery.message.ticket_id).select_related("visitor").first()
    if chat is not None:
        return chat.visitor
    try:
        visitor_id = uuid.UUID(hex=delivery.recipient)
    except ValueError:
        raise DeliveryError(f"not a chat visitor: {delivery.recipient!r}", retryable=False) from None
    visitor = ChatVisitor.objects.filter(inbox=inbox, public_id=visitor_id).first()
    if visitor is None:
        raise DeliveryError("the chat visitor no longer exists", retryable=False)
    return visitor


def queue_continuity_email(delivery: OutboundDelivery, visitor: ChatVisitor) -> OutboundDelivery | None:
    """The one write path for a visitor who left: `do_queue_chat_continuity_email` (idempotent:
    it locks the ticket and queues nothing when the message has an email delivery already), for
    THIS visitor — the conversation's, whatever `delivery.recipient` names."""
    from channels_inbox.actions.chat import do_queue_chat_continuity_email

    return do_queue_chat_continuity_email(delivery, visitor=visitor)


def do_sweep_chat_continuity(now: datetime | None = None) -> int:
    """Email the replies that were delivered live but never read, once their visitor has left.

    A reply sent while the widget was open (or polled within the last seconds) is marked sent
    and nobody waits for it any more; if the visitor closed the tab without reading it, this
    sweep (Celery beat, every CHAT_CONTINUITY_SWEEP_SECONDS) continues it by email like `send`
    does for a visitor who is gone. Candidates: chat deliveries in status sent, sent between
    CONTINUITY_WINDOW and CHAT_AWAY_AFTER_SECONDS ago (the partial index delivery_sent_time_idx:
    the cost is that of the chat deliveries sent in the window, never of all deliveries), of
    inboxes with a continuity_email_inbox, whose message is above the conversation's
    visitor_read_message_id and has no other delivery yet. Each is decided under its row lock
    (skip_locked: a racing sweeper passes it by), and the email is queued through the action,
    which queues nothing twice. Returns the number of emails queued.
    """
    from django.db.models import Exists, F, OuterRef, Q

    from channels_inbox.models import Inbox, OutboundDelivery
    from helpdesk.models import DeliveryStatus

    now = now or timezone.now()
    inbox_ids = [
        inbox.pk
        for inbox in Inbox.objects.filter(kind="chat", is_active=True).only("pk", "settings")
        if (inbox.settings or {}).get("continuity_email_inbox")
    ]
    if not inbox_ids:
        return 0
    other_delivery = OutboundDelivery.objects.filter(message_id=OuterRef("message_id")).exclude(
        inbox_id=OuterRef("inbox_id")
    )
    window = (
        OutboundDelivery.objects.filter(
            inbox_id__in=inbox_ids,
            status=DeliveryStatus.SENT,
            sent_at__gt=now - CONTINUITY_WINDOW,
            sent_at__lte=now - timedelta(seconds=settings.CHAT_AWAY_AFTER_SECONDS),
            message__ticket__chat__visitor_read_message_id__lt=F("message_id"),
        )
        .exclude(Exists(other_delivery))
        .select_related("inbox", "message__ticket__chat__visitor")
        .order_by("sent_at", "pk")
    )
    queued = 0
    after: tuple[datetime, int] | None = None
    # Keyset pages through the whole window: candidates that stay (no address, still connected)
    # never starve the ones behind them.
    while True:
        page = window
        if after is not None:
            page = page.filter(Q(sent_at__gt=after[0]) | Q(sent_at=after[0], pk__gt=after[1]))
        batch = list(page[:CONTINUITY_BATCH])
        if batch:
            queued += _sweep_batch(batch, now)
        if len(batch) < CONTINUITY_BATCH:
            return queued
        assert batch[-1].sent_at is not None
        after = (batch[-1].sent_at, batch[-1].pk)


def _sweep_batch(batch: list[OutboundDelivery], now: datetime) -> int:
    from django.db import transaction

    from channels_inbox.chat import presence
    from channels_inbox.models import OutboundDelivery
    from helpdesk.models import DeliveryStatus

    states = presence.states([d.message.ticket.chat.visitor.public_id for d in batch], now=now.timestamp())
    queued = 0
    for delivery in batch:
        visitor = delivery.message.ticket.chat.visitor
        connected, cached_seen = states[visitor.public_id.hex]
        where, _ = whereabouts(
            connected=connected,
            seen=_seen(visitor, cached_seen),
            waiting_since=delivery.created_at.timestamp(),
            now=now.timestamp(),
        )
        if where != GONE:
            continue
        with transaction.atomic():
            locked = list(
                OutboundDelivery.objects.select_for_update(skip_locked=True)
                .filter(pk=delivery.pk, status=DeliveryStatus.SENT)
                .values_list("pk", flat=True)
            )
            if locked and queue_continuity_email(delivery, visitor) is not None:
                queued += 1
    return queued
