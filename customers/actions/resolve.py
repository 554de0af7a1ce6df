"""Resolve the senders of inbound messages to customers, creating the new ones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Case, F, Q, Value, When

from customers.models import Customer, Identity, IdentityKind, OrganizationDomain
from customers.normalize import phone_variants
from helpdesk.bulk import update_rows

if TYPE_CHECKING:
    from channels_inbox.adapters.base import InboundSender
    from helpdesk.models import User

Key = tuple[str, str]


def do_resolve_customer(sender: InboundSender, *, seen_at: datetime, actor: User | None = None) -> Customer:
    """The customer behind one sender's identities (see `do_resolve_customers`)."""
    return do_resolve_customers([sender], seen_at=[seen_at], actor=actor)[0]


def do_resolve_customers(
    senders: Sequence[InboundSender], *, seen_at: Sequence[datetime], actor: User | None = None
) -> list[Customer]:
    """The customer behind each sender, in order; new identities are attached to it.

    Identities are tried in each sender's order (the channel's own first); when none is
    known a customer is created. Senders are taken one after another, so two senders of
    one batch that share an identity are one customer, as if they had come one by one.
    If another worker creates the same customer at the same moment, the unique
    (kind, value) constraint decides: this call's new customer is dropped and its
    identities join the winner. Identities that already belong to a *different* customer
    stay there: merging customers is a deliberate, audited act, never implied by a message.

    Every resolved customer's row is updated (last seen), which also locks it until the
    caller's transaction ends, so one customer's messages are threaded one after another.
    The statements do not grow with the number of senders.
    """
    if len(senders) != len(seen_at):
        raise ValueError("one seen_at per sender")
    keys_of = [list(dict.fromkeys((r.kind, r.value) for r in sender.identities)) for sender in senders]
    if any(not keys for keys in keys_of):
        raise ValueError("an inbound sender needs at least one identity")
    # No savepoint of its own: inside process_inbound's transaction a failure here aborts
    # that transaction anyway.
    with transaction.atomic(savepoint=False):
        owner = _owners({key for keys in keys_of for key in keys})
        planned: list[Customer] = []
        primary: dict[int, Key] = {}
        domain_of: dict[int, str] = {}
        attach: list[tuple[Customer, Key]] = []
        chosen: list[Customer] = []
        for sender, keys, when in zip(senders, keys_of, seen_at, strict=True):
            customer = next((owner[key] for key in keys if key in owner), None)
            if customer is None:
                customer = Customer(
                    name=_clean(sender.name, 200), language=_clean(sender.language, 16), first_seen_at=when
                )
                planned.append(customer)
                primary[id(customer)] = keys[0]
                email = next((value for kind, value in keys if kind == IdentityKind.EMAIL), "")
                if email:
                    domain_of[id(customer)] = email.rpartition("@")[2]
            for key in keys:
                if key not in owner:
                    owner[key] = customer
                    attach.append((customer, key))
            chosen.append(customer)
        if planned:
            organizations = dict(
                OrganizationDomain.objects.filter(domain__in=set(domain_of.values())).values_list(
                    "domain", "organization_id"
                )
                if domain_of
                else []
            )
            for customer in planned:
                customer.organization_id = organizations.get(domain_of.get(id(customer), ""))
                customer.last_seen_at = customer.first_seen_at
            Customer.objects.bulk_create(planned)
        if attach:
            # A conflict means another worker attached it a moment ago: it stays theirs.
            # Inserted in key order, so two batches waiting on each other's new identities
            # wait in the same order and never deadlock.
            attach.sort(key=lambda pair: pair[1])
            Identity.objects.bulk_create(
                [Identity(customer=c, kind=kind, value=value, raw_value=value) for c, (kind, value) in attach],
                ignore_conflicts=True,
            )
        if planned:
            chosen = _join_race_winners(chosen, planned, primary)
        _touch(chosen, senders, seen_at)
    return chosen


