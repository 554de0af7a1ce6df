"""The security review's findings on the chat backend (notes/review5.md): hosted-page tokens
limited to one conversation, identify's unsigned email, transcripts, lazy customers, per-address
limits, uploads, site origins, and the small ones (hash text, page URLs, agent names, receipts)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from channels_inbox.actions import chat as actions
from channels_inbox.chat.tokens import conversation_link_token, scoped_visitor_token
from channels_inbox.models import ChatConversation, ChatUpload, ChatVisitor
from channels_inbox.tests.test_chat_support import (
    OTHER_SITE,
    SHOP,
    _steady_rate_windows,
    chat_inbox,
    conversation_of,
    signed,
    widget,
)
from customers.models import Customer, Identity, IdentityKind
from helpdesk.actions.replies import do_add_note, do_reply

__all__ = ["_steady_rate_windows", "chat_inbox"]

pytestmark = pytest.mark.django_db


def _hosted(w: Any, conv: ChatConversation) -> str:
    """The token the hosted page of `conv` hands out (the continuity email's link)."""
    page = Client().get(
        reverse("widget:conversation_page", args=[w.inbox.public_token, conversation_link_token(conv.public_id)])
    )
    assert page.status_code == 200, page.content
    return str(page.context["config"]["token"])


# --- #4: the hosted page's token opens that one conversation only ---------------------------------


def test_a_hosted_page_token_reads_its_conversation_and_no_other(chat_inbox: Any) -> None:
    # given a visitor with two conversations (the first ended)
    w = widget(chat_inbox)
    w.start()
    first = conversation_of(w.send("first chat"))
    actions.do_end_chat_by_visitor(first)
    second = conversation_of(w.send("second chat"))
    assert first.pk != second.pk
    # when someone holds the hosted page's token of the second (a forwarded email)
    token = _hosted(w, second)
    assert token != w.token
    # then it reads the second conversation, over the API without an Origin header too
    assert w.get("events", second.public_id.hex, token=token).status_code == 200
    assert w.get("events", second.public_id.hex, token=token, origin="").status_code == 200
    # but never the first, nor lists it
    assert w.get("events", first.public_id.hex, token=token, origin="").status_code == 404
    assert w.post("rating", first.public_id.hex, data={"rating": 1}, token=token).status_code == 404
    body = w.post("session", data={"token": token, "site": SHOP}, token="").json()
    assert body["token"] == token
    assert [c["id"] for c in body["conversations"]] == [second.public_id.hex]
    # and it cannot identify, reset, or open a new conversation
    assert w.post("identify", data=signed(chat_inbox, "u1"), token=token).status_code == 403
    assert w.post("reset", token=token).status_code == 403
    sent = w.post("messages", data={"conversation": None, "client_msg_id": str(uuid.uuid4()), "text": "x"}, token=token)
    assert sent.status_code == 201, sent.content
    assert sent.json()["conversation"]["id"] == second.public_id.hex
    actions.do_end_chat_by_visitor(second)
    ended = w.post(
        "messages", data={"conversation": None, "client_msg_id": str(uuid.uuid4()), "text": "y"}, token=token
    )
    assert ended.status_code == 409, ended.content


def test_a_hosted_page_token_expires_with_the_link(chat_inbox: Any) -> None:
    # given the scoped token of a conversation, past its expiry
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hi"))
    expired = scoped_visitor_token(
        chat_inbox.public_token, w.visitor.public_id, conv.public_id, expires_at=int(time.time()) - 1
    )
    # when it is used
    response = w.get("events", conv.public_id.hex, token=expired)
    # then it is refused, and authenticate_visitor (the websocket's door) refuses it too
    assert response.status_code == 401
    from channels_inbox.chat.tokens import BadToken

    with pytest.raises(BadToken):
        actions.authenticate_visitor(chat_inbox, expired)
    auth = actions.authenticate_visitor(
        chat_inbox, scoped_visitor_token(chat_inbox.public_token, w.visitor.public_id, conv.public_id, expires_at=2**40)
    )
    assert (auth.visitor.pk, auth.only_conversation_id) == (w.visitor.pk, conv.pk)
    assert actions.authenticate_visitor(chat_inbox, w.token).only_conversation_id is None


def test_a_hosted_page_token_of_a_verified_visitor_has_no_customer_scope(chat_inbox: Any) -> None:
    # given a verified customer with chats on two browsers
    a, b = widget(chat_inbox), widget(chat_inbox)
    for w in (a, b):
        w.start()
        assert w.post("identify", data=signed(chat_inbox, "user-1")).status_code == 200
    conv_a = conversation_of(a.send("from browser A"))
    conv_b = conversation_of(b.send("from browser B"))
    # when the hosted page of B's conversation is opened
    token = _hosted(b, conv_b)
    # then A's conversation stays closed to it
    assert b.get("events", conv_a.public_id.hex, token=token).status_code == 404
    assert b.get("events", conv_a.public_id.hex).status_code == 200


# --- #3: the identify email is contact data -----------------------------------------------------


def test_a_verified_identify_never_claims_the_email_it_names(chat_inbox: Any) -> None:
    # given a real user of the site (valid hash) who names a victim's address
    w = widget(chat_inbox)
    w.start()
    response = w.post("identify", data={**signed(chat_inbox, "mallory"), "email": "ceo@victim.example"})
    assert response.status_code == 200, response.content
    w.send("hi")
    # then the address is the visitor's contact data, not an identity of anybody
    assert w.visitor.email == "ceo@victim.example"
    assert not Identity.objects.filter(kind=IdentityKind.EMAIL).exists()
    # and the victim's own mail still makes a customer of their own
    from django.utils import timezone

    from channels_inbox.adapters.base import IdentityRef, InboundSender
    from customers.actions.resolve import do_resolve_customer

    victim = do_resolve_customer(
        InboundSender(identities=[IdentityRef(IdentityKind.EMAIL, "ceo@victim.example")]), seen_at=timezone.now()
    )
    assert victim.pk != w.visitor.customer_id


def test_identify_as_another_user_is_one_transaction(chat_inbox: Any, monkeypatch: Any) -> None:
    # given a browser verified as user A
    w = widget(chat_inbox)
    w.start()
    assert w.post("identify", data=signed(chat_inbox, "user-a")).status_code == 200

    # when identify as B fails half-way
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(actions, "do_resolve_customer", boom)
    with pytest.raises(RuntimeError):
        actions.do_identify_chat_visitor(w.visitor, **signed(chat_inbox, "user-b"))
    # then no orphan visitor is left behind
    assert ChatVisitor.objects.count() == 1


# --- #6: transcripts go to the visitor's own address -------------------------------------------


def test_a_transcript_goes_only_to_the_visitors_known_address(chat_inbox: Any) -> None:
    # given a visitor without an address
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("Click http://phish.example to claim your refund")["conversation"]["id"]
    # when it asks for a transcript to an address: that becomes its contact email
    first = w.post("transcript", conv_id, data={"email": "me@example.com"})
    assert first.status_code == 202, first.content
    assert w.visitor.email == "me@example.com"
    # then another address is refused; without one it goes to the known one
    other = w.post("transcript", conv_id, data={"email": "victim@example.com"})
    assert other.status_code == 400, other.content
    again = w.post("transcript", conv_id)
    assert (again.status_code, again.json()["email"]) == (202, "me@example.com")


def test_transcripts_are_limited_per_address(chat_inbox: Any, settings: Any) -> None:
    # given the per-address limit of 2 an hour and fresh visitors from one address
    settings.CHAT_IP_TRANSCRIPTS_PER_HOUR = 2
    answers = []
    for n in range(3):
        w = widget(chat_inbox)
        w.start()
        conv_id = w.send("hi")["conversation"]["id"]
        answers.append(w.post("transcript", conv_id, data={"email": f"v{n}@example.com"}).status_code)
    # then the third is refused
    assert answers == [202, 202, 429]


# --- #7: per-address limits on conversations and messages --------------------------------------


def test_new_conversations_are_limited_per_address(chat_inbox: Any, settings: Any) -> None:
    # given a limit of 2 new conversations an hour per address
    settings.CHAT_IP_CONVERSATIONS_PER_HOUR = 2
    codes = []
    for _ in range(3):
        w = widget(chat_inbox)
        w.start()
        codes.append(w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "hi"}).status_code)
    # then the third visitor's first message is refused, and no ticket is opened for it
    assert codes == [201, 201, 429]
    assert ChatConversation.objects.count() == 2
    # and the refused visitor stays refused within the hour
    assert w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "hi"}).status_code == 429


