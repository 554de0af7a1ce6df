"""Bulk edits from the ticket lists: one change (assignee, status, tags) or a merge, over many tickets.

Each ticket goes through the action a single edit uses (its own transaction, its lock, its
event, its live publish), in id order so two bulk edits over the same tickets take their locks
in the same order. Every ticket is checked with ticket_policy.can_edit; those the agent may not
edit are skipped and counted, and so are tickets they cannot see (or that do not exist), so the
summary always adds up to what was selected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied

from helpdesk.actions.merge import MergeRefused, do_merge_tickets
from helpdesk.actions.ticket_fields import MAX_TAGS_PER_EDIT, InvalidTag, do_set_tags, normalize_tag
from helpdesk.actions.tickets import do_assign_ticket, do_change_status
from helpdesk.models import Ticket, TicketStatus
from helpdesk.permissions import ticket_policy

if TYPE_CHECKING:
    from helpdesk.models import User

# Tickets one bulk request may name at most (the list shows 25 per page; "select all" over a
# few loaded pages stays well below). Each ticket is a transaction of its own.
MAX_BULK_TICKETS = 200
BULK_CHANGES = ("assign", "status", "add_tags", "remove_tags")


class BulkRefused(ValueError):
    """The request as a whole cannot be done (nothing selected, too many, an unknown change…)."""


@dataclass(frozen=True)
class BulkChange:
    """One change for every selected ticket: `kind` in BULK_CHANGES; `value` a status, an agent
    (None: nobody) or a list of tag names."""

    kind: str
    value: Any


@dataclass
class BulkResult:
    """What became of each selected ticket, by number."""

    changed: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    not_allowed: list[int] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    def summary(self, verb: str = "Changed") -> str:
        def n(count: int) -> str:
            return f"{count} ticket{'s' if count != 1 else ''}"

        parts = [f"{verb} {n(len(self.changed))}."]
        if self.unchanged:
            parts.append(f"{n(len(self.unchanged))} already so.")
        if self.not_allowed:
            listed = ", ".join(f"#{x}" for x in self.not_allowed[:10]) + ("…" if len(self.not_allowed) > 10 else "")
            parts.append(f"Skipped {n(len(self.not_allowed))} you may not edit ({listed}).")
        if self.not_found:
            parts.append(f"{n(len(self.not_found))} not found or not visible to you.")
        for number, reason in self.failed[:10]:
            parts.append(f"#{number}: {reason}")
        if len(self.failed) > 10:
            parts.append(f"…and {len(self.failed) - 10} more not changed.")
        return " ".join(parts)


def check_selection(numbers: Sequence[int]) -> list[int]:
    """The selected ticket numbers, once each in the order given, or BulkRefused."""
    unique = list(dict.fromkeys(numbers))
    if not unique:
        raise BulkRefused("Select at least one ticket.")
    if len(unique) > MAX_BULK_TICKETS:
        raise BulkRefused(
            f"At most {MAX_BULK_TICKETS} tickets at a time ({len(unique)} were selected); select fewer and repeat."
        )
    return unique


def check_change(change: BulkChange) -> BulkChange:
    """The change with its value checked (a status, tag names normalized), or BulkRefused."""
    if change.kind not in BULK_CHANGES:
        raise BulkRefused(f"Unknown bulk action {str(change.kind)[:40]!r}; one of: {', '.join(BULK_CHANGES)}.")
    if change.kind == "status":
        if change.value not in TicketStatus.values or change.value == TicketStatus.NEW:
            raise BulkRefused(f"Unknown status {str(change.value)[:40]!r}.")
    elif change.kind in ("add_tags", "remove_tags"):
        names = [name for name in change.value if name.strip()]
        if not names:
            raise BulkRefused("Name the tag to add or remove.")
        if len(names) > MAX_TAGS_PER_EDIT:
            raise BulkRefused(f"At most {MAX_TAGS_PER_EDIT} tags at a time.")
        try:
            return BulkChange(change.kind, list(dict.fromkeys(normalize_tag(name) for name in names)))
        except InvalidTag as exc:
            raise BulkRefused(str(exc)) from None
    return change


def _selected(numbers: list[int], actor: User) -> tuple[list[Ticket], list[int]]:
    """The selected tickets the actor can see, in id order (one query), and the numbers not found."""
    tickets = list(ticket_policy.visible(actor).filter(number__in=numbers).order_by("pk"))
    found = {t.number for t in tickets}
    return tickets, [n for n in numbers if n not in found]


def _apply(ticket: Ticket, change: BulkChange, actor: User) -> Ticket:
    if change.kind == "assign":
        return do_assign_ticket(ticket, assignee=change.value, actor=actor)
    if change.kind == "status":
        return do_change_status(ticket, status=change.value, actor=actor)
    if change.kind == "add_tags":
        return do_set_tags(ticket, add=change.value, actor=actor)
    return do_set_tags(ticket, remove=change.value, actor=actor)


def do_bulk_edit(numbers: Sequence[int], *, change: BulkChange, actor: User) -> BulkResult:
    """Apply one change to each selected ticket the actor may edit (a transaction per ticket)."""
    selection = check_selection(numbers)
    change = check_change(change)
    tickets, missing = _selected(selection, actor)
    result = BulkResult(not_found=missing)
    for ticket in tickets:
        if not ticket_policy.can_edit(actor, ticket):
            result.not_allowed.append(ticket.number)
            continue
        try:
            after = _apply(ticket, change, actor)
        except PermissionDenied:
            result.not_allowed.append(ticket.number)  # changed hands since it was read
            continue
        except ValueError as exc:  # a closed ticket stays closed, a tag refused…
            result.failed.append((ticket.number, str(exc)))
            continue
        (result.changed if after.last_event_seq != ticket.last_event_seq else result.unchanged).append(ticket.number)
    return result


def merge_candidates(numbers: Sequence[int], actor: User) -> tuple[list[Ticket], list[int]]:
    """The selected tickets for the merge confirmation (visible ones, in id order) and the rest."""
    selection = check_selection(numbers)
    tickets = list(ticket_policy.visible(actor).filter(number__in=selection).select_related("customer").order_by("pk"))
    found = {t.number for t in tickets}
    return tickets, [n for n in selection if n not in found]


def do_bulk_merge(numbers: Sequence[int], *, into: int, actor: User) -> BulkResult:
    """Merge every other selected ticket into the one numbered `into`, which must be among them
    and editable by the actor (else BulkRefused, nothing merged). Each merge is its own
    transaction, locking its pair in id order (actions/merge.py)."""
    selection = check_selection(numbers)
    if into not in selection:
        raise BulkRefused(f"The ticket to merge into (#{into}) must be one of the selected tickets.")
    if len(selection) < 2:
        raise BulkRefused("Select at least two tickets to merge.")
    tickets, missing = _selected(selection, actor)
    target = next((t for t in tickets if t.number == into), None)
    if target is None:
        raise BulkRefused(f"Ticket #{into} was not found.")
    if not ticket_policy.can_edit(actor, target):
        raise BulkRefused(f"You may not edit #{into}, so nothing can be merged into it.")
    result = BulkResult(not_found=missing)
    for source in tickets:
        if source.pk == target.pk:
            continue
        if not ticket_policy.can_edit(actor, source):
            result.not_allowed.append(source.number)
            continue
        try:
            do_merge_tickets(source, into=target, actor=actor)
        except PermissionDenied:
            result.not_allowed.append(source.number)
            continue
        except MergeRefused as exc:
            result.failed.append((source.number, str(exc)))
            continue
        result.changed.append(source.number)
    return result
