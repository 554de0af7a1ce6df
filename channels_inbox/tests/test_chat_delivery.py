"""Where an agent's chat reply goes: to the conversation's own visitor (live, deferred, or by
email once gone), and the continuity sweep that emails a reply that was shown live but never
read once its visitor has left. Real commits: the deliver task runs after them."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import mail as django_mail
from django.db import close_old_connections
from django.utils import timezone

from channels_inbox.actions.delivery import do_attempt_delivery
from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox_settings
from channels_inbox.adapters.chat import do_sweep_chat_continuity
from channels_inbox.chat import presence
from channels_inbox.models import ChatConversation, ChatVisitor, OutboundDelivery
from channels_inbox.tests.test_chat_support import _steady_rate_windows, chat_inbox, conversation_of, widget
from customers.models import Customer, Identity, IdentityKind
from helpdesk.actions.replies import do_reply
from helpdesk.models import DeliveryStatus, Message

__all__ = ["_steady_rate_windows", "chat_inbox"]

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "jana@example.com"


@pytest.fixture
def email_inbox(db: Any) -> Any:
    inbox, _ = do_create_inbox(kind="email", name="Support mail", values={"address": "support@example.com"})
    return inbox


@pytest.fixture
def continuity(chat_inbox: Any, email_inbox: Any) -> Any:
    do_update_inbox_settings(chat_inbox, values={"continuity_email_inbox": email_inbox.slug})
    return email_inbox


def _gone(visitor: ChatVisitor) -> None:
    """The visitor's widget has been closed for an hour (no presence record, seen long ago)."""
    ChatVisitor.objects.filter(pk=visitor.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))
    presence.release(visitor.public_id, "ws-test", now=time.time() - 3600)


def _connected(visitor: ChatVisitor) -> None:
    presence.touch(visitor.public_id, "ws-test")


def _chat_started(chat_inbox: Any, text: str = "hello", email: str = ADDRESS) -> tuple[Any, ChatConversation]:
    w = widget(chat_inbox)
    w.start()
    conversation = conversation_of(w.send(text, prechat={"name": "Jana", "email": email}))
    return w, conversation


def _second_device(chat_inbox: Any, owner: ChatVisitor) -> ChatVisitor:
    """Another browser of the same (verified) customer, seen more recently than `owner`."""
    customer = owner.customer or Customer.objects.get(pk=conversation_customer(owner))
    laptop = ChatVisitor.objects.create(
        inbox=chat_inbox,
        public_id=uuid.uuid4(),
        customer=customer,
        site_origin="https://shop.example",
        last_seen_at=timezone.now(),
    )
    Identity.objects.create(customer=customer, kind=IdentityKind.CHAT_VISITOR, value=laptop.public_id.hex)
    return laptop


def conversation_customer(visitor: ChatVisitor) -> int:
    return int(ChatConversation.objects.filter(visitor=visitor).values_list("ticket__customer_id", flat=True)[0])


def _chat_delivery(reply: Message) -> OutboundDelivery:
    return OutboundDelivery.objects.get(message=reply, inbox__kind="chat")


def _emails(reply: Message) -> list[OutboundDelivery]:
    return list(OutboundDelivery.objects.filter(message=reply, inbox__kind="email"))


def _backdate(delivery: OutboundDelivery, seconds: float) -> None:
    then = timezone.now() - timedelta(seconds=seconds)
    OutboundDelivery.objects.filter(pk=delivery.pk).update(sent_at=then, created_at=then)


# --- review #11: the conversation's visitor, not the customer's latest device ---------------------


def test_a_reply_goes_to_the_conversations_visitor_not_the_customers_latest_device(
    chat_inbox: Any, continuity: Any, agent: Any
) -> None:
    # given a customer who chatted on the phone (gone now) and browses on a laptop (connected)
    phone, conversation = _chat_started(chat_inbox)
    laptop = _second_device(chat_inbox, phone.visitor)
    _gone(phone.visitor)
    _connected(laptop)
    # when an agent answers the phone's conversation
    reply = do_reply(conversation.ticket, actor=agent, text="Your parcel left today.")
    # then the laptop being open does not count: the phone's visitor left, so the reply is emailed
    assert [e.recipient for e in _emails(reply)] == [ADDRESS]
    assert len(django_mail.outbox) == 1