def test_messages_are_limited_per_address(chat_inbox: Any, settings: Any) -> None:
    settings.CHAT_IP_MESSAGES_PER_MINUTE = 3
    codes = []
    for _ in range(2):
        w = widget(chat_inbox)
        w.start()
        for _ in range(2):
            codes.append(w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "hi"}).status_code)
    assert codes == [201, 201, 201, 429]


def test_a_visitor_keeps_the_customer_after_ingest_linked_it(chat_inbox: Any) -> None:
    # given a visitor whose customer was set already (the adapter's after_ingest came first)
    w = widget(chat_inbox)
    w.start()
    customer = Customer.objects.create(name="Set by after_ingest")
    ChatVisitor.objects.filter(pk=w.visitor.pk).update(customer=customer)
    # when the action links it again
    actions.link_visitor_customer(ChatVisitor.objects.get(pk=w.visitor.pk))
    # then it is unchanged
    assert w.visitor.customer_id == customer.pk


# --- #9: uploads --------------------------------------------------------------------------------


def test_uploads_are_limited_in_bytes_per_address(chat_inbox: Any, settings: Any) -> None:
    # given a budget of 2500 bytes an hour per address
    settings.CHAT_IP_UPLOAD_BYTES_PER_HOUR = 2500
    codes = []
    for _ in range(3):
        w = widget(chat_inbox)
        w.start()
        upload = SimpleUploadedFile("a.txt", b"x" * 1000, content_type="text/plain")
        codes.append(w.client.post(w.url("uploads"), {"file": upload}, **w.headers()).status_code)
    # then the third file is refused and not stored
    assert codes == [201, 201, 429]
    assert ChatUpload.objects.count() == 2


