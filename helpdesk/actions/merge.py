"""Joining two tickets: merging a duplicate into another, and linking a follow-up to its predecessor."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from helpdesk.events import FollowupCreated, Merged, MergedFrom, PendingEvents, StatusChanged, TagsChanged
from helpdesk.models import Message, Ticket, TicketCC, TicketStatus
from helpdesk.permissions import ticket_policy

if TYPE_CHECKING:
    from helpdesk.models import User

# How far `do_link_followup` walks a chain of follow-ups looking for a cycle.
_MAX_FOLLOWUP_CHAIN = 100


class MergeRefused(ValueError):
    """The tickets cannot be joined that way (the same ticket, a closed or merged target, a cycle)."""


def _locked_pair(first: Ticket, second: Ticket, actor: User) -> tuple[Ticket, Ticket]:
    """Both rows, locked in id order (two merges never deadlock), once the actor may edit both."""
    rows = {t.pk: t for t in Ticket.objects.select_for_update().filter(pk__in=[first.pk, second.pk]).order_by("pk")}
    pair = rows[first.pk], rows[second.pk]
    if not all(ticket_policy.can_edit(actor, ticket) for ticket in pair):
        raise PermissionDenied("you may not edit both tickets")
    return pair


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a and b else a or b


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(a, b) if a and b else a or b


def merge_refusal(source: Ticket, target: Ticket) -> str | None:
    """Why `source` cannot be merged into `target` as they are now, or None if it can."""
    if source.pk == target.pk:
        return "A ticket cannot be merged into itself."
    if source.merged_into_id is not None:
        return f"#{source.number} has already been merged into another ticket."
    if target.merged_into_id is not None:
        return f"#{target.number} has been merged into another ticket; merge into that one."
    if target.is_closed:
        return f"#{target.number} is closed; a closed ticket takes no more messages."
    return None


def do_merge_tickets(source: Ticket, *, into: Ticket, actor: User) -> Ticket:
    """Merge `source` into `into` (the target), which is returned.

    The source's messages (with their attachments, deliveries and reply ids) and CCs move to
    the target; its tags are added to the target's (and stay on the source, for history).
    The source's customer becomes a CC of the target when they are someone else, so they
    may go on writing to the conversation. The source is closed and points at the target
    (`merged_into`): mail naming the source's number (a `[#N]` subject token) threads into
    the target, and tickets merged into the source earlier now point at the target too.
    Events: Merged (and StatusChanged, unless it was closed) on the source; MergedFrom (and
    TagsChanged, if tags came along) on the target. The target's status stays as it is.
    """
    if source.pk == into.pk:
        raise MergeRefused("A ticket cannot be merged into itself.")
    with transaction.atomic():
        source, target = _locked_pair(source, into, actor)
        refusal = merge_refusal(source, target)
        if refusal:
            raise MergeRefused(refusal)
        now = timezone.now()

        moved = Message.objects.filter(ticket=source).update(ticket=target)
        on_target = set(TicketCC.objects.filter(ticket=target).values_list("customer_id", flat=True))
        on_target.add(target.customer_id)
        TicketCC.objects.filter(ticket=source).exclude(customer_id__in=on_target).update(ticket=target)
        TicketCC.objects.filter(ticket=source).delete()  # the rest were already on the target
        if source.customer_id not in on_target:
            TicketCC.objects.create(ticket=target, customer_id=source.customer_id)
        source_tags = dict(source.tags.values_list("name", "id"))
        target_tags = set(target.tags.values_list("name", flat=True))
        new_tags = sorted(name for name in source_tags if name not in target_tags)
        if new_tags:
            target.tags.add(*(source_tags[name] for name in new_tags))
        Ticket.objects.filter(merged_into=source).update(merged_into=target)

        old_status = source.status
        source.merged_into = target
        source.status = TicketStatus.CLOSED
        source.closed_at = source.closed_at if old_status == TicketStatus.CLOSED else now
        source.solved_at = source.solved_at or now
        target.waiting_since = _earliest(target.waiting_since, source.waiting_since)
        source.waiting_since = None
        target.last_customer_message_at = _latest(target.last_customer_message_at, source.last_customer_message_at)
        target.last_agent_message_at = _latest(target.last_agent_message_at, source.last_agent_message_at)
        source.last_activity_at = target.last_activity_at = now

        events = PendingEvents()
        events.add(Merged(into_ticket_id=target.pk, into_number=target.number), actor=actor, ticket=source)
        if old_status != TicketStatus.CLOSED:
            events.add(StatusChanged(old=old_status, new=TicketStatus.CLOSED), actor=actor, ticket=source)
        events.add(
            MergedFrom(source_ticket_id=source.pk, source_number=source.number, messages=moved),
            actor=actor,
            ticket=target,
        )
        if new_tags:
            events.add(TagsChanged(added=new_tags, removed=[]), actor=actor, ticket=target)
        events.write(save_seq=False)
        source.save(
            update_fields=[
                "merged_into",
                "status",
                "closed_at",
                "solved_at",
                "waiting_since",
                "last_activity_at",
                "last_event_seq",
                "updated_at",
            ]
        )
        target.save(
            update_fields=[
                "waiting_since",
                "last_customer_message_at",
                "last_agent_message_at",
                "last_activity_at",
                "last_event_seq",
                "updated_at",
            ]
        )
    return target


def do_link_followup(ticket: Ticket, *, previous: Ticket, actor: User) -> Ticket:
    """Mark `ticket` as a follow-up of `previous` (as ingest does for mail to a closed ticket).

    The previous ticket's log gets FollowupCreated, as it does then. Re-linking to another
    ticket moves the link; linking where it already points is nothing. Refused: the ticket
    itself, a merged-away ticket, and a ticket that is (through its chain) a follow-up of
    this one.
    """
    if ticket.pk == previous.pk:
        raise MergeRefused("A ticket cannot be a follow-up of itself.")
    with transaction.atomic():
        ticket, previous = _locked_pair(ticket, previous, actor)
        if ticket.followup_of_id == previous.pk:
            return ticket
        if previous.merged_into_id is not None:
            raise MergeRefused(f"#{previous.number} has been merged into another ticket; link to that one.")
        ancestor = previous.followup_of_id
        for _ in range(_MAX_FOLLOWUP_CHAIN):
            if ancestor is None:
                break
            if ancestor == ticket.pk:
                raise MergeRefused(f"#{previous.number} is itself a follow-up of #{ticket.number}.")
            ancestor = Ticket.objects.filter(pk=ancestor).values_list("followup_of_id", flat=True).first()
        ticket.followup_of = previous
        events = PendingEvents(previous)
        events.add(FollowupCreated(followup_ticket_id=ticket.pk, followup_number=ticket.number), actor=actor)
        events.write(save_seq=True)
        ticket.save(update_fields=["followup_of", "updated_at"])
    return ticket
