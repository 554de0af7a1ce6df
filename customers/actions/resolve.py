"""Resolve the sender of an inbound message to one customer, creating it if new."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Q

from customers.models import Customer, Identity, IdentityKind, OrganizationDomain

if TYPE_CHECKING:
    from channels_inbox.adapters.base import IdentityRef, InboundSender
    from helpdesk.models import User


def do_resolve_customer(sender: InboundSender, *, seen_at: datetime, actor: User | None = None) -> Customer:
    """The customer behind these identities; new identities are attached to it.

    Identities are tried in the sender's order (the channel's own first). When none is
    known a customer is created; if another worker creates the same one at the same
    moment, the unique (kind, value) constraint decides and this call joins the winner.
    The customer's row is updated (last seen) every time, which also locks it until the
    caller's transaction ends: messages of one customer are threaded one after another.
    Identities that already belong to a *different* customer are left there: merging two
    customers is a deliberate, audited act (never implied by an inbound message).
    """
    refs = list(dict.fromkeys(sender.identities))
    sender_name = sender.name.replace("\x00", "")[:200]
    if not refs:
        raise ValueError("an inbound sender needs at least one identity")
    # No savepoint of its own: inside process_inbound's transaction a failure here aborts
    # that transaction anyway (the races that are expected have savepoints below).
    with transaction.atomic(savepoint=False):
        known = _known_identities(refs)
        customer = next((known[(r.kind, r.value)].customer for r in refs if (r.kind, r.value) in known), None)
        attached = set(known)
        if customer is None:
            customer, created = _create_customer(sender, sender_name, refs[0], seen_at)
            # Created here: of these identities only the primary exists now; any other one
            # attached meanwhile by another worker is skipped by _attach_identity. Lost the
            # race: the winner may have attached more, so look again.
            attached = {(refs[0].kind, refs[0].value)} if created else set(_known_identities(refs))
        for ref in refs:
            if (ref.kind, ref.value) not in attached:
                _attach_identity(customer, ref)
        updates: dict[str, object] = {"last_seen_at": seen_at}
        if not customer.name and sender_name:
            updates["name"] = sender_name
        if not customer.language and sender.language:
            updates["language"] = sender.language
        Customer.objects.filter(pk=customer.pk).update(**updates)
        for key, value in updates.items():
            setattr(customer, key, value)
    return customer


def _known_identities(refs: list[IdentityRef]) -> dict[tuple[str, str], Identity]:
    query = Q()
    for ref in refs:
        query |= Q(kind=ref.kind, value=ref.value)
    return {(i.kind, i.value): i for i in Identity.objects.filter(query).select_related("customer")}


def _create_customer(
    sender: InboundSender, name: str, primary: IdentityRef, seen_at: datetime
) -> tuple[Customer, bool]:
    """The new customer with its primary identity, True; or, after losing a race, the winner's, False."""
    email = next((r.value for r in sender.identities if r.kind == IdentityKind.EMAIL), "")
    organization_id = None
    if email:
        domain = email.rpartition("@")[2]
        organization_id = (
            OrganizationDomain.objects.filter(domain=domain).values_list("organization_id", flat=True).first()
        )
    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                name=name,
                language=sender.language,
                organization_id=organization_id,
                first_seen_at=seen_at,
                last_seen_at=seen_at,
            )
            Identity.objects.create(customer=customer, kind=primary.kind, value=primary.value, raw_value=primary.value)
            return customer, True
    except IntegrityError:
        # Another worker created this sender a moment ago: use theirs.
        return Identity.objects.select_related("customer").get(kind=primary.kind, value=primary.value).customer, False


def _attach_identity(customer: Customer, ref: IdentityRef) -> None:
    try:
        with transaction.atomic():
            Identity.objects.create(customer=customer, kind=ref.kind, value=ref.value, raw_value=ref.value)
    except IntegrityError:
        pass  # attached concurrently (to this or another customer); nothing to add
