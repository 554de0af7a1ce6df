"""Saved views of the ticket list: an agent's own, or a team's (made by admins and supervisors)."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from helpdesk.models import SavedView
from helpdesk.permissions import view_policy
from helpdesk.selectors import filters_from_data

if TYPE_CHECKING:
    from helpdesk.models import Team, User

# SavedView.name's column width.
MAX_VIEW_NAME_CHARS = 80


class InvalidView(ValueError):
    """A saved view that cannot be stored: no name, a name too long, an unknown sort."""


def clean_view_name(name: str) -> str:
    """The name trimmed, 1–80 characters, without control or format characters (NUL, bidi overrides)."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidView("A view needs a name.")
    if len(cleaned) > MAX_VIEW_NAME_CHARS:
        raise InvalidView(f"The name is too long ({len(cleaned)} characters; at most {MAX_VIEW_NAME_CHARS}).")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Cs") for ch in cleaned):
        raise InvalidView("The name may not contain control characters.")
    return cleaned


@transaction.atomic
def do_save_view(
    *, actor: User, name: str, filters: dict[str, Any], sort: str = "activity", team: Team | None = None
) -> SavedView:
    """A new saved view: the actor's own, or (team given) shared with the team.

    FilterError (a ValueError) for filters that name nothing, InvalidView for a bad name or
    sort, PermissionDenied when the actor may not share views.
    """
    if not view_policy.can_save(actor, shared=team is not None):
        raise PermissionDenied("only admins and supervisors share views with a team")
    cleaned = clean_view_name(name)
    if sort not in SavedView.Sort.values:
        raise InvalidView(f"Unknown sort {sort[:40]!r}; one of: {', '.join(SavedView.Sort.values)}.")
    _, stored = filters_from_data(filters)
    return SavedView.objects.create(
        name=cleaned,
        owner=None if team is not None else actor,
        team=team,
        filters=stored,
        sort=sort,
        created_by=actor,
    )


@transaction.atomic
def do_delete_view(view: SavedView, *, actor: User) -> None:
    if not view_policy.can_delete(actor, view):
        raise PermissionDenied("you may not delete this view")
    view.delete()
