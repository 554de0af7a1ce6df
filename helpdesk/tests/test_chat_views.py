"""Live chat on desk pages: the ticket page's chat panel, its forms, the availability control, list rows."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from django.utils import timezone

from channels_inbox.models import ChatConversation, ChatStatus, Inbox
from helpdesk.actions.chats import cached_availability, do_route_chat
from helpdesk.models import AgentProfile, Message, Team, TicketStatus
from helpdesk.models.message import Direction
from helpdesk.tests.conftest import logged_in
from helpdesk.tests.test_chats import chat_agent, chat_inbox, chat_ticket, refreshed
from helpdesk.tests.test_desk import DETAIL_QUERIES
from tests.factories import MessageFactory

# The ticket page of a chat ticket: the page's queries (DETAIL_QUERIES in test_desk.py, 18), the
# composer's check of which chat visitors a reply can reach (channels_inbox/adapters/chat.py), the
# conversation with its visitor and the teams of the transfer picker; while waiting also the
# queue (position, median wait, available agents: helpdesk/chat_queue.py).
CHAT_DETAIL_QUERIES_ACTIVE = DETAIL_QUERIES + 3
CHAT_DETAIL_QUERIES_WAITING = CHAT_DETAIL_QUERIES_ACTIVE + 3


@pytest.fixture
def support(db: Any) -> Team:
    team, _ = Team.objects.get_or_create(slug="support", defaults={"name": "Support"})
    return team


@pytest.fixture
def inbox(support: Team) -> Inbox:
    return chat_inbox(support, name="Website chat")


@pytest.fixture
def ada(support: Team) -> Any:
    return chat_agent("ada@example.com", teams=["Support"])


@pytest.fixture
def fake_back(monkeypatch: Any) -> dict[str, list[Any]]:
    """channels_inbox.actions.chat (helper "back") faked at its import: calls are recorded."""
    calls: dict[str, list[Any]] = {"transcript": [], "seen": []}
    module = types.ModuleType("channels_inbox.actions.chat")

    def do_request_chat_transcript(conversation: Any, *, email: str | None, actor: Any) -> str:
        calls["transcript"].append((conversation.pk, email, actor.pk))
        return email or conversation.visitor.email

    def do_mark_chat_seen(conversation: Any, *, actor: Any, message_id: int) -> None:
        calls["seen"].append((conversation.pk, actor.pk, message_id))

    module.do_request_chat_transcript = do_request_chat_transcript  # type: ignore[attr-defined]
    module.do_mark_chat_seen = do_mark_chat_seen  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "channels_inbox.actions.chat", module)
    return calls


# --- the panel -----------------------------------------------------------------------------------


def test_the_chat_panel_shows_the_visitor_safely(inbox: Inbox, ada: Any) -> None:
    # given
    chat = chat_ticket(
        inbox,
        current_url="https://shop.example/cart?x=<b>",
        page_title="Cart <script>alert(1)</script>",
        locale="cs",
        user_agent="Mozilla/5.0 Test",
        email="jana@example.com",
        verified_user_id="u-42",
        verified_at=timezone.now(),
    )
    ChatConversation.objects.filter(pk=chat.pk).update(prechat={"name": "Jana", "order": "#881 <i>"})
    do_route_chat(chat)
    # when
    resp = logged_in(ada).get(f"/desk/tickets/{chat.ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    html = resp.content.decode()
    assert f'<section id="chat-panel" class="chat-panel" data-ticket-number="{chat.ticket.number}"' in html
    assert 'data-chat-status="active"' in html
    assert "with Ada" in html
    assert (
        '<a data-chat-current-url href="https://shop.example/cart?x=&lt;b&gt;" target="_blank" '
        'rel="noopener noreferrer">https://shop.example/cart?x=&lt;b&gt;</a>'
    ) in html
    assert "Cart &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert "data-chat-typing hidden" in html
    assert "data-chat-page-title" in html
    assert 'href="https://shop.example/pricing"' in html  # started on
    assert 'data-chat-verified="true"' in html
    assert "#881 &lt;i&gt;" in html
    assert "Mozilla/5.0 Test" in html
    assert ">cs<" in html
    assert 'id="chat-end"' in html
    assert 'id="chat-transfer"' in html
    assert 'id="chat-transcript"' in html
    newest = Message.objects.filter(ticket=chat.ticket, direction=Direction.INBOUND).latest("id").pk
    assert f'name="message_id" value="{newest}"' in html
    assert "desk/chat.js" in html


def test_a_javascript_url_is_shown_but_not_linked(inbox: Inbox, ada: Any) -> None:
    # given
    chat = chat_ticket(inbox, current_url="javascript:alert(1)")
    # when
    html = logged_in(ada).get(f"/desk/tickets/{chat.ticket.number}/").content.decode()
    # then
    assert '<a data-chat-current-url target="_blank" rel="noopener noreferrer">javascript:alert(1)</a>' in html
    assert 'href="javascript:' not in html
    assert 'data-chat-status="waiting"' in html
    assert "1st in the queue" in html


def test_an_ended_chat_shows_its_rating(inbox: Inbox, ada: Any) -> None:
    # given
    chat = chat_ticket(inbox)
    ChatConversation.objects.filter(pk=chat.pk).update(
        status="ended", ended_at=timezone.now(), rating=4, rating_comment="Quick & kind"
    )
    # when
    html = logged_in(ada).get(f"/desk/tickets/{chat.ticket.number}/").content.decode()
    # then
    assert 'data-chat-rating="4"' in html
    assert "★★★★☆" in html
    assert "Quick &amp; kind" in html
    assert 'id="chat-end"' not in html
    assert 'id="chat-transfer"' not in html


def test_a_light_agent_sees_the_panel_without_its_forms(inbox: Inbox, light_agent: Any) -> None:
    # given
    chat = chat_ticket(inbox)
    # when
    html = logged_in(light_agent).get(f"/desk/tickets/{chat.ticket.number}/").content.decode()
    # then
    assert 'id="chat-panel"' in html
    assert 'id="chat-end"' not in html
    assert 'id="chat-seen"' not in html


@pytest.mark.parametrize("waiting", [False, True], ids=["active", "waiting"])
def test_chat_ticket_page_query_count_is_fixed(
    inbox: Inbox, ada: Any, waiting: bool, django_assert_num_queries: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    chat = chat_ticket(inbox)
    if not waiting:
        do_route_chat(chat)
    client = logged_in(ada)
    url = f"/desk/tickets/{chat.ticket.number}/"
    expected = CHAT_DETAIL_QUERIES_WAITING if waiting else CHAT_DETAIL_QUERIES_ACTIVE
    with django_capture_on_commit_callbacks(execute=True):
        client.get(url)  # reads the assignment's notification (a write of the first visit only)
    # when / then
    with django_assert_num_queries(expected):
        assert client.get(url).status_code == 200
    # given: more messages, more waiting chats, more history
    for i in range(5):
        MessageFactory(ticket=chat.ticket, channel="chat", direction=Direction.INBOUND, text=f"more {i}")
        chat_ticket(inbox)
    # when / then
    with django_assert_num_queries(expected):
        assert client.get(url).status_code == 200


# --- end, transfer, transcript, seen -------------------------------------------------------------


def test_end_chat(inbox: Inbox, ada: Any) -> None:
    # given
    chat = chat_ticket(inbox)
    do_route_chat(chat)
    # when
    resp = logged_in(ada).post(f"/desk/tickets/{chat.ticket.number}/chat/end/", HTTP_HX_REQUEST="true")
    # then
    assert resp.status_code == 200, resp.content
    assert b"Chat ended." in resp.content
    assert b'data-chat-status="ended"' in resp.content
    assert "desk:seq" in resp["HX-Trigger"]
    chat = refreshed(chat)
    assert chat.status == ChatStatus.ENDED
    assert chat.ticket.status == TicketStatus.SOLVED


def test_chat_forms_refuse_light_agents_and_outsiders(inbox: Inbox, light_agent: Any, fake_back: Any) -> None:
    # given: a chat of Support; a light agent of Support, an agent of Billing
    chat = chat_ticket(inbox)
    light, outsider = logged_in(light_agent), logged_in(chat_agent("bill@example.com", teams=["Billing"]))
    # when / then
    for action in ("end", "transfer", "transcript", "seen"):
        url = f"/desk/tickets/{chat.ticket.number}/chat/{action}/"
        assert light.post(url, {"email": "x@example.com"}).status_code == 403, action
        assert outsider.post(url, {"email": "x@example.com"}).status_code == 404, action
    assert light.get(f"/desk/tickets/{chat.ticket.number}/chat/end/").status_code == 405
    assert refreshed(chat).status == ChatStatus.WAITING
    assert fake_back == {"transcript": [], "seen": []}


def test_chat_forms_need_a_chat_and_csrf(inbox: Inbox, ada: Any, api_inbox: Any) -> None:
    # given
    from helpdesk.tests.conftest import ingest

    plain = ingest(api_inbox)
    chat = chat_ticket(inbox)
    # when / then
    assert logged_in(ada).post(f"/desk/tickets/{plain.number}/chat/end/").status_code == 404
    strict = logged_in(ada, enforce_csrf_checks=True)
    assert strict.post(f"/desk/tickets/{chat.ticket.number}/chat/end/").status_code == 403
    assert refreshed(chat).status == ChatStatus.WAITING


def test_transfer_to_an_agent_and_to_a_team(inbox: Inbox, ada: Any) -> None:
    # given
    bea = chat_agent("bea@example.com", capacity=1)
    chat = chat_ticket(inbox)
    do_route_chat(chat)
    client = logged_in(ada)
    url = f"/desk/tickets/{chat.ticket.number}/chat/transfer/"
    # when
    resp = client.post(url, {"agent": str(bea.pk)})
    # then
    assert resp.status_code == 302
    assert refreshed(chat).ticket.assignee_id == bea.pk
    # when: to a team of nobody available
    billing = Team.objects.create(name="Billing", slug="billing")
    resp = logged_in(bea).post(url, {"team": str(billing.pk)}, HTTP_HX_REQUEST="true")
    # then: Bea (Support) no longer sees the ticket
    assert resp.status_code == 204
    assert resp["HX-Redirect"] == "/desk/"
    chat = refreshed(chat)
    assert chat.status == ChatStatus.WAITING
    assert chat.ticket.team_id == billing.pk
    # when: nonsense
    assert client.post(url, {"agent": "999999"}).status_code == 404  # Ada of Support lost sight too


def test_transcript_and_seen_call_the_widget_backend(inbox: Inbox, ada: Any, fake_back: Any) -> None:
    # given
    chat = chat_ticket(inbox, email="jana@example.com")
    do_route_chat(chat)
    newest = Message.objects.filter(ticket=chat.ticket).latest("id").pk
    client = logged_in(ada)
    base = f"/desk/tickets/{chat.ticket.number}/chat/"
    # when
    client.post(base + "transcript/", {"email": ""})
    client.post(base + "transcript/", {"email": "boss@example.com"})
    bad = client.post(base + "transcript/", {"email": "not-an-address"}, HTTP_HX_REQUEST="true")
    seen = client.post(base + "seen/", {"message_id": str(newest + 1000)})
    # then
    assert fake_back["transcript"] == [(chat.pk, None, ada.pk), (chat.pk, "boss@example.com", ada.pk)]
    assert b"Give the email address" in bad.content
    assert seen.status_code == 204
    assert fake_back["seen"] == [(chat.pk, ada.pk, newest)]  # never past the newest visitor message


# --- availability --------------------------------------------------------------------------------


def test_availability_form(ada: Any, django_capture_on_commit_callbacks: Any) -> None:
    # given
    AgentProfile.objects.filter(user=ada).update(chat_available=False)
    client = logged_in(ada)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post("/desk/chat/availability/", {"available": "on", "capacity": "5", "next": "/desk/me/"})
    # then
    assert resp.status_code == 302
    assert resp["Location"] == "/desk/me/"
    profile = AgentProfile.objects.get(user=ada)
    assert (profile.chat_available, profile.chat_capacity) == (True, 5)
    cached = cached_availability(ada.pk)
    assert cached is not None
    assert (cached.available, cached.capacity) == (True, 5)
    # when: htmx, switched off, capacity left out
    resp = client.post("/desk/chat/availability/", {}, HTTP_HX_REQUEST="true")
    # then: the control itself answers
    assert resp.status_code == 200
    assert b'id="chat-availability"' in resp.content
    assert b'data-available="false"' in resp.content
    assert AgentProfile.objects.get(user=ada).chat_capacity == 5
    # when: out of range
    resp = client.post("/desk/chat/availability/", {"available": "on", "capacity": "25"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 400
    assert b"1 to 20" in resp.content
    assert client.post("/desk/chat/availability/", {"capacity": "x"}).status_code == 302


def test_availability_of_a_light_agent_is_refused(light_agent: Any) -> None:
    client = logged_in(light_agent)
    assert client.post("/desk/chat/availability/", {"available": "on"}).status_code == 403
    assert b"chat-availability" not in client.get("/desk/chat/availability/").content


def test_the_top_bar_control_loads_itself_when_the_cache_does_not_know_it(ada: Any) -> None:
    # given
    client = logged_in(ada)
    # when: nothing cached: a placeholder that loads the control
    html = client.get("/desk/").content.decode()
    # then
    assert 'hx-get="/desk/chat/availability/" hx-trigger="load"' in html
    # when: loaded once
    fragment = client.get("/desk/chat/availability/").content.decode()
    html = client.get("/desk/").content.decode()
    # then: from the cache
    assert 'id="chat-available" checked' in fragment
    assert 'id="chat-available" checked' in html
    assert 'hx-trigger="load"' not in html


def test_preferences_page_has_the_chat_settings(ada: Any) -> None:
    html = logged_in(ada).get("/desk/me/").content.decode()
    assert 'id="chat-preferences-form"' in html
    assert 'id="pref-chat-available" checked' in html
    assert 'id="pref-chat-capacity" min="1" max="20" step="1" value="3"' in html


# --- the list ------------------------------------------------------------------------------------


def test_list_rows_mark_chats_and_waiting_ones(inbox: Inbox, ada: Any) -> None:
    # given
    waiting = chat_ticket(inbox)
    active = chat_ticket(inbox)
    do_route_chat(active)
    # when
    html = logged_in(ada).get("/desk/", {"view": "all"}).content.decode()
    # then
    rows = {
        number: html.split(f'data-number="{number}"', 1)[1].split("</tr>", 1)[0]
        for number in (waiting.ticket.number, active.ticket.number)
    }
    assert "data-chat-row" in rows[waiting.ticket.number]
    assert "data-chat-waiting" in rows[waiting.ticket.number]
    assert "data-chat-row" in rows[active.ticket.number]
    assert "data-chat-waiting" not in rows[active.ticket.number]


def test_transcript_and_seen_with_the_real_widget_backend(
    inbox: Inbox, ada: Any, mailoutbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    pytest.importorskip("channels_inbox.actions.chat")
    chat = chat_ticket(inbox, email="jana@example.com", text="Where is my parcel?")
    do_route_chat(chat)
    newest = Message.objects.filter(ticket=chat.ticket).latest("id").pk
    client = logged_in(ada)
    base = f"/desk/tickets/{chat.ticket.number}/chat/"
    # when
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(base + "transcript/", {"email": ""}, HTTP_HX_REQUEST="true")
        seen = client.post(base + "seen/")
    # then
    assert b"on its way to jana@example.com" in resp.content
    assert [m.to for m in mailoutbox] == [["jana@example.com"]]
    assert "Where is my parcel?" in mailoutbox[0].body
    assert seen.status_code == 204
    chat = refreshed(chat)
    assert chat.agent_read_message_id == newest
    assert chat.ticket.events.filter(type="chat_seen").count() == 1
