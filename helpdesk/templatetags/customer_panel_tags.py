"""Template tags of the ticket page's customer panel (templates/desk/_customer_panel.html)."""

from __future__ import annotations

from typing import Any

from django import template

from customers.selectors import OtherTickets, other_tickets
from helpdesk.permissions import customer_policy

register = template.Library()


@register.simple_tag(takes_context=True)
def customer_other_tickets(context: dict[str, Any], ticket: Any) -> OtherTickets:
    """The ticket's customer's other tickets the agent may see (one query)."""
    return other_tickets(context["request"].user, ticket.customer, besides=ticket)


@register.simple_tag(takes_context=True)
def can_edit_customer(context: dict[str, Any], ticket: Any) -> bool:
    """Whether the agent may edit the ticket's customer; the ticket is visible, so no query."""
    return customer_policy.can_edit(context["request"].user, ticket.customer, via=ticket)
