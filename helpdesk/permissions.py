"""Who may see and do what with tickets: one policy, shared by pages, API and websockets.

| role        | sees                                              | replies | notes | edits |
|-------------|---------------------------------------------------|---------|-------|-------|
| admin       | every ticket                                      | yes     | yes   | yes   |
| supervisor  | every ticket                                      | yes     | yes   | yes   |
| agent       | tickets of their teams, without a team, or theirs | yes     | yes   | yes   |
| light agent | as agent                                          | no      | yes   | no    |

A user without an agent profile (and not a superuser) is not staff of the helpdesk.
Customers (customer_policy): admins and supervisors view and edit every customer; agents and
light agents view a customer who has at least one ticket visible to them; agents also edit
(profile, merges) those customers, light agents never.
Held inbound events (mail over a sender's rate limit…) are reviewed by admins and supervisors.

Workspace settings (settings_policy): calendars, SLA, routing and rules are the admins'; macros
and canned responses keep their own scopes.

Canned responses: every staff member uses their personal ones, their teams' and everyone's;
admins and supervisors manage the shared ones (a team's or everyone's); anyone manages their own
personal ones; admins manage every one.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet, Subquery
from django.http import Http404

from helpdesk.models import AgentProfile, CannedResponse, Macro, Message, Role, SavedView, Ticket


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

    def may_edit_some(self, user: Any) -> bool:
        """Whether the user's role lets them edit any ticket at all (light agents: none)."""
        return role_of(user) not in (None, Role.LIGHT_AGENT)


ticket_policy = TicketPolicy()


class CustomerPolicy:
    """Who may see and edit a customer, derived from who may see the customer's tickets."""

    def _sees_a_ticket(self, user: Any, customer: Any, via: Ticket | None) -> bool:
        if role_of(user) in (Role.ADMIN, Role.SUPERVISOR):
            return True
        if via is not None and via.customer_id == customer.pk and ticket_policy.can_view(user, via):
            # Known visible already (the ticket page): no query.
            return True
        return ticket_policy.visible(user).filter(customer_id=customer.pk).exists()

    def can_view(self, user: Any, customer: Any, *, via: Ticket | None = None) -> bool:
        """`via`: a ticket of this customer the caller already holds, which spares the query."""
        return role_of(user) is not None and self._sees_a_ticket(user, customer, via)

    def can_edit(self, user: Any, customer: Any, *, via: Ticket | None = None) -> bool:
        role = role_of(user)
        return role is not None and role != Role.LIGHT_AGENT and self._sees_a_ticket(user, customer, via)


customer_policy = CustomerPolicy()


def access_customer(user: Any, customer_id: int, *, for_: str = "view") -> Any:
    """Fetch a customer by id for a user, or 404 (unknown or not visible) / 403 (visible, not allowed)."""
    from customers.models import Customer

    customer = Customer.objects.filter(pk=customer_id).first() if 0 < customer_id < 2**63 else None
    if customer is None or not customer_policy.can_view(user, customer):
        raise Http404("no such customer")
    if for_ == "edit" and not customer_policy.can_edit(user, customer):
        raise PermissionDenied("you may not edit this customer")
    return customer


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


class ScopedPolicy:
    """Rows shared with one team (`team`), personal to one agent (`owner`) or, with neither, for
    everyone — canned responses and macros. Everyone uses their personal ones, their teams' and
    everyone's; admins and supervisors manage the shared ones, anyone their own personal ones."""

    model: Any

    def usable(self, user: Any) -> QuerySet[Any]:
        """The rows a user may use: personal, their teams' and everyone's (one query)."""
        if role_of(user) is None:
            return self.model.objects.none()
        teams = AgentProfile.teams.through.objects.filter(agentprofile__user=user).values("team_id")
        return self.model.objects.filter(
            Q(owner=user) | Q(team_id__in=Subquery(teams)) | Q(team__isnull=True, owner__isnull=True)
        )

    def can_use(self, user: Any, row: Any) -> bool:
        if role_of(user) is None:
            return False
        if row.owner_id is not None:
            return bool(row.owner_id == user.pk)
        return row.team_id is None or row.team_id in team_ids_of(user)

    def can_manage(self, user: Any, *, team_id: int | None, owner_id: int | None) -> bool:
        """May the user create, change or delete a row with this scope (team or owner or neither)?"""
        role = role_of(user)
        if role is None:
            return False
        if role == Role.ADMIN:
            return True
        if owner_id is not None:
            return bool(owner_id == user.pk and team_id is None)
        return role == Role.SUPERVISOR