def find_customers(senders: Sequence[InboundSender]) -> list[Customer | None]:
    """The known customer behind each sender (by its identities, in order), creating nobody."""
    keys_of = [list(dict.fromkeys((r.kind, r.value) for r in sender.identities)) for sender in senders]
    wanted = {key for keys in keys_of for key in keys}
    owner = _owners(wanted) if wanted else {}
    return [next((owner[key] for key in keys if key in owner), None) for keys in keys_of]


def _owners(keys: set[Key]) -> dict[Key, Customer]:
    # A phone also matches its other written forms (Brazil's mobile 9, channel-specs §7): the
    # stored identity keeps its value and the other form is not added as a second identity.
    variant_of = {
        (kind, variant): (kind, value)
        for kind, value in keys
        if kind == IdentityKind.PHONE
        for variant in phone_variants(value)
        if (kind, variant) not in keys
    }
    found = Identity.objects.filter(_any_of(keys | set(variant_of))).select_related("customer")
    owners = {(i.kind, i.value): i.customer for i in found}
    for variant, key in variant_of.items():
        if variant in owners and key not in owners:
            owners[key] = owners[variant]
    return {key: customer for key, customer in owners.items() if key in keys}


def _any_of(keys: set[Key] | list[Key]) -> Q:
    """(kind, value) in keys, as one IN list per kind (an OR per pair costs the ORM far more)."""
    values: dict[str, list[str]] = {}
    for kind, value in keys:
        values.setdefault(kind, []).append(value)
    query = Q()
    for kind, group in values.items():
        query |= Q(kind=kind, value__in=group)
    return query


def _clean(text: str, length: int) -> str:
    return text.replace("\x00", "")[:length]


def _join_race_winners(chosen: list[Customer], planned: list[Customer], primary: dict[int, Key]) -> list[Customer]:
    """Customers this call created whose first identity another worker created first are
    dropped; what was attached to them moves to the winner."""
    query = _any_of([primary[id(customer)] for customer in planned])
    actual = {
        (i.kind, i.value): i.customer_id for i in Identity.objects.filter(query).only("kind", "value", "customer")
    }
    losers = {c.pk: actual[primary[id(c)]] for c in planned if actual[primary[id(c)]] != c.pk}
    if not losers:
        return chosen
    for loser, winner in losers.items():
        Identity.objects.filter(customer_id=loser).update(customer_id=winner)
    Customer.objects.filter(pk__in=losers).delete()
    winners = Customer.objects.in_bulk(set(losers.values()))
    return [winners[losers[c.pk]] if c.pk in losers else c for c in chosen]


def _touch(chosen: list[Customer], senders: Sequence[InboundSender], seen_at: Sequence[datetime]) -> None:
    """Last seen, and a name or language where the customer has none yet; locks the rows."""
    latest: dict[int, datetime] = {}
    name: dict[int, str] = {}
    language: dict[int, str] = {}
    for customer, sender, when in zip(chosen, senders, seen_at, strict=True):
        latest[customer.pk] = max(latest.get(customer.pk, when), when)
        if sender.name:
            name.setdefault(customer.pk, _clean(sender.name, 200))
        if sender.language:
            language.setdefault(customer.pk, _clean(sender.language, 16))
    by_pk = {c.pk: c for c in chosen}
    if len(by_pk) > 1:
        # Rows locked in id order, so two batches with customers in common never deadlock.
        current = Customer.objects.select_for_update().filter(pk__in=by_pk).order_by("pk")
        for pk, current_name, current_language in current.values_list("pk", "name", "language"):
            by_pk[pk].name, by_pk[pk].language = current_name, current_language
    for pk, customer in by_pk.items():
        customer.last_seen_at = latest[pk]
        customer.name = customer.name or name.get(pk, "")
        customer.language = customer.language or language.get(pk, "")
    if len(by_pk) == 1:
        ((pk, customer),) = by_pk.items()
        # Filled in only where still empty, decided by the database under the row lock.
        Customer.objects.filter(pk=pk).update(
            last_seen_at=customer.last_seen_at,
            name=Case(When(name="", then=Value(name.get(pk, ""))), default=F("name")),
            language=Case(When(language="", then=Value(language.get(pk, ""))), default=F("language")),
        )
    else:
        update_rows(list(by_pk.values()), ["last_seen_at", "name", "language"])
