"""Editing a customer's profile: name, language, time zone, custom attributes."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.actions.profile import InvalidProfile, do_update_customer
from customers.models import Customer, CustomerChange
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def make_customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))


def test_update_sets_fields_and_records_what_changed(agent: Any) -> None:
    # given
    customer = make_customer(name="Ana", language="en", attributes={"plan": "free", "old": "x"})
    # when
    updated = do_update_customer(
        customer,
        name="  Ana Lima ",
        language="pt-BR",
        time_zone="America/Sao_Paulo",
        attributes={"plan": "pro", "vip": "yes"},
        actor=agent,
    )
    # then
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.name, fresh.language, fresh.time_zone) == ("Ana Lima", "pt-BR", "America/Sao_Paulo")
    assert fresh.attributes == {"plan": "pro", "vip": "yes"}
    assert updated.name == "Ana Lima"
    change = CustomerChange.objects.get()
    assert change.customer_id == customer.pk
    assert change.actor == agent
    assert change.changes["name"] == {"old": "Ana", "new": "Ana Lima"}
    assert change.changes["attributes"] == {
        "old": {"old": "x", "new": None},
        "plan": {"old": "free", "new": "pro"},
        "vip": {"old": None, "new": "yes"},
    }


def test_fields_left_out_stay_as_they_are(agent: Any) -> None:
    # given
    customer = make_customer(name="Ana", language="de", attributes={"plan": "pro"})
    # when
    do_update_customer(customer, time_zone="Europe/Berlin", actor=agent)
    # then
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.name, fresh.language, fresh.attributes) == ("Ana", "de", {"plan": "pro"})
    assert list(CustomerChange.objects.values_list("changes", flat=True)) == [
        {"time_zone": {"old": "", "new": "Europe/Berlin"}}
    ]


def test_an_update_that_changes_nothing_writes_nothing(agent: Any) -> None:
    # given
    customer = make_customer(name="Ana", attributes={"a": "1"})
    # when
    with CaptureQueriesContext(connection) as queries:
        do_update_customer(customer, name="Ana", attributes={"a": "1"}, actor=agent)
    # then: only the locking read
    assert not [q for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "INSERT"))]
    assert not CustomerChange.objects.exists()


def test_update_saves_only_the_changed_fields(agent: Any) -> None:
    # given
    customer = make_customer(name="Ana", language="en")
    # when
    with CaptureQueriesContext(connection) as queries:
        do_update_customer(customer, name="Bea", language="en", actor=agent)
    # then
    update = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE"))
    assert '"name"' in update
    assert '"updated_at"' in update
    assert '"language"' not in update
    assert '"attributes"' not in update


BAD_KEYS = ["", "Plan", "has space", "a" * 65, "ümlaut", "a-b", "x\x00", "drop;table"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_attribute_keys_are_refused_with_the_rule(agent: Any, key: str) -> None:
    # given
    customer = make_customer(attributes={"keep": "me"})
    # when / then
    with pytest.raises(InvalidProfile, match=r"is not valid: 1 to 64 characters of a-z, 0-9 and _"):
        do_update_customer(customer, attributes={key: "v"}, actor=agent)
    assert Customer.objects.get(pk=customer.pk).attributes == {"keep": "me"}


def test_a_64_character_key_and_a_1000_character_value_are_fine(agent: Any) -> None:
    # given
    customer = make_customer()
    # when
    do_update_customer(customer, attributes={"k" * 64: "v" * 1000}, actor=agent)
    # then
    assert Customer.objects.get(pk=customer.pk).attributes == {"k" * 64: "v" * 1000}


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"note": "v" * 1001}, r"Attribute 'note' is too long \(1001 characters; at most 1000\)"),
        ({f"k{i}": "v" for i in range(51)}, r"Too many attributes \(51; at most 50\)"),
        ({"note": "a\x00b"}, r"Attribute 'note' contains a NUL character"),
        ({"count": 3}, r"Attribute 'count' must be text, not int"),
        ({"tags": ["a"]}, r"Attribute 'tags' must be text, not list"),
        ({"gone": None}, r"Attribute 'gone' must be text, not NoneType"),
        ({7: "v"}, r"Attribute key 7 is not valid"),
        (["plan", "pro"], r"Attributes must be a mapping"),
    ],
)
def test_bad_attribute_values_are_refused_with_a_clear_message(agent: Any, attributes: Any, message: str) -> None:
    # given
    customer = make_customer(name="Ana")
    # when / then: nothing is written, not even the valid name
    with pytest.raises(InvalidProfile, match=message):
        do_update_customer(customer, name="Bea", attributes=attributes, actor=agent)
    assert Customer.objects.get(pk=customer.pk).name == "Ana"
    assert not CustomerChange.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "x" * 201}, r"Name is too long \(201 characters; at most 200\)"),
        ({"name": "A\x00na"}, r"Name contains a NUL character"),
        ({"language": "english please"}, r"is not a language tag"),
        ({"language": "x" * 17}, r"Language is too long"),
        ({"time_zone": "Mars/Olympus"}, r"Unknown time zone 'Mars/Olympus'"),
        ({"time_zone": "../../etc/passwd"}, r"Unknown time zone"),
    ],
)
def test_bad_profile_fields_are_refused(agent: Any, fields: dict[str, Any], message: str) -> None:
    # given
    customer = make_customer(name="Ana")
    # when / then
    with pytest.raises(InvalidProfile, match=message):
        do_update_customer(customer, actor=agent, **fields)
    assert not CustomerChange.objects.exists()


def test_empty_values_clear_language_and_time_zone(agent: Any) -> None:
    # given
    customer = make_customer(language="de", time_zone="Europe/Berlin")
    # when
    do_update_customer(customer, language="", time_zone="", actor=agent)
    # then
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.language, fresh.time_zone) == ("", "")