class CannedPolicy(ScopedPolicy):
    model = CannedResponse


canned_policy = CannedPolicy()


def access_canned(user: Any, canned_id: int) -> CannedResponse:
    """A canned response the user may use, or 404 (another agent's or another team's looks absent)."""
    canned = canned_policy.usable(user).filter(pk=canned_id).first()
    if canned is None:
        raise Http404("no such canned response")
    return canned


class MacroPolicy(ScopedPolicy):
    """Macros have the scopes of canned responses. What applying one needs is each step's own
    permission (ticket_policy)."""

    model = Macro


macro_policy = MacroPolicy()


def access_macro(user: Any, macro_id: int) -> Macro:
    """A macro the user may use, or 404 (another agent's or another team's looks absent)."""
    macro = macro_policy.usable(user).filter(pk=macro_id).first() if 0 < macro_id < 2**63 else None
    if macro is None:
        raise Http404("no such macro")
    return macro


class ViewPolicy:
    """Saved views of the ticket list: an agent's own are theirs alone; a team's are seen by its
    members, and made and deleted by admins and supervisors (who see every team's)."""

    def visible(self, user: Any) -> QuerySet[SavedView]:
        role = role_of(user)
        if role is None:
            return SavedView.objects.none()
        if role in (Role.ADMIN, Role.SUPERVISOR):
            return SavedView.objects.filter(Q(owner=user) | Q(team__isnull=False))
        return SavedView.objects.filter(Q(owner=user) | Q(team_id__in=team_ids_of(user)))

    def can_share(self, user: Any) -> bool:
        return role_of(user) in (Role.ADMIN, Role.SUPERVISOR)

    def can_save(self, user: Any, *, shared: bool) -> bool:
        return self.can_share(user) if shared else role_of(user) is not None

    def can_delete(self, user: Any, view: SavedView) -> bool:
        if view.team_id is not None:
            return self.can_share(user)
        return view.owner_id == user.pk and role_of(user) is not None


view_policy = ViewPolicy()


def access_saved_view(user: Any, view_id: int) -> SavedView:
    """A saved view the user may see, or 404."""
    view = view_policy.visible(user).filter(pk=view_id).first()
    if view is None:
        raise Http404("no such view")
    return view


class SettingsPolicy:
    """The workspace settings (/desk/settings/): business calendars, SLA policies, routing
    (rules, team modes, agent capacities), triggers and time rules are the admins'; the settings
    pages for macros and canned responses follow their ScopedPolicy (anyone their personal
    ones, supervisors and admins the shared ones)."""

    def can_open(self, user: Any) -> bool:
        """May see the settings menu at all (every staff member: their personal macros and canned)."""
        return role_of(user) is not None

    def can_manage(self, user: Any) -> bool:
        """Calendars, SLA policies, routing, triggers and time rules."""
        return role_of(user) == Role.ADMIN

    def can_preview(self, user: Any) -> bool:
        """Test a rule or policy against a ticket (the ticket itself is then checked with
        access_ticket, so a preview never shows a ticket its user may not see)."""
        return self.can_manage(user)


settings_policy = SettingsPolicy()


def require_settings_admin(user: Any) -> None:
    """Raise PermissionDenied unless the user manages the workspace settings."""
    if not settings_policy.can_manage(user):
        raise PermissionDenied("only admins change these settings")
