"""Edits of a ticket's triage fields from the desk: priority, team and tags.

Each edit locks the ticket row, is a no-op when nothing changes (no event, no save), and
otherwise appends its typed event (PriorityChanged, TeamChanged, TagsChanged).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from helpdesk.events import CustomFieldChanged, PriorityChanged, TagsChanged, TeamChanged, append_event
from helpdesk.models import Priority, Tag, Ticket
from helpdesk.permissions import ticket_policy

if TYPE_CHECKING:
    from helpdesk.models import Team, User

# Tag.name's column width.
MAX_TAG_CHARS = 64
# Names one edit may add or remove at most (a form sends one or two; anything more is abuse).
MAX_TAGS_PER_EDIT = 50


class InvalidTag(ValueError):
    """A tag name that cannot be stored: empty, too long, or with a comma or control character."""


def normalize_tag(name: str) -> str:
    """The stored form of a tag name: trimmed and lower-cased, 1–64 characters.

    Commas are refused (lists of tags are written comma-separated everywhere), and so is
    every control, format or unassigned character (NUL, newlines, bidi overrides,
    zero-width characters): a tag is shown in lists and must read as what it is.
    """
    normalized = name.strip().lower()
    if not normalized:
        raise InvalidTag("A tag needs a name.")
    if len(normalized) > MAX_TAG_CHARS:
        raise InvalidTag(f"A tag has at most {MAX_TAG_CHARS} characters (this one has {len(normalized)}).")
    if "," in normalized:
        raise InvalidTag("A tag name cannot contain a comma; add one tag at a time.")
    if any(unicodedata.category(char).startswith("C") for char in normalized):
        raise InvalidTag("A tag name cannot contain control or invisible characters.")
    return normalized


def locked_for_edit(ticket: Ticket, actor: User) -> Ticket:
    """The ticket's row, locked, once the actor may edit it as it is now (inside an atomic block)."""
    locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if not ticket_policy.can_edit(actor, locked):
        raise PermissionDenied("you may not edit this ticket")
    return locked


def locked_for_change(ticket: Ticket, actor: User | None) -> Ticket:
    """The ticket's row, locked; checked against the actor's permission unless the system acts
    (`actor` None: routing, the rule runner)."""
    if actor is None:
        return Ticket.objects.select_for_update().get(pk=ticket.pk)
    return locked_for_edit(ticket, actor)


def do_change_priority(ticket: Ticket, *, priority: int, actor: User | None) -> Ticket:
    """`actor` None is the system (the rule runner): no permission check."""
    priority = Priority(priority)  # ValueError for anything that is not a priority
    with transaction.atomic():
        ticket = locked_for_change(ticket, actor)
        old = ticket.priority
        if old == priority:
            return ticket
        ticket.priority = priority
        append_event(ticket, PriorityChanged(old=old, new=int(priority)), actor=actor)
        ticket.save(update_fields=["priority", "updated_at"])
    return ticket


def do_change_team(ticket: Ticket, *, team: Team | None, actor: User | None) -> Ticket:
    """Move the ticket to a team's queue (None: no team). The actor may lose sight of it.
    `actor` None is the system (routing rules, the rule runner): no permission check."""
    with transaction.atomic():
        ticket = locked_for_change(ticket, actor)
        old = ticket.team_id
        new = team.pk if team else None
        if old == new:
            return ticket
        ticket.team = team
        append_event(ticket, TeamChanged(old_team_id=old, new_team_id=new), actor=actor)
        ticket.save(update_fields=["team", "updated_at"])
    return ticket


def _names(names: Iterable[str]) -> list[str]:
    normalized = list(dict.fromkeys(normalize_tag(name) for name in names))
    if len(normalized) > MAX_TAGS_PER_EDIT:
        raise InvalidTag(f"At most {MAX_TAGS_PER_EDIT} tags at a time.")
    return normalized


def do_set_tags(ticket: Ticket, *, add: Iterable[str] = (), remove: Iterable[str] = (), actor: User | None) -> Ticket:
    """Add and remove tags by name (normalized; new names become tags). One TagsChanged event
    lists what really changed: adding a tag the ticket has, or removing one it lacks, is nothing.
    `actor` None is the system (the rule runner): no permission check."""
    adding, removing = _names(add), _names(remove)
    if set(adding) & set(removing):
        raise InvalidTag("A tag cannot be added and removed at once.")
    with transaction.atomic():
        ticket = locked_for_change(ticket, actor)
        current = dict(ticket.tags.values_list("name", "id"))
        added = [name for name in adding if name not in current]
        removed = [name for name in removing if name in current]
        if not added and not removed:
            return ticket
        if added:
            Tag.objects.bulk_create([Tag(name=name) for name in added], ignore_conflicts=True)
            ticket.tags.add(*Tag.objects.filter(name__in=added).values_list("id", flat=True))
        if removed:
            ticket.tags.remove(*(current[name] for name in removed))
        append_event(ticket, TagsChanged(added=sorted(added), removed=sorted(removed)), actor=actor)
        ticket.save(update_fields=["updated_at"])
    return ticket


# A custom field's key: what the rule runner and the API name it by (values are JSON scalars).
CUSTOM_FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_CUSTOM_FIELD_CHARS = 1000


def do_set_custom_field(ticket: Ticket, *, key: str, value: Any, actor: User | None) -> Ticket:
    """Set one custom field (`value` None removes it): a string of at most 1,000 characters, a
    number or a boolean. A no-op when the value is already that; otherwise CustomFieldChanged.
    `actor` None is the system (the rule runner): no permission check."""
    if not CUSTOM_FIELD_KEY.match(key):
        raise ValueError("a custom field key is 1–64 lower-case letters, digits or _, starting with a letter")
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError("a custom field holds a string, a number, a boolean or nothing")
    if isinstance(value, str) and len(value) > MAX_CUSTOM_FIELD_CHARS:
        raise ValueError(f"a custom field holds at most {MAX_CUSTOM_FIELD_CHARS} characters")
    with transaction.atomic():
        ticket = locked_for_change(ticket, actor)
        fields = dict(ticket.custom_fields or {})
        old = fields.get(key)
        if old == value and type(old) is type(value):
            return ticket
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
        ticket.custom_fields = fields
        append_event(ticket, CustomFieldChanged(key=key, old=old, new=value), actor=actor)
        ticket.save(update_fields=["custom_fields", "updated_at"])
    return ticket
