"""factory_boy factories for the core models."""

from __future__ import annotations

import factory
from django.utils import timezone

from channels_inbox.models import Inbox
from customers.models import Customer, Identity, IdentityKind
from helpdesk.models import Direction, Message, Ticket, TicketStatus


class InboxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Inbox

    kind = "api"
    name = factory.Sequence(lambda n: f"API {n}")
    slug = factory.Sequence(lambda n: f"api-{n}")
    settings = factory.LazyFunction(lambda: {"callback_url": "http://127.0.0.1:9/hook"})
    secrets = factory.LazyFunction(lambda: {"signing_secret": "s3cret"})


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Faker("name")
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    customer = factory.SubFactory(CustomerFactory)
    kind = IdentityKind.EMAIL
    value = factory.Sequence(lambda n: f"person{n}@example.com")


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ticket

    number = factory.Sequence(lambda n: 500_000 + n)
    subject = factory.Faker("sentence", nb_words=5)
    status = TicketStatus.OPEN
    customer = factory.SubFactory(CustomerFactory)
    inbox = factory.SubFactory(InboxFactory)
    channel = "api"
    last_activity_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    ticket = factory.SubFactory(TicketFactory)
    direction = Direction.INBOUND
    author_customer = factory.SelfAttribute("ticket.customer")
    inbox = factory.SelfAttribute("ticket.inbox")
    channel = "api"
    text = factory.Faker("paragraph")
