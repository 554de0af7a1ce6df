"""Inbound email end to end: raw bytes → stored event → processing → tickets.

Every test feeds raw RFC 822 bytes through `do_receive_email` (or the `ingest_email`
command, in-process or as a real subprocess reading stdin, as an MTA pipe would) and
then looks at what the desk would show: tickets, messages, CCs, events, deliveries.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, cast

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from channels_inbox.actions import process as process_module
from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox_settings
from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.email.tokens import reply_address
from channels_inbox.models import InboundEvent, InboundEventStatus, Inbox, OutboundDelivery
from customers.models import Customer, Identity
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.tickets import do_change_status
from helpdesk.models import (
    DeliveryStatus,
    Direction,
    Message,
    Team,
    Ticket,
    TicketCC,
    TicketEvent,
    TicketEventType,
    TicketStatus,
)
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
SUPPORT = "support@example.com"


# --- building mail ------------------------------------------------------------------------------


def mail(
    *,
    sender: str = "Ana Customer <ana@example.com>",
    to: str = SUPPORT,
    subject: str = "My parcel has not arrived",
    body: str = "Hello, order #881 is a week late.\n",
    message_id: str | None = "",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain-text mail; `message_id=""` makes a fresh id, None leaves the header out."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(timezone.now())
    if message_id is not None:
        msg["Message-ID"] = message_id or make_msgid(domain="mail.example.com")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def mid(raw: bytes) -> str:
    """The Message-ID of a built mail, without <>."""
    for line in raw.split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().strip(b"<>").decode()
    raise AssertionError("no Message-ID")


def dsn(original_id: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    """A delivery status notification (RFC 3464) about our message `original_id`."""
    boundary = "dsn-boundary-42"
    diagnostic = "smtp; 550 5.1.1 <ana@example.com>: Recipient address rejected: User unknown"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        f"To: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mx.example.com')}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n"
        "Arrival-Date: Mon, 2 Mar 2026 09:14:03 +0000\r\n"
        "\r\n"
        "Final-Recipient: rfc822; ana@example.com\r\n"
        "Original-Recipient: rfc822; ana@example.com\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"From: Support <{SUPPORT}>\r\n"
        "To: ana@example.com\r\n"
        "Subject: Re: My parcel has not arrived [#1001]\r\n"
        f"Message-ID: <{original_id}>\r\n"
        "\r\n"
        f"--{boundary}--\r\n"
    ).encode()


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def inbox(db: Any) -> Inbox:
    inbox, _ = do_create_inbox(
        kind="email",
        name="Support",
        slug="support",
        values={"address": SUPPORT, "aliases": "help@example.com, billing@example.com"},
    )
    return inbox


@pytest.fixture(autouse=True)
def _no_inline_tasks(lost_tasks: Any) -> Any:
    """Every test runs the processing itself (or through the command)."""
    return lost_tasks


def receive(inbox: Inbox, raw: bytes) -> InboundEvent:
    """Store one raw mail and process it, as the MTA pipe and a worker would."""
    receipt = do_receive_email(inbox, raw, source="test")
    do_process_inbound_event(receipt.event_id, batch_size=1)
    return InboundEvent.objects.get(pk=receipt.event_id)


def ticket_of(event: InboundEvent) -> Ticket:
    assert event.message is not None, (event.status, event.last_error)
    return event.message.ticket


def snapshot(ticket: Ticket) -> tuple[Any, ...]:
    ticket.refresh_from_db()
    return (
        ticket.status,
        ticket.last_event_seq,
        ticket.messages.count(),
        ticket.events.count(),
        ticket.waiting_since,
        ticket.last_customer_message_at,
    )


@pytest.fixture
def opened(inbox: Inbox) -> tuple[Ticket, bytes]:
    """Ana's first mail, on its new ticket."""
    raw = mail()
    return ticket_of(receive(inbox, raw)), raw


# --- threading each way -------------------------------------------------------------------------


def test_first_mail_opens_a_ticket_for_its_sender(inbox: Inbox) -> None:
    # when
    event = receive(inbox, mail())
    # then
    assert event.status == InboundEventStatus.PROCESSED
    ticket = ticket_of(event)
    assert ticket.subject == "My parcel has not arrived"
    assert ticket.channel == "email"
    assert ticket.customer.identities.get().value == "ana@example.com"
    assert ticket.customer.name == "Ana Customer"
    message = ticket.messages.get()
    assert message.direction == Direction.INBOUND
    assert "order #881" in message.text
    assert message.external_id == event.dedupe_key.removeprefix("mid:")


