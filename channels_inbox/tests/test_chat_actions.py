"""The chat actions and adapter: settings, office hours, rating rules, transcripts, the
agent's "seen", ending by the visitor, stale uploads, and the stored payload's parse."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail as django_mail
from django.core.files.base import ContentFile
from django.utils import timezone

from channels_inbox.actions.chat import (
    ChatConflict,
    ChatInputError,
    do_mark_chat_seen,
    do_rate_chat,
    do_remove_stale_chat_uploads,
    do_request_chat_transcript,
    do_send_chat_transcript,
)
from channels_inbox.actions.inboxes import do_update_inbox_settings
from channels_inbox.adapters import get_adapter
from channels_inbox.adapters.chat import ChatAdapter, chat_payload, is_online
from channels_inbox.models import ChatConversation, ChatStatus, ChatUpload
from channels_inbox.tests.test_chat_support import (
    _steady_rate_windows,
    chat_inbox,
    conversation_of,
    make_chat_inbox,
    no_presence,
    widget,
)
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.models import TicketEvent, TicketEventType

__all__ = ["_steady_rate_windows", "chat_inbox", "no_presence"]

pytestmark = pytest.mark.django_db

HOURS = {"tz": "Europe/Prague", "days": {"mon": [["09:00", "12:00"], ["13:00", "17:00"]]}}


# --- settings and office hours ----------------------------------------------------------------


def test_settings_are_validated(db: Any) -> None:
    adapter = get_adapter("chat")
    assert adapter.label == "Live chat"
    assert adapter.generated_secrets == ("identity_secret",)
    assert adapter.accepts_webhooks is False
    clean = adapter.clean_settings(
        {"color": "#AABBCC", "office_hours": HOURS, "allowed_origins": "https://a.example, http://b.example:8080/x"}
    )
    assert clean["color"] == "#aabbcc"
    assert clean["allowed_origins"] == "https://a.example http://b.example:8080"
    for bad in (
        {"color": "red"},
        {"position": "top"},
        {"prechat_email": "sometimes"},
        {"office_hours": {"tz": "Mars/Olympus", "days": {}}},
        {"office_hours": {"tz": "UTC", "days": {"mon": [["17:00", "09:00"]]}}},
        {"office_hours": '{"tz": "UTC", "days": {"funday": []}}'},
        {"office_hours": "not json"},
        {"proactive": [{"key": "a b", "message": "x"}]},
        {"proactive": [{"key": "a", "message": "x", "after_seconds": "5"}]},
        {"allowed_origins": "javascript:alert(1)"},
        {"csat": "maybe"},
        {"continuity_email_inbox": "no-such-inbox"},
        {"unknown": "x"},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each message is specific
            adapter.clean_settings(dict(bad))


def test_online_follows_office_hours_in_their_time_zone(db: Any) -> None:
    inbox = make_chat_inbox(office_hours=HOURS)
    # Monday 2026-01-05 in Prague is UTC+1: 09:30 local is 08:30 UTC
    assert is_online(inbox, datetime(2026, 1, 5, 8, 30, tzinfo=UTC))
    assert not is_online(inbox, datetime(2026, 1, 5, 11, 30, tzinfo=UTC))  # 12:30 lunch
    assert not is_online(inbox, datetime(2026, 1, 6, 8, 30, tzinfo=UTC))  # Tuesday: closed
    assert is_online(make_chat_inbox(), datetime(2026, 1, 6, 3, 0, tzinfo=UTC))  # no hours: always


# --- after_ingest, parse ---------------------------------------------------------------------


def test_a_new_conversation_is_waiting_with_its_prechat_and_queued_for_routing(
    chat_inbox: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    # given the routing task watched
    from helpdesk import tasks

    routed: list[int] = []
    monkeypatch.setattr(tasks.route_chat, "apply_async", lambda args, countdown=None: routed.append(args[0]))
    w = widget(chat_inbox)
    w.start()
    # when the first message comes with the pre-chat answers
    with django_capture_on_commit_callbacks(execute=True):
        body = w.send("hi", prechat={"name": "Jana", "email": "jana@example.com"})
    # then its conversation waits, keeps the answers, and its routing is queued
    conv = conversation_of(body)
    assert conv.status == ChatStatus.WAITING
    assert conv.queued_at is not None
    assert conv.prechat == {"name": "Jana", "email": "jana@example.com"}
    assert routed == [conv.pk]
    assert w.visitor.name == "Jana"
    assert conv.ticket.customer.name == "Jana"


def test_parse_never_takes_an_unverified_email_as_identity(chat_inbox: Any) -> None:
    adapter = ChatAdapter()
    raw = chat_payload(visitor_hex="ab" * 16, client_msg_id="c1", thread_key="k", text="hi", uploads=[])
    parsed = adapter.parse(chat_inbox, raw, {})
    assert [(i.kind, i.value) for i in parsed.sender.identities] == [("chat_visitor", "ab" * 16)]
    assert parsed.thread_key == "k"
    assert parsed.external_id == f"chat:{'ab' * 16}:c1"
    signed = chat_payload(
        visitor_hex="ab" * 16, client_msg_id="c2", thread_key="k", text="hi", uploads=[], verified_email="a@b.example"
    )
    assert [i.kind for i in adapter.parse(chat_inbox, signed, {}).sender.identities] == ["chat_visitor", "email"]


def test_recipient_is_the_visitor(chat_inbox: Any, agent: Any, no_presence: Any) -> None:
    no_presence["connected"] = True
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hi"))
    reply = do_reply(conv.ticket, actor=agent, text="hello")
    assert reply.deliveries.get().recipient == w.visitor_id


# --- end, rating -------------------------------------------------------------------------------


def test_rating_only_after_the_end_and_only_once(chat_inbox: Any) -> None:
    # given an open conversation
    w = widget(chat_inbox)
    w.start()
    body = w.send("hi")
    conv_id = body["conversation"]["id"]
    # when it is rated before it ended
    early = w.post("rating", conv_id, data={"rating": 5})
    # then 409
    assert early.status_code == 409, early.content
    # when the visitor ends it and rates it
    assert w.post("end", conv_id).json()["can_rate"] is True
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": True}, {"rating": "5"}, {"rating": 4, "comment": 7}):
        assert w.post("rating", conv_id, data=bad).status_code == 400
    rated = w.post("rating", conv_id, data={"rating": 4, "comment": "quick, thanks"})
    twice = w.post("rating", conv_id, data={"rating": 1})
    # then it is stored once, with a chat_rated event the visitor sees
    assert rated.status_code == 200, rated.content
    assert rated.json()["rating"] == 4
    assert rated.json()["can_rate"] is False
    assert twice.status_code == 409
    conv = ChatConversation.objects.get(public_id=uuid.UUID(hex=conv_id))
    assert (conv.rating, conv.rating_comment) == (4, "quick, thanks")
    event = TicketEvent.objects.get(ticket=conv.ticket, type=TicketEventType.CHAT_RATED)
    assert event.data == {"rating": 4, "has_comment": True}
    kinds = [e["kind"] for e in w.events(conv_id)["events"]]
    assert kinds[-2:] == ["ended", "rated"]


def test_rate_action_refuses_open_chats(chat_inbox: Any) -> None:
    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hi"))
    with pytest.raises(ChatConflict):
        do_rate_chat(conv, rating=3)


# --- seen ----------------------------------------------------------------------------------------


def test_agent_seen_moves_forward_only(chat_inbox: Any, agent: Any) -> None:
    w = widget(chat_inbox)
    w.start()
    body = w.send("one")
    conv = conversation_of(body)
    second = w.send("two", conversation=body["conversation"]["id"])["message"]["id"]
    assert do_mark_chat_seen(conv, actor=agent, message_id=second) is True
    assert do_mark_chat_seen(conv, actor=agent, message_id=body["message"]["id"]) is False
    assert do_mark_chat_seen(conv, actor=agent, message_id=second) is False
    seen = [e for e in w.events(body["conversation"]["id"])["events"] if e["kind"] == "seen"]
    assert [e["message_id"] for e in seen] == [second]


# --- transcript ---------------------------------------------------------------------------------


def test_transcript_emails_the_public_messages(
    chat_inbox: Any, agent: Any, no_presence: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given a chat with a reply and an internal note
    no_presence["connected"] = True
    agent.first_name = "Ada"
    agent.save()
    w = widget(chat_inbox)
    w.start()
    body = w.send("Where is my order?", prechat={"email": "jana@example.com"})
    conv = conversation_of(body)
    do_reply(conv.ticket, actor=agent, text="It ships today.")
    do_add_note(conv.ticket, actor=agent, text="secret internal note")
    # when the visitor asks for the transcript
    with django_capture_on_commit_callbacks(execute=True):
        response = w.post("transcript", body["conversation"]["id"], data={})
    # then a plain-text mail of the public messages goes to its address
    assert response.status_code == 202, response.content
    assert response.json()["email"] == "jana@example.com"
    assert len(django_mail.outbox) == 1
    sent = django_mail.outbox[0]
    assert sent.to == ["jana@example.com"]
    assert "Where is my order?" in sent.body
    assert "Ada:" in sent.body
    assert "It ships today." in sent.body
    assert "secret" not in sent.body
    assert "agent@example.com" not in sent.body
    conv.refresh_from_db()
    assert conv.transcript_sent_at is not None


def test_transcript_needs_an_address_and_is_rate_limited(chat_inbox: Any, settings: Any) -> None:
    settings.CHAT_TRANSCRIPTS_PER_HOUR = 1
    w = widget(chat_inbox)
    w.start()
    conv_id = w.send("hi")["conversation"]["id"]
    assert w.post("transcript", conv_id, data={}).status_code == 400
    assert w.post("transcript", conv_id, data={"email": "not an address"}).status_code == 400
    assert w.post("transcript", conv_id, data={"email": "a@example.com"}).status_code == 202
    assert w.post("transcript", conv_id, data={"email": "a@example.com"}).status_code == 429


def test_agent_transcript_request_checks_permission(chat_inbox: Any, agent: Any) -> None:
    from helpdesk.actions.agents import do_create_agent

    w = widget(chat_inbox)
    w.start()
    conv = conversation_of(w.send("hi"))
    light = do_create_agent(email="light@example.com", name="Light", password="pw-light-123", role="light_agent")
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        do_request_chat_transcript(conv, email="a@example.com", actor=light)
    assert do_request_chat_transcript(conv, email="A@example.com", actor=agent) == "a@example.com"
    with pytest.raises(ChatInputError):
        do_request_chat_transcript(conv, email=None, actor=agent)
    assert do_send_chat_transcript(conv.pk, "a@example.com") is True


# --- uploads -------------------------------------------------------------------------------------


def test_stale_uploads_are_removed(chat_inbox: Any) -> None:
    # given an unsent upload of yesterday, a fresh one, and one sent a week ago
    w = widget(chat_inbox)
    w.start()
    visitor = w.visitor

    def upload(created: timedelta, used: timedelta | None) -> ChatUpload:
        item = ChatUpload(visitor=visitor, filename="a.txt", content_type="text/plain", size=1)
        item.file.save(item.public_id.hex, ContentFile(b"x"), save=False)
        item.save()
        now = timezone.now()
        ChatUpload.objects.filter(pk=item.pk).update(
            created_at=now - created, used_at=(now - used) if used is not None else None
        )
        return item

    old, fresh, sent = (
        upload(timedelta(days=2), None),
        upload(timedelta(hours=1), None),
        upload(timedelta(days=9), timedelta(days=8)),
    )
    storage = old.file.storage
    # when the hourly removal runs
    removed = do_remove_stale_chat_uploads()
    # then the stale ones are gone with their files; the fresh one stays
    assert removed == 2
    assert list(ChatUpload.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not storage.exists(old.file.name)
    assert not storage.exists(sent.file.name)
    assert storage.exists(fresh.file.name)


def test_required_prechat_fields(chat_inbox: Any) -> None:
    do_update_inbox_settings(chat_inbox, values={"prechat_email": "required"})
    w = widget(chat_inbox)
    w.start()
    refused = w.post("messages", data={"client_msg_id": str(uuid.uuid4()), "text": "hi"})
    assert refused.status_code == 400
    assert "email" in refused.json()["error"]
    assert w.send("hi", prechat={"email": "x@example.com"})["conversation"] is not None
