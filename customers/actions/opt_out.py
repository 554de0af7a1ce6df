"""SMS opt-out: a customer texting STOP (or START) to an SMS inbox's number."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from customers.models import Identity, IdentityKind


def do_set_phone_opt_out(customer_id: int, phone: str, *, opted_out: bool, at: datetime) -> bool:
    """Mark (or clear) the customer's phone identity `phone` as opted out of SMS.

    Returns True when something changed. Only the customer's own identity is touched; an
    identity already in that state is left as it is (its first opt-out time is kept)."""
    with transaction.atomic():
        identity = (
            Identity.objects.select_for_update()
            .filter(customer_id=customer_id, kind=IdentityKind.PHONE, value=phone)
            .first()
        )
        if identity is None:
            return False
        if opted_out == (identity.opted_out_at is not None):
            return False
        identity.opted_out_at = at if opted_out else None
        identity.save(update_fields=["opted_out_at"])
    return True


def is_phone_opted_out(phone: str) -> bool:
    """Whether the number has opted out of SMS (any customer's identity with that value)."""
    return Identity.objects.filter(kind=IdentityKind.PHONE, value=phone, opted_out_at__isnull=False).exists()
