"""Merging tickets and linking follow-ups (helpdesk/actions/merge.py), their forms, and mail afterwards."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, cast

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery
from customers.models import Customer
from helpdesk import realtime
from helpdesk.actions.merge import MergeRefused, do_link_followup, do_merge_tickets
from helpdesk.actions.replies import do_reply
from helpdesk.actions.ticket_fields import do_set_tags
from helpdesk.actions.tickets import do_change_status
from helpdesk.models import Attachment, Message, Team, Ticket, TicketCC, TicketEvent, TicketEventType, TicketStatus
from helpdesk.tests.conftest import ingest, logged_in, new_ticket
from tests.factories import CustomerFactory, MessageFactory

pytestmark = pytest.mark.django_db

SUPPORT = "support@example.com"


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


def events_of(ticket: Ticket) -> list[tuple[int, str, dict[str, Any]]]:
    return [(e.seq, e.type, e.data) for e in ticket.events.order_by("seq")]


def gapless(ticket: Ticket) -> bool:
    ticket.refresh_from_db()
    seqs = list(ticket.events.order_by("seq").values_list("seq", flat=True))
    return seqs == list(range(1, len(seqs) + 1)) and ticket.last_event_seq == len(seqs)


# --- the merge itself -----------------------------------------------------------------------


def test_merge_moves_messages_attachments_ccs_and_tags_and_closes_the_source(agent: Any, api_inbox: Any) -> None:
    # given: two tickets of one customer, with a shared CC and one CC each
    source = ingest(api_inbox, "first try", attachments=[("log.txt", b"line 1")])
    do_change_status(source, status="closed", actor=agent)
    target = ingest(api_inbox, "second try")  # a follow-up ticket of the same customer
    shared, only_source, only_target = (cast(Customer, CustomerFactory()) for _ in range(3))
    TicketCC.objects.bulk_create(
        [
            TicketCC(ticket=source, customer=shared),
            TicketCC(ticket=source, customer=only_source),
            TicketCC(ticket=target, customer=shared),
            TicketCC(ticket=target, customer=only_target),
        ]
    )
    do_set_tags(target, add=["vip"], actor=agent)
    do_set_tags(source, add=["vip", "refund"], actor=agent)
    source_messages = set(source.messages.values_list("pk", flat=True))
    # when
    result = do_merge_tickets(source, into=target, actor=agent)
    # then
    assert result.pk == target.pk
    source.refresh_from_db()
    target.refresh_from_db()
    assert source.merged_into == target
    assert source.status == TicketStatus.CLOSED
    assert not source.messages.exists()
    assert source_messages <= set(target.messages.values_list("pk", flat=True))
    assert Attachment.objects.get().message.ticket == target
    assert sorted(target.ccs.values_list("customer_id", flat=True)) == sorted(
        [shared.pk, only_source.pk, only_target.pk]
    )
    assert not source.ccs.exists()
    assert sorted(target.tags.values_list("name", flat=True)) == ["refund", "vip"]
    assert target.status == TicketStatus.NEW
    assert gapless(source)
    assert gapless(target)


def test_merge_appends_typed_events_on_both_tickets(agent: Any, api_inbox: Any) -> None:
    # given
    source = ingest(api_inbox, "one", identifier="a")
    target = ingest(api_inbox, "two", identifier="b")
    do_set_tags(source, add=["refund"], actor=agent)
    source_seq, target_seq = source.events.count(), target.events.count()
    # when
    do_merge_tickets(source, into=target, actor=agent)
    # then
    assert events_of(source)[source_seq:] == [
        (source_seq + 1, TicketEventType.MERGED, {"into_ticket_id": target.pk, "into_number": target.number}),
        (source_seq + 2, TicketEventType.STATUS_CHANGED, {"old": "new", "new": "closed"}),
    ]
    assert events_of(target)[target_seq:] == [
        (
            target_seq + 1,
            TicketEventType.MERGED_FROM,
            {"source_ticket_id": source.pk, "source_number": source.number, "messages": 1},
        ),
        (target_seq + 2, TicketEventType.TAGS_CHANGED, {"added": ["refund"], "removed": []}),
    ]
    assert set(TicketEvent.objects.filter(type__startswith="merged").values_list("actor", flat=True)) == {agent.pk}
    assert gapless(source)
    assert gapless(target)


def test_the_source_customer_becomes_a_cc_of_the_target(agent: Any, api_inbox: Any) -> None:
    # given
    source = ingest(api_inbox, "one", identifier="a")
    target = ingest(api_inbox, "two", identifier="b")
    # when
    do_merge_tickets(source, into=target, actor=agent)
    # then
    assert list(target.ccs.values_list("customer_id", flat=True)) == [source.customer_id]


def test_merge_keeps_the_target_waiting_since_the_earliest_unanswered_message(agent: Any, api_inbox: Any) -> None:
    # given: the source's customer has waited longer; the target was answered
    source = ingest(api_inbox, "one", identifier="a")
    target = ingest(api_inbox, "two", identifier="b")
    do_reply(target, actor=agent, text="on it")
    source.refresh_from_db()
    # when
    do_merge_tickets(source, into=target, actor=agent)
    # then
    target.refresh_from_db()
    assert target.waiting_since == source.waiting_since
    source.refresh_from_db()
    assert source.waiting_since is None


def test_tickets_merged_into_the_source_follow_it_to_the_target(agent: Any, api_inbox: Any) -> None:
    # given
    first = ingest(api_inbox, "one", identifier="a")
    second = ingest(api_inbox, "two", identifier="b")
    third = ingest(api_inbox, "three", identifier="c")
    do_merge_tickets(first, into=second, actor=agent)
    # when
    do_merge_tickets(second, into=third, actor=agent)
    # then
    first.refresh_from_db()
    assert first.merged_into == third
    assert third.messages.count() == 3


@pytest.mark.django_db(transaction=True)
def test_merge_is_published_to_both_tickets_after_commit(agent: Any, monkeypatch: Any) -> None:
    # given
    sent: list[tuple[str, dict[str, Any]]] = []

    class Layer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            sent.append((group, message))

    monkeypatch.setattr(realtime, "get_channel_layer", lambda: Layer())
    source, target = new_ticket(team=None), new_ticket(team=None)
    # when
    with transaction.atomic():
        do_merge_tickets(source, into=target, actor=agent)
        assert sent == []
    # then
    published = [(group, m["event"], m["seq"]) for group, m in sent if group.startswith("ticket.")]
    assert published == [
        (f"ticket.{source.pk}", "merged", 1),
        (f"ticket.{source.pk}", "status_changed", 2),
        (f"ticket.{target.pk}", "merged_from", 1),
    ]


# --- what a merge refuses -------------------------------------------------------------------


def test_a_ticket_cannot_be_merged_into_itself(agent: Any) -> None:
    ticket = new_ticket()
    with pytest.raises(MergeRefused, match="into itself"):
        do_merge_tickets(ticket, into=ticket, actor=agent)


@pytest.mark.parametrize("how", ["closed", "merged"])
def test_a_closed_or_merged_ticket_takes_no_merge(agent: Any, how: str) -> None:
    # given
    source, target, elsewhere = new_ticket(), new_ticket(), new_ticket()
    if how == "closed":
        do_change_status(target, status="closed", actor=agent)
    else:
        do_merge_tickets(target, into=elsewhere, actor=agent)
    before = TicketEvent.objects.count()
    # when / then
    with pytest.raises(MergeRefused):
        do_merge_tickets(source, into=target, actor=agent)
    assert TicketEvent.objects.count() == before
    source.refresh_from_db()
    assert source.merged_into is None


def test_a_merged_ticket_cannot_be_merged_again(agent: Any) -> None:
    # given
    source, target, other = new_ticket(), new_ticket(), new_ticket()
    do_merge_tickets(source, into=target, actor=agent)
    # when / then
    with pytest.raises(MergeRefused, match="already been merged"):
        do_merge_tickets(source, into=other, actor=agent)


def test_merge_needs_edit_rights_on_both_tickets(
    agent: Any, light_agent: Any, support_team: Team, billing_team: Team
) -> None:
    # given
    own, other_own, hidden = new_ticket(team=support_team), new_ticket(team=support_team), new_ticket(team=billing_team)
    MessageFactory(ticket=own)
    # when / then
    with pytest.raises(PermissionDenied):
        do_merge_tickets(own, into=hidden, actor=agent)
    with pytest.raises(PermissionDenied):
        do_merge_tickets(hidden, into=own, actor=agent)
    with pytest.raises(PermissionDenied):
        do_merge_tickets(own, into=other_own, actor=light_agent)
    assert not TicketEvent.objects.exists()
    assert own.messages.count() == 1


# --- mail for the merged ticket -------------------------------------------------------------


@pytest.fixture
def email_inbox(db: Any, lost_tasks: Any) -> Inbox:
    inbox, _ = do_create_inbox(kind="email", name="Support", slug="support", values={"address": SUPPORT})
    return inbox


def mail(*, sender: str, subject: str, headers: dict[str, str] | None = None) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(timezone.now())
    message_id = make_msgid(domain="mail.example.com")
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content("Hello, still waiting.\n")
    return msg.as_bytes(), message_id


def receive(inbox: Inbox, raw: bytes) -> Ticket:
    receipt = do_receive_email(inbox, raw, source="test")
    do_process_inbound_event(receipt.event_id, batch_size=1)
    event = InboundEvent.objects.get(pk=receipt.event_id)
    assert event.message is not None, (event.status, event.last_error)
    return event.message.ticket


def test_mail_naming_the_merged_ticket_reaches_the_target(agent: Any, email_inbox: Inbox) -> None:
    # given: Ana's and Bob's tickets, Ana's merged into Bob's
    source = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject="Parcel lost")[0])
    target = receive(email_inbox, mail(sender="Bob <bob@example.com>", subject="Our parcel")[0])
    do_merge_tickets(source, into=target, actor=agent)
    # when: Ana writes again with the old ticket's token in the subject
    joined = receive(
        email_inbox, mail(sender="Ana <ana@example.com>", subject=f"Re: Parcel lost [#{source.number}]")[0]
    )
    # then
    assert joined == target
    assert Ticket.objects.count() == 2
    assert target.messages.count() == 3
    assert gapless(target)


def test_a_reply_to_a_moved_message_reaches_the_target(agent: Any, email_inbox: Inbox) -> None:
    # given
    first, first_id = mail(sender="Ana <ana@example.com>", subject="Parcel lost")
    source = receive(email_inbox, first)
    target = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject="Parcel, again")[0])
    do_merge_tickets(source, into=target, actor=agent)
    # when
    joined = receive(
        email_inbox,
        mail(sender="Ana <ana@example.com>", subject="Re: Parcel lost", headers={"In-Reply-To": first_id})[0],
    )
    # then
    assert joined == target


def test_mail_follows_a_chain_of_merges(agent: Any, email_inbox: Inbox) -> None:
    # given: a chain as older data may hold it (first → second → third), not repointed
    first = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject="One")[0])
    second = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject="Two")[0])
    third = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject="Three")[0])
    do_merge_tickets(second, into=third, actor=agent)
    Ticket.objects.filter(pk=first.pk).update(merged_into=second, status=TicketStatus.CLOSED)
    # when
    joined = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject=f"Re: One [#{first.number}]")[0])
    # then
    assert joined == third


def test_a_stranger_naming_a_merged_ticket_still_gets_a_ticket_of_their_own(agent: Any, email_inbox: Inbox) -> None:
    # given
    source = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject="Parcel lost")[0])
    target = receive(email_inbox, mail(sender="Ana <ana@example.com>", subject="Parcel, again")[0])
    do_merge_tickets(source, into=target, actor=agent)
    # when
    theirs = receive(email_inbox, mail(sender="eve@evil.example", subject=f"Re: [#{source.number}]")[0])
    # then
    assert theirs not in (source, target)
    assert target.messages.count() == 2


# --- follow-up links ------------------------------------------------------------------------


def test_link_followup_sets_the_link_with_an_event_on_the_previous_ticket(agent: Any) -> None:
    # given
    previous, ticket = new_ticket(status=TicketStatus.CLOSED), new_ticket()
    # when
    do_link_followup(ticket, previous=previous, actor=agent)
    do_link_followup(ticket, previous=previous, actor=agent)
    # then
    ticket.refresh_from_db()
    assert ticket.followup_of == previous
    assert events_of(previous) == [
        (1, TicketEventType.FOLLOWUP_CREATED, {"followup_ticket_id": ticket.pk, "followup_number": ticket.number})
    ]
    assert not ticket.events.exists()
    assert gapless(previous)


def test_link_followup_refuses_itself_cycles_and_merged_tickets(agent: Any) -> None:
    # given
    a, b, c, merged, target = (new_ticket() for _ in range(5))
    do_link_followup(b, previous=a, actor=agent)
    do_link_followup(c, previous=b, actor=agent)
    do_merge_tickets(merged, into=target, actor=agent)
    before = TicketEvent.objects.count()
    # when / then
    with pytest.raises(MergeRefused, match="itself"):
        do_link_followup(a, previous=a, actor=agent)
    with pytest.raises(MergeRefused, match="is itself a follow-up"):
        do_link_followup(a, previous=c, actor=agent)
    with pytest.raises(MergeRefused, match="merged"):
        do_link_followup(a, previous=merged, actor=agent)
    assert TicketEvent.objects.count() == before


def test_link_followup_needs_edit_rights_on_both(agent: Any, light_agent: Any, billing_team: Team) -> None:
    ticket, hidden = new_ticket(team=None), new_ticket(team=billing_team)
    with pytest.raises(PermissionDenied):
        do_link_followup(ticket, previous=hidden, actor=agent)
    with pytest.raises(PermissionDenied):
        do_link_followup(ticket, previous=new_ticket(team=None), actor=light_agent)


# --- the merge form: confirmation, then the merge -------------------------------------------


def test_merge_form_asks_for_confirmation_showing_both_subjects(agent: Any) -> None:
    # given
    source = new_ticket(subject="Parcel <b>lost</b>", team=None)
    target = new_ticket(subject="Where is my parcel?", team=None)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{source.number}/merge/", {"into": f"#{target.number}"})
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert "Parcel &lt;b&gt;lost&lt;/b&gt;" in body
    assert "Where is my parcel?" in body
    assert f'name="into" value="{target.number}"' in body
    assert 'name="confirm" value="1"' in body
    source.refresh_from_db()
    assert source.merged_into is None
    assert not TicketEvent.objects.exists()


def test_confirmed_merge_merges_and_lands_on_the_target(agent: Any, api_inbox: Any) -> None:
    # given
    source = ingest(api_inbox, "first", identifier="a")
    target = ingest(api_inbox, "second", identifier="b")
    client = logged_in(agent)
    # when
    resp = client.post(f"/desk/tickets/{source.number}/merge/", {"into": str(target.number), "confirm": "1"})
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == f"/desk/tickets/{target.number}/"
    source.refresh_from_db()
    assert source.merged_into_id == target.pk
    page = client.get(resp["Location"])
    body = " ".join(page.content.decode().split())
    link = f'<a href="/desk/tickets/{source.number}/">#{source.number}</a>'
    assert f"Another ticket merged in by Ada Agent: {link}, 1 message" in body
    old = " ".join(client.get(f"/desk/tickets/{source.number}/").content.decode().split())
    assert f'Merged into another ticket by Ada Agent: <a href="/desk/tickets/{target.number}/">' in old
    assert f'Merged into <a href="/desk/tickets/{target.number}/">#{target.number}</a>' in old
    assert f"/desk/tickets/{source.number}/merge/" not in old


@pytest.mark.parametrize("into", ["", "abc", "-5", "1.5", "١٢", "0x10", "99999999999999999999999", "x" * 10_000])
def test_merge_into_a_malformed_number_is_a_clear_error(agent: Any, into: str) -> None:
    # given
    source = new_ticket(team=None)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{source.number}/merge/", {"into": into, "confirm": "1"}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"Not a ticket number: {into[:40]!r}."]
    assert not TicketEvent.objects.exists()


@pytest.mark.parametrize("confirm", ["", "1"])
def test_merge_into_an_invisible_or_unknown_ticket_is_404(agent: Any, billing_team: Team, confirm: str) -> None:
    # given
    source = new_ticket(team=None)
    hidden = new_ticket(team=billing_team)
    client = logged_in(agent)
    # when
    invisible = client.post(f"/desk/tickets/{source.number}/merge/", {"into": str(hidden.number), "confirm": confirm})
    unknown = client.post(f"/desk/tickets/{source.number}/merge/", {"into": "999999999", "confirm": confirm})
    # then
    assert (invisible.status_code, unknown.status_code) == (404, 404)
    assert hidden.subject.encode() not in invisible.content
    assert not TicketEvent.objects.exists()


def test_merge_into_itself_or_a_closed_ticket_is_a_clear_error(agent: Any) -> None:
    # given
    source = new_ticket(team=None)
    closed = new_ticket(team=None, status=TicketStatus.CLOSED)
    client = logged_in(agent)
    # when
    itself = client.post(f"/desk/tickets/{source.number}/merge/", {"into": str(source.number)}, follow=True)
    into_closed = client.post(
        f"/desk/tickets/{source.number}/merge/", {"into": str(closed.number), "confirm": "1"}, follow=True
    )
    # then
    assert flashed(itself) == ["A ticket cannot be merged into itself."]
    assert flashed(into_closed) == [f"#{closed.number} is closed; a closed ticket takes no more messages."]
    assert not TicketEvent.objects.exists()


def test_light_agent_may_not_merge_even_into_a_ticket_they_see(light_agent: Any, support_team: Team) -> None:
    # given
    source, target = new_ticket(team=support_team), new_ticket(team=support_team)
    # when
    resp = logged_in(light_agent).post(f"/desk/tickets/{source.number}/merge/", {"into": str(target.number)})
    # then
    assert resp.status_code == 403
    assert not TicketEvent.objects.exists()


def test_merge_needs_the_csrf_token(agent: Any) -> None:
    # given
    source, target = new_ticket(team=None), new_ticket(team=None)
    client = logged_in(agent, enforce_csrf_checks=True)
    url = f"/desk/tickets/{source.number}/merge/"
    # when
    forged = client.post(url, {"into": str(target.number), "confirm": "1"})
    # then
    assert forged.status_code == 403
    # when: the token the confirmation page hands out
    client.get(f"/desk/tickets/{source.number}/")
    token = client.cookies["csrftoken"].value
    genuine = client.post(url, {"into": str(target.number), "confirm": "1", "csrfmiddlewaretoken": token})
    # then
    assert genuine.status_code == 302, genuine.content
    source.refresh_from_db()
    assert source.merged_into_id == target.pk


# --- the follow-up form ---------------------------------------------------------------------


def test_followup_form_links_the_tickets(agent: Any) -> None:
    # given
    previous, ticket = new_ticket(team=None, status=TicketStatus.CLOSED), new_ticket(team=None)
    client = logged_in(agent)
    # when
    resp = client.post(f"/desk/tickets/{ticket.number}/followup/", {"previous": str(previous.number)})
    # then
    assert resp.status_code == 302, resp.content
    ticket.refresh_from_db()
    assert ticket.followup_of == previous
    page = client.get(f"/desk/tickets/{previous.number}/")
    assert f'<a href="/desk/tickets/{ticket.number}/">#{ticket.number}</a>'.encode() in page.content


@pytest.mark.parametrize("previous", ["", "abc", "-1", "99999999999999999999999", "\x00", "x" * 10_000])
def test_followup_of_a_malformed_number_is_a_clear_error(agent: Any, previous: str) -> None:
    # given
    ticket = new_ticket(team=None)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/followup/", {"previous": previous}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"Not a ticket number: {previous[:40]!r}."]
    ticket.refresh_from_db()
    assert ticket.followup_of is None


def test_followup_of_an_invisible_ticket_is_404_and_of_itself_an_error(agent: Any, billing_team: Team) -> None:
    # given
    ticket, hidden = new_ticket(team=None), new_ticket(team=billing_team)
    client = logged_in(agent)
    # when
    invisible = client.post(f"/desk/tickets/{ticket.number}/followup/", {"previous": str(hidden.number)})
    itself = client.post(f"/desk/tickets/{ticket.number}/followup/", {"previous": str(ticket.number)}, follow=True)
    # then
    assert invisible.status_code == 404
    assert flashed(itself) == ["A ticket cannot be a follow-up of itself."]
    assert not TicketEvent.objects.exists()


def test_merged_messages_keep_their_deliveries(agent: Any, api_inbox: Any) -> None:
    # given
    source = ingest(api_inbox, "one", identifier="a")
    target = ingest(api_inbox, "two", identifier="b")
    reply = do_reply(source, actor=agent, text="we are on it")
    # when
    do_merge_tickets(source, into=target, actor=agent)
    # then
    delivery = OutboundDelivery.objects.get(message=reply)
    assert delivery.message.ticket == target
    assert Message.objects.filter(ticket=target).count() == 3
