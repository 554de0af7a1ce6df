"""Live chat on desk pages: the ticket page's chat panel and the top bar's availability control.

The panel costs a fixed number of queries on a chat ticket (the conversation with its visitor,
the teams of the transfer picker, and while waiting the queue: see helpdesk/chat_queue.py) and
none on other tickets. The top bar's control reads the cache only (no query on any page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template

from channels_inbox.models import ChatConversation, ChatStatus, ChatVisitor
from helpdesk.actions.chats import ChatAvailability, cached_availability
from helpdesk.chat_queue import QueueInfo, queue_info
from helpdesk.models import Message, Team
from helpdesk.models.message import Direction

register = template.Library()

# Pre-chat answers shown at most (the visitor's JSON is hostile: bounded and shown as text).
MAX_PRECHAT_ITEMS = 20
MAX_PRECHAT_CHARS = 500


def safe_url(value: str) -> str:
    """The URL when a browser may follow it from our page (http or https only), else ""."""
    lowered = value.strip().lower()
    return value.strip() if lowered.startswith(("http://", "https://")) else ""


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def wait_text(seconds: int) -> str:
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    return f"about {minutes} minute{'s' if minutes != 1 else ''}"


@dataclass
class ChatPanel:
    conversation: ChatConversation
    visitor: ChatVisitor
    queue: QueueInfo | None
    queue_text: str
    current_url: str
    current_href: str
    started_url: str
    started_href: str
    prechat: list[tuple[str, str]]
    teams: list[Team]
    seen_message_id: int | None
    visitor_connected: bool | None

    @property
    def waiting(self) -> bool:
        return self.conversation.status == ChatStatus.WAITING

    @property
    def active(self) -> bool:
        return self.conversation.status == ChatStatus.ACTIVE

    @property
    def ended(self) -> bool:
        return self.conversation.status == ChatStatus.ENDED

    @property
    def stars(self) -> str:
        rating = self.conversation.rating or 0
        return "★" * rating + "☆" * (5 - rating)


def _prechat(answers: Any) -> list[tuple[str, str]]:
    if not isinstance(answers, dict):
        return []
    items = []
    for key, value in list(answers.items())[:MAX_PRECHAT_ITEMS]:
        if isinstance(value, (str, int, float, bool)) and str(value).strip():
            items.append((str(key)[:60].replace("_", " ").capitalize(), str(value)[:MAX_PRECHAT_CHARS]))
    return items


def _newest_inbound(timeline: Any) -> int | None:
    """The newest visitor message the page shows (from the timeline already loaded: no query)."""
    ids = [item.pk for item in timeline or [] if isinstance(item, Message) and item.direction == Direction.INBOUND]
    return max(ids) if ids else None


def _visitor_connected(visitor: ChatVisitor) -> bool | None:
    try:
        from channels_inbox.chat.presence import is_connected
    except ImportError:
        return None
    try:
        return bool(is_connected(visitor.public_id))
    except Exception:  # noqa: BLE001  (a cache outage must not break the ticket page)
        return None


@register.simple_tag(takes_context=True)
def chat_panel(context: Any) -> ChatPanel | None:
    """The chat panel of the context's ticket, or None (not a chat ticket: no query)."""
    ticket = context.get("ticket")
    if ticket is None or ticket.channel != "chat":
        return None
    conversation = ChatConversation.objects.select_related("visitor").filter(ticket_id=ticket.pk).first()
    if conversation is None:
        return None
    conversation.ticket = ticket  # the page's ticket, its inbox joined in: the queue reads both
    conversation.inbox = ticket.inbox
    visitor = conversation.visitor
    queue = queue_info(conversation) if conversation.status == ChatStatus.WAITING else None
    queue_text = ""
    if queue is not None:
        queue_text = f"{ordinal(queue['position'])} in the queue, {wait_text(queue['estimate_seconds'])}"
    editable = bool(context.get("can_edit")) and conversation.status != ChatStatus.ENDED
    return ChatPanel(
        conversation=conversation,
        visitor=visitor,
        queue=queue,
        queue_text=queue_text,
        current_url=visitor.current_url,
        current_href=safe_url(visitor.current_url),
        started_url=conversation.started_url,
        started_href=safe_url(conversation.started_url),
        prechat=_prechat(conversation.prechat),
        teams=list(Team.objects.order_by("name").only("pk", "name")) if editable else [],
        seen_message_id=_newest_inbound(context.get("timeline")),
        visitor_connected=_visitor_connected(visitor),
    )


@register.simple_tag(takes_context=True)
def my_chat_availability(context: Any) -> ChatAvailability | None:
    """The signed-in agent's chat availability from the cache (None: the cache does not know;
    the control then loads itself)."""
    request = context.get("request")
    user_id = getattr(getattr(request, "user", None), "pk", None)
    if user_id is None:
        return None
    return cached_availability(user_id)
