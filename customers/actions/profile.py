"""Agents edit a customer's profile: name, language, time zone and custom attributes."""

from __future__ import annotations

import re
import zoneinfo
from typing import TYPE_CHECKING, Any

from django.db import transaction

from customers.models import Customer, CustomerChange

if TYPE_CHECKING:
    from helpdesk.models import User

MAX_NAME_CHARS = 200
MAX_LANGUAGE_CHARS = 16
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_VALUE_CHARS = 1000
ATTRIBUTE_KEY = re.compile(r"[a-z0-9_]{1,64}")
# A BCP 47 tag as people write them: "de", "pt-BR", "zh-Hant-TW".
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")


class InvalidProfile(ValueError):
    """A profile value that cannot be stored; the message says which and why."""


def clean_attributes(attributes: Any) -> dict[str, str]:
    """Custom attributes checked: a dict of at most 50 string keys `[a-z0-9_]{1,64}` to strings of
    at most 1000 characters, without NUL (PostgreSQL cannot store it)."""
    if not isinstance(attributes, dict):
        raise InvalidProfile("Attributes must be a mapping of keys to text.")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidProfile(f"Too many attributes ({len(attributes)}; at most {MAX_ATTRIBUTES}).")
    cleaned: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not ATTRIBUTE_KEY.fullmatch(key):
            shown = key[:40] if isinstance(key, str) else key
            raise InvalidProfile(
                f"Attribute key {shown!r} is not valid: 1 to 64 characters of a-z, 0-9 and _ (lower case)."
            )
        if not isinstance(value, str):
            raise InvalidProfile(f"Attribute {key!r} must be text, not {type(value).__name__}.")
        if "\x00" in value:
            raise InvalidProfile(f"Attribute {key!r} contains a NUL character.")
        if len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
            raise InvalidProfile(
                f"Attribute {key!r} is too long ({len(value)} characters; at most {MAX_ATTRIBUTE_VALUE_CHARS})."
            )
        cleaned[key] = value
    return cleaned


def _clean_text(label: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidProfile(f"{label} must be text.")
    if "\x00" in value:
        raise InvalidProfile(f"{label} contains a NUL character.")
    value = value.strip()
    if len(value) > limit:
        raise InvalidProfile(f"{label} is too long ({len(value)} characters; at most {limit}).")
    return value


def _clean_language(value: Any) -> str:
    value = _clean_text("Language", value, MAX_LANGUAGE_CHARS)
    if value and not LANGUAGE_TAG.fullmatch(value):
        raise InvalidProfile(f"Language {value[:40]!r} is not a language tag like en, de or pt-BR.")
    return value


def _clean_time_zone(value: Any) -> str:
    value = _clean_text("Time zone", value, 64)
    if value and value not in zoneinfo.available_timezones():
        raise InvalidProfile(f"Unknown time zone {value[:64]!r}; use a name like Europe/Berlin.")
    return value


def do_update_customer(
    customer: Customer,
    *,
    name: str | None = None,
    language: str | None = None,
    time_zone: str | None = None,
    attributes: dict[str, str] | None = None,
    actor: User | None,
) -> Customer:
    """Set the given fields (None leaves a field as it is; `attributes` replaces them all).

    Everything is checked before anything is written (InvalidProfile says what is wrong).
    Saves only the fields that changed, and records a CustomerChange with old and new values;
    a call that changes nothing writes nothing.
    """
    wanted: dict[str, Any] = {}
    if name is not None:
        wanted["name"] = _clean_text("Name", name, MAX_NAME_CHARS)
    if language is not None:
        wanted["language"] = _clean_language(language)
    if time_zone is not None:
        wanted["time_zone"] = _clean_time_zone(time_zone)
    if attributes is not None:
        wanted["attributes"] = clean_attributes(attributes)
    with transaction.atomic():
        current = Customer.objects.select_for_update().get(pk=customer.pk)
        changes: dict[str, Any] = {}
        for field, value in wanted.items():
            old = getattr(current, field)
            if field == "attributes":
                old = old if isinstance(old, dict) else {}
                diff = {
                    key: {"old": old.get(key), "new": value.get(key)}
                    for key in sorted(set(old) | set(value))
                    if old.get(key) != value.get(key)
                }
                if diff:
                    changes[field] = diff
            elif old != value:
                changes[field] = {"old": old, "new": value}
            setattr(current, field, value)
        if not changes:
            return current
        current.save(update_fields=[*changes, "updated_at"])
        CustomerChange.objects.create(customer=current, actor=actor, changes=changes)
    return current
