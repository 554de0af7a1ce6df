"""Reads about customers for the desk's customer panel (templates/desk/_customer_panel.html)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Window

if TYPE_CHECKING:
    from customers.models import Customer
    from helpdesk.models import Ticket

OTHER_TICKETS_SHOWN = 10


@dataclass
class OtherTickets:
    """The newest of a customer's other tickets an agent may see, and how many more there are."""

    tickets: list[Ticket]
    total: int

    @property
    def more(self) -> int:
        return max(self.total - len(self.tickets), 0)


def other_tickets(user: Any, customer: Customer, *, besides: Ticket | None = None) -> OtherTickets:
    """The customer's tickets on every channel that `user` may see (ticket_policy), newest activity
    first, without `besides`: one query, the total counted by a window over the same filter."""
    from helpdesk.permissions import ticket_policy

    tickets = ticket_policy.visible(user).filter(customer_id=customer.pk)
    if besides is not None:
        tickets = tickets.exclude(pk=besides.pk)
    rows: list[Ticket] = [
        *tickets.select_related("inbox")
        .annotate(visible_total=Window(Count("id")))
        .order_by("-last_activity_at", "-id")[:OTHER_TICKETS_SHOWN]
    ]
    return OtherTickets(tickets=rows, total=getattr(rows[0], "visible_total", 0) if rows else 0)


class BadReference(ValueError):
    """Text that names no customer by any form we know (id, email, phone)."""


MAX_REFERENCE_CHARS = 320


def find_customer(reference: str) -> Customer | None:
    """The customer a person names by "#42" (or "42"), an email address or a phone number.

    Bare digits of up to 9 are a customer id; longer ones and "+…" a phone number. BadReference
    for text that is none of these; None when it is one but nobody has it.
    """
    from customers.models import Customer, Identity, IdentityKind
    from customers.normalize import InvalidIdentity, normalize_email, normalize_phone

    text = reference.replace("\x00", "").strip()
    if not text:
        raise BadReference("Name the duplicate by its email address, phone number or customer id.")
    if len(text) > MAX_REFERENCE_CHARS:
        raise BadReference(f"That is too long for an address or id (at most {MAX_REFERENCE_CHARS} characters).")
    digits = text.removeprefix("#")
    if digits.isascii() and digits.isdigit() and (text.startswith("#") or len(digits) <= 9):
        if len(digits) > 18:
            return None
        return Customer.objects.filter(pk=int(digits)).first()
    try:
        if "@" in text:
            kinds, value = [IdentityKind.EMAIL], normalize_email(text)
        else:
            kinds, value = [IdentityKind.PHONE, IdentityKind.WHATSAPP], normalize_phone(text)
    except InvalidIdentity:
        raise BadReference(f"Not an email address, phone number or customer id: {text[:40]!r}.") from None
    identity = Identity.objects.filter(kind__in=kinds, value=value).select_related("customer").first()
    return identity.customer if identity else None