def test_reply_threads_by_in_reply_to(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, first = opened
    # when
    event = receive(inbox, mail(subject="Re: My parcel has not arrived", headers={"In-Reply-To": f"<{mid(first)}>"}))
    # then
    assert ticket_of(event) == ticket
    assert Ticket.objects.count() == 1
    assert ticket.messages.count() == 2


def test_reply_threads_by_references_alone(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, first = opened
    # given: a client that drops In-Reply-To but keeps the References chain
    references = f"<unknown-1@elsewhere.example> <{mid(first)}>"
    # when
    event = receive(inbox, mail(subject="Re: parcel", headers={"References": references}))
    # then
    assert ticket_of(event) == ticket
    assert Ticket.objects.count() == 1


def test_reply_threads_by_the_subject_token(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, _ = opened
    # when: a reply written from scratch, only the token in the subject
    event = receive(inbox, mail(subject=f"Still waiting [#{ticket.number}]"))
    # then
    assert ticket_of(event) == ticket


def test_reply_threads_by_the_signed_reply_address(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, _ = opened
    address = reply_address(inbox, ticket.number)
    assert address != SUPPORT
    assert "+" in address
    # when: no ids, no token, only the reply address the desk put in Reply-To
    event = receive(inbox, mail(to=address, subject="about my parcel"))
    # then
    assert ticket_of(event) == ticket


def test_a_tampered_reply_address_does_not_thread(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, _ = opened
    local, _, domain = reply_address(inbox, ticket.number).partition("@")
    signature = local.rsplit("-", 1)[1]
    forged = f"{local.rsplit('-', 1)[0]}-{'a' * len(signature) if signature != 'a' * 10 else 'b' * 10}@{domain}"
    other_ticket = reply_address(inbox, ticket.number + 1000)  # validly signed, for a ticket that does not exist
    # when
    events = [receive(inbox, mail(to=forged, subject="forged")), receive(inbox, mail(to=other_ticket, subject="x"))]
    # then: the sender is the ticket's own customer, yet a bad signature names no ticket
    assert ticket_of(events[0]) != ticket
    assert ticket_of(events[1]) != ticket
    assert Ticket.objects.count() == 3


def test_a_new_mail_of_the_same_customer_is_a_new_ticket(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, _ = opened
    # when: the same customer writes about something else, with no reference at all
    event = receive(inbox, mail(subject="Another question", body="Do you ship to Norway?\n"))
    # then: email does not fall back to the customer's latest ticket
    assert ticket_of(event) != ticket
    assert ticket_of(event).customer == ticket.customer
    assert Ticket.objects.count() == 2


# --- strangers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["token", "in-reply-to", "references"])
def test_a_stranger_naming_someone_elses_ticket_gets_a_ticket_of_their_own(
    inbox: Inbox, opened: tuple[Ticket, bytes], way: str
) -> None:
    victim, first = opened
    before = snapshot(victim)
    headers = {"In-Reply-To": f"<{mid(first)}>"} if way == "in-reply-to" else {}
    if way == "references":
        headers = {"References": f"<{mid(first)}>"}
    subject = f"Re: parcel [#{victim.number}]" if way == "token" else "Re: parcel"
    # when
    event = receive(inbox, mail(sender="Eve <eve@evil.example>", subject=subject, headers=headers))
    # then
    own = ticket_of(event)
    assert own != victim
    assert own.customer.identities.get().value == "eve@evil.example"
    assert snapshot(victim) == before
    assert not Message.objects.filter(ticket=victim, author_customer=own.customer).exists()


# --- CCs ----------------------------------------------------------------------------------------


def test_cc_and_extra_to_recipients_become_ccs_but_not_our_addresses(inbox: Inbox) -> None:
    # when
    raw = mail(
        to=f"Support <{SUPPORT}>, Bob <bob@example.com>, help@example.com",
        headers={"Cc": "Cyd <cyd@example.org>, billing@example.com, support+5@example.com, Ana <ana@example.com>"},
    )
    ticket = ticket_of(receive(inbox, raw))
    # then
    ccs = TicketCC.objects.filter(ticket=ticket).select_related("customer")
    emails = {cc.customer.identities.get().value for cc in ccs}
    assert emails == {"bob@example.com", "cyd@example.org"}
    assert {cc.customer.name for cc in ccs} == {"Bob", "Cyd"}
    assert not Identity.objects.filter(value__in=[SUPPORT, "help@example.com", "billing@example.com"]).exists()


def test_a_ccd_person_replying_with_the_token_joins_the_ticket(inbox: Inbox) -> None:
    # given
    ticket = ticket_of(receive(inbox, mail(headers={"Cc": "bob@example.com"})))
    # when
    event = receive(inbox, mail(sender="Bob <bob@example.com>", subject=f"Re: parcel [#{ticket.number}]"))
    # then
    assert ticket_of(event) == ticket
    assert event.message is not None
    assert event.message.author_customer is not None
    assert event.message.author_customer.identities.get().value == "bob@example.com"


def test_an_agent_replying_by_mail_joins_the_ticket_as_an_internal_note(
    inbox: Inbox, opened: tuple[Ticket, bytes]
) -> None:
    # given a ticket waiting on the customer
    ticket, first = opened
    petr = do_create_agent(email="Petr@Example.com", name="Petr", password="pw-petr-123")
    Ticket.objects.filter(pk=ticket.pk).update(status=TicketStatus.PENDING, waiting_since=None)
    # when the agent answers the thread from their mail client
    event = receive(
        inbox, mail(sender="petr@example.com", subject="Re: parcel", headers={"In-Reply-To": f"<{mid(first)}>"})
    )
    # then it is a note by that agent on the same ticket: nothing sent, the ticket still pending
    assert ticket_of(event) == ticket
    assert event.message is not None
    assert (event.message.direction, event.message.author_agent, event.message.author_customer) == (
        Direction.NOTE,
        petr,
        None,
    )
    assert not event.message.deliveries.exists()
    ticket.refresh_from_db()
    assert (ticket.status, ticket.waiting_since) == (TicketStatus.PENDING, None)
    assert ticket.events.filter(type="note_added", actor=petr).count() == 1


def test_an_agent_on_cc_does_not_become_a_cc_of_the_ticket(inbox: Inbox) -> None:
    # given
    do_create_agent(email="petr@example.com", name="Petr", password="pw-petr-123")
    # when
    event = receive(inbox, mail(headers={"Cc": "Petr <petr@example.com>, Bob <bob@example.com>"}))
    # then
    assert [cc.customer.name for cc in ticket_of(event).ccs.select_related("customer")] == ["Bob"]
    assert not Identity.objects.filter(value="petr@example.com").exists()


def test_a_forged_agent_sender_with_a_typed_token_writes_no_note(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    # given an agent whose address is known
    ticket, _ = opened
    do_create_agent(email="petr@example.com", name="Petr", password="pw-petr-123")
    before = snapshot(ticket)
    # when someone sends mail "from" that agent naming the ticket by its subject token only
    event = receive(inbox, mail(sender="petr@example.com", subject=f"Re: parcel [#{ticket.number}]"))
    # then it is no note on that ticket: a typed token proves nothing for an agent
    assert ticket_of(event) != ticket
    assert event.message is not None
    assert event.message.direction == Direction.INBOUND
    assert snapshot(ticket) == before


def test_an_agent_who_may_not_see_the_ticket_writes_no_note_on_it(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    # given a ticket of the Billing team and an agent of another team only
    ticket, first = opened
    do_create_agent(email="bea@example.com", name="Bea", password="pw-bea-12345", teams=["Billing"])
    Ticket.objects.filter(pk=ticket.pk).update(team=Team.objects.get(slug="billing"))
    do_create_agent(email="petr@example.com", name="Petr", password="pw-petr-123", teams=["Support"])
    # when that agent's address answers the ticket's mail
    event = receive(
        inbox, mail(sender="petr@example.com", subject="Re: parcel", headers={"In-Reply-To": f"<{mid(first)}>"})
    )
    # then the ticket gets nothing
    assert ticket_of(event) != ticket
    assert not Message.objects.filter(ticket=ticket, direction=Direction.NOTE).exists()


def test_a_typed_token_adds_no_ccs_to_an_existing_ticket(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    # given
    ticket, _ = opened
    # when mail "from" the customer names the ticket by its token and copies someone in
    event = receive(
        inbox,
        mail(subject=f"Re: parcel [#{ticket.number}]", headers={"Cc": "Eve <eve@evil.example>"}),
    )
    # then the mail joins (the customer may write), but Eve gets no copies of the replies
    assert ticket_of(event) == ticket
    assert not ticket.ccs.exists()


def test_a_reply_to_the_tickets_mail_adds_its_ccs(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    # given
    ticket, first = opened
    # when the customer answers the thread and copies a colleague in
    event = receive(
        inbox,
        mail(subject="Re: parcel", headers={"In-Reply-To": f"<{mid(first)}>", "Cc": "Bob <bob@example.com>"}),
    )
    # then the colleague is a CC of the ticket
    assert ticket_of(event) == ticket
    assert [cc.customer.name for cc in ticket.ccs.select_related("customer")] == ["Bob"]


def test_a_non_agent_of_the_same_domain_does_not_join(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, first = opened
    do_create_agent(email="petr@example.com", name="Petr", password="pw-petr-123")
    event = receive(inbox, mail(sender="pavel@example.com", headers={"In-Reply-To": f"<{mid(first)}>"}))
    assert ticket_of(event) != ticket


# --- closed, solved and pending tickets ---------------------------------------------------------


def test_a_reply_to_a_closed_ticket_opens_a_linked_follow_up(
    inbox: Inbox, opened: tuple[Ticket, bytes], agent: Any
) -> None:
    # given
    ticket, first = opened
    do_change_status(ticket, status=TicketStatus.CLOSED, actor=agent)
    # when
    event = receive(inbox, mail(subject="Re: My parcel has not arrived", headers={"In-Reply-To": f"<{mid(first)}>"}))
    # then
    followup = ticket_of(event)
    assert followup != ticket
    assert followup.followup_of == ticket
    assert followup.customer == ticket.customer
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.CLOSED
    assert ticket.messages.count() == 1
    last = ticket.events.order_by("-seq").first()
    assert last is not None
    assert last.type == TicketEventType.FOLLOWUP_CREATED
    assert last.data["followup_ticket_id"] == followup.pk


@pytest.mark.parametrize("status", [TicketStatus.SOLVED, TicketStatus.PENDING])
def test_a_reply_reopens_a_solved_or_pending_ticket(
    inbox: Inbox, opened: tuple[Ticket, bytes], agent: Any, status: str
) -> None:
    ticket, first = opened
    do_change_status(ticket, status=status, actor=agent)
    # when
    event = receive(inbox, mail(headers={"In-Reply-To": f"<{mid(first)}>"}))
    # then
    assert ticket_of(event) == ticket
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN
    assert ticket.solved_at is None
    changed = ticket.events.filter(type=TicketEventType.STATUS_CHANGED).order_by("-seq").first()
    assert changed is not None
    assert changed.data == {"old": status, "new": TicketStatus.OPEN}


# --- auto-replies and our own mail --------------------------------------------------------------

AUTOMATIC = [
    pytest.param({"Auto-Submitted": "auto-replied"}, "ana@example.com", id="auto-submitted"),
    pytest.param({"X-Autoreply": "yes"}, "ana@example.com", id="x-autoreply"),
    pytest.param({"Precedence": "bulk"}, "ana@example.com", id="precedence-bulk"),
    pytest.param({"List-Id": "<news.lists.example.com>"}, "ana@example.com", id="list-id"),
    pytest.param({"Return-Path": "<>"}, "ana@example.com", id="null-return-path"),
    pytest.param({}, "MAILER-DAEMON@mx.example.com", id="mailer-daemon"),
]


@pytest.mark.parametrize(("headers", "sender"), AUTOMATIC)
def test_automatic_mail_never_opens_a_ticket_nor_creates_a_customer(
    inbox: Inbox, headers: dict[str, str], sender: str
) -> None:
    # when: a new mail (no reference to anything of ours) that a machine sent
    event = receive(inbox, mail(sender=sender, subject="Out of office", headers=headers))
    # then
    assert event.status == InboundEventStatus.IGNORED
    assert event.message is None
    assert not Ticket.objects.exists()
    assert not Customer.objects.exists()
    assert b"Out of office" in bytes(event.payload)


@pytest.mark.parametrize(("headers", "sender"), [p for p in AUTOMATIC if p.id != "mailer-daemon"])
def test_an_automatic_reply_joins_its_ticket_without_waking_it(
    inbox: Inbox, opened: tuple[Ticket, bytes], agent: Any, headers: dict[str, str], sender: str
) -> None:
    # given: the agent answered and waits on the customer
    ticket, first = opened
    do_change_status(ticket, status=TicketStatus.PENDING, actor=agent)
    ticket.refresh_from_db()
    waiting, last_customer = ticket.waiting_since, ticket.last_customer_message_at
    # when: the customer's out-of-office answers
    event = receive(inbox, mail(sender=sender, headers={**headers, "In-Reply-To": f"<{mid(first)}>"}))
    # then: on the ticket, but it stays pending and its clocks do not move
    assert ticket_of(event) == ticket
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.PENDING
    assert ticket.waiting_since == waiting
    assert ticket.last_customer_message_at == last_customer
    assert ticket.messages.count() == 2
    assert not ticket.events.filter(type=TicketEventType.STATUS_CHANGED, data__new="open").exists()


def test_an_automatic_reply_to_an_open_ticket_joins_it(inbox: Inbox, opened: tuple[Ticket, bytes]) -> None:
    ticket, first = opened
    event = receive(inbox, mail(headers={"Auto-Submitted": "auto-replied", "In-Reply-To": f"<{mid(first)}>"}))
    assert ticket_of(event) == ticket
    assert ticket.messages.count() == 2


@pytest.mark.parametrize("sender", [SUPPORT, "Help Desk <help@example.com>", "support+7-abcdefghij@example.com"])
def test_mail_from_our_own_addresses_is_ignored(inbox: Inbox, sender: str) -> None:
    event = receive(inbox, mail(sender=sender, subject="Re: something [#1001]"))
    assert event.status == InboundEventStatus.IGNORED
    assert not Ticket.objects.exists()
    assert not Customer.objects.exists()


# --- bounces ------------------------------------------------------------------------------------


@pytest.fixture
def sent_reply(opened: tuple[Ticket, bytes]) -> OutboundDelivery:
    """An outbound mail on Ana's ticket that went out with our Message-ID."""
    ticket, _ = opened
    message = cast(
        Message,
        MessageFactory(
            ticket=ticket,
            direction=Direction.OUTBOUND,
            author_customer=None,
            inbox=ticket.inbox,
            channel="email",
            delivery_status=DeliveryStatus.SENT,
        ),
    )
    return OutboundDelivery.objects.create(
        message=message,
        inbox=ticket.inbox,
        recipient="ana@example.com",
        status=DeliveryStatus.SENT,
        provider_id="t1001.abc123@mail.example.com",
        sent_at=timezone.now(),
    )


def test_a_bounce_marks_the_delivery_failed_and_opens_nothing(inbox: Inbox, sent_reply: OutboundDelivery) -> None:
    ticket = sent_reply.message.ticket
    customers, tickets = Customer.objects.count(), Ticket.objects.count()
    # when
    event = receive(inbox, dsn(sent_reply.provider_id))
    # then
    sent_reply.refresh_from_db()
    assert sent_reply.status == DeliveryStatus.FAILED
    assert "5.1.1" in sent_reply.last_error
    assert "User unknown" in sent_reply.last_error
    message = Message.objects.get(pk=sent_reply.message_id)
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "5.1.1" in message.delivery_error
    changed = ticket.events.get(type=TicketEventType.DELIVERY_CHANGED)
    assert changed.data["status"] == DeliveryStatus.FAILED
    assert (Customer.objects.count(), Ticket.objects.count()) == (customers, tickets)
    assert event.status == InboundEventStatus.PROCESSED
    assert event.message is None


def test_a_bounce_for_an_unknown_message_is_ignored(inbox: Inbox, sent_reply: OutboundDelivery) -> None:
    customers, tickets = Customer.objects.count(), Ticket.objects.count()
    event = receive(inbox, dsn("never-sent@mail.example.com"))
    assert event.status == InboundEventStatus.IGNORED
    assert (Customer.objects.count(), Ticket.objects.count()) == (customers, tickets)
    sent_reply.refresh_from_db()
    assert sent_reply.status == DeliveryStatus.SENT


def test_a_delayed_notice_changes_nothing(inbox: Inbox, sent_reply: OutboundDelivery) -> None:
    ticket = sent_reply.message.ticket
    before = snapshot(ticket)
    event = receive(inbox, dsn(sent_reply.provider_id, action="delayed", status="4.4.7"))
    assert event.status == InboundEventStatus.IGNORED
    sent_reply.refresh_from_db()
    assert sent_reply.status == DeliveryStatus.SENT
    assert snapshot(ticket) == before
    assert Ticket.objects.count() == 1


# --- per-sender rate limit ----------------------------------------------------------------------


def test_a_burst_over_the_rate_limit_is_held_not_lost(inbox: Inbox) -> None:
    # given
    do_update_inbox_settings(inbox, values={"rate_limit_per_hour": 3})
    # when: five mails of one sender, then one of another
    events = [receive(inbox, mail(subject=f"Mail {i}", body=f"number {i}\n")) for i in range(5)]
    other = receive(inbox, mail(sender="bob@example.com", subject="Hi"))
    # then
    assert [e.status for e in events] == [InboundEventStatus.PROCESSED] * 3 + [InboundEventStatus.HELD] * 2
    for held in events[3:]:
        assert "held for review" in held.last_error
        assert "ana@example.com" in held.last_error
        assert held.message is None
        assert b"number" in bytes(held.payload)
    assert other.status == InboundEventStatus.PROCESSED
    assert Message.objects.count() == 4
    # when: a person releases them
    for held in events[3:]:
        release(held)
    # then
    processed = InboundEvent.objects.filter(pk__in=[e.pk for e in events[3:]])
    assert set(processed.values_list("status", flat=True)) == {InboundEventStatus.PROCESSED}
    assert Message.objects.count() == 6
    assert {m.text.strip() for m in Message.objects.filter(author_customer__identities__value="ana@example.com")} == {
        f"number {i}" for i in range(5)
    }


def test_a_burst_stored_at_once_is_held_within_one_batch(inbox: Inbox) -> None:
    # given: five mails of one sender stored while no worker ran
    do_update_inbox_settings(inbox, values={"rate_limit_per_hour": 3})
    receipts = [do_receive_email(inbox, mail(subject=f"Mail {i}"), source="test") for i in range(5)]
    # when: one worker takes them as one batch
    do_process_inbound_event(receipts[0].event_id, batch_size=50)
    # then: the first three in arrival order are processed, the rest held
    statuses = [InboundEvent.objects.get(pk=r.event_id).status for r in receipts]
    assert statuses == [InboundEventStatus.PROCESSED] * 3 + [InboundEventStatus.HELD] * 2
    assert Message.objects.count() == 3


def test_copies_of_stored_mail_are_not_held_by_the_rate_limit(inbox: Inbox) -> None:
    # given three of a sender's mails on tickets, and a limit of three an hour
    do_update_inbox_settings(inbox, values={"rate_limit_per_hour": 3})
    raws = [mail(subject=f"Mail {i}") for i in range(3)]
    for raw in raws:
        receive(inbox, raw)
    # when the same mails come again under other keys (a mailbox read again after a UIDVALIDITY change)
    again = [do_receive_email(inbox, raw, source="test", dedupe_key=f"imap:INBOX:2:{i}") for i, raw in enumerate(raws)]
    do_process_inbound_event(again[0].event_id, batch_size=50)
    # then they are known copies, not a burst to review
    statuses = {InboundEvent.objects.get(pk=r.event_id).status for r in again}
    assert statuses == {InboundEventStatus.PROCESSED}
    assert Message.objects.count() == 3


def release(event: InboundEvent) -> None:
    """A person releases a held event; a worker then processes it."""
    from channels_inbox.actions.review import do_release_held_events

    assert do_release_held_events([event.pk], actor=None) == 1
    do_process_inbound_event(event.pk, batch_size=1)


# --- redelivery ---------------------------------------------------------------------------------


def test_the_same_mail_twice_is_one_event_and_one_message(inbox: Inbox) -> None:
    raw = mail()
    first, second = do_receive_email(inbox, raw, source="test"), do_receive_email(inbox, raw, source="test")
    assert (first.stored, second.stored) == (True, False)
    assert first.event_id == second.event_id
    do_process_inbound_event(first.event_id)
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


def test_the_same_message_id_with_other_bytes_is_one_event(inbox: Inbox) -> None:
    raw = mail(message_id="<same-1@mail.example.com>")
    relayed = b"Received: from relay.example.com by mx.example.com; Mon, 2 Mar 2026 09:14:03 +0000\r\n" + raw
    receipts = [do_receive_email(inbox, r, source="test") for r in (raw, relayed)]
    assert [r.stored for r in receipts] == [True, False]
    assert InboundEvent.objects.get().dedupe_key == "mid:same-1@mail.example.com"


def test_another_mail_reusing_a_message_id_is_kept_as_a_mail_of_its_own(inbox: Inbox) -> None:
    # given a mail, and a different one from a mailer that reuses Message-IDs
    first = mail(message_id="<reused@forms.example.com>", body="First question\n")
    second = mail(message_id="<reused@forms.example.com>", subject="Another", body="Second question\n")
    # when both arrive, and the first is redelivered through a relay
    relayed = b"Received: from relay.example.com by mx.example.com; Mon, 2 Mar 2026 09:14:03 +0000\r\n" + first
    receipts = [do_receive_email(inbox, raw, source="test") for raw in (first, second, relayed)]
    for receipt in receipts:
        do_process_inbound_event(receipt.event_id)
    # then the second mail is stored and shown; the relayed copy is not
    assert [r.stored for r in receipts] == [True, True, False]
    texts = sorted(m.text.strip() for m in Message.objects.all())
    assert texts == ["First question", "Second question"]


def test_mail_without_message_id_is_deduplicated_by_its_bytes(inbox: Inbox) -> None:
    raw = mail(message_id=None)
    other = mail(message_id=None, body="something else\n")
    receipts = [do_receive_email(inbox, r, source="test") for r in (raw, raw, other)]
    assert [r.stored for r in receipts] == [True, False, True]
    assert all(e.dedupe_key.startswith("sha256:") for e in InboundEvent.objects.all())
    for receipt in receipts:
        do_process_inbound_event(receipt.event_id)
    assert Message.objects.count() == 2


# --- broken mail --------------------------------------------------------------------------------

BROKEN = [
    pytest.param(os.urandom(0) + bytes(range(256)) * 8, id="binary"),
    pytest.param(b"\x00\x01\x02garbage\x00\xff\xfe\r\n\r\n\x00body", id="nul-bytes"),
    pytest.param(
        b"From: Ana <ana@example.com>\r\nSubject: broken\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
        b"--never-closed\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--never-closed\r\n"
        b'Content-Type: application/octet-stream; name="a.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAA',
        id="broken-mime",
    ),
    pytest.param(b"From: \x00\xff <\x00@\xff>\r\nSubject: \x00\r\n\r\nbody\x00", id="nul-in-headers"),
]


@pytest.mark.parametrize("raw", BROKEN)
def test_broken_mail_is_kept_raw_and_shown_on_a_ticket(inbox: Inbox, raw: bytes) -> None:
    # when
    event = receive(inbox, raw)
    # then: stored byte for byte, and on a ticket for a person to look at
    assert bytes(event.payload) == raw
    assert event.status == InboundEventStatus.PROCESSED, event.last_error
    ticket = ticket_of(event)
    assert ticket.messages.count() == 1


def test_mail_without_a_from_address_says_so_on_its_ticket(inbox: Inbox) -> None:
    event = receive(inbox, b"Subject: who am I\r\n\r\nno sender here\r\n")
    assert event.message is not None
    message = event.message
    assert "could not be read" in message.text
    assert "no usable From address" in message.metadata["email"]["parse_error"]


# --- a batch ------------------------------------------------------------------------------------


def test_a_conversation_stored_before_processing_threads_in_one_batch(inbox: Inbox) -> None:
    # given: the original, a reply, a reply to the reply (References only) and an unrelated mail,
    # all stored while no worker ran
    first = mail()
    second = mail(headers={"In-Reply-To": f"<{mid(first)}>"})
    third = mail(sender="bob@example.com", headers={"References": f"<{mid(first)}> <{mid(second)}>"})
    cc_first = mail(subject="Loop in Bob", headers={"Cc": "bob@example.com"})
    bob_reply = mail(sender="bob@example.com", headers={"In-Reply-To": f"<{mid(cc_first)}>"})
    other = mail(sender="cyd@example.com", subject="Other")
    receipts = [
        do_receive_email(inbox, raw, source="test") for raw in (first, second, third, cc_first, bob_reply, other)
    ]
    assert InboundEvent.objects.filter(status=InboundEventStatus.PENDING).count() == 6
    # when: one worker takes the backlog
    assert do_process_inbound_event(receipts[0].event_id, batch_size=50) == "processed"
    # then
    events = [InboundEvent.objects.select_related("message").get(pk=r.event_id) for r in receipts]
    assert {e.status for e in events} == {InboundEventStatus.PROCESSED}
    tickets = [e.message.ticket_id for e in events if e.message]
    assert tickets[0] == tickets[1]
    assert tickets[2] != tickets[0]  # Bob is no participant of Ana's first ticket
    assert tickets[3] == tickets[4]  # Bob was CC'd earlier in the same batch
    assert len(set(tickets)) == 4


def test_a_reply_processed_before_its_original_still_shares_its_ticket(inbox: Inbox) -> None:
    # given: the original and its reply, stored in order
    first = mail(headers={"Cc": "Bob <bob@example.com>"})
    original = do_receive_email(inbox, first, source="test").event_id
    answer = do_receive_email(inbox, mail(headers={"In-Reply-To": f"<{mid(first)}>"}), source="test").event_id
    # when: a worker gets to the reply first (two workers each holding one of them, or a retried original)
    do_process_inbound_event(answer, batch_size=1)
    do_process_inbound_event(original, batch_size=1)
    # then the original joins the reply's ticket, with the people it copied in
    (ticket,) = Ticket.objects.all()
    assert ticket.messages.count() == 2
    assert [cc.customer.name for cc in ticket.ccs.select_related("customer")] == ["Bob"]


def test_a_reply_ahead_of_its_original_in_one_batch_shares_its_ticket(inbox: Inbox) -> None:
    # given: the reply stored before the original (an ESP redelivered the original late)
    first = mail()
    answer = do_receive_email(inbox, mail(headers={"References": f"<{mid(first)}>"}), source="test").event_id
    do_receive_email(inbox, first, source="test")
    # when one worker takes both
    do_process_inbound_event(answer, batch_size=50)
    # then
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2


def test_a_strangers_mail_answered_by_nobody_it_knows_opens_its_own_ticket(inbox: Inbox) -> None:
    # given Ana's reply naming a mail that has not been processed yet
    first = mail(sender="eve@evil.example")
    do_process_inbound_event(
        do_receive_email(inbox, mail(headers={"In-Reply-To": f"<{mid(first)}>"}), source="test").event_id
    )
    # when that mail turns out to be from someone who may not write to Ana's ticket
    event = receive(inbox, first)
    # then it is a ticket of its own
    assert Ticket.objects.count() == 2
    assert ticket_of(event).customer.identities.get().value == "eve@evil.example"


# --- charsets -----------------------------------------------------------------------------------


def test_charsets_are_decoded(inbox: Inbox) -> None:
    # given: a GB2312 subject, a KOI8-R body, a windows-1250 sender name
    subject = "=?gb2312?b?" + base64.b64encode("发票抬头需要修改".encode("gb2312")).decode() + "?="
    name = "=?windows-1250?q?Lucie_Dvo=F8=E1kov=E1?="
    body = "Здравствуйте! Счёт за апрель неверный.\n".encode("koi8-r")
    raw = (
        f"From: {name} <lucie@example.cz>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <cs-1@example.cz>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body
    assert b"=?gb2312?" in raw
    assert b"=?windows-1250?" in raw
    # when
    ticket = ticket_of(receive(inbox, raw))
    # then
    assert ticket.subject == "发票抬头需要修改"
    assert ticket.customer.name == "Lucie Dvořáková"
    assert ticket.messages.get().text.strip() == "Здравствуйте! Счёт за апрель неверный."


# --- the ingest_email command -------------------------------------------------------------------


def ingest_command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("ingest_email", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_command_stores_and_processes_a_file_and_accepts_a_redelivery(inbox: Inbox, tmp_path: Path) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(b"From MAILER@host Mon Mar  2 09:14:03 2026\n" + mail())
    # when
    first = ingest_command("--inbox", "support", "--process", "yes", str(path))
    again = ingest_command("--inbox", "support", "--process", "yes", str(path))
    # then
    assert first[:2] == (0, "stored 1, already stored 0\n")
    assert again[:2] == (0, "stored 0, already stored 1\n")
    assert Ticket.objects.count() == 1
    assert bytes(InboundEvent.objects.get().payload).startswith(b"From: ")


def test_command_stores_a_directory(inbox: Inbox, tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.eml").write_bytes(mail(subject=f"Mail {i}"))
    (tmp_path / ".hidden").write_bytes(b"not mail")
    code, out, _ = ingest_command("--inbox", "support", "--process", "yes", str(tmp_path))
    assert (code, out) == (0, "stored 3, already stored 0\n")
    assert Ticket.objects.count() == 3


def test_command_leaves_processing_to_the_workers_when_told(
    inbox: Inbox, tmp_path: Path, lost_tasks: list[Any]
) -> None:
    # given
    path = tmp_path / "one.eml"
    path.write_bytes(mail())
    # when
    code, out, _ = ingest_command("--inbox", "support", "--process", "no", str(path))
    # then: stored durably and pending for a worker; nothing processed here
    assert (code, out) == (0, "stored 1, already stored 0\n")
    assert InboundEvent.objects.get().status == InboundEventStatus.PENDING
    assert not Ticket.objects.exists()


def test_command_refuses_empty_and_oversized_mail_with_65(inbox: Inbox, tmp_path: Path, settings: Any) -> None:
    settings.EMAIL_MAX_BYTES = 2000
    empty, large = tmp_path / "empty.eml", tmp_path / "large.eml"
    empty.write_bytes(b"\r\n  \r\n")
    large.write_bytes(mail(body="x" * 3000))
    for path in (empty, large):
        code, _, err = ingest_command("--inbox", "support", str(path))
        assert code == 65, err
        assert "refused" in err
    assert not InboundEvent.objects.exists()


def test_command_asks_the_mta_to_retry_for_an_unknown_inbox(inbox: Inbox, tmp_path: Path) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(mail())
    code, _, err = ingest_command("--inbox", "no-such-inbox", str(path))
    assert code == 75
    assert "no-such-inbox" in err
    assert not InboundEvent.objects.exists()


def _manage(env: dict[str, str], *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=120
    )


@pytest.mark.slow
def test_an_mta_pipe_delivers_through_stdin(tmp_path: Path) -> None:
    # given: a fresh embedded install with an email inbox, in its own data dir
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "EMAIL_URL": "consolemail://"}
    assert _manage(env, "migrate", "--noinput").returncode == 0
    created = _manage(env, "inbox", "create", "--kind", "email", "--name", "Support", "--set", f"address={SUPPORT}")
    assert created.returncode == 0, created.stderr
    raw = b"From ana@example.com Mon Mar  2 09:14:03 2026\n" + mail(subject="Piped in")
    # when: the MTA pipes the mail, twice (a retry after a timeout), then an empty one
    results = [_manage(env, "ingest_email", "--inbox", "support", "-", stdin=raw) for _ in range(2)]
    empty = _manage(env, "ingest_email", "--inbox", "support", "-", stdin=b"")
    unknown = _manage(env, "ingest_email", "--inbox", "nope", "-", stdin=raw)
    # then
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert results[0].stdout.strip() == b"stored 1, already stored 0"
    assert results[1].stdout.strip() == b"stored 0, already stored 1"
    assert empty.returncode == 65
    assert unknown.returncode == 75
    shown = _manage(
        env,
        "shell",
        "-c",
        "from helpdesk.models import Ticket; print([(t.subject, t.messages.count()) for t in Ticket.objects.all()])",
    )
    assert shown.stdout.strip().splitlines()[-1] == b"[('Piped in', 1)]", shown.stderr


# --- two workers at once (PostgreSQL) -----------------------------------------------------------


def _in_threads(*calls: Any) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reply_processed_while_its_original_is_being_processed_joins_its_ticket(
    inbox: Inbox, monkeypatch: Any
) -> None:
    # given: an original and its reply, stored at the same time; the original's worker is
    # slow inside the write, so the reply's worker runs while the original is not committed
    first = mail()
    reply = mail(headers={"In-Reply-To": f"<{mid(first)}>"})
    original = do_receive_email(inbox, first, source="test").event_id
    answer = do_receive_email(inbox, reply, source="test").event_id
    real = process_module.do_ingest_messages
    inside = threading.Event()

    def slow(**kwargs: Any) -> Any:
        if any(item.inbound.external_id == mid(first) for item in kwargs["items"]):
            inside.set()
            time.sleep(0.5)
        return real(**kwargs)

    monkeypatch.setattr(process_module, "do_ingest_messages", slow)

    def reply_worker() -> str:
        assert inside.wait(timeout=10)
        return do_process_inbound_event(answer, batch_size=1)

    # when
    outcomes = _in_threads(lambda: do_process_inbound_event(original, batch_size=1), reply_worker)
    # then: the reply waited for the original's customer lock and found its ticket
    assert outcomes == ["processed", "processed"]
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2
    ticket = Ticket.objects.get()
    seqs = list(ticket.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, ticket.last_event_seq + 1))
    assert TicketEvent.objects.filter(type=TicketEventType.CREATED).count() == 1
