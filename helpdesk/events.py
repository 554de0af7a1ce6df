"""The registry of ticket event types and their payloads (ARCHITECTURE.md rule 5).

Every change to a ticket appends one `TicketEvent` through `append_event`, which takes a
typed payload below, numbers the event within its ticket (`seq`), and publishes it to the
ticket's live group after the transaction commits. Groups: `ticket.<id>` for the ticket
page, `team.<id>` and `desk.all` for lists, `agent.<id>` for one agent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from helpdesk.models import Ticket, TicketEvent, TicketEventType

if TYPE_CHECKING:
    from customers.models import Customer
    from helpdesk.models import Message, User


@dataclass(frozen=True)
class EventPayload:
    type: ClassVar[TicketEventType]

    def as_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Created(EventPayload):
    type = TicketEventType.CREATED
    channel: str
    inbox_id: int
    followup_of: int | None = None


@dataclass(frozen=True)
class MessageReceived(EventPayload):
    type = TicketEventType.MESSAGE_RECEIVED
    message_id: int
    channel: str


@dataclass(frozen=True)
class ReplyAdded(EventPayload):
    type = TicketEventType.REPLY_ADDED
    message_id: int
    channel: str


@dataclass(frozen=True)
class NoteAdded(EventPayload):
    type = TicketEventType.NOTE_ADDED
    message_id: int


@dataclass(frozen=True)
class StatusChanged(EventPayload):
    type = TicketEventType.STATUS_CHANGED
    old: str
    new: str


@dataclass(frozen=True)
class PriorityChanged(EventPayload):
    type = TicketEventType.PRIORITY_CHANGED
    old: int
    new: int


@dataclass(frozen=True)
class Assigned(EventPayload):
    """`via` says who chose the assignee when no agent did: "routing", "rule", "chat"."""

    type = TicketEventType.ASSIGNED
    old_assignee_id: int | None
    new_assignee_id: int | None
    via: str = ""


@dataclass(frozen=True)
class TeamChanged(EventPayload):
    type = TicketEventType.TEAM_CHANGED
    old_team_id: int | None
    new_team_id: int | None


@dataclass(frozen=True)
class TagsChanged(EventPayload):
    type = TicketEventType.TAGS_CHANGED
    added: list[str]
    removed: list[str]


@dataclass(frozen=True)
class FollowupCreated(EventPayload):
    type = TicketEventType.FOLLOWUP_CREATED
    followup_ticket_id: int
    followup_number: int


@dataclass(frozen=True)
class DeliveryChanged(EventPayload):
    type = TicketEventType.DELIVERY_CHANGED
    delivery_id: int
    message_id: int
    status: str
    error: str = ""


@dataclass(frozen=True)
class AutoReplySent(EventPayload):
    """An automatic reply (an email acknowledgement) was queued: not an agent's reply, so it
    neither counts as the first response nor changes whose turn it is."""

    type = TicketEventType.AUTO_REPLY_SENT
    message_id: int
    channel: str


@dataclass(frozen=True)
class Merged(EventPayload):
    """This ticket was merged into another: its messages and CCs live there now, it is closed."""

    type = TicketEventType.MERGED
    into_ticket_id: int
    into_number: int


@dataclass(frozen=True)
class MergedFrom(EventPayload):
    """Another ticket was merged into this one, bringing `messages` messages with it."""

    type = TicketEventType.MERGED_FROM
    source_ticket_id: int
    source_number: int
    messages: int


@dataclass(frozen=True)
class ChatEnded(EventPayload):
    """The live chat was closed (`by`: agent or visitor); the widget then asks for a rating."""

    type = TicketEventType.CHAT_ENDED
    by: str


@dataclass(frozen=True)
class ChatRated(EventPayload):
    """The visitor rated the chat: 1–5, with or without a comment (stored on the chat)."""

    type = TicketEventType.CHAT_RATED
    rating: int
    has_comment: bool


@dataclass(frozen=True)
class ChatSeen(EventPayload):
    """An agent has seen the visitor's messages up to `message_id` (the widget's "Seen")."""

    type = TicketEventType.CHAT_SEEN
    message_id: int


@dataclass(frozen=True)
class CustomFieldChanged(EventPayload):
    type = TicketEventType.CUSTOM_FIELD_CHANGED
    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class RuleFired(EventPayload):
    """A rule's actions ran on the ticket (`kind`: trigger, time, macro, sla); the changes
    they made follow as their own events. Also what loop protection counts."""

    type = TicketEventType.RULE_FIRED
    rule_id: int | None
    name: str
    kind: str


@dataclass(frozen=True)
class SlaApplied(EventPayload):
    """The SLA policy that applies changed (None: no policy applies any more)."""

    type = TicketEventType.SLA_APPLIED
    policy_id: int | None
    name: str
    old_policy_id: int | None = None
    # Applied by hand or by a rule's step: selection leaves it in place.
    pinned: bool = False


@dataclass(frozen=True)
class SlaWarning(EventPayload):
    """A running clock's deadline is `warn_before_minutes` away (ISO 8601 `due_at`)."""

    type = TicketEventType.SLA_WARNING
    clock_id: int
    metric: str
    instance: int
    due_at: str