def test_presence_is_that_of_the_conversations_visitor(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given the phone (the conversation's visitor) connected, the laptop seen later but closed
    phone, conversation = _chat_started(chat_inbox)
    laptop = _second_device(chat_inbox, phone.visitor)
    _connected(phone.visitor)
    presence.release(laptop.public_id, "ws-test")
    # when an agent answers
    reply = do_reply(conversation.ticket, actor=agent, text="Hi!")
    # then it is delivered live to the phone: sent at once, no waiting for the laptop, no email
    assert _chat_delivery(reply).status == DeliveryStatus.SENT
    assert _emails(reply) == []


def test_a_ticket_without_a_chat_row_falls_back_to_the_recipient(chat_inbox: Any, agent: Any) -> None:
    # given a chat ticket whose conversation row is gone, its visitor connected
    w, conversation = _chat_started(chat_inbox)
    _connected(w.visitor)
    ChatConversation.objects.filter(pk=conversation.pk).delete()
    # when an agent answers
    reply = do_reply(conversation.ticket, actor=agent, text="Still here")
    # then the recipient identity's visitor decides: live
    assert _chat_delivery(reply).status == DeliveryStatus.SENT


# --- deferrals have an overall limit ---------------------------------------------------------------


def test_a_delivery_deferred_too_long_in_total_is_decided_as_gone(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given a visitor who keeps flapping: never connected when tried, but always "just seen"
    w, conversation = _chat_started(chat_inbox)
    presence.release(w.visitor.public_id, "ws-test")
    reply = do_reply(conversation.ticket, actor=agent, text="Are you there?")
    delivery = _chat_delivery(reply)
    assert delivery.status == DeliveryStatus.QUEUED
    # when it has been waiting for more than 10 × CHAT_AWAY_AFTER_SECONDS and is tried again
    waited = 10 * settings.CHAT_AWAY_AFTER_SECONDS + 5
    OutboundDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(seconds=waited), next_attempt_at=timezone.now()
    )
    presence.release(w.visitor.public_id, "ws-test")
    outcome = do_attempt_delivery(delivery.pk)
    # then it is not deferred again: the visitor counts as gone and gets the email
    assert outcome == "sent"
    assert [e.recipient for e in _emails(reply)] == [ADDRESS]


def test_a_deferral_never_reaches_past_the_overall_limit(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given a delivery that has waited almost the whole limit, its visitor seen just now
    w, conversation = _chat_started(chat_inbox)
    presence.release(w.visitor.public_id, "ws-test")
    reply = do_reply(conversation.ticket, actor=agent, text="Hello?")
    delivery = _chat_delivery(reply)
    limit = 10 * settings.CHAT_AWAY_AFTER_SECONDS
    OutboundDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(seconds=limit - 5), next_attempt_at=timezone.now()
    )
    # when it is tried again
    assert do_attempt_delivery(delivery.pk) == "deferred"
    # then the next try is due by the limit, not a whole CHAT_AWAY_AFTER_SECONDS later
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=10)


# --- the continuity sweep: shown live, never read, visitor gone ------------------------------------


def _shown_live(chat_inbox: Any, agent: Any, text: str = "Your parcel left today.") -> tuple[Any, Message]:
    """A reply delivered live (visitor connected), then the visitor closed the tab."""
    w, conversation = _chat_started(chat_inbox)
    _connected(w.visitor)
    reply = do_reply(conversation.ticket, actor=agent, text=text)
    assert _chat_delivery(reply).status == DeliveryStatus.SENT
    assert _emails(reply) == []
    _gone(w.visitor)
    _backdate(_chat_delivery(reply), settings.CHAT_AWAY_AFTER_SECONDS + 5)
    return w, reply


def test_a_reply_shown_live_but_never_read_is_emailed_once_the_visitor_left(
    chat_inbox: Any, continuity: Any, agent: Any
) -> None:
    # given a reply shown live, not read, and the visitor gone
    _, reply = _shown_live(chat_inbox, agent)
    # when the sweep runs, twice
    first = do_sweep_chat_continuity()
    second = do_sweep_chat_continuity()
    # then the reply is emailed exactly once
    assert (first, second) == (1, 0)
    assert [e.recipient for e in _emails(reply)] == [ADDRESS]
    assert len(django_mail.outbox) == 1
    assert "Your parcel left today." in django_mail.outbox[0].body


def test_a_read_reply_is_not_emailed(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given a reply shown live and read by the visitor
    from channels_inbox.actions.chat import do_mark_chat_read

    _, reply = _shown_live(chat_inbox, agent)
    conversation = ChatConversation.objects.get(ticket_id=reply.ticket_id)
    do_mark_chat_read(conversation, message_id=reply.pk)
    # when the sweep runs
    swept = do_sweep_chat_continuity()
    # then nothing is emailed
    assert swept == 0
    assert _emails(reply) == []


def test_a_reply_read_up_to_its_id_but_still_sent_is_not_emailed(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given a sent reply whose conversation says the visitor read up to it
    _, reply = _shown_live(chat_inbox, agent)
    ChatConversation.objects.filter(ticket_id=reply.ticket_id).update(visitor_read_message_id=reply.pk)
    # when / then
    assert do_sweep_chat_continuity() == 0
    assert _emails(reply) == []


def test_a_visitor_still_connected_is_not_emailed_until_they_leave(
    chat_inbox: Any, continuity: Any, agent: Any
) -> None:
    # given a reply shown live a while ago, its visitor still connected
    w, reply = _shown_live(chat_inbox, agent)
    _connected(w.visitor)
    # when the sweep runs, then nothing
    assert do_sweep_chat_continuity() == 0
    # when the visitor leaves and the sweep runs again, then the email
    _gone(w.visitor)
    assert do_sweep_chat_continuity() == 1
    assert len(_emails(reply)) == 1


def test_a_poll_that_stopped_loses_nothing(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given a visitor on the HTTP fallback: its last poll counts as connected when the agent answers
    w, conversation = _chat_started(chat_inbox)
    presence.touch(w.visitor.public_id, presence.POLL)
    reply = do_reply(conversation.ticket, actor=agent, text="Polled answer")
    assert _chat_delivery(reply).status == DeliveryStatus.SENT
    # when the polls stop (the tab closed) and the visitor is gone
    presence.release(w.visitor.public_id, presence.POLL, now=time.time() - 3600)
    ChatVisitor.objects.filter(pk=w.visitor.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))
    _backdate(_chat_delivery(reply), settings.CHAT_AWAY_AFTER_SECONDS + 5)
    # then the sweep emails the reply
    assert do_sweep_chat_continuity() == 1
    assert [e.recipient for e in _emails(reply)] == [ADDRESS]


def test_the_sweep_waits_for_a_visitor_seen_a_moment_ago(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given a reply shown live, and a visitor whose widget closed 5 s ago (changing pages)
    w, reply = _shown_live(chat_inbox, agent)
    presence.release(w.visitor.public_id, "ws-test")
    # when / then: not yet
    assert do_sweep_chat_continuity() == 0
    assert _emails(reply) == []


def test_the_sweep_looks_only_at_its_window(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given replies shown live and unread: one just now, one two days ago
    _, recent = _shown_live(chat_inbox, agent, text="recent")
    _, old = _shown_live(chat_inbox, agent, text="old")
    _backdate(_chat_delivery(recent), 1)
    _backdate(_chat_delivery(old), 2 * 24 * 3600)
    # when the sweep runs
    swept = do_sweep_chat_continuity()
    # then neither: the recent one is within CHAT_AWAY_AFTER_SECONDS, the old one past a day
    assert swept == 0
    assert _emails(recent) == _emails(old) == []


def test_a_reply_already_emailed_is_not_emailed_again(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given a reply shown live and emailed once already
    _, reply = _shown_live(chat_inbox, agent)
    assert do_sweep_chat_continuity() == 1
    OutboundDelivery.objects.filter(pk=_chat_delivery(reply).pk).update(status=DeliveryStatus.SENT)
    # when / then
    assert do_sweep_chat_continuity() == 0
    assert len(_emails(reply)) == 1


def test_an_inbox_without_continuity_costs_nothing(chat_inbox: Any, agent: Any, django_assert_num_queries: Any) -> None:
    # given an unread reply shown live in an inbox with no continuity_email_inbox
    _shown_live(chat_inbox, agent)
    # when / then: one query (the chat inboxes), no candidate read
    with django_assert_num_queries(1):
        assert do_sweep_chat_continuity() == 0


def test_the_sweeps_cost_does_not_grow_with_deliveries_outside_its_window(
    chat_inbox: Any, continuity: Any, agent: Any, django_assert_max_num_queries: Any
) -> None:
    # given many chat replies read or sent days ago, and many email deliveries
    w, conversation = _chat_started(chat_inbox)
    _connected(w.visitor)
    for n in range(15):
        reply = do_reply(conversation.ticket, actor=agent, text=f"old {n}")
        _backdate(_chat_delivery(reply), 3 * 24 * 3600)
    OutboundDelivery.objects.filter(inbox__kind="chat").update(status=DeliveryStatus.SENT)
    _gone(w.visitor)
    # when / then: the chat inboxes, then the candidates (none): two queries, whatever the history
    with django_assert_max_num_queries(2):
        assert do_sweep_chat_continuity() == 0


@pytest.mark.postgres
def test_two_sweepers_racing_email_once(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    # given several replies shown live and unread, visitor gone
    replies = [_shown_live(chat_inbox, agent, text=f"answer {n}")[1] for n in range(3)]
    barrier = threading.Barrier(2)
    results: list[int] = []

    def sweeper() -> None:
        try:
            barrier.wait()
            results.append(do_sweep_chat_continuity())
        finally:
            close_old_connections()

    # when two sweepers run at the same time
    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        # Eager tasks in two threads at once race on Celery's process-global "join would block"
        # flag and may leave it set: later tests calling .get() would fail.
        from celery._state import _set_task_join_will_block  # type: ignore[attr-defined]

        _set_task_join_will_block(False)
    # then each reply is emailed once
    assert sum(results) == 3
    assert [len(_emails(r)) for r in replies] == [1, 1, 1]


def test_the_sweep_is_a_beat_task(chat_inbox: Any, continuity: Any, agent: Any) -> None:
    from channels_inbox.tasks import sweep_chat_continuity

    # given
    _, reply = _shown_live(chat_inbox, agent)
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == sweep_chat_continuity.name)
    assert entry["schedule"] == settings.CHAT_CONTINUITY_SWEEP_SECONDS
    # when
    assert sweep_chat_continuity() == 1
    # then
    assert len(_emails(reply)) == 1


# --- after_ingest: a page view makes no customer; the first message's ticket gives one -------------


def test_the_first_message_gives_a_visitor_without_a_customer_the_tickets(chat_inbox: Any) -> None:
    # given a visitor without a customer (a page view no longer makes one)
    w = widget(chat_inbox)
    w.start()
    ChatVisitor.objects.filter(pk=w.visitor.pk).update(customer=None)
    # when it writes
    conversation = conversation_of(w.send("hello"))
    # then the visitor belongs to the new ticket's customer
    assert w.visitor.customer_id == conversation.ticket.customer_id
    assert w.visitor.customer_id is not None


def test_candidates_that_stay_never_starve_the_ones_behind_them(
    chat_inbox: Any, continuity: Any, agent: Any, monkeypatch: Any
) -> None:
    from channels_inbox.adapters import chat as chat_adapter

    # given pages of 2, and three older replies to a visitor without an address (they stay candidates)
    monkeypatch.setattr(chat_adapter, "CONTINUITY_BATCH", 2)
    w = widget(chat_inbox)
    w.start()
    anonymous = conversation_of(w.send("no address here"))
    _connected(w.visitor)
    stuck = [do_reply(anonymous.ticket, actor=agent, text=f"stuck {n}") for n in range(3)]
    _gone(w.visitor)
    for n, reply in enumerate(stuck):
        _backdate(_chat_delivery(reply), 3600 - n)
    # and behind them, a reply to a visitor with an address
    _, reachable = _shown_live(chat_inbox, agent)
    # when the sweep runs
    swept = do_sweep_chat_continuity()
    # then the reachable one is emailed, the stuck ones stay as they were
    assert swept == 1
    assert len(_emails(reachable)) == 1
    assert all(_emails(r) == [] for r in stuck)
