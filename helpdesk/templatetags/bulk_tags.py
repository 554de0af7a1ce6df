"""Template tags of the ticket lists' bulk toolbar (templates/desk/ticket_list.html)."""

from __future__ import annotations

from django import template

from helpdesk.actions.bulk import MAX_BULK_TICKETS
from helpdesk.models import TicketStatus
from helpdesk.permissions import ticket_policy

register = template.Library()


@register.simple_tag
def bulk_statuses() -> list[tuple[str, str]]:
    """The statuses a bulk edit may set (no query): every one but "new"."""
    return [(value, label) for value, label in TicketStatus.choices if value != TicketStatus.NEW]


@register.simple_tag
def bulk_cap() -> int:
    return MAX_BULK_TICKETS


@register.simple_tag
def may_bulk_edit(user: object) -> bool:
    """Whether the toolbar is offered: a light agent may edit no ticket (no query: the role is cached)."""
    return ticket_policy.may_edit_some(user)
