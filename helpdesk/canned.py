"""Placeholders in canned responses: `{{ customer.first_name }}` and friends, filled per ticket.

The body is text written by staff, so it is never given to a template engine and nothing is
looked up by name: a regex finds `{{ name.attr }}` and a fixed table of values computed here
fills the known ones. Unknown placeholders stay as written; the values are not scanned again
(a customer named "{{ agent.name }}" stays that). The result is plain text for the composer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from customers.models import Identity, IdentityKind
from helpdesk.models import Ticket
from helpdesk.models.canned import MAX_BODY_CHARS

__all__ = ["MAX_BODY_CHARS", "MAX_RENDERED_CHARS", "PLACEHOLDERS", "placeholder_values", "render_canned"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]{1,40})\.([A-Za-z_]{1,40})\s*\}\}")
PLACEHOLDERS = (
    "customer.first_name",
    "customer.name",
    "customer.email",
    "agent.name",
    "agent.first_name",
    "ticket.number",
    "ticket.subject",
)
# The composer's own limit for one message (helpdesk/views/desk.py MAX_TEXT_CHARS).
MAX_RENDERED_CHARS = 100_000


def placeholder_values(ticket: Ticket, agent: Any, identities: Iterable[Identity] | None = None) -> dict[str, str]:
    """The value of every placeholder for this ticket and agent. `identities` are the customer's,
    when the caller has them already (the ticket page does); otherwise one query finds the email."""
    customer = ticket.customer
    if identities is None:
        emails = customer.identities.filter(kind=IdentityKind.EMAIL).order_by("pk").values_list("value", flat=True)
        email = emails.first() or ""
    else:
        email = next((i.value for i in sorted(identities, key=lambda i: i.pk) if i.kind == IdentityKind.EMAIL), "")
    name = customer.name.strip()
    agent_name = agent.get_full_name().strip() or agent.email or agent.username
    return {
        "customer.first_name": name.split()[0] if name else "",
        "customer.name": name,
        "customer.email": email,
        "agent.name": agent_name,
        "agent.first_name": agent.first_name.strip() or agent_name.split()[0],
        "ticket.number": str(ticket.number),
        "ticket.subject": ticket.subject,
    }


def render_canned(body: str, values: Mapping[str, str]) -> str:
    """The body with the known placeholders replaced; at most MAX_RENDERED_CHARS long."""

    def fill(match: re.Match[str]) -> str:
        key = f"{match.group(1)}.{match.group(2)}"
        return values[key] if key in PLACEHOLDERS and key in values else match.group(0)

    return PLACEHOLDER.sub(fill, body)[:MAX_RENDERED_CHARS]