def test_an_upload_over_the_limit_is_cut_while_it_is_read(chat_inbox: Any, settings: Any, monkeypatch: Any) -> None:
    # given a limit of 1000 bytes and a file slightly over it (within the multipart slack)
    settings.CHAT_UPLOAD_MAX_BYTES = 1000
    w = widget(chat_inbox)
    w.start()
    stored: list[Any] = []
    monkeypatch.setattr(actions, "do_store_chat_upload", lambda *a, **kw: stored.append(a))
    upload = SimpleUploadedFile("a.bin", b"x" * 5000, content_type="application/octet-stream")
    # when it is posted
    response = w.client.post(w.url("uploads"), {"file": upload}, **w.headers())
    # then 413, and the file never reached the action (the handler stopped reading it)
    assert response.status_code == 413, response.content
    assert stored == []


def test_an_upload_without_content_length_is_refused(chat_inbox: Any) -> None:
    from django.test import RequestFactory

    from channels_inbox.views.widget import uploads

    w = widget(chat_inbox)
    w.start()
    request = RequestFactory().post(w.url("uploads"), {"file": SimpleUploadedFile("a.txt", b"abc")}, **w.headers())
    del request.META["CONTENT_LENGTH"]
    assert uploads(request, chat_inbox.public_token).status_code == 411


# --- #10: a visitor's site never changes --------------------------------------------------------


def test_a_session_for_another_site_starts_a_new_visitor(chat_inbox: Any) -> None:
    from channels_inbox.actions.inboxes import do_update_inbox_settings

    # given a visitor of the shop, with a chat
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("hi")["conversation"]["id"]
    shop_visitor = w.visitor
    # when its token is used for a session naming our own site (a script, the hosted page)
    own = w.post("session", data={"token": w.token, "site": "http://127.0.0.1:8000"}, origin="")
    # then that is a new visitor, and the shop visitor's site is unchanged
    assert own.status_code == 200, own.content
    assert own.json()["token"] != w.token
    assert ChatVisitor.objects.get(pk=shop_visitor.pk).site_origin == SHOP
    # and removing the shop from allowed_origins revokes the shop visitor's token
    do_update_inbox_settings(chat_inbox, values={"allowed_origins": OTHER_SITE})
    assert w.get("events", conv_id, origin="").status_code == 403


# --- LOW items ----------------------------------------------------------------------------------


def test_a_non_ascii_hash_is_refused_not_a_crash(chat_inbox: Any) -> None:
    w = widget(chat_inbox)
    w.start()
    response = w.post("identify", data={**signed(chat_inbox, "u1"), "user_hash": "é" * 64})
    assert response.status_code == 403, response.content


