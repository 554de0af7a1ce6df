"""Threading inbound messages into tickets: the helpdesk half of the ingest spine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models import Max
from django.db.models.functions import Lower
from django.utils import timezone

from customers.models import IdentityKind
from helpdesk.attachments import store_attachment
from helpdesk.bulk import update_rows
from helpdesk.events import Created, FollowupCreated, MessageReceived, NoteAdded, PendingEvents, StatusChanged
from helpdesk.html import json_without_nul, sanitize_html, without_nul
from helpdesk.models import Direction, Message, MessageReply, Ticket, TicketCC, TicketStatus, User
from helpdesk.numbers import next_ticket_numbers
from helpdesk.permissions import ticket_policy
from helpdesk.search_text import SearchDocument

if TYPE_CHECKING:
    from channels_inbox.adapters.base import InboundMessage
    from channels_inbox.models import Inbox
    from customers.models import Customer

# A customer message puts a ticket waiting on the customer back into the agents' hands.
_REOPENS = (TicketStatus.PENDING, TicketStatus.ON_HOLD, TicketStatus.SOLVED)
_TICKET_FIELDS = [
    "last_event_seq",
    "status",
    "solved_at",
    "last_customer_message_at",
    "last_activity_at",
    "waiting_since",
    "updated_at",
]


@dataclass
class IngestItem:
    inbound: InboundMessage
    customer: Customer
    # The people on the message's Cc, resolved; they become CCs of its ticket.
    cc_customers: list[Customer] = field(default_factory=list)


@dataclass
class IngestResult:
    # None when the message was skipped: an automatic message with no ticket to join.
    message: Message | None
    ticket: Ticket | None
    created_ticket: bool
    duplicate: bool = False

    @property
    def skipped(self) -> bool:
        return self.message is None


def do_ingest_message(
    *, inbox: Inbox, inbound: InboundMessage, customer: Customer, cc_customers: Sequence[Customer] = ()
) -> IngestResult:
    """Write one inbound message onto the right ticket (see `do_ingest_messages`)."""
    return do_ingest_messages(inbox=inbox, items=[IngestItem(inbound, customer, list(cc_customers))])[0]


def do_ingest_messages(*, inbox: Inbox, items: Sequence[IngestItem]) -> list[IngestResult]:
    """Write inbound messages of one inbox onto the right tickets, with their events, in order.

    Threading, in order: the adapter's thread key (it decides alone); the provider ids the
    message replies to; the ticket numbers the message names (`ticket_candidates`; the number
    of a merged ticket names the ticket it was merged into); a stored message that replies
    to this one (it was processed first); and, for chat-like channels (`thread_by_customer`),
    the customer's latest ticket in this inbox. A ticket found by
    ids or numbers is taken only if the sender may write to it: its customer, one of its
    CCs, or an agent (with proof, see `_Threads.writer`) — a stranger who guesses a number
    starts a ticket of their own. Otherwise a new ticket.

    A message for a closed ticket opens a follow-up ticket linked to it; a pending, on-hold
    or solved ticket is reopened. An automatic message (auto-reply, list mail) joins an
    existing ticket without reopening it or changing whose turn it is, and is skipped
    when there is none to join. An agent's mail on an existing ticket (answered from a
    mail client) is an internal note by that agent. Cc'd people become CCs of the ticket.

    Messages are taken one after another, so a batch gives exactly the tickets and events
    that one message at a time would (a reply to a message earlier in the batch joins its
    ticket). Idempotent on (inbox, external_id). One transaction; the statements do not
    grow with the batch.

    Callers have resolved (and so locked) the customers; thread keys are locked here.
    """
    # No savepoint of its own: inside process_inbound's transaction a failure here aborts
    # that transaction anyway.
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        external_ids = [item.inbound.external_id for item in items if item.inbound.external_id]
        stored: dict[str, Message] = {}
        if external_ids:
            stored = {
                m.external_id: m
                for m in Message.objects.filter(inbox=inbox, external_id__in=external_ids).select_related("ticket")
            }
        fresh = [item for item in items if item.inbound.external_id not in stored]
        threads = _Threads(inbox, fresh)

        plans: list[_Plan | IngestResult] = []
        repeated: set[int] = set()  # indexes of a message seen earlier in this same batch
        new_tickets: list[Ticket] = []
        seen_ids: dict[str, _Plan] = {}
        for item in items:
            inbound, customer = item.inbound, item.customer
            if inbound.external_id in stored:
                old = stored[inbound.external_id]
                plans.append(IngestResult(old, old.ticket, created_ticket=False, duplicate=True))
                continue
            if inbound.external_id and inbound.external_id in seen_ids:
                repeated.add(len(plans))
                plans.append(seen_ids[inbound.external_id])
                continue
            ticket, writer = threads.find(inbound, customer)
            if inbound.automatic and (ticket is None or ticket.status == TicketStatus.CLOSED):
                plans.append(IngestResult(None, None, created_ticket=False))
                continue
            reopened_from = ""
            created = ticket is None or ticket.status == TicketStatus.CLOSED
            previous = ticket if created else None
            # An agent writing into an existing conversation (a reply from their mail client)
            # leaves an internal note: nothing is sent, and the ball stays where it was.
            agent = None if created else writer.agent
            if created:
                ticket = _new_ticket(inbox, inbound, customer, followup_of=previous, now=now)
                new_tickets.append(ticket)
            assert ticket is not None
            if not inbound.automatic and agent is None:
                if not created and ticket.status in _REOPENS:
                    reopened_from = ticket.status
                    ticket.status = TicketStatus.OPEN
                    ticket.solved_at = None
                ticket.last_customer_message_at = now
                if ticket.waiting_since is None:
                    ticket.waiting_since = now
            ticket.last_activity_at = now
            ticket.updated_at = now
            threads.remember(ticket, item)
            # People on the Cc join a ticket only from a mail that opened it or proved it
            # answers the ticket's mail: a forged From with a typed [#N] adds nobody.
            if not (created or writer.proven):
                item = IngestItem(inbound, customer, [])
            plan = _Plan(item, ticket, created, previous, reopened_from, agent)
            plans.append(plan)
            if inbound.external_id:
                seen_ids[inbound.external_id] = plan

        todo = list(dict.fromkeys(p for p in plans if isinstance(p, _Plan)))
        for ticket, number in zip(new_tickets, next_ticket_numbers(len(new_tickets)), strict=True):
            ticket.number = number
        # bulk_create skips save(): the search documents are set here, computed in the INSERTs.
        for ticket in new_tickets:
            ticket.search_vector = SearchDocument(ticket.subject)
        if new_tickets:
            Ticket.objects.bulk_create(new_tickets)
        for plan in todo:
            plan.message = _message(inbox, plan.item, plan.ticket, plan.agent)
            plan.message.search_vector = SearchDocument(plan.message.text)
        if todo:
            Message.objects.bulk_create([plan.message for plan in todo])
        answered = [
            MessageReply(message=plan.message, inbox=inbox, replied_id=ref)
            for plan in todo
            for ref in dict.fromkeys(ref[:255] for ref in plan.item.inbound.in_reply_to[-50:] if ref)
        ]
        if answered:
            MessageReply.objects.bulk_create(answered)
        for plan in todo:
            for attachment in plan.item.inbound.attachments:
                store_attachment(
                    plan.message,
                    attachment.filename,
                    attachment.content,
                    attachment.declared_type,
                    content_id=attachment.content_id,
                    inline=attachment.inline,
                )
        ccs = {
            (plan.ticket.pk, cc.pk): TicketCC(ticket=plan.ticket, customer=cc)
            for plan in todo
            for cc in plan.item.cc_customers
            if cc.pk != plan.ticket.customer_id
        }
        if ccs:
            TicketCC.objects.bulk_create(list(ccs.values()), ignore_conflicts=True)

        events = PendingEvents()
        touched: dict[int, Ticket] = {}
        for plan in todo:
            ticket, customer = plan.ticket, plan.item.customer
            if plan.created:
                events.add(
                    Created(channel=inbox.kind, inbox_id=inbox.pk, followup_of=ticket.followup_of_id),
                    customer=customer,
                    ticket=ticket,
                )
                if plan.previous is not None:
                    events.add(
                        FollowupCreated(followup_ticket_id=ticket.pk, followup_number=ticket.number),
                        ticket=plan.previous,
                    )
                    touched[plan.previous.pk] = plan.previous
            if plan.reopened_from:
                events.add(
                    StatusChanged(old=plan.reopened_from, new=TicketStatus.OPEN), customer=customer, ticket=ticket
                )
            if plan.agent is not None:
                events.add(NoteAdded(message_id=plan.message.pk), actor=plan.agent, message=plan.message, ticket=ticket)
            else:
                events.add(
                    MessageReceived(message_id=plan.message.pk, channel=inbox.kind),
                    customer=customer,
                    message=plan.message,
                    ticket=ticket,
                )
            touched[ticket.pk] = ticket
        events.write(save_seq=False)
        # One UPDATE for every ticket touched, with the sequence numbers of the events above.
        update_rows(list(touched.values()), _TICKET_FIELDS)

    return [p if isinstance(p, IngestResult) else p.result(duplicate=i in repeated) for i, p in enumerate(plans)]


@dataclass
class _Writer:
    # The mail proved it answers the ticket's own mail (or needs no proof: a new ticket, a key).
    proven: bool
    # Set when the sender is an agent writing to the ticket: the message is their note.
    agent: User | None = None


@dataclass(eq=False)
class _Plan:
    item: IngestItem
    ticket: Ticket
    created: bool
    previous: Ticket | None
    reopened_from: str
    agent: User | None = None
    message: Message = None  # type: ignore[assignment]  # set once the ticket exists

    def result(self, *, duplicate: bool) -> IngestResult:
        return IngestResult(
            self.message, self.ticket, created_ticket=self.created and not duplicate, duplicate=duplicate
        )


class _Threads:
    """The tickets a batch's messages may join, row-locked, and the rules to pick one.

    Two workers must not both decide "new ticket" for one conversation. Within a customer
    that cannot happen: resolving the customer updated (so locked) the customer's row, so a
    second worker with a message of the same customer waits until the first one's ticket
    is committed and visible. A thread key may be shared by several customers, so it is
    serialized on its own, with a transaction-scoped advisory lock (SQLite serializes every
    writer anyway). Tickets are locked in id order, so two batches never deadlock on them.
    """

    def __init__(self, inbox: Inbox, items: Sequence[IngestItem]) -> None:
        unkeyed = [item.inbound for item in items if not item.inbound.thread_key]
        keys = sorted({item.inbound.thread_key for item in items if item.inbound.thread_key})
        customers = {
            item.customer.pk for item in items if not item.inbound.thread_key and item.inbound.thread_by_customer
        }
        replied = {ref for inbound in unkeyed for ref in inbound.in_reply_to[-50:]}
        numbers = {number for inbound in unkeyed for number in inbound.ticket_candidates[:10]}
        # Mails that would open a ticket may have been answered already (a reply stored first).
        forward = {inbound.external_id for inbound in unkeyed if inbound.external_id and not inbound.thread_by_customer}
        _lock_thread_keys(inbox, keys)
        tickets = Ticket.objects.filter(inbox=inbox)
        key_ticket: dict[str, int] = {}
        if keys:
            # The latest ticket of each key (ids grow with creation).
            by_key = tickets.filter(thread_key__in=keys).values("thread_key").annotate(latest=Max("id"))
            key_ticket = {row["thread_key"]: row["latest"] for row in by_key}
        customer_ticket: dict[int, int] = {}
        if customers:
            by_customer = tickets.filter(customer_id__in=customers).values("customer_id").annotate(latest=Max("id"))
            customer_ticket = {row["customer_id"]: row["latest"] for row in by_customer}
        replies: dict[str, tuple[datetime, int]] = {}
        if replied:
            answered = Message.objects.filter(inbox=inbox, external_id__in=replied).values_list(
                "external_id", "created_at", "ticket_id"
            )
            replies = {external_id: (at, ticket_id) for external_id, at, ticket_id in answered}
        answers: list[tuple[str, datetime, int]] = []
        if forward:
            answers = list(
                MessageReply.objects.filter(inbox=inbox, replied_id__in=forward).values_list(
                    "replied_id", "message__created_at", "message__ticket_id"
                )
            )
        # Named tickets may have started in any inbox: a customer may answer on another address.
        # A named ticket merged into another stands for that one (locked with the rest, in order).
        named = (
            list(Ticket.objects.filter(number__in=numbers).values_list("number", "id", "merged_into_id"))
            if numbers
            else []
        )
        number_ticket = {number: pk for number, pk, _ in named}
        merged_into = {into for _, _, into in named if into is not None}
        wanted = {*key_ticket.values(), *customer_ticket.values(), *(t for _, t in replies.values())}
        wanted |= set(number_ticket.values()) | merged_into | {ticket_id for _, _, ticket_id in answers}
        locked = (
            {t.pk: t for t in Ticket.objects.select_for_update().filter(pk__in=wanted).order_by("pk")} if wanted else {}
        )
        _lock_merge_targets(locked, number_ticket.values())
        self.by_key = {key: locked[pk] for key, pk in key_ticket.items()}
        self.by_customer = {customer: locked[pk] for customer, pk in customer_ticket.items()}
        self.by_number = {number: _surviving(locked, pk) for number, pk in number_ticket.items()}
        # Reply id → (order, ticket): stored messages by time, then this batch's in turn.
        self.replies: dict[str, tuple[tuple[int, float, int], Ticket]] = {
            ref: ((0, at.timestamp(), ticket_id), locked[ticket_id]) for ref, (at, ticket_id) in replies.items()
        }
        # Message id → the tickets of stored messages (then of this batch's) that answer it.
        self.answered_by: dict[str, list[tuple[tuple[int, float, int], Ticket]]] = {}
        for ref, at, ticket_id in answers:
            self.answered_by.setdefault(ref, []).append(((0, at.timestamp(), ticket_id), locked[ticket_id]))
        # Who may write to each ticket besides its customer (by id() of the ticket object).
        self.ccs: dict[int, set[int]] = {}
        if locked and (replied or numbers or answers):
            for ticket_id, customer_id in TicketCC.objects.filter(ticket_id__in=locked).values_list(
                "ticket_id", "customer_id"
            ):
                self.ccs.setdefault(id(locked[ticket_id]), set()).add(customer_id)
        self.agents = agents_by_email(_sender_emails(items)) if replied or numbers or answers else {}
        self.created: dict[int, int] = {}  # id(new ticket) → its place among this batch's new tickets

    def writer(self, ticket: Ticket, inbound: InboundMessage, customer: Customer, *, proven: bool) -> _Writer | None:
        """Who the sender is on this ticket, if they may write to it at all.

        The ticket's customer and its CCs may (From can be forged; email is no stronger).
        An agent may only with proof that the mail answers the ticket's own mail (a reply id,
        a signed reply address), not with a typed subject token, and only on tickets that
        agent may see: their mail becomes a note in the desk, which colleagues trust.
        """
        if ticket.customer_id == customer.pk or customer.pk in self.ccs.get(id(ticket), ()):
            return _Writer(proven=proven)
        agent = self.agent_of(inbound) if proven else None
        if agent is not None and ticket_policy.can_add_note(agent, ticket):
            return _Writer(proven=True, agent=agent)
        return None

    def agent_of(self, inbound: InboundMessage) -> User | None:
        """The active agent who sent the message, by its email address."""
        return next(
            (
                self.agents[r.value]
                for r in inbound.sender.identities
                if r.kind == IdentityKind.EMAIL and r.value in self.agents
            ),
            None,
        )

    def find(self, inbound: InboundMessage, customer: Customer) -> tuple[Ticket | None, _Writer]:
        """The ticket the message joins (None: a new one) and what its sender is there."""
        if inbound.thread_key:
            # An explicit conversation key decides alone: an unknown key starts a new ticket.
            # (The API channel's keys come in signed requests.)
            return self.by_key.get(inbound.thread_key), _Writer(proven=True)
        answered = []
        for ref in inbound.in_reply_to[-50:]:
            if ref in self.replies:
                order, ticket = self.replies[ref]
                writer = self.writer(ticket, inbound, customer, proven=True)
                if writer is not None:
                    answered.append((order, ticket, writer))
        if answered:
            _, ticket, writer = max(answered, key=lambda found: found[0])
            return ticket, writer
        for number in inbound.ticket_candidates[:10]:
            named = self.by_number.get(number)
            if named is not None:
                writer = self.writer(named, inbound, customer, proven=number in inbound.proven_tickets)
                if writer is not None:
                    return named, writer
        # The earliest stored answer to this very mail: it was processed first, so join it.
        for _, ticket in sorted(self.answered_by.get(inbound.external_id, []), key=lambda found: found[0]):
            writer = self.writer(ticket, inbound, customer, proven=True)
            if writer is not None:
                return ticket, writer
        if inbound.thread_by_customer:
            return self.by_customer.get(customer.pk), _Writer(proven=True)
        return None, _Writer(proven=True)

    def remember(self, ticket: Ticket, item: IngestItem) -> None:
        """Later messages of this batch see this ticket as the newest of its key and customer,
        may reply to this message, and count its CCs as participants."""
        inbound, customer = item.inbound, item.customer
        if inbound.thread_key:
            self.by_key[inbound.thread_key] = ticket
        if ticket.pk is None:
            self.created.setdefault(id(ticket), len(self.created))
        if inbound.external_id:
            self.replies[inbound.external_id] = ((1, float(len(self.replies)), 0), ticket)
        for ref in inbound.in_reply_to[-50:]:
            self.answered_by.setdefault(ref, []).append(((1, float(len(self.replies)), 0), ticket))
        if item.cc_customers:
            self.ccs.setdefault(id(ticket), set()).update(c.pk for c in item.cc_customers)
        current = self.by_customer.get(customer.pk)
        if current is None or self._age(ticket) >= self._age(current):
            self.by_customer[customer.pk] = ticket

    def _age(self, ticket: Ticket) -> tuple[int, int]:
        """Creation order: tickets of this batch after every stored one, among themselves in turn."""
        return (1, self.created[id(ticket)]) if ticket.pk is None else (0, ticket.pk)


# How many merges `_Threads` follows from a named ticket (merging repoints earlier merges, so one).
_MAX_MERGE_HOPS = 5


def _lock_merge_targets(locked: dict[int, Ticket], named: Iterable[int]) -> None:
    """Lock into `locked` the tickets the named ones were merged into, hop by hop, where the
    first read did not (a chain of merges, a merge committed in between). No query when
    every target is locked already."""
    reached = [locked[pk] for pk in named]
    for _ in range(_MAX_MERGE_HOPS):
        targets = {t.merged_into_id for t in reached} - {None}
        missing = targets - locked.keys()
        if missing:
            locked.update((t.pk, t) for t in Ticket.objects.select_for_update().filter(pk__in=missing).order_by("pk"))
        reached = [locked[pk] for pk in targets if pk in locked]
        if not reached:
            return


def _surviving(locked: dict[int, Ticket], pk: int) -> Ticket:
    """The ticket that a named ticket's mail goes to: itself, or the one it was merged into."""
    ticket = locked[pk]
    for _ in range(_MAX_MERGE_HOPS):
        if ticket.merged_into_id is None or ticket.merged_into_id not in locked:
            break
        ticket = locked[ticket.merged_into_id]
    return ticket


