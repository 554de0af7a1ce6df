"""What a chat visitor may see, serialized once for the websocket and the HTTP fallback.

The visitor's stream of a conversation is its ticket's TicketEvents of the kinds below,
each serialized here — nothing else reaches a visitor: no internal notes, no field changes,
no agent emails (agents are shown by first name). `seq` is the TicketEvent's own, so gaps
are normal (internal events are skipped) and a client resumes with `after=<last seq>`.

Objects (docs/chat.md): conv, msg, event; `visitor_frame` for the visitor itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Prefetch, Q
from django.urls import reverse

from channels_inbox.chat.tokens import file_token
from helpdesk.models import Attachment, DeliveryStatus, Direction, Message, TicketEvent, TicketEventType, User

if TYPE_CHECKING:
    from channels_inbox.models import ChatConversation, ChatVisitor

# The event types that can become a visitor frame (delivery_changed only as "read").
VISIBLE_EVENT_TYPES = frozenset(
    {
        TicketEventType.MESSAGE_RECEIVED.value,
        TicketEventType.REPLY_ADDED.value,
        TicketEventType.ASSIGNED.value,
        TicketEventType.CHAT_ENDED.value,
        TicketEventType.CHAT_RATED.value,
        TicketEventType.CHAT_SEEN.value,
        TicketEventType.DELIVERY_CHANGED.value,
    }
)
# A page of the HTTP fallback's events.
PAGE_SIZE = 200
AGENT_FALLBACK_NAME = "Agent"


def agent_name(user: User | None) -> str:
    """How a visitor sees an agent: first name, else full name, else 'Agent' — never an email."""
    if user is None:
        return ""
    for name in (user.first_name, user.get_full_name()):
        name = (name or "").strip()
        if name and "@" not in name:
            return name
    return AGENT_FALLBACK_NAME


def visitor_frame(visitor: ChatVisitor) -> dict[str, Any]:
    return {
        "id": visitor.public_id.hex,
        "name": visitor.name,
        "email": visitor.email,
        "verified": bool(visitor.verified_user_id),
    }


def conversation_frame(conversation: ChatConversation) -> dict[str, Any]:
    """The conv object. Reads its ticket, the ticket's assignee and its inbox (select_related them)."""
    from channels_inbox.models import ChatStatus

    ticket = conversation.ticket
    rating_on = _flag(conversation.inbox.settings.get("csat"), True)
    return {
        "id": conversation.public_id.hex,
        "status": conversation.status,
        "created_at": conversation.created_at.isoformat(),
        "last_seq": ticket.last_event_seq,
        "agent": agent_name(ticket.assignee) if ticket.assignee_id else None,
        "ended_at": conversation.ended_at.isoformat() if conversation.ended_at else None,
        "rating": conversation.rating,
        "can_rate": rating_on and conversation.status == ChatStatus.ENDED and conversation.rating is None,
    }


def conversation_summary(conversation: ChatConversation) -> dict[str, Any]:
    """A conv object for the widget's history list: plus its newest message the visitor may
    see (`preview`, `preview_from`, `last_message_at`), from actions.visitor_conversations'
    annotations (no query of its own)."""
    frame = conversation_frame(conversation)
    at = getattr(conversation, "preview_at", None)
    direction = getattr(conversation, "preview_direction", None)
    frame.update(
        preview=(getattr(conversation, "preview_text", None) or "").strip(),
        preview_from=("visitor" if direction == Direction.INBOUND else "agent") if direction else None,
        last_message_at=at.isoformat() if at else None,
    )
    return frame


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def file_url(attachment: Attachment, visitor_public_id: uuid.UUID) -> str:
    return settings.SITE_URL + reverse("widget:file", args=[file_token(attachment.pk, visitor_public_id)])


def message_frame(message: Message, viewer: uuid.UUID) -> dict[str, Any]:
    """The msg object; `message.attachments` and `author_agent`/`author_customer` prefetched."""
    inbound = message.direction == Direction.INBOUND
    if inbound:
        author = message.author_customer.name if message.author_customer_id and message.author_customer else ""
    else:
        author = agent_name(message.author_agent) if message.author_agent_id else AGENT_FALLBACK_NAME
    chat = (message.metadata or {}).get("chat") or {}
    return {
        "id": message.pk,
        "direction": "visitor" if inbound else "agent",
        "author": author,
        "text": message.text,
        "attachments": [
            {"name": a.filename, "size": a.size, "content_type": a.content_type, "url": file_url(a, viewer)}
            for a in message.attachments.all()
        ],
        "created_at": message.created_at.isoformat(),
        "client_msg_id": chat.get("client_msg_id") if inbound else None,
    }


def load_messages(ids: Iterable[int], *, customer_id: int | None = None) -> dict[int, Message]:
    """Public messages by id, with what message_frame reads, in three queries at most.

    With `customer_id` (the conversation's customer), inbound messages only when that customer
    wrote them: a CC's mail on the ticket (chat continuity to an address another customer
    holds) is never shown to the visitor.
    """
    wanted = set(ids)
    if not wanted:
        return {}
    visible = Q(direction=Direction.OUTBOUND) | Q(direction=Direction.INBOUND)
    if customer_id is not None:
        visible = Q(direction=Direction.OUTBOUND) | Q(direction=Direction.INBOUND, author_customer_id=customer_id)
    messages = (
        Message.objects.filter(visible, pk__in=wanted)
        .select_related("author_agent", "author_customer")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
    )
    return {m.pk: m for m in messages}


