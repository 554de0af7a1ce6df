"""Agent replies to a visitor: live while connected, deferred while the visitor may be back,
by email through the continuity inbox once gone — and the emailed visitor's answer lands on
the same ticket and in the visitor's stream. Real commits: the deliver task runs after them."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail as django_mail
from django.utils import timezone

from channels_inbox.actions.delivery import do_attempt_delivery
from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox_settings
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.models import ChatVisitor, OutboundDelivery
from channels_inbox.tests.test_chat_support import (
    _steady_rate_windows,
    chat_inbox,
    conversation_of,
    no_presence,
    signed,
    widget,
)
from helpdesk.actions.replies import do_reply
from helpdesk.models import DeliveryStatus, Direction, Message, Ticket

__all__ = ["_steady_rate_windows", "chat_inbox", "no_presence"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def email_inbox(db: Any) -> Any:
    inbox, _ = do_create_inbox(kind="email", name="Support mail", values={"address": "support@example.com"})
    return inbox


def _gone(visitor: ChatVisitor) -> None:
    ChatVisitor.objects.filter(pk=visitor.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))


def test_a_connected_visitor_gets_the_reply_live(chat_inbox: Any, agent: Any, no_presence: Any) -> None:
    # given a visitor with its widget open
    no_presence["connected"] = True
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hello"))
    # when an agent answers
    reply = do_reply(conv.ticket, actor=agent, text="Hi there")
    # then the chat delivery is sent (the live copy went with the event), no email
    assert OutboundDelivery.objects.get(message=reply).status == DeliveryStatus.SENT
    assert django_mail.outbox == []


def test_a_visitor_seen_a_moment_ago_is_waited_for(chat_inbox: Any, agent: Any, no_presence: Any) -> None:
    # given a visitor whose widget closed 10 seconds ago
    no_presence["last_seen"] = time.time() - 10
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hello"))
    # when an agent answers, and the delivery is tried again (before it is due)
    reply = do_reply(conv.ticket, actor=agent, text="Are you there?")
    delivery = OutboundDelivery.objects.get(message=reply)
    again = do_attempt_delivery(delivery.pk)
    # then it waits: queued, due after CHAT_AWAY_AFTER_SECONDS, no attempt counted, no failure
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.attempts == 0
    assert delivery.last_error == ""
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=30)
    assert again == "not_due"


def test_deferrals_never_count_towards_the_attempt_limit(
    chat_inbox: Any, agent: Any, no_presence: Any, settings: Any
) -> None:
    # given a visitor who keeps being "just seen"
    settings.DELIVERY_MAX_ATTEMPTS = 2
    no_presence["last_seen"] = time.time()
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hello"))
    reply = do_reply(conv.ticket, actor=agent, text="Hi")
    delivery = OutboundDelivery.objects.get(message=reply)
    # when it is tried more often than the limit
    for _ in range(4):
        OutboundDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert do_attempt_delivery(delivery.pk) == "deferred"
    # then it is still queued, never failed
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 0)


def test_a_gone_visitor_without_an_email_finds_the_reply_on_the_next_visit(
    chat_inbox: Any, email_inbox: Any, agent: Any, no_presence: Any
) -> None:
    # given a visitor who left without giving an address
    do_update_inbox_settings(chat_inbox, values={"continuity_email_inbox": email_inbox.slug})
    w = widget(chat_inbox)
    w.start()
    body = w.send("hello")
    conv = conversation_of(body)
    _gone(w.visitor)
    # when an agent answers
    reply = do_reply(conv.ticket, actor=agent, text="Here is your answer")
    # then the delivery is sent (not failed), no email goes out, and the next visit shows it
    assert OutboundDelivery.objects.get(message=reply).status == DeliveryStatus.SENT
    assert OutboundDelivery.objects.filter(message=reply).count() == 1
    assert django_mail.outbox == []
    texts = [e["message"]["text"] for e in w.events(body["conversation"]["id"])["events"] if e["kind"] == "message"]
    assert texts == ["hello", "Here is your answer"]


@pytest.mark.parametrize("verified", [False, True])
def test_a_gone_visitor_gets_the_reply_by_email_and_the_answer_threads_back(
    chat_inbox: Any, email_inbox: Any, agent: Any, no_presence: Any, verified: bool
) -> None:
    # given a visitor who gave an address (pre-chat form, or a verified identify) and left
    do_update_inbox_settings(chat_inbox, values={"continuity_email_inbox": email_inbox.slug})
    w = widget(chat_inbox)
    w.start()
    if verified:
        assert w.post("identify", data={**signed(chat_inbox, "u-1"), "email": "jana@example.com"}).status_code == 200
        body = w.send("hello")
    else:
        body = w.send("hello", prechat={"name": "Jana", "email": "Jana@Example.com"})
    conv = conversation_of(body)
    _gone(w.visitor)
    # when an agent answers
    reply = do_reply(conv.ticket, actor=agent, text="Your parcel left today.")
    # then the same message goes out once more, by email, with a signed reply address and the link
    copies = {d.inbox_id: d for d in OutboundDelivery.objects.filter(message=reply)}
    assert copies[chat_inbox.pk].status == DeliveryStatus.SENT
    assert copies[email_inbox.pk].recipient == "jana@example.com"
    assert copies[email_inbox.pk].status == DeliveryStatus.SENT
    assert len(django_mail.outbox) == 1
    sent = django_mail.outbox[0]
    assert sent.to == ["jana@example.com"]
    assert f"[#{conv.ticket.number}]" in sent.subject
    link = re.search(r"Continue the conversation: (\S+)", str(sent.body))
    assert link is not None
    assert f"/widget/v1/{chat_inbox.public_token}/c/" in link[1]
    assert "Your parcel left today." in sent.body
    # and the visitor's email answer lands on the same ticket, shown in the visitor's stream
    answer = EmailMessage()
    answer["From"] = "Jana <jana@example.com>"
    answer["To"] = sent.reply_to[0]
    answer["Subject"] = f"Re: {sent.subject}"
    answer["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    answer["In-Reply-To"] = sent.extra_headers["Message-ID"]
    answer.set_content("Thanks! Where can I track it?")
    do_receive_email(email_inbox, answer.as_bytes(), source="test")
    inbound = Message.objects.filter(direction=Direction.INBOUND, channel="email").get()
    assert inbound.ticket_id == conv.ticket_id
    assert Ticket.objects.filter(inbox=email_inbox).count() == 0
    texts = [e["message"]["text"] for e in w.events(body["conversation"]["id"])["events"] if e["kind"] == "message"]
    assert texts[-1].startswith("Thanks! Where can I track it?")
    # and the link opens the hosted conversation with that visitor's token
    page = w.client.get(urlsplit(link[1]).path)
    assert page.status_code == 200, page.content
    assert page.context["config"]["conversation"] == body["conversation"]["id"]
    # with a token for that one conversation only (not the visitor's own)
    scoped = page.context["config"]["token"]
    assert scoped != w.token
    assert w.get("events", body["conversation"]["id"], token=scoped).status_code == 200
    assert "frame-ancestors 'self'" in page["Content-Security-Policy"]


def test_a_retried_send_queues_the_email_once(chat_inbox: Any, email_inbox: Any, agent: Any, no_presence: Any) -> None:
    # given a reply already continued by email
    do_update_inbox_settings(chat_inbox, values={"continuity_email_inbox": email_inbox.slug})
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hello", prechat={"email": "a@example.com"}))
    _gone(w.visitor)
    reply = do_reply(conv.ticket, actor=agent, text="Answer")
    chat_delivery = OutboundDelivery.objects.get(message=reply, inbox=chat_inbox)
    # when the chat delivery is sent once more (a lost answer, a sweeper)
    from channels_inbox.actions.chat import do_queue_chat_continuity_email

    again = do_queue_chat_continuity_email(chat_delivery)
    # then no second email delivery
    assert again is None
    assert OutboundDelivery.objects.filter(message=reply, inbox=email_inbox).count() == 1


def test_a_forged_or_expired_conversation_link_is_404(chat_inbox: Any, client: Any, settings: Any) -> None:
    from channels_inbox.chat.tokens import conversation_link_token

    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hi"))
    base = f"/widget/v1/{chat_inbox.public_token}/c/"
    assert client.get(base + "forged/").status_code == 404
    settings.CHAT_LINK_MAX_AGE_SECONDS = -1
    assert client.get(base + conversation_link_token(conv.public_id) + "/").status_code == 404


# --- review5 #4/#5: who gets the link, who joins the ticket, what the visitor sees ----------------


def test_the_link_goes_to_the_visitor_alone_never_to_ccs_or_other_mail(
    chat_inbox: Any, email_inbox: Any, agent: Any, no_presence: Any
) -> None:
    from customers.models import Customer, Identity, IdentityKind
    from helpdesk.models import TicketCC

    # given a gone visitor who typed an address nobody holds, on a ticket that also has a CC
    do_update_inbox_settings(chat_inbox, values={"continuity_email_inbox": email_inbox.slug})
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hello", prechat={"email": "jana@example.com"}))
    boss = Identity.objects.create(
        customer=Customer.objects.create(name="Boss"), kind=IdentityKind.EMAIL, value="boss@corp.example"
    ).customer
    TicketCC.objects.create(ticket=conv.ticket, customer=boss)
    _gone(w.visitor)
    # when an agent answers in the chat
    do_reply(conv.ticket, actor=agent, text="Answer one")
    # then the continuity copy, with the link, goes to the visitor's address only
    assert len(django_mail.outbox) == 1
    sent = django_mail.outbox[0]
    assert (sent.to, sent.cc) == (["jana@example.com"], [])
    assert "Continue the conversation:" in str(sent.body)
    # and the typed address became an unverified address of the ticket's own customer (no new CC)
    typed = Identity.objects.get(kind=IdentityKind.EMAIL, value="jana@example.com")
    assert (typed.customer_id, typed.verified) == (conv.ticket.customer_id, False)
    assert list(TicketCC.objects.filter(ticket=conv.ticket).values_list("customer_id", flat=True)) == [boss.pk]
    # when the agent writes an ordinary email on that ticket (customer + CC)
    do_reply(conv.ticket, actor=agent, text="Answer two", inbox=email_inbox, identity=typed)
    # then that mail carries no link
    second = django_mail.outbox[1]
    assert "boss@corp.example" in second.cc
    assert "Continue the conversation" not in str(second.body)
    assert all("Continue the conversation" not in str(part[0]) for part in getattr(second, "alternatives", []))


def test_a_typed_address_of_another_customer_threads_but_their_mail_is_not_shown(
    chat_inbox: Any, email_inbox: Any, agent: Any, no_presence: Any
) -> None:
    from customers.models import Customer, Identity, IdentityKind
    from helpdesk.models import TicketCC

    # given a gone visitor who typed the address of an existing customer Bob
    do_update_inbox_settings(chat_inbox, values={"continuity_email_inbox": email_inbox.slug})
    bob = Identity.objects.create(
        customer=Customer.objects.create(name="Bob"), kind=IdentityKind.EMAIL, value="bob@corp.example"
    ).customer
    w = widget(chat_inbox)
    w.start()
    body = w.send("hello", prechat={"email": "bob@corp.example"})
    conv = conversation_of(body)
    _gone(w.visitor)
    # when an agent answers and Bob answers the email
    do_reply(conv.ticket, actor=agent, text="Answer")
    sent = django_mail.outbox[0]
    assert sent.to == ["bob@corp.example"]
    answer = EmailMessage()
    answer["From"] = "Bob <bob@corp.example>"
    answer["To"] = sent.reply_to[0]
    answer["Subject"] = f"Re: {sent.subject}"
    answer["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    answer["In-Reply-To"] = sent.extra_headers["Message-ID"]
    answer.set_content("Out of office: call me at +1 555 0100")
    do_receive_email(email_inbox, answer.as_bytes(), source="test")
    # then Bob is a CC (the mail threads to the ticket), his address stays his
    assert TicketCC.objects.filter(ticket=conv.ticket, customer=bob).exists()
    assert Identity.objects.get(value="bob@corp.example").customer_id == bob.pk
    assert Message.objects.get(direction=Direction.INBOUND, channel="email").ticket_id == conv.ticket_id
    # and the visitor never sees what Bob wrote
    texts = [e["message"]["text"] for e in w.events(body["conversation"]["id"])["events"] if e["kind"] == "message"]
    assert texts == ["hello", "Answer"]
