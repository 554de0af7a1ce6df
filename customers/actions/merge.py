"""Merge a duplicate customer into another: one person, one customer, one history."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Exists, OuterRef

from customers.actions.profile import MAX_ATTRIBUTES
from customers.models import Customer, CustomerMerge, Identity

if TYPE_CHECKING:
    from helpdesk.models import User


class CustomerMergeRefused(ValueError):
    """A merge that cannot be done; the message says why."""


def do_merge_customers(source: Customer, *, into: Customer, actor: User | None) -> CustomerMerge:
    """Move everything of `source` to `into`, record a CustomerMerge, and delete `source`.

    Moves its identities (so its addresses now resolve to `into`), tickets, the messages it
    wrote, the events it is the actor of, and its CCs (dropped where `into` is the ticket's
    customer or already a CC; `into`'s own CCs on tickets that become its own are dropped too).
    `into` keeps what it has and gains what it lacks: organization, name, language, time
    zone, attributes (its own win; at most MAX_ATTRIBUTES kept). Both rows are locked in id
    order, so two merges of the same pair wait for each other instead of deadlocking.
    """
    from helpdesk.models import Message, Ticket, TicketCC, TicketEvent

    if source.pk == into.pk:
        raise CustomerMergeRefused("A customer cannot be merged into itself.")
    with transaction.atomic():
        locked = {
            c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=[source.pk, into.pk]).order_by("pk")
        }
        if source.pk not in locked or into.pk not in locked:
            raise CustomerMergeRefused("One of the two customers no longer exists (merged a moment ago?).")
        source, into = locked[source.pk], locked[into.pk]
        identities = [
            {"kind": kind, "value": value}
            for kind, value in Identity.objects.filter(customer=source).order_by("id").values_list("kind", "value")
        ]
        Identity.objects.filter(customer=source).update(customer=into)
        tickets_moved = Ticket.objects.filter(customer=source).update(customer=into)
        Message.objects.filter(author_customer=source).update(author_customer=into)
        TicketEvent.objects.filter(actor_customer=source).update(actor_customer=into)
        # The ticket's own customer is never a CC of it, and a person is a CC of a ticket once.
        TicketCC.objects.filter(customer_id__in=[source.pk, into.pk], ticket__customer_id=into.pk).delete()
        already = TicketCC.objects.filter(customer=into, ticket_id=OuterRef("ticket_id"))
        TicketCC.objects.filter(customer=source).filter(Exists(already)).delete()
        TicketCC.objects.filter(customer=source).update(customer=into)

        fields: list[str] = []
        if into.organization_id is None and source.organization_id is not None:
            into.organization_id = source.organization_id
            fields.append("organization")
        for name in ("name", "language", "time_zone"):
            if not getattr(into, name) and getattr(source, name):
                setattr(into, name, getattr(source, name))
                fields.append(name)
        own = into.attributes if isinstance(into.attributes, dict) else {}
        theirs = source.attributes if isinstance(source.attributes, dict) else {}
        merged = dict(own)
        for key, value in theirs.items():
            if len(merged) >= MAX_ATTRIBUTES:
                break
            merged.setdefault(key, value)
        if merged != own:
            into.attributes = merged
            fields.append("attributes")
        if source.first_seen_at and (into.first_seen_at is None or source.first_seen_at < into.first_seen_at):
            into.first_seen_at = source.first_seen_at
            fields.append("first_seen_at")
        if source.last_seen_at and (into.last_seen_at is None or source.last_seen_at > into.last_seen_at):
            into.last_seen_at = source.last_seen_at
            fields.append("last_seen_at")
        into.save(update_fields=[*fields, "updated_at"])
        record = CustomerMerge.objects.create(
            source_id=source.pk,
            source_name=source.name,
            identities=identities,
            tickets_moved=tickets_moved,
            into=into,
            actor=actor,
        )
        source.delete()
    return record
