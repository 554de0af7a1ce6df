"""The widget's HTTP API (/widget/v1/): sessions, messages, events, isolation, origins, hostile
input, uploads and files, rate limits, the pages' headers, and the events page's query count."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from channels_inbox.actions.inboxes import do_update_inbox_settings
from channels_inbox.chat.tokens import visitor_token
from channels_inbox.models import ChatConversation, ChatStatus, ChatUpload, ChatVisitor, InboundEvent
from channels_inbox.tests.test_chat_support import (
    OTHER_SITE,
    SHOP,
    _steady_rate_windows,
    chat_inbox,
    conversation_of,
    make_chat_inbox,
    no_presence,
    widget,
)
from customers.models import Customer, Identity, IdentityKind
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.models import Direction, Message

__all__ = ["_steady_rate_windows", "chat_inbox", "no_presence"]

pytestmark = pytest.mark.django_db

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


# --- sessions and tokens ----------------------------------------------------------------------


def test_session_creates_a_visitor_but_no_customer_until_the_first_message(chat_inbox: Any) -> None:
    # given a widget on an allowed site
    w = widget(chat_inbox)
    # when it starts sessions (page views)
    body = w.start()
    for _ in range(3):
        widget(chat_inbox).start()
    # then it holds a token for a new anonymous visitor, and no Customer was made for a page view
    visitor = w.visitor
    assert body["visitor"] == {"id": visitor.public_id.hex, "name": "", "email": "", "verified": False}
    assert body["conversations"] == []
    assert visitor.site_origin == SHOP
    assert visitor.current_url == f"{SHOP}/products/1"
    assert visitor.customer_id is None
    assert Customer.objects.count() == 0
    # when it sends its first message
    conv = conversation_of(w.send("hello"))
    # then its customer is the one with its chat_visitor identity, and the ticket's
    visitor = w.visitor
    identities = list(Identity.objects.filter(customer=visitor.customer).values_list("kind", "value"))
    assert identities == [(IdentityKind.CHAT_VISITOR, visitor.public_id.hex)]
    assert conv.ticket.customer_id == visitor.customer_id
    assert Customer.objects.count() == 1


def test_session_reuses_a_valid_token_and_replaces_a_foreign_one(chat_inbox: Any) -> None:
    # given a visitor, and a token of another inbox
    w = widget(chat_inbox)
    first = w.start()
    other_inbox = make_chat_inbox()
    foreign = visitor_token(other_inbox.public_token, uuid.uuid4())
    # when the session is started again with its token, then with the foreign one
    again = w.start()
    w.token = foreign
    replaced = w.start(token=foreign)
    # then the valid token keeps the visitor; the foreign one gets a new visitor
    assert again["visitor"]["id"] == first["visitor"]["id"]
    assert replaced["visitor"]["id"] != first["visitor"]["id"]
    assert ChatVisitor.objects.filter(inbox=chat_inbox).count() == 2


@pytest.mark.parametrize("bad", ["", "garbage", "x" * 500])
def test_a_bad_token_is_401(chat_inbox: Any, bad: str) -> None:
    # given a request with a forged or malformed token
    w = widget(chat_inbox)
    w.token = bad or "Bearer"
    # when it posts a message
    response = w.post("messages", data={"conversation": None, "client_msg_id": str(uuid.uuid4()), "text": "hi"})
    # then 401 with a clear error
    assert response.status_code == 401, response.content
    assert "token" in response.json()["error"]


def test_unknown_or_inactive_inbox_is_404(chat_inbox: Any) -> None:
    # given an inactive chat inbox
    chat_inbox.is_active = False
    chat_inbox.save(update_fields=["is_active"])
    # when the widget asks for its config and a session
    w = widget(chat_inbox)
    # then both are 404
    assert w.get("config").status_code == 404
    assert w.post("session", data={"site": SHOP}).status_code == 404


# --- origins ---------------------------------------------------------------------------------------


def test_config_answers_cors_only_for_allowed_origins(chat_inbox: Any) -> None:
    # given the loader on the shop and on a foreign site
    shop, evil = widget(chat_inbox), widget(chat_inbox, origin=OTHER_SITE)
    # when both fetch the config
    ok, refused = shop.get("config"), evil.get("config")
    # then the shop gets it with CORS for its origin; the foreign site a 403 without CORS
    assert ok.status_code == 200, ok.content
    assert ok["Access-Control-Allow-Origin"] == SHOP
    assert ok.json()["frame_url"].endswith(f"/widget/v1/{chat_inbox.public_token}/frame")
    assert ok.json()["position"] == "right"
    assert refused.status_code == 403
    assert not refused.has_header("Access-Control-Allow-Origin")


def test_a_foreign_origin_is_refused_on_every_endpoint(chat_inbox: Any) -> None:
    # given a visitor with a conversation
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("hi")["conversation"]["id"]
    evil: dict[str, Any] = {"origin": OTHER_SITE}
    # when every endpoint is called with a foreign Origin header
    calls = [
        w.post("session", data={"site": SHOP}, **evil),
        w.post("session", data={"site": OTHER_SITE}),
        w.post("identify", data={"name": "x"}, **evil),
        w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "x"}, **evil),
        w.post("page", data={"url": SHOP}, **evil),
        w.post("proactive", data={"rule": "x"}, **evil),
        w.get("events", conv_id, **evil),
        w.post("read", conv_id, data={"message_id": 1}, **evil),
        w.post("typing", conv_id, data={"typing": True}, **evil),
        w.post("end", conv_id, **evil),
        w.post("rating", conv_id, data={"rating": 5}, **evil),
        w.post("transcript", conv_id, data={"email": "a@example.com"}, **evil),
        w.client.post(w.url("uploads"), {"file": SimpleUploadedFile("a.txt", b"x")}, **w.headers(**evil)),
    ]
    # then each one is 403
    assert [r.status_code for r in calls] == [403] * len(calls)


def test_removing_an_origin_revokes_tokens_issued_for_it(chat_inbox: Any) -> None:
    # given a visitor of the shop
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("hi")["conversation"]["id"]
    # when the shop is removed from the allowed origins
    do_update_inbox_settings(chat_inbox, values={"allowed_origins": "https://other-shop.example"})
    # then its token no longer works, even from our own origin (the iframe)
    response = w.get("events", conv_id, origin="")
    assert response.status_code == 403, response.content
    assert "no longer allowed" in response.json()["error"]


def test_frame_and_hosted_page_headers(chat_inbox: Any, client: Any) -> None:
    # given the frame URL for the shop
    url = reverse("widget:frame", args=[chat_inbox.public_token])
    # when it is loaded for an allowed site, and for a foreign one
    response = client.get(url, {"site": SHOP, "lang": "cs"})
    foreign = client.get(url, {"site": OTHER_SITE})
    # then it may be framed by the shop only, runs no inline script, and carries the config
    assert response.status_code == 200, response.content
    csp = response["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {SHOP}" in csp
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "connect-src 'self' ws://" in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert not response.has_header("X-Frame-Options")
    config = response.context["config"]
    assert config["site"] == SHOP
    assert config["lang"] == "cs"
    assert config["api"].endswith(f"/widget/v1/{chat_inbox.public_token}/")
    assert config["ws"].endswith(f"/ws/widget/?inbox={chat_inbox.public_token}")
    assert config["token"] is None
    assert b'id="sb-config"' in response.content
    assert foreign.status_code == 403


# --- messages and events --------------------------------------------------------------------------


def test_a_message_opens_a_conversation_and_shows_in_the_events(chat_inbox: Any) -> None:
    # given a visitor
    w = widget(chat_inbox)
    w.start()
    # when it sends a message without a conversation
    body = w.send("<script>alert(1)</script> my order?")
    # then a waiting conversation (a chat ticket) holds it, as text, exactly as written
    conv = conversation_of(body)
    assert conv.status in (ChatStatus.WAITING, ChatStatus.ACTIVE)
    assert conv.ticket.channel == "chat"
    assert conv.started_url == f"{SHOP}/products/1"
    assert body["duplicate"] is False
    assert body["message"]["text"] == "<script>alert(1)</script> my order?"
    assert body["message"]["direction"] == "visitor"
    message = Message.objects.get(pk=body["message"]["id"])
    assert message.metadata["chat"]["url"] == f"{SHOP}/products/1"
    events = w.events(body["conversation"]["id"])
    kinds = [e["kind"] for e in events["events"]]
    assert kinds[0] == "message"
    assert events["events"][0]["message"]["id"] == message.pk
    assert events["last_seq"] == max(conv.ticket.events.values_list("seq", flat=True))
    assert events["poll_seconds"] > 0


def test_a_redelivered_message_is_the_same_message(chat_inbox: Any) -> None:
    # given a message sent once
    w = widget(chat_inbox)
    w.start()
    cmid = str(uuid.uuid4())
    first = w.send("once", client_msg_id=cmid)
    # when the same client_msg_id comes again (a retry after a lost answer)
    second = w.send("once", client_msg_id=cmid)
    # then it is the same message, marked duplicate; one stored event, one message
    assert second["duplicate"] is True
    assert second["message"]["id"] == first["message"]["id"]
    assert second["conversation"]["id"] == first["conversation"]["id"]
    assert InboundEvent.objects.filter(inbox=chat_inbox).count() == 1
    assert Message.objects.filter(ticket__inbox=chat_inbox).count() == 1


def test_agent_reply_and_note_in_the_event_stream(chat_inbox: Any, agent: Any, no_presence: Any) -> None:
    # given a conversation the agent answers publicly and with an internal note
    no_presence["connected"] = True
    agent.first_name, agent.last_name = "Ada", "Agent"
    agent.save()
    w = widget(chat_inbox)
    w.start()
    body = w.send("hello")
    conv = conversation_of(body)
    do_add_note(conv.ticket, actor=agent, text="internal: VIP customer")
    reply = do_reply(conv.ticket, actor=agent, text="Hi, how can I help?")
    # when the visitor polls
    events = w.events(body["conversation"]["id"])["events"]
    # then the reply shows with the agent's first name; the note never does
    texts = [e["message"]["text"] for e in events if e["kind"] == "message"]
    assert texts == ["hello", "Hi, how can I help?"]
    agent_msg = next(e["message"] for e in events if e["kind"] == "message" and e["message"]["id"] == reply.pk)
    assert agent_msg["author"] == "Ada"
    assert "agent@example.com" not in json.dumps(events)
    assert "internal" not in json.dumps(events)


def test_a_message_to_an_ended_conversation_starts_a_new_one(chat_inbox: Any) -> None:
    # given a conversation the visitor ended
    w = widget(chat_inbox)
    w.start()
    first = w.send("first chat")
    conv_id = first["conversation"]["id"]
    ended = w.post("end", conv_id)
    assert ended.status_code == 200, ended.content
    assert ended.json()["status"] == "ended"
    # when the visitor writes to it again
    second = w.send("back again", conversation=conv_id)
    # then a new conversation (and ticket) holds the new message
    assert second["conversation"]["id"] != conv_id
    assert conversation_of(second).ticket_id != conversation_of(first).ticket_id
    # and the session lists both, newest first
    listed = [c["id"] for c in w.start()["conversations"]]
    assert listed == [second["conversation"]["id"], conv_id]


def test_events_after_a_seq_return_only_newer_events(chat_inbox: Any) -> None:
    # given two messages
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("one")["conversation"]["id"]
    first = w.events(conv_id)
    w.send("two", conversation=conv_id)
    # when the visitor resumes after the last seq it saw
    later = w.events(conv_id, after=first["last_seq"])
    # then only the new message comes, once
    texts = [e["message"]["text"] for e in later["events"] if e["kind"] == "message"]
    assert texts == ["two"]
    assert all(e["seq"] > first["last_seq"] for e in later["events"])


def test_events_page_costs_a_constant_number_of_queries(
    chat_inbox: Any, agent: Any, no_presence: Any, django_assert_max_num_queries: Any
) -> None:
    # given a conversation with many messages, replies and files
    no_presence["connected"] = True
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("start")["conversation"]["id"]
    conv = ChatConversation.objects.get(public_id=uuid.UUID(hex=conv_id))
    for i in range(15):
        upload = w.client.post(w.url("uploads"), {"file": SimpleUploadedFile(f"f{i}.png", PNG)}, **w.headers())
        w.send(f"visitor {i}", conversation=conv_id, uploads=[upload.json()["id"]])
        do_reply(conv.ticket, actor=agent, text=f"agent {i}")
    # when the whole history is read
    with django_assert_max_num_queries(14):
        response = w.get("events", conv_id, query="?after=0")
    # then it is all there, in a bounded number of queries
    assert response.status_code == 200
    assert len([e for e in response.json()["events"] if e["kind"] == "message"]) == 31


# --- isolation ------------------------------------------------------------------------------------


def test_a_visitor_can_never_read_or_touch_another_visitors_conversation(chat_inbox: Any) -> None:
    # given two visitors, each with a conversation
    alice, mallory = widget(chat_inbox), widget(chat_inbox)
    alice.start()
    mallory.start()
    alice_conv = alice.send("alice's secret")["conversation"]["id"]
    mallory.send("hi")
    # when mallory uses her own token with alice's conversation id on every conversation endpoint
    calls = {
        "events": mallory.get("events", alice_conv),
        "read": mallory.post("read", alice_conv, data={"message_id": 1}),
        "typing": mallory.post("typing", alice_conv, data={"typing": True}),
        "end": mallory.post("end", alice_conv),
        "rating": mallory.post("rating", alice_conv, data={"rating": 1}),
        "transcript": mallory.post("transcript", alice_conv, data={"email": "m@example.com"}),
        "message": mallory.post(
            "messages", data={"conversation": alice_conv, "client_msg_id": str(uuid.uuid4()), "text": "x"}
        ),
    }
    # then every one is 404, and nothing of alice's leaks into mallory's session
    assert {name: r.status_code for name, r in calls.items()} == dict.fromkeys(calls, 404)
    assert "secret" not in json.dumps(mallory.start())
    assert ChatConversation.objects.get(public_id=uuid.UUID(hex=alice_conv)).status != ChatStatus.ENDED


def test_another_inbox_token_cannot_read_a_conversation(chat_inbox: Any) -> None:
    # given a conversation in one inbox and a visitor of another chat inbox
    alice = widget(chat_inbox)
    alice.start()
    conv_id = alice.send("hi")["conversation"]["id"]
    other = widget(make_chat_inbox())
    other.start()
    # when the other visitor asks for it through its own inbox, and with its token on this inbox
    through_own = other.get("events", conv_id)
    crossed = alice.get("events", conv_id, token=other.token)
    # then not found, and unauthorized
    assert through_own.status_code == 404
    assert crossed.status_code == 401


# --- hostile input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"[1, 2]", 400),
        (b'"a string"', 400),
        (b"{not json", 400),
        (b"\xff\xfe{}", 400),
        (b"[" * 50_000 + b"]" * 50_000, 413),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400),
        (b'{"text": "' + b"x" * 70_000 + b'"}', 413),
    ],
)
def test_malformed_and_hostile_bodies_are_refused(chat_inbox: Any, raw: bytes, status: int) -> None:
    # given a visitor
    w = widget(chat_inbox)
    w.start()
    # when it posts a body that is not a JSON object, not UTF-8, too deep or too large
    response = w.post("messages", raw=raw)
    # then it is refused with a JSON error
    assert response.status_code == status, response.content
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"text": 42}, "text must be a string"),
        ({"text": "x", "client_msg_id": "not-a-uuid"}, "client_msg_id"),
        ({"text": "x", "uploads": "abc"}, "uploads"),
        ({"text": "x" * 5001}, "longer than"),
        ({"text": "   "}, "needs text"),
        ({"text": "x", "conversation": 12}, "conversation"),
        ({"text": "x", "prechat": ["a"]}, "prechat"),
        ({"text": "x", "uploads": [str(uuid.uuid4())]}, "upload"),
    ],
)
def test_wrong_types_are_400(chat_inbox: Any, data: dict[str, Any], fragment: str) -> None:
    w = widget(chat_inbox)
    w.start()
    data.setdefault("client_msg_id", str(uuid.uuid4()))
    response = w.post("messages", data=data)
    assert response.status_code == 400, response.content
    assert fragment in response.json()["error"]


def test_nul_characters_are_dropped(chat_inbox: Any) -> None:
    w = widget(chat_inbox)
    w.start()
    body = w.send("a\x00b")
    assert body["message"]["text"] == "ab"


# --- uploads and files -----------------------------------------------------------------------------


def test_message_with_attachments_and_the_file_link(chat_inbox: Any, settings: Any) -> None:
    # given a visitor who uploads an image named like a path with a disguised type
    w = widget(chat_inbox)
    w.start()
    upload = w.client.post(
        w.url("uploads"),
        {"file": SimpleUploadedFile("../../etc/x\u202egpj.exe", PNG, content_type="text/html")},
        **w.headers(),
    )
    assert upload.status_code == 201, upload.content
    info = upload.json()
    assert info["content_type"] == "image/png"
    assert "/" not in info["name"]
    assert "\u202e" not in info["name"]
    # when it sends a message naming it
    body = w.send("see the photo", uploads=[info["id"]])
    # then the message carries it, and the link serves it to this visitor only
    attachments = body["message"]["attachments"]
    assert [a["size"] for a in attachments] == [len(PNG)]
    path = attachments[0]["url"].removeprefix(settings.SITE_URL)
    served = w.client.get(path)
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == PNG  # type: ignore[attr-defined]
    assert served["X-Content-Type-Options"] == "nosniff"
    assert served["Content-Disposition"].startswith("attachment")
    # and the upload cannot be sent a second time
    again = w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "x", "uploads": [info["id"]]})
    assert again.status_code == 400


def test_an_upload_of_another_visitor_cannot_be_sent(chat_inbox: Any) -> None:
    # given alice's upload
    alice, mallory = widget(chat_inbox), widget(chat_inbox)
    alice.start()
    mallory.start()
    upload = alice.client.post(alice.url("uploads"), {"file": SimpleUploadedFile("a.txt", b"hi")}, **alice.headers())
    # when mallory names it in her message
    response = mallory.post(
        "messages", data={"client_msg_id": str(uuid.uuid4()), "text": "x", "uploads": [upload.json()["id"]]}
    )
    # then it is refused, and alice's upload stays unused
    assert response.status_code == 400
    assert ChatUpload.objects.get(public_id=uuid.UUID(upload.json()["id"])).used_at is None


def test_an_upload_over_the_limit_is_413(chat_inbox: Any, settings: Any) -> None:
    settings.CHAT_UPLOAD_MAX_BYTES = 1000
    w = widget(chat_inbox)
    w.start()
    response = w.client.post(w.url("uploads"), {"file": SimpleUploadedFile("a.bin", b"x" * 1001)}, **w.headers())
    assert response.status_code == 413, response.content
    big = w.client.post(w.url("uploads"), {"file": SimpleUploadedFile("a.bin", b"x" * 200_000)}, **w.headers())
    assert big.status_code == 413


def test_too_many_files_in_one_message(chat_inbox: Any, settings: Any) -> None:
    settings.CHAT_MESSAGE_MAX_FILES = 2
    w = widget(chat_inbox)
    w.start()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    response = w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "x", "uploads": ids})
    assert response.status_code == 400
    assert "at most 2" in response.json()["error"]


def test_a_file_link_of_another_visitor_is_404(chat_inbox: Any, settings: Any) -> None:
    # given alice's file link
    alice, mallory = widget(chat_inbox), widget(chat_inbox)
    alice.start()
    mallory.start()
    upload = alice.client.post(alice.url("uploads"), {"file": SimpleUploadedFile("a.png", PNG)}, **alice.headers())
    alice.send("x", uploads=[upload.json()["id"]])
    attachment = Message.objects.get(direction=Direction.INBOUND).attachments.get()
    from channels_inbox.chat.tokens import file_token

    # when a link is made for mallory's visitor id (a token she could hold), and a forged one
    theirs = reverse("widget:file", args=[file_token(attachment.pk, mallory.visitor.public_id)])
    forged = reverse("widget:file", args=["1:abc:def"])
    # then neither serves alice's file
    assert mallory.client.get(theirs).status_code == 404
    assert mallory.client.get(forged).status_code == 404


# --- rate limits ------------------------------------------------------------------------------------


def test_messages_per_visitor_are_rate_limited(chat_inbox: Any, settings: Any) -> None:
    settings.CHAT_VISITOR_MESSAGES_PER_MINUTE = 3
    w = widget(chat_inbox)
    w.start()
    for i in range(3):
        w.send(f"m{i}")
    response = w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "one too many"})
    assert response.status_code == 429, response.content


def test_new_sessions_per_address_are_rate_limited(chat_inbox: Any, settings: Any) -> None:
    settings.CHAT_IP_SESSIONS_PER_MINUTE = 2
    w = widget(chat_inbox)
    codes = [w.post("session", data={"site": SHOP}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_requests_per_address_use_the_proxys_last_hop(chat_inbox: Any, settings: Any) -> None:
    # given a deployment behind its proxy and a tight per-address limit
    settings.BEHIND_PROXY = True
    settings.CHAT_IP_REQUESTS_PER_MINUTE = 2
    w = widget(chat_inbox)

    def config(forwarded: str) -> int:
        return w.client.get(w.url("config"), HTTP_ORIGIN=SHOP, HTTP_X_FORWARDED_FOR=forwarded).status_code

    # when one client varies the first hops it sends, the proxy's last hop stays its address
    codes = [config(f"10.0.0.{i}, 203.0.113.7") for i in range(3)]
    # then it is limited as one address; another address is not
    assert codes == [200, 200, 429]
    assert config("203.0.113.8") == 200


# --- page, typing, proactive, read -----------------------------------------------------------------


def test_page_typing_and_proactive(chat_inbox: Any) -> None:
    do_update_inbox_settings(
        chat_inbox,
        values={"proactive": [{"key": "pricing", "url_contains": "/pricing", "after_seconds": 5, "message": "Hi"}]},
    )
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("hi")["conversation"]["id"]
    assert w.post("page", data={"url": f"{SHOP}/pricing", "title": "Pricing"}).status_code == 204
    assert w.visitor.current_url == f"{SHOP}/pricing"
    assert w.post("typing", conv_id, data={"typing": True}).status_code == 204
    assert w.post("typing", conv_id, data={"typing": "yes"}).status_code == 400
    assert w.post("proactive", data={"rule": "pricing"}).status_code == 204
    assert w.post("proactive", data={"rule": "pricing"}).status_code == 204
    assert w.post("proactive", data={"rule": "nope"}).status_code == 400
    assert w.start()["proactive_shown"] == ["pricing"]


def test_read_receipts_move_chat_deliveries_to_read(chat_inbox: Any, agent: Any, no_presence: Any) -> None:
    # given an agent reply delivered live
    no_presence["connected"] = True
    w = widget(chat_inbox)
    w.start()
    body = w.send("hello")
    conv = conversation_of(body)
    reply = do_reply(conv.ticket, actor=agent, text="Hi!")
    # when the visitor reports it read
    response = w.post("read", body["conversation"]["id"], data={"message_id": reply.pk})
    # then the delivery is read, the conversation remembers it, and the stream shows it
    assert response.status_code == 204, response.content
    assert reply.deliveries.get().status == "read"
    conv.refresh_from_db()
    assert conv.visitor_read_message_id == reply.pk
    events = w.events(body["conversation"]["id"])["events"]
    assert {"kind": "read", "message_id": reply.pk} in [
        {k: e[k] for k in ("kind", "message_id")} for e in events if e["kind"] == "read"
    ]
    assert w.post("read", body["conversation"]["id"], data={"message_id": "1"}).status_code == 400