@dataclass(frozen=True)
class SlaBreached(EventPayload):
    """A running clock passed its deadline: recorded once, never undone."""

    type = TicketEventType.SLA_BREACHED
    clock_id: int
    metric: str
    instance: int
    due_at: str


@dataclass(frozen=True)
class SlaFulfilled(EventPayload):
    """A clock's target was met by the event that stops it (`breached`: it had been missed
    before; `seconds`: counted time, business or calendar as the target is)."""

    type = TicketEventType.SLA_FULFILLED
    clock_id: int
    metric: str
    instance: int
    breached: bool
    seconds: float


@dataclass(frozen=True)
class CallLogged(EventPayload):
    """A call on the ticket: reported by a voice inbox, or logged by an agent (`manual`)."""

    type = TicketEventType.CALL_LOGGED
    call_id: int
    direction: str
    status: str
    manual: bool = False


@dataclass(frozen=True)
class CallUpdated(EventPayload):
    """A call's status, duration or recording moved on (callbacks after the first)."""

    type = TicketEventType.CALL_UPDATED
    call_id: int
    old_status: str
    new_status: str


@dataclass(frozen=True)
class MessageEdited(EventPayload):
    """The customer edited a message on their channel (e.g. Telegram); the message's
    `metadata["edits"]` keeps the earlier texts."""

    type = TicketEventType.MESSAGE_EDITED
    message_id: int


@dataclass(frozen=True)
class MessageReacted(EventPayload):
    """A reaction to a message (WhatsApp, Messenger, Instagram); an empty `emoji` removes it."""

    type = TicketEventType.MESSAGE_REACTED
    message_id: int
    emoji: str
    by: str = "customer"


EVENT_PAYLOADS: dict[str, type[EventPayload]] = {
    cls.type.value: cls
    for cls in (
        Created,
        MessageReceived,
        ReplyAdded,
        NoteAdded,
        StatusChanged,
        PriorityChanged,
        Assigned,
        TeamChanged,
        TagsChanged,
        FollowupCreated,
        DeliveryChanged,
        AutoReplySent,
        Merged,
        MergedFrom,
        ChatEnded,
        ChatRated,
        ChatSeen,
        CustomFieldChanged,
        RuleFired,
        SlaApplied,
        SlaWarning,
        SlaBreached,
        SlaFulfilled,
        CallLogged,
        CallUpdated,
        MessageEdited,
        MessageReacted,
    )
}


def payload_of(event: TicketEvent) -> EventPayload:
    """The typed payload of a stored event."""
    return EVENT_PAYLOADS[event.type](**event.data)


def append_event(
    ticket: Ticket,
    payload: EventPayload,
    *,
    actor: User | None = None,
    customer: Customer | None = None,
    message: Message | None = None,
) -> TicketEvent:
    """Append one event to a ticket. The caller holds the ticket's row lock (an action)."""
    events = PendingEvents(ticket)
    event = events.add(payload, actor=actor, customer=customer, message=message)
    events.write(save_seq=True)
    return event


class PendingEvents:
    """Events an action appends to tickets, written together with one INSERT.

    `add` numbers each event within its ticket (`ticket.last_event_seq` moves on the
    instance, so one instance per ticket must be used); `write` inserts them and publishes
    them after commit. With `save_seq=False` the caller saves `last_event_seq` with its own
    update of the tickets, in the same transaction, while still holding their row locks;
    `save_seq=True` saves it for the ticket given to the constructor.
    """

    def __init__(self, ticket: Ticket | None = None) -> None:
        self.ticket = ticket
        self.events: list[TicketEvent] = []

    def add(
        self,
        payload: EventPayload,
        *,
        actor: User | None = None,
        customer: Customer | None = None,
        message: Message | None = None,
        ticket: Ticket | None = None,
    ) -> TicketEvent:
        ticket = ticket or self.ticket
        assert ticket is not None, "an event needs a ticket"
        ticket.last_event_seq += 1
        event = TicketEvent(
            ticket=ticket,
            seq=ticket.last_event_seq,
            type=payload.type,
            actor=actor,
            actor_customer=customer,
            message=message,
            data=payload.as_data(),
        )
        self.events.append(event)
        return event

    def write(self, *, save_seq: bool) -> list[TicketEvent]:
        from helpdesk.realtime import publish_ticket_event

        if len(self.events) == 1:
            self.events[0].save()
        elif self.events:
            TicketEvent.objects.bulk_create(self.events)
        if save_seq and self.events:
            assert self.ticket is not None, "save_seq saves the constructor's ticket"
            Ticket.objects.filter(pk=self.ticket.pk).update(last_event_seq=self.ticket.last_event_seq)
        for event in self.events:
            publish_ticket_event(event.ticket, event)
        if self.events:
            from helpdesk.changes import note_changed

            note_changed(event.ticket_id for event in self.events)
        written, self.events = self.events, []
        return written