def event_frames(
    conversation: ChatConversation, events: Sequence[TicketEvent], *, viewer: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """The visitor frames of a batch of the conversation's ticket events (others skipped).

    A constant number of queries whatever the batch size: the messages (with files and
    authors) and the newly assigned agents, each loaded once.
    """
    viewer = viewer or conversation.visitor.public_id
    visible = [e for e in events if e.type in VISIBLE_EVENT_TYPES and _visible(e)]
    message_ids = {
        int(e.data["message_id"])
        for e in visible
        if e.type in (TicketEventType.MESSAGE_RECEIVED, TicketEventType.REPLY_ADDED) and "message_id" in e.data
    }
    messages = load_messages(message_ids, customer_id=_customer_id(conversation))
    agent_ids = {int(e.data["new_assignee_id"]) for e in visible if e.type == TicketEventType.ASSIGNED}
    agents = {u.pk: u for u in User.objects.filter(pk__in=agent_ids)} if agent_ids else {}
    base = conversation.public_id.hex
    frames: list[dict[str, Any]] = []
    for event in visible:
        frame: dict[str, Any] = {"conversation": base, "seq": event.seq}
        data = event.data
        if event.type in (TicketEventType.MESSAGE_RECEIVED, TicketEventType.REPLY_ADDED):
            message = messages.get(int(data.get("message_id", 0)))
            if message is None:
                continue  # a note, or a message merged away
            frame.update(kind="message", message=message_frame(message, viewer))
        elif event.type == TicketEventType.ASSIGNED:
            frame.update(kind="agent_joined", agent=agent_name(agents.get(int(data["new_assignee_id"]))))
        elif event.type == TicketEventType.CHAT_ENDED:
            frame.update(kind="ended", by=data.get("by", ""))
        elif event.type == TicketEventType.CHAT_RATED:
            frame.update(kind="rated", rating=data.get("rating"))
        elif event.type == TicketEventType.CHAT_SEEN:
            frame.update(kind="seen", message_id=data.get("message_id"))
        elif event.type == TicketEventType.DELIVERY_CHANGED:
            frame.update(kind="read", message_id=data.get("message_id"))
        frames.append(frame)
    return frames


def _customer_id(conversation: ChatConversation) -> int:
    """The conversation's customer (its ticket's): the only one whose messages a visitor sees."""
    from helpdesk.models import Ticket

    if "ticket" in conversation._state.fields_cache:
        return conversation.ticket.customer_id
    return int(Ticket.objects.filter(pk=conversation.ticket_id).values_list("customer_id", flat=True).get())


def _visible(event: TicketEvent) -> bool:
    if event.type == TicketEventType.ASSIGNED:
        return event.data.get("new_assignee_id") is not None
    if event.type == TicketEventType.DELIVERY_CHANGED:
        return event.data.get("status") == DeliveryStatus.READ
    return True


def is_visible_live(event_type: str, data: dict[str, Any]) -> bool:
    """Whether a live `ticket.event` group message may become a visitor frame (no query)."""
    if event_type not in VISIBLE_EVENT_TYPES:
        return False
    if event_type == TicketEventType.ASSIGNED:
        return data.get("new_assignee_id") is not None
    if event_type == TicketEventType.DELIVERY_CHANGED:
        return data.get("status") == DeliveryStatus.READ
    return True


def events_after(
    conversation: ChatConversation, after: int, *, limit: int = PAGE_SIZE, viewer: uuid.UUID | None = None
) -> tuple[list[dict[str, Any]], int]:
    """(frames, last_seq) of the conversation's visible events after `after`: one page.

    `last_seq` is where the next page starts: the ticket's event count read before the page
    (so nothing appended meanwhile is skipped), or the page's last event when it is full.
    """
    ticket_id = conversation.ticket_id
    upto = TicketEvent.objects.filter(ticket_id=ticket_id).order_by("-seq").values_list("seq", flat=True).first() or 0
    rows = list(
        TicketEvent.objects.filter(
            ticket_id=ticket_id, seq__gt=after, seq__lte=upto, type__in=sorted(VISIBLE_EVENT_TYPES)
        ).order_by("seq")[:limit]
    )
    last = rows[-1].seq if len(rows) == limit else max(upto, after)
    return event_frames(conversation, rows, viewer=viewer), last


def event_frames_by_seq(
    conversation: ChatConversation, seqs: Iterable[int], *, viewer: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """The frames of specific events (a live group message names its seq)."""
    rows = list(TicketEvent.objects.filter(ticket_id=conversation.ticket_id, seq__in=set(seqs)).order_by("seq"))
    return event_frames(conversation, rows, viewer=viewer)


# --- agent typing for the HTTP fallback ------------------------------------------------------------


def agent_typing_key(ticket_id: int) -> str:
    return f"chat:agent-typing:{ticket_id}"


def set_agent_typing(ticket_id: int, name: str | None, *, ttl: float = 6.0) -> None:
    """Remember (or clear) that an agent types a reply, for visitors who poll over HTTP."""
    if name:
        cache.set(agent_typing_key(ticket_id), {"name": name}, timeout=ttl)
    else:
        cache.delete(agent_typing_key(ticket_id))


def agent_typing(ticket_id: int) -> dict[str, str] | None:
    value = cache.get(agent_typing_key(ticket_id))
    return value if isinstance(value, dict) and isinstance(value.get("name"), str) else None


def conversation_link(conversation: ChatConversation) -> str:
    """The hosted page of one conversation (a continuity email's "continue" link; expires)."""
    from channels_inbox.chat.tokens import conversation_link_token

    return settings.SITE_URL + reverse(
        "widget:conversation_page",
        args=[conversation.inbox.public_token, conversation_link_token(conversation.public_id)],
    )
