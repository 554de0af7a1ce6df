"""Resolving an inbound sender to one customer."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from channels_inbox.adapters.base import IdentityRef, InboundSender
from customers.actions.resolve import do_resolve_customer
from customers.models import Customer, Identity, IdentityKind, Organization, OrganizationDomain
from tests.factories import IdentityFactory

pytestmark = pytest.mark.django_db


def sender(*refs: tuple[str, str], name: str = "") -> InboundSender:
    return InboundSender(identities=[IdentityRef(k, v) for k, v in refs], name=name)


def test_new_sender_becomes_a_customer_with_all_identities() -> None:
    # when
    customer = do_resolve_customer(
        sender(("external", "inbox:u1"), ("email", "ana@example.com"), ("phone", "+14155550100"), name="Ana"),
        seen_at=timezone.now(),
    )
    # then
    assert customer.name == "Ana"
    assert sorted(customer.identities.values_list("kind", flat=True)) == ["email", "external", "phone"]


def test_known_identity_resolves_to_its_customer_and_attaches_new_ones() -> None:
    # given
    known = IdentityFactory(kind=IdentityKind.EMAIL, value="ana@example.com")
    # when
    customer = do_resolve_customer(
        sender(("phone", "+14155550100"), ("email", "ana@example.com")), seen_at=timezone.now()
    )
    # then
    assert customer == known.customer
    assert Customer.objects.count() == 1
    assert Identity.objects.filter(customer=customer, kind="phone", value="+14155550100").exists()


def test_same_number_on_sms_then_whatsapp_is_one_customer() -> None:
    first = do_resolve_customer(sender(("phone", "+14155550100")), seen_at=timezone.now())
    second = do_resolve_customer(sender(("phone", "+14155550100")), seen_at=timezone.now())
    assert first == second


def test_identity_of_another_customer_is_never_moved() -> None:
    # given: the phone belongs to Bob, the email to Ana
    ana = IdentityFactory(kind="email", value="ana@example.com").customer
    bob = IdentityFactory(kind="phone", value="+14155550100").customer
    # when: a message claims both
    customer = do_resolve_customer(
        sender(("email", "ana@example.com"), ("phone", "+14155550100")), seen_at=timezone.now()
    )
    # then: first identity decides; Bob keeps his number (merging is a deliberate act)
    assert customer == ana
    assert Identity.objects.get(kind="phone").customer == bob


def test_name_and_last_seen_are_filled_in() -> None:
    # given
    identity: Any = IdentityFactory(kind="email", value="ana@example.com", customer__name="")
    later = timezone.now()
    # when
    customer = do_resolve_customer(sender(("email", "ana@example.com"), name="Ana K."), seen_at=later)
    # then
    customer.refresh_from_db()
    assert customer.name == "Ana K."
    assert customer.last_seen_at == later
    assert Identity.objects.get(pk=identity.pk).customer_id == customer.pk


def test_new_customer_joins_the_organization_of_its_email_domain() -> None:
    # given
    org = Organization.objects.create(name="Acme")
    OrganizationDomain.objects.create(organization=org, domain="acme.example")
    # when
    customer = do_resolve_customer(sender(("email", "ivan@acme.example")), seen_at=timezone.now())
    # then
    assert customer.organization == org


def test_sender_without_identities_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one identity"):
        do_resolve_customer(InboundSender(identities=[]), seen_at=timezone.now())


def test_resolving_a_known_sender_costs_two_queries(django_assert_num_queries: Any) -> None:
    # given
    IdentityFactory(kind="email", value="ana@example.com", customer__name="Ana")
    # when / then: one lookup (with the customer joined) and one update of last_seen
    with django_assert_num_queries(2):
        do_resolve_customer(sender(("email", "ana@example.com")), seen_at=timezone.now())


def test_external_identity_is_shown_without_its_inbox_namespace() -> None:
    identity = Identity(kind=IdentityKind.EXTERNAL, value="92a30ba5-4a05-4ecd-9fb5-f77c120dd5d6:user-42")
    assert identity.display_value == "user-42"
    assert Identity(kind=IdentityKind.EMAIL, value="a@b.cz").display_value == "a@b.cz"
