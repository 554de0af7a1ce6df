"""Live chat in the workspace: routing chats to agents, the queue, transfer, end, availability.

Who gets a chat (`do_route_chat`): an agent (not a light agent; light agents never reply) who
- chose "Available for chat" (`AgentProfile.chat_available`),
- is online (`AgentProfile.presence == "online"`: a desk open and active; away and offline
  agents get none),
- is a member of the chat's team: the ticket's team, else the inbox's team; when there is
  neither, every agent (they all see a ticket without a team under ticket_policy),
- holds fewer active chats (ChatConversation active, ticket assigned to them) than their
  `chat_capacity`.
Among them, round robin: the one assigned a chat longest ago (`last_chat_assigned_at`, never
first), ties by profile id. The candidates' AgentProfile rows are locked (`SELECT … FOR UPDATE`,
ordered by id) before their chats are counted, so two workers routing at once never put one
agent over capacity (PostgreSQL; the embedded SQLite mode serializes writers instead).

Lock order, everywhere here: the conversation, then agent profiles, then the ticket.

Nobody free: the chat stays waiting. Waiting chats are assigned oldest first as capacity frees
(`do_assign_waiting_chats`, queued after commit when an agent becomes available, a chat ends
or is transferred away, and by Celery beat every CHAT_ASSIGN_SWEEP_SECONDS, which also catches
agents coming online). An agent who goes away or offline keeps their chats; they get no new ones.

The ticket's assignee is written by the one assignment action (`do_assign_ticket`: Assigned
event, notification); routing acts as the system (actor None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from channels_inbox.models import ChatConversation, ChatStatus
from helpdesk.actions.ticket_fields import do_change_team
from helpdesk.actions.tickets import do_assign_ticket, do_change_status
from helpdesk.chat_queue import publish_queue_changed
from helpdesk.events import ChatEnded, append_event
from helpdesk.models import AgentProfile, Presence, Role, Ticket, TicketStatus
from helpdesk.permissions import role_of, ticket_policy
from helpdesk.realtime import publish_to_agent
from helpdesk.sideeffects import after_commit, enqueue

if TYPE_CHECKING:
    from helpdesk.models import Team, User

# The capacity an agent may choose (concurrent chats).
MIN_CAPACITY = 1
MAX_CAPACITY = 20
# One sweep assigns at most this many waiting chats (the next sweep goes on).
SWEEP_LIMIT = 500
# The top bar's chat control reads the agent's availability from the cache (no query on a page).
AVAILABILITY_CACHE_SECONDS = 3600

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Roles that take chats.
_CHAT_ROLES = (Role.ADMIN, Role.SUPERVISOR, Role.AGENT)


# --- who may get a chat ---------------------------------------------------------------------


def routing_team_id(conversation: ChatConversation) -> int | None:
    """The team whose agents may get the chat: the ticket's, else the inbox's (None: everyone)."""
    return conversation.ticket.team_id or conversation.inbox.team_id


def eligible_agents(team_id: int | None) -> QuerySet[AgentProfile]:
    """Agents who may be given a chat of this team now, before capacity."""
    profiles = AgentProfile.objects.filter(
        chat_available=True, presence=Presence.ONLINE, role__in=_CHAT_ROLES, user__is_active=True
    )
    if team_id is not None:
        profiles = profiles.filter(teams__id=team_id)
    return profiles


def available_agent_count(conversation: ChatConversation) -> int:
    """How many agents could take this chat now (the queue estimate divides by it)."""
    return eligible_agents(routing_team_id(conversation)).count()


def open_chat_counts(user_ids: list[int]) -> dict[int, int]:
    """Active chats per agent (one query)."""
    rows = (
        ChatConversation.objects.filter(status=ChatStatus.ACTIVE, ticket__assignee_id__in=user_ids)
        .values_list("ticket__assignee_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {int(user_id): int(n) for user_id, n in rows}


def pick_agent(profiles: list[AgentProfile], open_chats: dict[int, int]) -> AgentProfile | None:
    """Round robin among those with spare capacity: assigned longest ago (never: first), then id."""
    free = [p for p in profiles if open_chats.get(p.user_id, 0) < p.chat_capacity]
    if not free:
        return None
    return min(free, key=lambda p: (p.last_chat_assigned_at is not None, p.last_chat_assigned_at or _EPOCH, p.pk))


# --- routing ----------------------------------------------------------------------------------

RouteResult = Literal["assigned", "full", "skipped"]


def _locked_conversation(conversation_id: int) -> ChatConversation | None:
    return (
        ChatConversation.objects.select_for_update(of=("self",))
        .select_related("ticket", "inbox")
        .filter(pk=conversation_id)
        .first()
    )


def _activate(conversation: ChatConversation, profile_id: int | None, now: datetime) -> None:
    conversation.status = ChatStatus.ACTIVE
    conversation.assigned_at = now
    conversation.save(update_fields=["status", "assigned_at"])
    if profile_id is not None:
        AgentProfile.objects.filter(pk=profile_id).update(last_chat_assigned_at=now)


def _route(conversation_id: int) -> tuple[RouteResult, User | None]:
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id)
        if conversation is None or conversation.status != ChatStatus.WAITING:
            return "skipped", None
        ticket = conversation.ticket
        now = timezone.now()
        if ticket.assignee_id is not None:
            # Assigned by hand (the assignee select) while it waited: the agent has it now.
            profile_id = AgentProfile.objects.filter(user_id=ticket.assignee_id).values_list("pk", flat=True).first()
            _activate(conversation, profile_id, now)
            publish_queue_changed(conversation.inbox_id)
            return "assigned", ticket.assignee
        profiles = list(
            eligible_agents(routing_team_id(conversation))
            .select_for_update(of=("self",))
            .select_related("user")
            .order_by("id")
        )
        chosen = pick_agent(profiles, open_chat_counts([p.user_id for p in profiles]))
        if chosen is None:
            return "full", None
        do_assign_ticket(ticket, assignee=chosen.user, actor=None, via="chat")
        _activate(conversation, chosen.pk, now)
        publish_queue_changed(conversation.inbox_id)
        return "assigned", chosen.user


def do_route_chat(conversation: ChatConversation) -> User | None:
    """Give a waiting chat to an available agent with spare capacity; the agent, or None (it waits)."""
    return _route(conversation.pk)[1]


def _reconcile(inbox_id: int | None) -> None:
    """Chats whose ticket was edited by hand: unassigned → waiting again; solved → ended."""
    active = ChatConversation.objects.filter(status=ChatStatus.ACTIVE, ticket__assignee__isnull=True)
    waiting = ChatConversation.objects.filter(
        status__in=[ChatStatus.WAITING, ChatStatus.ACTIVE],
        ticket__status__in=[TicketStatus.SOLVED, TicketStatus.CLOSED],
    )
    if inbox_id is not None:
        active, waiting = active.filter(inbox_id=inbox_id), waiting.filter(inbox_id=inbox_id)
    for conversation_id in list(active.values_list("pk", flat=True)[:SWEEP_LIMIT]):
        with transaction.atomic():
            conversation = _locked_conversation(conversation_id)
            if conversation and conversation.status == ChatStatus.ACTIVE and conversation.ticket.assignee_id is None:
                conversation.status = ChatStatus.WAITING
                conversation.queued_at = timezone.now()
                conversation.assigned_at = None
                conversation.save(update_fields=["status", "queued_at", "assigned_at"])
                publish_queue_changed(conversation.inbox_id)
    for conversation in list(waiting.select_related("ticket", "inbox")[:SWEEP_LIMIT]):
        do_end_chat(conversation, actor=None, by="agent")


def do_assign_waiting_chats(inbox_id: int | None = None) -> int:
    """Fill free capacity from the queue, oldest chat first; returns how many were assigned."""
    _reconcile(inbox_id)
    waiting = ChatConversation.objects.filter(status=ChatStatus.WAITING)
    if inbox_id is not None:
        waiting = waiting.filter(inbox_id=inbox_id)
    rows = list(
        waiting.order_by("queued_at", "id").values_list("pk", "ticket__team_id", "inbox__team_id")[:SWEEP_LIMIT]
    )
    full: set[int | None] = set()
    assigned = 0
    for conversation_id, ticket_team, inbox_team in rows:
        team = ticket_team or inbox_team
        if team in full or None in full:  # nobody free for everyone: nobody free for a team either
            continue
        result, _ = _route(conversation_id)
        if result == "assigned":
            assigned += 1
        elif result == "full":
            full.add(team)
    return assigned


def _freed_capacity() -> None:
    """An agent may take another chat now: assign waiting chats after commit."""
    from helpdesk.tasks import assign_waiting_chats

    enqueue(assign_waiting_chats)


# --- end and transfer -------------------------------------------------------------------------


def do_end_chat(conversation: ChatConversation, *, actor: User | None, by: str) -> ChatConversation:
    """Close the chat (`by` agent or visitor; actor None when the visitor or the system ends it):
    ChatEnded event, status ended, the ticket solved. Ending an ended chat does nothing."""
    if by not in ("agent", "visitor"):
        raise ValueError(f"Unknown ender {by[:20]!r}.")
    with transaction.atomic():
        locked = _locked_conversation(conversation.pk)
        if locked is None:
            raise ChatConversation.DoesNotExist("no such chat")
        if locked.status == ChatStatus.ENDED:
            return locked
        ticket = Ticket.objects.select_for_update().get(pk=locked.ticket_id)
        if actor is not None and not ticket_policy.can_edit(actor, ticket):
            raise PermissionDenied("you may not end this chat")
        was = locked.status
        locked.status = ChatStatus.ENDED
        locked.ended_at = timezone.now()
        locked.save(update_fields=["status", "ended_at"])
        append_event(ticket, ChatEnded(by=by), actor=actor)
        if ticket.status not in (TicketStatus.SOLVED, TicketStatus.CLOSED):
            do_change_status(ticket, status=TicketStatus.SOLVED, actor=actor)
        if was == ChatStatus.WAITING:
            publish_queue_changed(locked.inbox_id)
        else:
            _freed_capacity()
    return locked


def _may_chat(user: User) -> bool:
    return bool(user.is_active) and role_of(user) in _CHAT_ROLES


def do_transfer_chat(
    conversation: ChatConversation, *, actor: User, to_agent: User | None = None, to_team: Team | None = None
) -> ChatConversation:
    """Hand the chat to another agent (even one at capacity: the transferring agent decides) or
    to a team (unassigned, back in the queue for that team's agents, routed again), or both
    (moved to the team and given to the agent)."""
    if to_agent is None and to_team is None:
        raise ValueError("Transfer to an agent or a team.")
    if to_agent is not None and not _may_chat(to_agent):
        raise ValueError(f"{to_agent.display_name} does not take chats.")
    with transaction.atomic():
        locked = _locked_conversation(conversation.pk)
        if locked is None:
            raise ChatConversation.DoesNotExist("no such chat")
        if locked.status == ChatStatus.ENDED:
            raise ValueError("This chat has ended.")
        if not ticket_policy.can_edit(actor, locked.ticket):
            raise PermissionDenied("you may not transfer this chat")
        ticket = locked.ticket
        previous = ticket.assignee_id
        was = locked.status
        now = timezone.now()
        # Assign first, then move: the actor may lose sight of the ticket with the team change.
        ticket = do_assign_ticket(ticket, assignee=to_agent, actor=actor)
        if to_team is not None:
            ticket = do_change_team(ticket, team=to_team, actor=actor)
        if to_agent is not None:
            profile_id = AgentProfile.objects.filter(user_id=to_agent.pk).values_list("pk", flat=True).first()
            _activate(locked, profile_id, now)
        else:
            locked.status = ChatStatus.WAITING
            locked.queued_at = now
            locked.assigned_at = None
            locked.save(update_fields=["status", "queued_at", "assigned_at"])
            from helpdesk.tasks import route_chat

            enqueue(route_chat, locked.pk)
        locked.ticket = ticket
        if was == ChatStatus.WAITING or locked.status == ChatStatus.WAITING:
            publish_queue_changed(locked.inbox_id)
        if previous is not None and previous != ticket.assignee_id:
            _freed_capacity()
    return locked


# --- availability -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatAvailability:
    available: bool
    capacity: int
    # False for a light agent or a user without an agent profile: no chat control at all.
    takes_chats: bool = True


def _availability_key(user_id: int) -> str:
    return f"chat:availability:{user_id}"


def cached_availability(user_id: int) -> ChatAvailability | None:
    """The agent's chat availability as the cache last heard it (None: not known here)."""
    value = cache.get(_availability_key(user_id))
    if isinstance(value, dict) and isinstance(value.get("available"), bool):
        return ChatAvailability(
            available=value["available"],
            capacity=int(value.get("capacity", 0)),
            takes_chats=bool(value.get("takes_chats", True)),
        )
    return None


def remember_availability(user_id: int, availability: ChatAvailability) -> None:
    value = {"available": availability.available, "capacity": availability.capacity}
    cache.set(
        _availability_key(user_id), {**value, "takes_chats": availability.takes_chats}, AVAILABILITY_CACHE_SECONDS
    )


def availability_of(user: Any) -> ChatAvailability:
    """From the cache, else the database (then remembered for AVAILABILITY_CACHE_SECONDS)."""
    known = cached_availability(user.pk)
    if known is not None:
        return known
    row = AgentProfile.objects.filter(user_id=user.pk).values_list("chat_available", "chat_capacity", "role").first()
    if row is None or row[2] not in _CHAT_ROLES:
        availability = ChatAvailability(available=False, capacity=0, takes_chats=False)
    else:
        availability = ChatAvailability(available=row[0], capacity=row[1])
    remember_availability(user.pk, availability)
    return availability


def do_set_chat_availability(
    user: User, *, available: bool, capacity: int | None = None, actor: User
) -> ChatAvailability:
    """The agent's "Available for chat" switch and capacity (1–20). Kept like the presence
    choice: on the profile, no audit row. Becoming available (or more capacity) assigns
    waiting chats after commit; becoming unavailable keeps the chats the agent has.

    Raises PermissionDenied for someone else's switch (admins may set anyone's) or a light
    agent, ValueError for a capacity out of range."""
    if actor.pk != user.pk and role_of(actor) != Role.ADMIN:
        raise PermissionDenied("agents set their own chat availability")
    if capacity is not None and not (MIN_CAPACITY <= capacity <= MAX_CAPACITY):
        raise ValueError(f"Chat capacity is {MIN_CAPACITY} to {MAX_CAPACITY} chats.")
    with transaction.atomic():
        profile = AgentProfile.objects.select_for_update().filter(user_id=user.pk).first()
        if profile is None or profile.role not in _CHAT_ROLES:
            raise PermissionDenied("this account does not take chats")
        more = (available and not profile.chat_available) or (capacity or 0) > profile.chat_capacity
        fields = []
        if profile.chat_available != available:
            profile.chat_available = available
            fields.append("chat_available")
        if capacity is not None and capacity != profile.chat_capacity:
            profile.chat_capacity = capacity
            fields.append("chat_capacity")
        if fields:
            profile.save(update_fields=fields)
        result = ChatAvailability(available=profile.chat_available, capacity=profile.chat_capacity)
        after_commit(lambda: remember_availability(user.pk, result))
        if fields:
            publish_to_agent(user.pk, "chat_availability", {"available": result.available, "capacity": result.capacity})
        if result.available and more:
            _freed_capacity()
    return result
