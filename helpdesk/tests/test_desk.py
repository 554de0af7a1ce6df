"""The agent desk: sign-in, lists, the ticket page, and every form on it."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from channels_inbox.models import OutboundDelivery
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.actions.ticket_fields import do_change_priority, do_change_team, do_set_tags
from helpdesk.actions.tickets import do_change_status
from helpdesk.attachments import store_attachment
from helpdesk.models import (
    DeliveryStatus,
    Direction,
    Message,
    Team,
    Ticket,
    TicketEvent,
    TicketEventType,
    TicketStatus,
    User,
)
from helpdesk.selectors import PAGE_SIZE, encode_cursor, forget_view_counts
from helpdesk.tests.conftest import ingest, logged_in, new_ticket
from helpdesk.views.desk import MAX_TEXT_CHARS
from tests.factories import CustomerFactory, InboxFactory

pytestmark = pytest.mark.django_db

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
ZIP = b"PK\x03\x04" + b"\x00" * 60

# Pinned query counts (see the two query-count tests below).
# List: session, user, agent role, agent's teams, one page of tickets (with customer,
# assignee, team and inbox joined in), the inbox kinds and the capped view counts (both
# cached for 30 s: see helpdesk/tests/test_views_lists.py), the saved views.
LIST_QUERIES = 8
# Ticket page: session, user, role, teams, the ticket (joined with customer, inbox, team,
# assignee), messages, their attachments, their deliveries, the shown events, the
# customer's identities, the CCs, the assignable agents, the ticket's tags, the teams,
# the canned responses the agent may insert, the customer's other tickets (one window query),
# the active inboxes a reply may go out through (the composer's channel choice),
# the macros the agent may apply (the macro picker, templates/desk/_macros.html).
# the ticket's calls and its channel events (calls, edits, reactions: helpdesk/views/calls.py
# channel_timeline).
DETAIL_QUERIES = 20


def numbers(resp: Any) -> list[int]:
    return [t.number for t in resp.context["page"].tickets]


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


# --- sign-in and access -------------------------------------------------------------------


def test_login_page_renders(client: Client) -> None:
    # when
    resp = client.get("/desk/login/")
    # then
    assert resp.status_code == 200, resp.content
    assert b"Sign in" in resp.content
    assert b'name="csrfmiddlewaretoken"' in resp.content


def test_login_by_email_ignores_case(client: Client, agent: Any) -> None:
    # when
    resp = client.post("/desk/login/", {"username": " Agent@Example.COM", "password": "pw-agent-123"})
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == "/desk/"
    assert client.get("/desk/").status_code == 200


def test_login_by_username(client: Client) -> None:
    # given: an account made by `createsuperuser`, whose username is not an address
    User.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    # when
    resp = client.post("/desk/login/", {"username": "boss", "password": "pw-boss-123"})
    # then
    assert resp.status_code == 302, resp.content
    assert client.get("/desk/").status_code == 200


@pytest.mark.parametrize("username", ["agent@example.com", "nobody@example.com", "nobody"])
def test_login_with_a_wrong_password_is_refused(client: Client, agent: Any, username: str) -> None:
    # when
    resp = client.post("/desk/login/", {"username": username, "password": "wrong"})
    # then
    assert resp.status_code == 200, resp.content
    assert b"did not match" in resp.content
    assert client.get("/desk/").status_code == 302


@pytest.mark.parametrize("url", ["/desk/", "/desk/?view=mine", "/desk/tickets/1001/", "/desk/attachments/1/"])
def test_anonymous_is_sent_to_the_login_page(client: Client, url: str) -> None:
    # when
    resp = client.get(url)
    # then
    assert resp.status_code == 302
    assert resp["Location"].startswith("/desk/login/?next=")


def test_account_without_agent_profile_is_refused(client: Client) -> None:
    # given: a signed-in user who is neither an agent nor a superuser
    user = User.objects.create_user("visitor", "visitor@example.com", "pw-visitor-123")
    ticket = new_ticket()
    client.force_login(user)
    # when / then
    assert client.get("/desk/").status_code == 403
    assert client.get(f"/desk/tickets/{ticket.number}/").status_code == 403
    resp = client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "hi"})
    assert resp.status_code == 403
    assert not Message.objects.exists()


def test_inactive_agent_is_refused(client: Client, agent: Any) -> None:
    # given
    client.force_login(agent)
    User.objects.filter(pk=agent.pk).update(is_active=False)
    # when
    resp = client.get("/desk/")
    # then: the session no longer authenticates
    assert resp.status_code == 302


# --- lists --------------------------------------------------------------------------------


@pytest.fixture
def view_tickets(agent: Any, admin_agent: Any, billing_team: Any, support_team: Any) -> dict[str, Ticket]:
    """One ticket per situation a view distinguishes; the agent is in Support only."""
    inbox = InboxFactory()
    make = {
        "new_unassigned": {"status": TicketStatus.NEW},
        "open_mine": {"status": TicketStatus.OPEN, "assignee": agent},
        "open_admins": {"status": TicketStatus.OPEN, "assignee": admin_agent},
        "open_support": {"status": TicketStatus.OPEN, "team": support_team},
        "pending_mine": {"status": TicketStatus.PENDING, "assignee": agent},
        "on_hold": {"status": TicketStatus.ON_HOLD},
        "solved_mine": {"status": TicketStatus.SOLVED, "assignee": agent},
        "closed": {"status": TicketStatus.CLOSED},
        "billing_open": {"status": TicketStatus.OPEN, "team": billing_team},
        "billing_mine": {"status": TicketStatus.OPEN, "team": billing_team, "assignee": agent},
    }
    return {name: new_ticket(inbox=inbox, **fields) for name, fields in make.items()}


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        ("open", {"new_unassigned", "open_mine", "open_admins", "open_support", "billing_mine"}),
        ("mine", {"open_mine", "pending_mine", "billing_mine"}),
        ("unassigned", {"new_unassigned", "open_support"}),
        ("my_teams", {"open_support"}),
        ("pending", {"pending_mine", "on_hold"}),
        ("solved", {"solved_mine", "closed"}),
        (
            "all",
            {
                "new_unassigned",
                "open_mine",
                "open_admins",
                "open_support",
                "pending_mine",
                "on_hold",
                "solved_mine",
                "closed",
                "billing_mine",
            },
        ),
        ("no-such-view", {"new_unassigned", "open_mine", "open_admins", "open_support", "billing_mine"}),
    ],
)
def test_views_filter_the_agents_tickets(
    agent: Any, view_tickets: dict[str, Ticket], view: str, expected: set[str]
) -> None:
    # given
    client = logged_in(agent)
    # when
    resp = client.get("/desk/", {"view": view})
    # then
    assert resp.status_code == 200, resp.content
    assert set(numbers(resp)) == {view_tickets[name].number for name in expected}


def test_admin_list_includes_every_team(admin_agent: Any, view_tickets: dict[str, Ticket]) -> None:
    # when
    resp = logged_in(admin_agent).get("/desk/", {"view": "all"})
    # then
    assert set(numbers(resp)) == {t.number for t in view_tickets.values()}


def test_partial_list_renders_rows_only(agent: Any, view_tickets: dict[str, Ticket]) -> None:
    # when
    resp = logged_in(agent).get("/desk/", {"view": "open", "partial": "1"})
    # then
    assert resp.status_code == 200, resp.content
    assert b"<html" not in resp.content
    assert f'href="/desk/tickets/{view_tickets["open_mine"].number}/"'.encode() in resp.content


def test_cursor_pages_return_every_ticket_once_in_order(agent: Any) -> None:
    # given: more than two pages, many of them sharing a last-activity time
    inbox = InboxFactory()
    customer = CustomerFactory()
    base = timezone.now()
    for i in range(2 * PAGE_SIZE + 17):
        new_ticket(inbox=inbox, customer=customer, last_activity_at=base - timedelta(minutes=i // 4))
    expected = list(Ticket.objects.order_by("-last_activity_at", "-id").values_list("number", flat=True))
    client = logged_in(agent)
    # when
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        resp = client.get("/desk/", {"view": "all", **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.content
        pages += 1
        seen += numbers(resp)
        cursor = resp.context["page"].next_cursor
        if cursor is None:
            assert b"Older tickets" not in resp.content
            break
        assert f"cursor={cursor}".encode() in resp.content
    # then
    assert pages == 3
    assert seen == expected


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "é",
        "not base64 at all",
        base64.urlsafe_b64encode(b"garbage").decode(),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|x").decode(),
        base64.urlsafe_b64encode(b"2026-13-45T00:00:00+00:00|1").decode(),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00|1").decode(),  # naive
        base64.urlsafe_b64encode(b"\xff\xfe|1").decode(),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|" + b"9" * 40).decode(),
        "A" * 5000,
    ],
)
def test_malformed_cursor_is_ignored(agent: Any, cursor: str) -> None:
    # given
    ticket = new_ticket()
    # when
    resp = logged_in(agent).get("/desk/", {"view": "all", "cursor": cursor})
    # then
    assert resp.status_code == 200, resp.content
    assert ticket.number in numbers(resp) or numbers(resp) == []


def test_cursor_from_a_real_page_is_accepted(agent: Any) -> None:
    # given
    older, newer = new_ticket(), new_ticket()
    Ticket.objects.filter(pk=older.pk).update(last_activity_at=timezone.now() - timedelta(hours=1))
    # when
    resp = logged_in(agent).get("/desk/", {"view": "all", "cursor": encode_cursor(newer)})
    # then
    assert numbers(resp) == [older.number]


def _varied_tickets(n: int, agents: list[Any], teams: list[Any]) -> None:
    """Tickets that differ in everything a row shows: customer, inbox, assignee, team."""
    for i in range(n):
        new_ticket(assignee=agents[i % len(agents)], team=teams[i % len(teams)], status=TicketStatus.OPEN)


def test_ticket_list_query_count_does_not_grow_with_the_page(
    agent: Any, admin_agent: Any, support_team: Any, django_assert_num_queries: Any
) -> None:
    # given
    client = logged_in(agent)
    agents = [agent, admin_agent, None]
    _varied_tickets(5, agents, [support_team, None])
    # when / then
    with django_assert_num_queries(LIST_QUERIES):
        resp = client.get("/desk/", {"view": "all"})
    assert len(numbers(resp)) == 5
    # given: eight times as many
    _varied_tickets(35, agents, [support_team, None])
    forget_view_counts(agent)
    # when / then
    with django_assert_num_queries(LIST_QUERIES):
        resp = client.get("/desk/", {"view": "all"})
    assert len(numbers(resp)) == 40


def _busy(ticket: Ticket, agent: Any, rounds: int) -> None:
    teams = [Team.objects.get(slug="support"), None]
    for i in range(rounds):
        ingest(ticket.inbox, f"message {i}", attachments=[(f"shot-{i}.png", PNG), (f"log-{i}.txt", b"line %d" % i)])
        do_reply(ticket, actor=agent, text=f"reply {i}")
        do_add_note(ticket, actor=agent, text=f"note {i}")
        do_set_tags(ticket, add=[f"tag-{i}"], actor=agent)
        do_change_team(ticket, team=teams[i % 2], actor=agent)
        do_change_priority(ticket, priority=1 + i % 4, actor=agent)


def test_ticket_page_query_count_does_not_grow_with_the_timeline(
    agent: Any, api_inbox: Any, django_assert_num_queries: Any
) -> None:
    # given
    ticket = ingest(api_inbox)
    _busy(ticket, agent, 1)
    client = logged_in(agent)
    url = f"/desk/tickets/{ticket.number}/"
    # when / then
    with django_assert_num_queries(DETAIL_QUERIES):
        resp = client.get(url)
    assert resp.status_code == 200, resp.content
    # given: many more messages, attachments, deliveries and events
    _busy(ticket, agent, 8)
    # when / then
    with django_assert_num_queries(DETAIL_QUERIES):
        resp = client.get(url)
    assert resp.status_code == 200, resp.content
    assert resp.content.count(b'class="msg ') == 1 + 9 * 3
    assert resp.content.count(b"/desk/attachments/") == 9 * 2
    assert resp.content.count(b'class="chip"') == 8  # tag-0 … tag-7


# --- the ticket page and visibility --------------------------------------------------------


def test_ticket_page_shows_the_conversation(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "Hello <script>alert(1)</script> from Praha, Москва, 北京")
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert "Москва, 北京" in body
    assert "<script>alert(1)</script>" not in body
    assert f'data-ticket="{ticket.number}"' in body
    assert f'data-seq="{ticket.last_event_seq}"' in body


def test_agent_sees_team_teamless_and_assigned_tickets_only(agent: Any, billing_team: Any, support_team: Any) -> None:
    # given
    client = logged_in(agent)
    own_team = new_ticket(team=support_team)
    teamless = new_ticket(team=None)
    other_team = new_ticket(team=billing_team)
    other_team_but_assigned = new_ticket(team=billing_team, assignee=agent)
    # when / then
    assert client.get(f"/desk/tickets/{own_team.number}/").status_code == 200
    assert client.get(f"/desk/tickets/{teamless.number}/").status_code == 200
    assert client.get(f"/desk/tickets/{other_team_but_assigned.number}/").status_code == 200
    assert client.get(f"/desk/tickets/{other_team.number}/").status_code == 404
    assert client.get(f"/desk/tickets/{other_team.number}/timeline/").status_code == 404
    resp = client.post(f"/desk/tickets/{other_team.number}/reply/", {"mode": "note", "text": "peek"})
    assert resp.status_code == 404
    assert client.post(f"/desk/tickets/{other_team.number}/status/", {"status": "solved"}).status_code == 404
    assert not Message.objects.exists()


def test_admin_sees_every_ticket(admin_agent: Any, billing_team: Any) -> None:
    # given
    ticket = new_ticket(team=billing_team)
    # when
    resp = logged_in(admin_agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content


@pytest.mark.parametrize("number", ["0", "99999999999999999999999"])
def test_unknown_ticket_number_is_404(agent: Any, number: str) -> None:
    assert logged_in(agent).get(f"/desk/tickets/{number}/").status_code == 404


def test_closed_ticket_and_its_follow_up_link_each_other(agent: Any, api_inbox: Any) -> None:
    # given
    closed = ingest(api_inbox, "first", thread_key="order-7")
    do_change_status(closed, status="closed", actor=agent)
    followup = ingest(api_inbox, "me again", thread_key="order-7")
    assert followup.followup_of_id == closed.pk
    client = logged_in(agent)
    # when
    old_page = client.get(f"/desk/tickets/{closed.number}/")
    new_page = client.get(f"/desk/tickets/{followup.number}/")
    # then
    assert f'href="/desk/tickets/{followup.number}/">#{followup.number}</a>'.encode() in old_page.content
    assert f'follow-up of <a href="/desk/tickets/{closed.number}/">'.encode() in new_page.content


def test_timeline_names_the_customer_who_reopened_a_ticket(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "first")
    do_change_status(ticket, status="pending", actor=agent)
    ingest(api_inbox, "still broken")
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    assert "Status changed by Customer user-42: pending → open" in resp.content.decode()


def test_timeline_fragment_renders_messages_only(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "fragment text")
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/timeline/")
    # then
    assert resp.status_code == 200, resp.content
    assert b"fragment text" in resp.content
    assert b"<html" not in resp.content
    # with the header line, for the page to swap in (static/desk/desk.js)
    assert b'<template id="ticket-meta-fresh"><p class="meta" id="ticket-meta">' in resp.content


# --- replies, notes, status, assignment ---------------------------------------------------


def test_reply_creates_a_queued_delivery_and_opens_the_ticket(
    agent: Any, api_inbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    ticket = ingest(api_inbox)
    assert ticket.status == TicketStatus.NEW
    client = logged_in(agent)
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        resp = client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "reply", "text": "On its way!"})
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == f"/desk/tickets/{ticket.number}/"
    message = Message.objects.get(direction=Direction.OUTBOUND)
    assert (message.text, message.author_agent, message.delivery_status) == ("On its way!", agent, "queued")
    delivery = OutboundDelivery.objects.get()
    assert (delivery.message, delivery.status, delivery.recipient) == (message, DeliveryStatus.QUEUED, "user-42")
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN
    assert ticket.first_reply_at is not None
    types = list(ticket.events.order_by("seq").values_list("type", flat=True))
    assert types[-2:] == [TicketEventType.REPLY_ADDED, TicketEventType.STATUS_CHANGED]
    # the deliver task (and the live publishes) leave only after commit
    assert callbacks


def test_reply_after_a_new_customer_message_is_held_back_with_a_warning(agent: Any, api_inbox: Any) -> None:
    # given: the agent's page showed the ticket at seq S, then the customer wrote again
    ticket = ingest(api_inbox, "First question")
    ticket.refresh_from_db()
    seen = ticket.last_event_seq
    ingest(api_inbox, "Actually, never mind: found it.")
    client = logged_in(agent)
    # when
    resp = client.post(
        f"/desk/tickets/{ticket.number}/reply/", {"mode": "reply", "text": "Here is how…", "seen_seq": seen}
    )
    # then: nothing sent, the draft kept, the news named, the page at the new seq
    assert resp.status_code == 409, resp.content
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    body = resp.content.decode()
    assert "Here is how…" in body
    assert "wrote again" in body
    assert "Actually, never mind" in body
    ticket.refresh_from_db()
    assert resp.context["ticket"].last_event_seq == ticket.last_event_seq
    # when: sent again from the refreshed page, it goes out
    again = client.post(
        f"/desk/tickets/{ticket.number}/reply/",
        {"mode": "reply", "text": "Glad you found it!", "seen_seq": ticket.last_event_seq},
    )
    assert again.status_code == 302, again.content
    assert Message.objects.filter(direction=Direction.OUTBOUND).count() == 1


def test_another_agents_reply_holds_back_a_note_draft_but_not_own_changes(
    agent: Any, admin_agent: Any, api_inbox: Any
) -> None:
    # given
    ticket = ingest(api_inbox)
    ticket.refresh_from_db()
    seen = ticket.last_event_seq
    do_add_note(ticket, actor=agent, text="my own note")
    do_change_status(ticket, status=TicketStatus.PENDING, actor=admin_agent)
    client = logged_in(agent)
    # when: only the agent's own note and a status change came since: not news
    resp = client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "x", "seen_seq": seen})
    assert resp.status_code == 302, resp.content
    ticket.refresh_from_db()
    seen = ticket.last_event_seq
    do_reply(ticket, actor=admin_agent, text="Answered already.")
    resp = client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "y", "seen_seq": seen})
    # then
    assert resp.status_code == 409, resp.content
    assert "replied" in resp.content.decode()
    assert resp.context["draft_mode"] == "note"
    assert not Message.objects.filter(text="y").exists()


@pytest.mark.parametrize("seen", ["", "abc", "-1", "9" * 30])
def test_a_malformed_seen_seq_counts_as_all_seen(agent: Any, api_inbox: Any, seen: str) -> None:
    ticket = ingest(api_inbox)
    resp = logged_in(agent).post(
        f"/desk/tickets/{ticket.number}/reply/", {"mode": "reply", "text": "ok", "seen_seq": seen}
    )
    assert resp.status_code == 302, resp.content


def test_reply_can_set_the_next_status(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    # when
    resp = logged_in(agent).post(
        f"/desk/tickets/{ticket.number}/reply/", {"mode": "reply", "text": "Done.", "status": "solved"}
    )
    # then
    assert resp.status_code == 302, resp.content
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.SOLVED
    assert ticket.solved_at is not None


def test_reply_with_an_unknown_status_sends_nothing(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    # when
    resp = logged_in(agent).post(
        f"/desk/tickets/{ticket.number}/reply/", {"mode": "reply", "text": "Done.", "status": "exploded"}, follow=True
    )
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == ["Unknown status 'exploded'."]
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()


def test_reply_without_a_recipient_explains_why(agent: Any) -> None:
    # given: a customer with no identity on the ticket's API inbox
    ticket = new_ticket()
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/reply/", {"text": "Hello?"}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"the customer has no address on {ticket.inbox.name}"]
    assert not Message.objects.exists()


def test_empty_reply_is_refused(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/reply/", {"text": "   "}, follow=True)
    # then
    assert flashed(resp) == ["a reply needs text"]
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()


def test_note_is_internal(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "VIP customer"})
    # then
    assert resp.status_code == 302, resp.content
    note = Message.objects.get(direction=Direction.NOTE)
    assert (note.text, note.author_agent, note.inbox) == ("VIP customer", agent, None)
    assert not OutboundDelivery.objects.exists()
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.NEW


def test_light_agent_may_write_notes_but_not_replies(light_agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    client = logged_in(light_agent)
    page = client.get(f"/desk/tickets/{ticket.number}/")
    assert page.status_code == 200, page.content
    assert b'value="reply"' not in page.content
    assert b"/status/" not in page.content
    # when
    note = client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "Looks like a bug"})
    refused = client.post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "reply", "text": "Hi!"})
    refused_default = client.post(f"/desk/tickets/{ticket.number}/reply/", {"text": "Hi!"})
    status = client.post(f"/desk/tickets/{ticket.number}/status/", {"status": "solved"})
    assign = client.post(f"/desk/tickets/{ticket.number}/assign/", {"assignee": str(light_agent.pk)})
    # then
    assert note.status_code == 302, note.content
    assert (refused.status_code, refused_default.status_code, status.status_code, assign.status_code) == (
        403,
        403,
        403,
        403,
    )
    assert list(Message.objects.exclude(direction=Direction.INBOUND).values_list("direction", flat=True)) == ["note"]
    assert not OutboundDelivery.objects.exists()
    ticket.refresh_from_db()
    assert (ticket.status, ticket.assignee) == (TicketStatus.NEW, None)


def test_status_form_changes_status_and_writes_an_event(agent: Any) -> None:
    # given
    ticket = new_ticket(status=TicketStatus.OPEN)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/status/", {"status": "pending"})
    # then
    assert resp.status_code == 302, resp.content
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.PENDING
    event = TicketEvent.objects.get(ticket=ticket)
    assert (event.type, event.actor, event.data) == (
        TicketEventType.STATUS_CHANGED,
        agent,
        {"old": "open", "new": "pending"},
    )


@pytest.mark.parametrize("status", ["", "bogus", "OPEN", "x" * 10_000])
def test_unknown_status_is_a_clear_error(agent: Any, status: str) -> None:
    # given
    ticket = new_ticket(status=TicketStatus.OPEN)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/status/", {"status": status}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"Unknown status {status[:40]!r}."]
    assert not TicketEvent.objects.exists()


def test_closed_ticket_cannot_be_reopened_by_hand(agent: Any) -> None:
    # given
    ticket = new_ticket(status=TicketStatus.CLOSED)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/status/", {"status": "open"}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert "a closed ticket stays closed" in flashed(resp)[0]
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.CLOSED


def test_assign_form_assigns_and_unassigns_with_events(agent: Any, admin_agent: Any) -> None:
    # given
    ticket = new_ticket()
    client = logged_in(agent)
    # when
    first = client.post(f"/desk/tickets/{ticket.number}/assign/", {"assignee": str(admin_agent.pk)})
    second = client.post(f"/desk/tickets/{ticket.number}/assign/", {"assignee": ""})
    # then
    assert (first.status_code, second.status_code) == (302, 302)
    ticket.refresh_from_db()
    assert ticket.assignee is None
    assert [(e.type, e.actor, e.data) for e in ticket.events.order_by("seq")] == [
        (TicketEventType.ASSIGNED, agent, {"old_assignee_id": None, "new_assignee_id": admin_agent.pk, "via": ""}),
        (TicketEventType.ASSIGNED, agent, {"old_assignee_id": admin_agent.pk, "new_assignee_id": None, "via": ""}),
    ]


@pytest.mark.parametrize("assignee", ["abc", "1.5", "-1", "١", "99999999999999999999999", "0x1"])
def test_malformed_assignee_is_a_clear_error(agent: Any, assignee: str) -> None:
    # given
    ticket = new_ticket()
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/assign/", {"assignee": assignee}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"No such agent: {assignee!r}."]
    assert not TicketEvent.objects.exists()


def test_assignee_must_be_an_active_agent(agent: Any) -> None:
    # given
    ticket = new_ticket()
    outsider = User.objects.create_user("outsider", "outsider@example.com", "pw-outsider-123")
    retired = do_create_agent(email="retired@example.com", teams=["Support"])
    User.objects.filter(pk=retired.pk).update(is_active=False)
    client = logged_in(agent)
    # when
    for user in (outsider, retired):
        resp = client.post(f"/desk/tickets/{ticket.number}/assign/", {"assignee": str(user.pk)}, follow=True)
        # then
        assert flashed(resp) == [f"No such agent: '{user.pk}'."]
    ticket.refresh_from_db()
    assert ticket.assignee is None


def test_reply_post_needs_the_csrf_token(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    client = logged_in(agent, enforce_csrf_checks=True)
    url = f"/desk/tickets/{ticket.number}/reply/"
    # when
    forged = client.post(url, {"mode": "reply", "text": "forged"})
    # then
    assert forged.status_code == 403
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    # when: the same post with the token the page hands out
    client.get(f"/desk/tickets/{ticket.number}/")
    token = client.cookies["csrftoken"].value
    genuine = client.post(url, {"mode": "reply", "text": "genuine", "csrfmiddlewaretoken": token})
    # then
    assert genuine.status_code == 302, genuine.content
    assert Message.objects.get(direction=Direction.OUTBOUND).text == "genuine"


def test_forms_refuse_get(agent: Any) -> None:
    # given
    ticket = new_ticket()
    client = logged_in(agent)
    # when / then
    for action in ("reply", "status", "assign"):
        assert client.get(f"/desk/tickets/{ticket.number}/{action}/").status_code == 405


# --- hostile input --------------------------------------------------------------------------


def test_huge_text_is_refused_with_a_message(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    text = "ж" * (MAX_TEXT_CHARS + 1)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": text}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"The text is too long ({MAX_TEXT_CHARS + 1} characters; at most {MAX_TEXT_CHARS})."]
    assert Message.objects.filter(ticket=ticket).count() == 1


def test_body_over_the_upload_limit_is_a_400(agent: Any, api_inbox: Any, settings: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "x" * 200_000})
    # then
    assert resp.status_code == 400
    assert Message.objects.filter(ticket=ticket).count() == 1


def test_nul_characters_are_dropped(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/reply/", {"mode": "note", "text": "a\x00b\x00"})
    # then
    assert resp.status_code == 302, resp.content
    assert Message.objects.get(direction=Direction.NOTE).text == "ab"


# --- attachments ----------------------------------------------------------------------------


@pytest.fixture
def attachments(api_inbox: Any) -> dict[str, Any]:
    ticket = ingest(
        api_inbox,
        "files",
        attachments=[
            ("page.html", b"<html><script>alert(document.cookie)</script></html>"),
            ("photo.png", PNG),
            ("archive.zip", ZIP),
        ],
    )
    message = ticket.messages.get()
    return {a.filename: a for a in message.attachments.all()}


def test_attachment_is_served_as_a_download(agent: Any, attachments: dict[str, Any]) -> None:
    # given
    html = attachments["page.html"]
    # when
    resp = logged_in(agent).get(f"/desk/attachments/{html.pk}/")
    # then
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/octet-stream"
    assert resp["Content-Disposition"].startswith("attachment;")
    assert 'filename="page.html"' in resp["Content-Disposition"]
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert resp["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert resp.getvalue() == b"<html><script>alert(document.cookie)</script></html>"


@pytest.mark.parametrize(
    ("name", "query", "disposition", "content_type"),
    [
        ("photo.png", {}, "attachment", "application/octet-stream"),
        ("photo.png", {"inline": "1"}, "inline", "image/png"),
        ("photo.png", {"inline": "yes"}, "attachment", "application/octet-stream"),
        ("archive.zip", {"inline": "1"}, "attachment", "application/octet-stream"),
        ("page.html", {}, "attachment", "application/octet-stream"),
        # HTML from a customer is sniffed as text: at most shown as plain text, never rendered.
        ("page.html", {"inline": "1"}, "inline", "text/plain"),
    ],
)
def test_attachment_inline_only_for_safe_types(
    agent: Any, attachments: dict[str, Any], name: str, query: dict[str, str], disposition: str, content_type: str
) -> None:
    # when
    resp = logged_in(agent).get(f"/desk/attachments/{attachments[name].pk}/", query)
    # then
    assert resp.status_code == 200
    assert resp["Content-Disposition"].split(";")[0] == disposition
    assert resp["Content-Type"] == content_type
    assert resp["X-Content-Type-Options"] == "nosniff"


def test_attachment_of_a_ticket_the_agent_cannot_see_is_404(
    billing_agent: Any, attachments: dict[str, Any], billing_team: Any, support_team: Any
) -> None:
    # given: the ticket belongs to Support; the billing agent is not in it
    photo = attachments["photo.png"]
    Ticket.objects.filter(pk=photo.message.ticket_id).update(team=support_team)
    # when
    resp = logged_in(billing_agent).get(f"/desk/attachments/{photo.pk}/")
    # then
    assert resp.status_code == 404


def test_attachment_with_missing_file_is_404(agent: Any, api_inbox: Any) -> None:
    # given
    message = ingest(api_inbox).messages.get()
    attachment = store_attachment(message, "gone.txt", b"soon gone")
    attachment.file.storage.delete(attachment.file.name)
    # when
    resp = logged_in(agent).get(f"/desk/attachments/{attachment.pk}/")
    # then
    assert resp.status_code == 404
    assert not Ticket.objects.exclude(pk=message.ticket_id).exists()


@pytest.mark.parametrize("pk", ["0", "99999999999999999999999"])
def test_unknown_attachment_or_delivery_is_404(agent: Any, pk: str) -> None:
    client = logged_in(agent)
    assert client.get(f"/desk/attachments/{pk}/").status_code == 404
    assert client.post(f"/desk/deliveries/{pk}/retry/").status_code == 404