def test_only_http_page_urls_are_stored(chat_inbox: Any) -> None:
    # given a session and page reports with script URLs
    w = widget(chat_inbox)
    w.start(url="javascript:alert(1)", referrer="data:text/html,x")
    visitor = w.visitor
    assert (visitor.current_url, visitor.referrer) == ("", "")
    assert w.post("page", data={"url": "javascript:alert(2)", "title": "t"}).status_code == 204
    assert w.visitor.current_url == ""
    # when a chat starts on such a page
    conv = conversation_of(w.send("hi"))
    # then nothing but http(s) is kept
    assert conv.started_url == ""
    assert w.post("page", data={"url": "https://shop.example/cart", "title": "Cart"}).status_code == 204
    assert w.visitor.current_url == "https://shop.example/cart"


def test_agent_names_are_never_an_email(chat_inbox: Any, agent: Any) -> None:
    from channels_inbox.chat.frames import agent_name

    agent.first_name, agent.last_name = "ada@example.com", ""
    assert agent_name(agent) == "Agent"


def test_a_read_receipt_does_not_tell_whether_a_note_exists(chat_inbox: Any, agent: Any) -> None:
    # given a conversation with an agent reply and an internal note after it
    w = widget(chat_inbox)
    w.start()
    body = w.send("hi")
    conv = conversation_of(body)
    reply = do_reply(conv.ticket, actor=agent, text="Hello!")
    note = do_add_note(conv.ticket, actor=agent, text="internal")
    # when the visitor reports reading the note's id, and an id that does not exist
    on_note = w.post("read", conv.public_id.hex, data={"message_id": note.pk})
    missing = w.post("read", conv.public_id.hex, data={"message_id": note.pk + 1000})
    # then both answer the same, and the read position is clamped to the public reply
    assert (on_note.status_code, missing.status_code) == (204, 204)
    conv.refresh_from_db()
    assert conv.visitor_read_message_id == reply.pk


def test_the_demo_page_only_when_the_setting_allows_it(chat_inbox: Any, client: Any) -> None:
    with override_settings(CHAT_DEMO_PAGE=False):
        assert client.get("/widget/v1/demo/").status_code == 404
    with override_settings(CHAT_DEMO_PAGE=True):
        assert client.get("/widget/v1/demo/").status_code == 200


# --- #9 (issue): a verified customer's history, and reset ---------------------------------------


def test_session_and_identify_list_all_the_customers_conversations(
    chat_inbox: Any, agent: Any, django_assert_max_num_queries: Any
) -> None:
    # given a verified customer with ended chats on another browser (and one reply)
    old = widget(chat_inbox)
    old.start()
    assert old.post("identify", data=signed(chat_inbox, "user-9")).status_code == 200
    ids = []
    for n in range(3):
        conv = conversation_of(old.send(f"question {n}"))
        ids.append(conv.public_id.hex)
        if n == 0:
            do_reply(conv.ticket, actor=agent, text="An answer " + "x" * 300)
        actions.do_end_chat_by_visitor(conv)
    # when a new browser identifies as that user
    w = widget(chat_inbox)
    w.start()
    identify = w.post("identify", data=signed(chat_inbox, "user-9")).json()
    # then every conversation is listed newest first, with what the history needs
    assert [c["id"] for c in identify["conversations"]] == ids[::-1]
    assert identify["conversations_more"] is False
    oldest = identify["conversations"][-1]
    assert oldest["status"] == "ended"
    assert oldest["ended_at"]
    assert oldest["preview_from"] == "agent"
    assert oldest["preview"].startswith("An answer")
    assert len(oldest["preview"]) <= actions.PREVIEW_CHARS
    assert oldest["last_message_at"]
    assert identify["conversations"][0]["preview"] == "question 2"
    # and the next session lists them as well, in a constant number of queries
    with django_assert_max_num_queries(12):
        session = w.start()
    assert [c["id"] for c in session["conversations"]] == ids[::-1]


def test_reset_drops_the_verified_scope(chat_inbox: Any) -> None:
    # given a verified browser with a customer-wide history
    other = widget(chat_inbox)
    other.start()
    other.post("identify", data=signed(chat_inbox, "user-r"))
    conv_id = other.send("on another device")["conversation"]["id"]
    w = widget(chat_inbox)
    w.start()
    w.post("identify", data={**signed(chat_inbox, "user-r"), "email": "r@example.com"})
    assert w.get("events", conv_id).status_code == 200
    # when the site logs the user out (Switchboard.reset)
    assert w.post("reset").status_code == 204
    # then the old token no longer reads the customer's chats, nor names the user
    assert w.get("events", conv_id).status_code == 404
    visitor = w.visitor
    assert (visitor.verified_user_id, visitor.email) == ("", "")
