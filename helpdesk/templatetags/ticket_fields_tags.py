"""Template tags of the ticket page's edit panel (templates/desk/_ticket_fields.html)."""

from __future__ import annotations

from typing import Any

from django import template

from helpdesk.selectors import SideFields, ticket_side_fields

register = template.Library()


@register.simple_tag(takes_context=True)
def side_fields(context: dict[str, Any], ticket: Any) -> SideFields:
    """The tags and choices of the panel; the team list is read only for those who may edit."""
    return ticket_side_fields(ticket, editable=bool(context.get("can_edit")))
