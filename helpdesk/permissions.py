"""Who may see and do what with tickets: one policy, shared by pages, API and websockets.

| role        | sees                                              | replies | notes | edits |
|-------------|---------------------------------------------------|---------|-------|-------|
| admin       | every ticket                                      | yes     | yes   | yes   |
| supervisor  | every ticket                                      | yes     | yes   | yes   |
| agent       | tickets of their teams, without a team, or theirs | yes     | yes   | yes   |
| light agent | as agent                                          | no      | yes   | no    |

A user without an agent profile (and not a superuser) is not staff of the helpdesk.
Held inbound events (mail over a sender's rate limit…) are reviewed by admins and supervisors.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from helpdesk.models import AgentProfile, Message, Role, Ticket


def role_of(user: Any) -> str | None:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    if not hasattr(user, "_helpdesk_role"):
        user._helpdesk_role = AgentProfile.objects.filter(user=user).values_list("role", flat=True).first()
    role: str | None = user._helpdesk_role
    return role


def team_ids_of(user: Any) -> list[int]:
    cached = getattr(user, "_helpdesk_team_ids", None)
    if cached is None:
        cached = list(
            AgentProfile.teams.through.objects.filter(agentprofile__user=user).values_list("team_id", flat=True)
        )
        user._helpdesk_team_ids = cached
    return list(cached)


def is_staff_member(user: Any) -> bool:
    return role_of(user) is not None


class TicketPolicy:
    def visible(self, user: Any) -> QuerySet[Ticket]:
        role = role_of(user)
        if role is None:
            return Ticket.objects.none()
        if role in (Role.ADMIN, Role.SUPERVISOR):
            return Ticket.objects.all()
        return Ticket.objects.filter(Q(team__isnull=True) | Q(team_id__in=team_ids_of(user)) | Q(assignee=user))

    def can_view(self, user: Any, ticket: Ticket) -> bool:
        role = role_of(user)
        if role is None:
            return False
        if role in (Role.ADMIN, Role.SUPERVISOR):
            return True
        return ticket.team_id is None or ticket.team_id in team_ids_of(user) or ticket.assignee_id == user.pk

    def can_reply(self, user: Any, ticket: Ticket) -> bool:
        return self.can_view(user, ticket) and role_of(user) != Role.LIGHT_AGENT

    def can_add_note(self, user: Any, ticket: Ticket) -> bool:
        return self.can_view(user, ticket)

    def can_edit(self, user: Any, ticket: Ticket) -> bool:
        return self.can_reply(user, ticket)


ticket_policy = TicketPolicy()


def access_ticket(user: Any, number: int, *, for_: str = "view") -> Ticket:
    """Fetch a ticket by number for a user, or 404 (not visible) / 403 (visible, not allowed)."""
    ticket = (
        ticket_policy.visible(user)
        .select_related("customer", "inbox", "team", "assignee")
        .filter(number=number)
        .first()
    )
    if ticket is None:
        raise Http404("no such ticket")
    allowed = {
        "view": ticket_policy.can_view,
        "reply": ticket_policy.can_reply,
        "note": ticket_policy.can_add_note,
        "edit": ticket_policy.can_edit,
    }[for_](user, ticket)
    if not allowed:
        raise PermissionDenied(f"you may not {for_} this ticket")
    return ticket


def access_message(user: Any, message_id: int) -> Message:
    """A message of a ticket the user may view (access_ticket decides), or 404 / 403."""
    message = Message.objects.select_related("ticket").filter(pk=message_id).first()
    if message is None:
        raise Http404("no such message")
    access_ticket(user, message.ticket.number)
    return message


def can_review_held_events(user: Any) -> bool:
    """Release or discard inbound events held for review: admins and supervisors."""
    return role_of(user) in (Role.ADMIN, Role.SUPERVISOR)
