"""Fixtures for the desk and websocket tests: more staff, tickets from real ingest, logins."""

from __future__ import annotations

from itertools import count
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone

from channels_inbox.adapters.api import external_identity
from channels_inbox.adapters.base import IdentityRef, InboundAttachment, InboundMessage, InboundSender
from customers.actions.resolve import do_resolve_customer
from customers.models import IdentityKind
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.ingest import do_ingest_message
from helpdesk.models import Team, Ticket
from tests.factories import TicketFactory

_external_ids = count(1)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Agents are created in almost every test; the real hasher would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def light_agent(db: Any) -> Any:
    return do_create_agent(
        email="light@example.com", name="Lee Light", password="pw-light-123", role="light_agent", teams=["Support"]
    )


@pytest.fixture
def billing_agent(db: Any) -> Any:
    return do_create_agent(email="bill@example.com", name="Bea Billing", password="pw-bill-123", teams=["Billing"])


@pytest.fixture
def support_team(agent: Any) -> Team:
    return Team.objects.get(slug="support")


@pytest.fixture
def billing_team(billing_agent: Any) -> Team:
    return Team.objects.get(slug="billing")


def new_ticket(**fields: Any) -> Ticket:
    """A ticket straight from the factory (no events, no messages), typed as a Ticket."""
    return cast(Ticket, TicketFactory(**fields))


def logged_in(user: Any, **client_kwargs: Any) -> Client:
    client = Client(**client_kwargs)
    client.force_login(user)
    return client


def ingest(
    inbox: Any,
    text: str = "My order #881 has not arrived.",
    *,
    identifier: str = "user-42",
    thread_key: str = "",
    attachments: list[tuple[str, bytes]] | None = None,
) -> Ticket:
    """One inbound API message through the real actions (resolve customer, thread, store)."""
    sender = InboundSender(
        identities=[IdentityRef(IdentityKind.EXTERNAL, external_identity(inbox, identifier))],
        name=f"Customer {identifier}",
    )
    inbound = InboundMessage(
        external_id=f"ext-{next(_external_ids)}",
        sender=sender,
        text=text,
        thread_key=thread_key,
        attachments=[InboundAttachment(name, content) for name, content in attachments or []],
    )
    customer = do_resolve_customer(sender, seen_at=timezone.now())
    ticket = do_ingest_message(inbox=inbox, inbound=inbound, customer=customer).ticket
    assert ticket is not None
    return ticket
