"""Merging a duplicate customer into another."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.utils import timezone

from channels_inbox.adapters.base import IdentityRef, InboundSender
from customers.actions.merge import CustomerMergeRefused, do_merge_customers
from customers.actions.resolve import do_resolve_customer
from customers.models import Customer, CustomerMerge, Identity, IdentityKind, Organization
from helpdesk.models import Message, Ticket, TicketCC
from helpdesk.tests.conftest import new_ticket
from tests.factories import CustomerFactory, IdentityFactory, MessageFactory

pytestmark = pytest.mark.django_db


def make_customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))


def test_merge_moves_everything_and_deletes_the_duplicate(agent: Any) -> None:
    # given
    acme, other_org = Organization.objects.create(name="Acme"), Organization.objects.create(name="Other")
    early = timezone.now() - timedelta(days=30)
    target = make_customer(name="Ana Lima", attributes={"plan": "pro"}, first_seen_at=timezone.now())
    source = make_customer(
        name="ana", organization=acme, language="pt", attributes={"plan": "free", "vip": "yes"}, first_seen_at=early
    )
    IdentityFactory(customer=target, kind=IdentityKind.EMAIL, value="ana@work.example")
    IdentityFactory(customer=source, kind=IdentityKind.EMAIL, value="ana@home.example")
    IdentityFactory(customer=source, kind=IdentityKind.PHONE, value="+14155550100")
    source_tickets = [new_ticket(customer=source) for _ in range(2)]
    message = cast(Message, MessageFactory(ticket=source_tickets[0]))
    # CCs: the source on the target's ticket (dropped: its own customer now), on a ticket where the
    # target is a CC too (dropped: already there), and on a stranger's ticket (moved).
    target_ticket = new_ticket(customer=target)
    both_ticket, stranger_ticket = new_ticket(customer=make_customer()), new_ticket(customer=make_customer())
    TicketCC.objects.create(ticket=target_ticket, customer=source)
    TicketCC.objects.create(ticket=both_ticket, customer=source)
    TicketCC.objects.create(ticket=both_ticket, customer=target)
    TicketCC.objects.create(ticket=stranger_ticket, customer=source)
    # The target as a CC of the source's ticket: that ticket becomes its own, so the CC goes.
    TicketCC.objects.create(ticket=source_tickets[1], customer=target)
    # when
    record = do_merge_customers(source, into=target, actor=agent)
    # then
    assert not Customer.objects.filter(pk=source.pk).exists()
    target.refresh_from_db()
    assert set(Identity.objects.filter(customer=target).values_list("value", flat=True)) == {
        "ana@work.example",
        "ana@home.example",
        "+14155550100",
    }
    assert set(Ticket.objects.filter(customer=target).values_list("pk", flat=True)) == {
        source_tickets[0].pk,
        source_tickets[1].pk,
        target_ticket.pk,
    }
    assert Message.objects.get(pk=message.pk).author_customer_id == target.pk
    assert sorted(TicketCC.objects.values_list("ticket_id", "customer_id")) == sorted(
        [(both_ticket.pk, target.pk), (stranger_ticket.pk, target.pk)]
    )
    assert target.organization_id == acme.pk
    assert target.attributes == {"plan": "pro", "vip": "yes"}
    assert (target.name, target.language) == ("Ana Lima", "pt")
    assert target.first_seen_at == early
    assert other_org.customers.count() == 0
    # the audit row
    assert CustomerMerge.objects.get() == record
    assert (record.source_id, record.source_name, record.into_id, record.actor_id) == (
        source.pk,
        "ana",
        target.pk,
        agent.pk,
    )
    assert record.identities == [
        {"kind": "email", "value": "ana@home.example"},
        {"kind": "phone", "value": "+14155550100"},
    ]
    assert record.tickets_moved == 2


def test_the_duplicates_identities_now_resolve_to_the_target(agent: Any) -> None:
    # given
    source = do_resolve_customer(
        InboundSender(identities=[IdentityRef(IdentityKind.EMAIL, "dup@example.com")]), seen_at=timezone.now()
    )
    target = make_customer()
    # when
    do_merge_customers(source, into=target, actor=agent)
    resolved = do_resolve_customer(
        InboundSender(identities=[IdentityRef(IdentityKind.EMAIL, "dup@example.com")]), seen_at=timezone.now()
    )
    # then
    assert resolved.pk == target.pk
    assert Customer.objects.count() == 1


def test_the_targets_organization_stays(agent: Any) -> None:
    # given
    mine, theirs = Organization.objects.create(name="Mine"), Organization.objects.create(name="Theirs")
    target, source = make_customer(organization=mine), make_customer(organization=theirs)
    # when
    do_merge_customers(source, into=target, actor=agent)
    # then
    target.refresh_from_db()
    assert target.organization_id == mine.pk


def test_merged_attributes_keep_the_targets_and_stay_within_the_limit(agent: Any) -> None:
    # given
    target = make_customer(attributes={f"t{i}": "x" for i in range(45)})
    source = make_customer(attributes={f"s{i}": "y" for i in range(10)} | {"t0": "lost"})
    # when
    do_merge_customers(source, into=target, actor=agent)
    # then
    target.refresh_from_db()
    assert len(target.attributes) == 50
    assert target.attributes["t0"] == "x"


def test_merge_into_itself_is_refused(agent: Any) -> None:
    # given
    customer = make_customer()
    # when / then
    with pytest.raises(CustomerMergeRefused, match="cannot be merged into itself"):
        do_merge_customers(customer, into=customer, actor=agent)
    assert Customer.objects.filter(pk=customer.pk).exists()
    assert not CustomerMerge.objects.exists()


def test_merging_a_customer_already_merged_away_is_refused(agent: Any) -> None:
    # given
    source, target, third = make_customer(), make_customer(), make_customer()
    do_merge_customers(source, into=target, actor=agent)
    # when / then
    with pytest.raises(CustomerMergeRefused, match="no longer exists"):
        do_merge_customers(source, into=third, actor=agent)
    assert CustomerMerge.objects.count() == 1


def test_merge_chain_keeps_every_audit_row(agent: Any) -> None:
    # given
    a, b, c = make_customer(), make_customer(), make_customer()
    # when: a into b, then b into c
    do_merge_customers(a, into=b, actor=agent)
    do_merge_customers(b, into=c, actor=agent)
    # then: the first row still names b (now gone) as where a went
    rows = list(CustomerMerge.objects.order_by("id").values_list("source_id", "into_id"))
    assert rows == [(a.pk, b.pk), (b.pk, c.pk)]
