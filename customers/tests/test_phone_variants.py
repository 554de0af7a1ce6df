"""Brazil's mobile 9: the old form WhatsApp sends matches the stored number, both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels_inbox.adapters.base import IdentityRef, InboundSender
from customers.actions.resolve import do_resolve_customer, find_customers
from customers.models import Identity
from customers.normalize import normalize_phone, phone_variants

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def phone(value: str) -> InboundSender:
    return InboundSender(identities=[IdentityRef("phone", value)])


@pytest.mark.parametrize(
    ("e164", "variants"),
    [
        ("+5511987654321", ["+551187654321"]),
        ("+551187654321", ["+5511987654321"]),
        ("+551132654321", []),  # a landline (2–5): genuinely 8 digits
        ("+5511932654321", []),  # a new mobile range with no old 8-digit form
        ("+447700900123", []),
        ("+14155550100", []),
    ],
)
def test_phone_variants(e164: str, variants: list[str]) -> None:
    assert phone_variants(e164) == variants


def test_old_form_is_a_possible_number() -> None:
    assert normalize_phone("whatsapp:+551187654321") == "+551187654321"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("stored", "incoming"), [("+5511987654321", "+551187654321"), ("+551187654321", "+5511987654321")]
)
def test_either_form_finds_the_stored_customer_without_rewriting(stored: str, incoming: str) -> None:
    first = do_resolve_customer(phone(stored), seen_at=NOW)
    again = do_resolve_customer(phone(incoming), seen_at=NOW)
    assert again.pk == first.pk
    assert list(Identity.objects.values_list("value", flat=True)) == [stored]
    assert find_customers([phone(incoming)]) == [first]


@pytest.mark.django_db
def test_exact_match_wins_over_a_variant() -> None:
    old = do_resolve_customer(phone("+551187654321"), seen_at=NOW)
    # An agent-created second identity for another customer with the new form.
    from customers.models import Customer

    other = Customer.objects.create(name="Other")
    Identity.objects.create(customer=other, kind="phone", value="+5511987654321")
    assert do_resolve_customer(phone("+5511987654321"), seen_at=NOW).pk == other.pk
    assert do_resolve_customer(phone("+551187654321"), seen_at=NOW).pk == old.pk


@pytest.mark.django_db
def test_landline_gets_no_variant() -> None:
    a = do_resolve_customer(phone("+551132654321"), seen_at=NOW)
    b = do_resolve_customer(phone("+5511932654321"), seen_at=NOW)
    assert a.pk != b.pk
