"""Normalization of identity values, so one address always means one identity."""

from __future__ import annotations

import phonenumbers
from django.conf import settings

from customers.models import IdentityKind


class InvalidIdentity(ValueError):
    """The value cannot be an identity of that kind (e.g. not a possible phone number)."""


def normalize_email(raw: str) -> str:
    value = raw.strip().lower()
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain or " " in value or len(value) > 320:
        raise InvalidIdentity(f"not an email address: {raw!r}")
    # IDNA-encode the domain so "bücher.example" and "xn--bcher-kva.example" match.
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidIdentity(f"not an email domain: {domain!r}") from exc
    return f"{local}@{domain}"


def normalize_phone(raw: str, region: str | None = None) -> str:
    """E.164 for any way a provider writes a number ("whatsapp:+1…", "tel:…", bare digits)."""
    value = raw.strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    digits_only = value.isdigit()
    region = region or settings.DEFAULT_PHONE_REGION
    if digits_only and (region is None or len(value) > 11):
        # Bare international digits, as WhatsApp's wa_id and Twilio's WaId send them.
        value = "+" + value
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {raw!r}") from exc
    national = str(number.national_number)
    if number.country_code == 52 and len(national) == 11 and national.startswith("1"):
        # Mexico: WhatsApp writes mobiles as +521…, the valid E.164 form is +52… (channel-specs §7).
        number.national_number = int(national[1:])
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"not a possible phone number: {raw!r}")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164


def normalize_identity(kind: str, raw: str) -> str:
    if kind == IdentityKind.EMAIL:
        return normalize_email(raw)
    if kind == IdentityKind.PHONE:
        # SMS, WhatsApp and voice share this one kind: one number, one customer.
        return normalize_phone(raw)
    value = raw.strip()
    if not value or len(value) > 320:
        raise InvalidIdentity(f"empty or oversized {kind} identity")
    return value


def phone_variants(e164: str) -> list[str]:
    """Other E.164 forms that are the same phone as `e164` (channel-specs §7), for matching only.

    Brazil: mobiles carry a 9 after the two-digit area code (+55 11 9xxxx-xxxx), but WhatsApp
    often sends the old form without it (+55 11 xxxx-xxxx). Each form yields the other; stored
    numbers are never rewritten. Other countries: none."""
    if not e164.startswith("+55"):
        return []
    national = e164[3:]
    if not national.isdigit():
        return []
    area, rest = national[:2], national[2:]
    if len(rest) == 9 and rest[0] == "9" and rest[1] in "6789":
        return [f"+55{area}{rest[1:]}"]
    if len(rest) == 8 and rest[0] in "6789":
        # Only mobile ranges (6–9) had the 9 prepended; 2–5 are landlines with 8 digits.
        return [f"+55{area}9{rest}"]
    return []
