"""The live-chat queue: a waiting visitor's place and an estimate of the wait, and the queue's live signal.

Position: the inbox's waiting conversations queued before this one (by `queued_at`, then id),
plus one (served by `chatconv_waiting_idx`).

Estimate (seconds) = position × median wait ÷ max(1, available agents), where
- median wait is the median of `assigned_at − queued_at` of the inbox's chats assigned in the
  last hour (HISTORY_SECONDS; at most HISTORY_SAMPLE of the newest), or DEFAULT_WAIT_SECONDS
  per place while there is no such history;
- available agents are those routing could give this chat to now (chat_available, online,
  in the chat's team), whether or not they have spare capacity: a full agent frees a place
  when one of their chats ends.
It is rounded up to whole seconds. It is an estimate, shown as "about N minutes".

Every change to an inbox's queue (a chat queued, assigned, transferred back, ended while
waiting) publishes `{"type": "chat.queue", "inbox_id"}` to the group `chatqueue.<inbox_id>`
after commit; the visitors' websockets of that inbox re-send their queue frames from it.
"""

from __future__ import annotations

import math
from datetime import timedelta
from statistics import median
from typing import TYPE_CHECKING, Any, TypedDict

from django.db.models import Q
from django.utils import timezone

from channels_inbox.models import ChatConversation, ChatStatus

if TYPE_CHECKING:
    from datetime import datetime

# The history the median wait is taken from.
HISTORY_SECONDS = 3600
HISTORY_SAMPLE = 500
# The wait per place in the queue while the inbox has no history in the last hour.
DEFAULT_WAIT_SECONDS = 120.0


class QueueInfo(TypedDict):
    position: int
    estimate_seconds: int


def queue_group(inbox_id: int) -> str:
    return f"chatqueue.{inbox_id}"


def queue_position(conversation: ChatConversation) -> int:
    """1 for the next chat to be assigned in its inbox."""
    queued_at = conversation.queued_at or conversation.created_at
    ahead = (
        ChatConversation.objects.filter(inbox_id=conversation.inbox_id, status=ChatStatus.WAITING)
        .filter(Q(queued_at__lt=queued_at) | Q(queued_at=queued_at, id__lt=conversation.pk))
        .count()
    )
    return ahead + 1


def median_wait_seconds(inbox_id: int, *, now: datetime | None = None) -> float | None:
    """The median queue wait of the inbox's chats assigned in the last hour (None: none were)."""
    now = now or timezone.now()
    rows = (
        ChatConversation.objects.filter(
            inbox_id=inbox_id,
            assigned_at__gte=now - timedelta(seconds=HISTORY_SECONDS),
            queued_at__isnull=False,
        )
        .order_by("-assigned_at")
        .values_list("queued_at", "assigned_at")[:HISTORY_SAMPLE]
    )
    waits = [max(0.0, (assigned - queued).total_seconds()) for queued, assigned in rows if queued and assigned]
    return median(waits) if waits else None


def estimate_seconds(position: int, median_wait: float | None, available_agents: int) -> int:
    """position × median wait (DEFAULT_WAIT_SECONDS without history) ÷ max(1, available agents)."""
    per_place = DEFAULT_WAIT_SECONDS if median_wait is None else median_wait
    return math.ceil(position * per_place / max(1, available_agents))


def queue_info(conversation: ChatConversation) -> QueueInfo | None:
    """{"position", "estimate_seconds"} while the chat waits for an agent, else None (3 queries)."""
    if conversation.status != ChatStatus.WAITING:
        return None
    from helpdesk.actions.chats import available_agent_count

    position = queue_position(conversation)
    wait = median_wait_seconds(conversation.inbox_id)
    return {
        "position": position,
        "estimate_seconds": estimate_seconds(position, wait, available_agent_count(conversation)),
    }


def publish_queue_changed(inbox_id: int) -> None:
    """After commit (now outside a transaction), tell the inbox's waiting visitors the queue moved.

    One message per inbox and transaction, however many chats moved in it."""
    from helpdesk.realtime import _batch_for_this_transaction

    batch = _batch_for_this_transaction()
    group = queue_group(inbox_id)
    if any(group in groups and message.get("type") == "chat.queue" for groups, message in batch.items):
        return
    message: dict[str, Any] = {"type": "chat.queue", "inbox_id": inbox_id}
    batch.add([group], message)
