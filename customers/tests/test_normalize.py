"""Identity normalization: one address, one identity, however a channel writes it."""

from __future__ import annotations

import pytest

from customers.models import IdentityKind
from customers.normalize import InvalidIdentity, normalize_email, normalize_identity, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John@Example.COM ", "john@example.com"),
        ("  john@example.com", "john@example.com"),
        ("JOHN@EXAMPLE.COM", "john@example.com"),
        ("jan@bücher.example", "jan@xn--bcher-kva.example"),
    ],
)
def test_emails_are_lower_cased_and_trimmed(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "john", "@example.com", "john@", "jo hn@example.com", "a@" + "b" * 330])
def test_not_an_email_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-0100", "+14155550100"),
        ("+14155550100", "+14155550100"),
        ("whatsapp:+14155550100", "+14155550100"),
        ("tel:+1-415-555-0100", "+14155550100"),
        ("14155550100", "+14155550100"),  # bare international digits (WhatsApp wa_id)
        ("+420 601 123 456", "+420601123456"),
        ("+7 (912) 345-67-89", "+79123456789"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+5215512345678", "+525512345678"),  # Mexico: WhatsApp's +521 form → valid E.164
    ],
)
def test_phone_numbers_become_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


def test_national_number_uses_the_region(settings: object) -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"


@pytest.mark.parametrize("raw", ["", "12", "not a number", "+999 1234", "+1" + "9" * 30])
def test_not_a_phone_number_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_phone(raw)


def test_identity_kinds_dispatch() -> None:
    assert normalize_identity(IdentityKind.EMAIL, " A@B.cz ") == "a@b.cz"
    assert normalize_identity(IdentityKind.PHONE, "+1 (415) 555-0100") == "+14155550100"
    assert normalize_identity(IdentityKind.TELEGRAM, " 123456 ") == "123456"
    with pytest.raises(InvalidIdentity):
        normalize_identity(IdentityKind.TELEGRAM, "   ")
