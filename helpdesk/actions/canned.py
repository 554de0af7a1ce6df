"""Canned responses: created, changed and deleted by the agents allowed to (permissions.canned_policy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.db import transaction

from helpdesk.canned import MAX_BODY_CHARS
from helpdesk.models import CannedResponse
from helpdesk.permissions import canned_policy

if TYPE_CHECKING:
    from helpdesk.models import Team, User

MAX_TITLE_CHARS = 200


def do_save_canned_response(
    canned: CannedResponse | None,
    *,
    title: str,
    body: str,
    team: Team | None = None,
    owner: User | None = None,
    actor: User,
) -> CannedResponse:
    """Create a response (`canned` None) or change one; the actor must manage both its old and new scope."""
    title = title.replace("\x00", "").strip()
    body = body.replace("\x00", "")
    if not title:
        raise ValueError("A canned response needs a title.")
    if len(title) > MAX_TITLE_CHARS:
        raise ValueError(f"The title is too long ({len(title)} characters; at most {MAX_TITLE_CHARS}).")
    if not body.strip():
        raise ValueError("A canned response needs a text.")
    if len(body) > MAX_BODY_CHARS:
        raise ValueError(f"The text is too long ({len(body)} characters; at most {MAX_BODY_CHARS}).")
    if team is not None and owner is not None:
        raise ValueError("A canned response is shared with a team or personal, not both.")
    if not canned_policy.can_manage(actor, team_id=team.pk if team else None, owner_id=owner.pk if owner else None):
        raise PermissionDenied("you may not manage this canned response")
    with transaction.atomic():
        if canned is None or canned.pk is None:
            return CannedResponse.objects.create(title=title, body=body, team=team, owner=owner, created_by=actor)
        current = CannedResponse.objects.select_for_update().get(pk=canned.pk)
        if not canned_policy.can_manage(actor, team_id=current.team_id, owner_id=current.owner_id):
            raise PermissionDenied("you may not manage this canned response")
        current.title, current.body, current.team, current.owner = title, body, team, owner
        current.save(update_fields=["title", "body", "team", "owner", "updated_at"])
    return current


def do_delete_canned_response(canned: CannedResponse, *, actor: User) -> None:
    with transaction.atomic():
        current = CannedResponse.objects.select_for_update().filter(pk=canned.pk).first()
        if current is None:
            return
        if not canned_policy.can_manage(actor, team_id=current.team_id, owner_id=current.owner_id):
            raise PermissionDenied("you may not manage this canned response")
        current.delete()
