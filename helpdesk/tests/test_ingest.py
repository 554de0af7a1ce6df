"""Threading inbound messages into tickets (helpdesk/actions/ingest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from channels_inbox.adapters.base import IdentityRef, InboundAttachment, InboundMessage, InboundSender
from customers.actions.resolve import do_resolve_customer
from helpdesk.actions.ingest import do_ingest_message
from helpdesk.actions.tickets import do_change_status
from helpdesk.models import Message, Ticket, TicketEvent, TicketEventType, TicketStatus
from tests.factories import InboxFactory

pytestmark = pytest.mark.django_db


def inbound(external_id: str, *, who: str = "ana@example.com", **kwargs: Any) -> InboundMessage:
    return InboundMessage(
        external_id=external_id,
        sender=InboundSender(identities=[IdentityRef("email", who)], name="Ana"),
        text=kwargs.pop("text", f"message {external_id}"),
        **kwargs,
    )


def ingest(inbox: Any, message: InboundMessage) -> Any:
    customer = do_resolve_customer(message.sender, seen_at=timezone.now())
    return do_ingest_message(inbox=inbox, inbound=message, customer=customer)


@pytest.fixture
def inbox() -> Any:
    return InboxFactory()


def test_first_message_opens_a_new_ticket_with_events(inbox: Any) -> None:
    # when
    result = ingest(inbox, inbound("m1", text="Refund please\nsecond line"))
    # then
    ticket = result.ticket
    assert result.created_ticket
    assert ticket.status == TicketStatus.NEW
    assert ticket.subject == "Refund please"
    assert ticket.number > 1000
    assert ticket.waiting_since is not None
    assert ticket.last_customer_message_at is not None
    events = list(ticket.events.order_by("seq").values_list("seq", "type"))
    assert events == [(1, TicketEventType.CREATED), (2, TicketEventType.MESSAGE_RECEIVED)]
    assert ticket.last_event_seq == 2


def test_next_message_of_the_same_customer_joins_the_open_ticket(inbox: Any) -> None:
    first = ingest(inbox, inbound("m1"))
    second = ingest(inbox, inbound("m2"))
    assert second.ticket == first.ticket
    assert not second.created_ticket
    assert second.ticket.messages.count() == 2


def test_another_customer_gets_their_own_ticket(inbox: Any) -> None:
    first = ingest(inbox, inbound("m1"))
    other = ingest(inbox, inbound("m2", who="bob@example.com"))
    assert other.ticket != first.ticket


def test_same_customer_in_another_inbox_gets_another_ticket(inbox: Any) -> None:
    first = ingest(inbox, inbound("m1"))
    other = ingest(InboxFactory(), inbound("m1"))
    assert other.ticket != first.ticket
    assert other.ticket.customer == first.ticket.customer


def test_thread_key_decides_the_ticket(inbox: Any) -> None:
    # given: two conversations of one customer, by key
    a1 = ingest(inbox, inbound("m1", thread_key="order-1"))
    b1 = ingest(inbox, inbound("m2", thread_key="order-2"))
    # when
    a2 = ingest(inbox, inbound("m3", thread_key="order-1"))
    # then
    assert a1.ticket != b1.ticket
    assert a2.ticket == a1.ticket


def test_reply_to_a_known_message_joins_its_ticket(inbox: Any) -> None:
    # given: two tickets of one customer (the second by thread key)
    first = ingest(inbox, inbound("m1"))
    ingest(inbox, inbound("m2", thread_key="k"))
    # when: an answer to m1 without a key
    answer = ingest(inbox, inbound("m3", in_reply_to=["unknown", "m1"]))
    # then
    assert answer.ticket == first.ticket


def test_reply_to_a_strangers_message_does_not_join_their_ticket(inbox: Any) -> None:
    # given
    anas = ingest(inbox, inbound("m1"))
    # when: Bob claims to answer Ana's message
    bobs = ingest(inbox, inbound("m2", who="bob@example.com", in_reply_to=["m1"]))
    # then
    assert bobs.ticket != anas.ticket
    assert bobs.created_ticket


@pytest.mark.parametrize("status", [TicketStatus.PENDING, TicketStatus.ON_HOLD, TicketStatus.SOLVED])
def test_customer_message_reopens_a_waiting_or_solved_ticket(inbox: Any, admin_agent: Any, status: str) -> None:
    # given
    ticket = ingest(inbox, inbound("m1")).ticket
    do_change_status(ticket, status=TicketStatus.OPEN, actor=admin_agent)
    do_change_status(ticket, status=status, actor=admin_agent)
    # when
    result = ingest(inbox, inbound("m2"))
    # then
    ticket.refresh_from_db()
    assert result.ticket == ticket
    assert ticket.status == TicketStatus.OPEN
    assert ticket.solved_at is None
    last = ticket.events.order_by("-seq")[:2]
    assert [e.type for e in last] == [TicketEventType.MESSAGE_RECEIVED, TicketEventType.STATUS_CHANGED]
    assert last[1].data == {"old": status, "new": "open"}


def test_message_to_a_closed_ticket_opens_a_linked_follow_up(inbox: Any, admin_agent: Any) -> None:
    # given
    closed = ingest(inbox, inbound("m1", thread_key="k", text="Broken zip")).ticket
    do_change_status(closed, status=TicketStatus.CLOSED, actor=admin_agent)
    # when
    result = ingest(inbox, inbound("m2", thread_key="k", text=""))
    # then
    follow_up = result.ticket
    closed.refresh_from_db()
    assert result.created_ticket
    assert follow_up != closed
    assert follow_up.followup_of == closed
    assert follow_up.thread_key == "k"
    assert follow_up.subject == "Broken zip"
    assert closed.status == TicketStatus.CLOSED
    assert closed.messages.count() == 1
    linked = closed.events.get(type=TicketEventType.FOLLOWUP_CREATED)
    assert linked.data == {"followup_ticket_id": follow_up.pk, "followup_number": follow_up.number}
    assert follow_up.events.get(type=TicketEventType.CREATED).data["followup_of"] == closed.pk
    # and the next message goes to the follow-up, not the closed ticket
    assert ingest(inbox, inbound("m3", thread_key="k")).ticket == follow_up


def test_follow_up_without_thread_key(inbox: Any, admin_agent: Any) -> None:
    closed = ingest(inbox, inbound("m1")).ticket
    do_change_status(closed, status=TicketStatus.CLOSED, actor=admin_agent)
    assert ingest(inbox, inbound("m2")).ticket.followup_of == closed


def test_same_external_id_twice_is_one_message(inbox: Any) -> None:
    first = ingest(inbox, inbound("m1"))
    again = ingest(inbox, inbound("m1"))
    assert again.duplicate
    assert again.message == first.message
    assert Message.objects.count() == 1
    assert TicketEvent.objects.count() == 2


def test_attachments_are_stored_once_per_content(inbox: Any) -> None:
    # given
    files = [InboundAttachment("a.txt", b"hello"), InboundAttachment("b.txt", b"hello")]
    # when
    message = ingest(inbox, inbound("m1", attachments=files)).message
    # then
    a, b = message.attachments.order_by("id")
    assert a.sha256 == b.sha256
    assert a.file.name == b.file.name
    assert a.file.read() == b"hello"
    assert (a.filename, b.filename) == ("a.txt", "b.txt")


def test_ticket_numbers_increase(inbox: Any) -> None:
    numbers = [ingest(inbox, inbound(f"m{i}", who=f"p{i}@example.com")).ticket.number for i in range(3)]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 3


def test_ticket_goes_to_the_inbox_team(inbox: Any) -> None:
    from helpdesk.models import Team

    inbox.team = Team.objects.create(name="Billing", slug="billing")
    inbox.save()
    assert ingest(inbox, inbound("m1")).ticket.team == inbox.team


def test_events_are_append_only(inbox: Any) -> None:
    event = ingest(inbox, inbound("m1")).ticket.events.first()
    event.data = {"forged": True}
    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()


def test_event_seq_numbers_have_no_gaps(inbox: Any, admin_agent: Any) -> None:
    ticket = ingest(inbox, inbound("m1")).ticket
    do_change_status(ticket, status=TicketStatus.PENDING, actor=admin_agent)
    ingest(inbox, inbound("m2"))
    seqs = list(Ticket.objects.get(pk=ticket.pk).events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