def _sender_emails(items: Sequence[IngestItem]) -> set[str]:
    return {ref.value for item in items for ref in item.inbound.sender.identities if ref.kind == IdentityKind.EMAIL}


def agents_by_email(emails: set[str]) -> dict[str, User]:
    """The active agents among these (normalized, lower-case) email addresses."""
    if not emails:
        return {}
    users = User.objects.filter(is_active=True, agent__isnull=False).annotate(address=Lower("email"))
    return {user.address: user for user in users.filter(address__in=emails)}


def _lock_thread_keys(inbox: Inbox, keys: list[str]) -> None:
    if keys and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(h) FROM"
                " (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(%s::text[]) AS k) AS locks ORDER BY h",
                [[f"thread:{inbox.pk}:{key}" for key in keys]],
            )


def _new_ticket(
    inbox: Inbox, inbound: InboundMessage, customer: Customer, *, followup_of: Ticket | None, now: datetime
) -> Ticket:
    return Ticket(
        subject=without_nul(inbound.subject or _subject_from_text(inbound.text))[:300]
        or (followup_of.subject if followup_of else ""),
        status=TicketStatus.NEW,
        customer=customer,
        inbox=inbox,
        channel=inbox.kind,
        team_id=inbox.team_id,
        thread_key=inbound.thread_key,
        followup_of=followup_of,
        last_activity_at=now,
        created_at=now,
        updated_at=now,
    )


def _message(inbox: Inbox, item: IngestItem, ticket: Ticket, agent: User | None) -> Message:
    inbound = item.inbound
    return Message(
        ticket=ticket,
        direction=Direction.NOTE if agent is not None else Direction.INBOUND,
        author_customer=None if agent is not None else item.customer,
        author_agent=agent,
        inbox=inbox,
        channel=inbox.kind,
        text=without_nul(inbound.text),
        html=sanitize_html(inbound.html),
        external_id=without_nul(inbound.external_id),
        sent_at=inbound.sent_at,
        metadata=json_without_nul(inbound.metadata),
    )


def _subject_from_text(text: str) -> str:
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first_line if len(first_line) <= 80 else first_line[:79].rstrip() + "…"
