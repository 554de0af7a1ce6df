"""The Telegram bot channel: secret header, updates, media, edits, albums, sending, webhook."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import httpx
import pytest
import respx
from django.core.management import call_command
from django.core.management.base import CommandError

from channels_inbox.models import InboundEvent, InboundEventStatus
from helpdesk.models import Message, Ticket, TicketEventType

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "123456:AAH-secret-bot-token"
API = "https://api.telegram.org"


@pytest.fixture
def tg_inbox(db: Any) -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(
        kind="telegram", name="Shop bot", values={"bot_token": TOKEN, "bot_username": "@shop_bot"}
    )
    return inbox


def user(**extra: Any) -> dict[str, Any]:
    return {"id": 4242, "is_bot": False, "first_name": "Jana", "last_name": "Nováková", "language_code": "cs", **extra}


def msg(message_id: int = 10, chat: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": message_id,
        "from": user(),
        "chat": chat or {"id": 4242, "type": "private", "first_name": "Jana"},
        "date": 1764676800,
    }
    body.update(fields)
    return body


def update(update_id: int = 1000, **fields: Any) -> dict[str, Any]:
    return {"update_id": update_id, **fields}


def post(client: Any, inbox: Any, payload: Any, *, secret: str | None = "ok", raw: bytes | None = None) -> Any:  # noqa: S107
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = inbox.secret("webhook_secret") if secret == "ok" else secret
    return client.post(f"/webhooks/telegram/{inbox.uuid}/", data=body, content_type="application/json", headers=headers)


# --- secrets and settings ---------------------------------------------------------------------
def test_inbox_secrets_follow_telegrams_rules(tg_inbox: Any) -> None:
    secret = tg_inbox.secret("webhook_secret")
    assert 1 <= len(secret) <= 256
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in secret)
    assert tg_inbox.secret("bot_token") == TOKEN
    assert tg_inbox.settings == {"bot_username": "shop_bot"}


@pytest.mark.parametrize("secret", [None, "", "wrong", "x" * 64])
def test_missing_or_wrong_secret_is_403_and_nothing_stored(client: Any, tg_inbox: Any, secret: str | None) -> None:
    resp = post(client, tg_inbox, update(message=msg(text="hi")), secret=secret)
    assert resp.status_code == 403
    assert InboundEvent.objects.count() == 0
    assert Message.objects.count() == 0


def test_text_message_becomes_a_ticket(client: Any, tg_inbox: Any) -> None:
    resp = post(client, tg_inbox, update(message=msg(text="Where is my order?")))
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"stored": 1, "duplicates": 0}
    event = InboundEvent.objects.get()
    assert event.dedupe_key == "update:1000"
    assert event.status == InboundEventStatus.PROCESSED
    message = Message.objects.get()
    assert message.external_id == "4242:10"
    assert message.text == "Where is my order?"
    assert message.metadata == {"telegram": {"chat_id": 4242, "chat_type": "private", "message_id": 10}}
    assert message.sent_at is not None
    assert message.sent_at.timestamp() == 1764676800
    ticket = message.ticket
    assert ticket.channel == "telegram"
    assert ticket.customer.name == "Jana Nováková"
    assert [(i.kind, i.value) for i in ticket.customer.identities.all()] == [("telegram", "4242")]
    assert [e.type for e in ticket.events.order_by("seq")] == [
        TicketEventType.CREATED,
        TicketEventType.MESSAGE_RECEIVED,
    ]


def test_redelivered_update_is_not_duplicated(client: Any, tg_inbox: Any) -> None:
    post(client, tg_inbox, update(message=msg(text="hi")))
    resp = post(client, tg_inbox, update(message=msg(text="hi")))
    assert resp.json() == {"stored": 0, "duplicates": 1}
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


def test_second_message_joins_the_same_ticket_and_reply_to_is_kept(client: Any, tg_inbox: Any) -> None:
    post(client, tg_inbox, update(1, message=msg(10, text="first")))
    post(client, tg_inbox, update(2, message=msg(11, text="second", reply_to_message=msg(10, text="first"))))
    assert Ticket.objects.count() == 1
    second = Message.objects.get(external_id="4242:11")
    assert second.metadata["reply_to"] == {"external_id": "4242:10"}


def test_bots_and_service_messages_are_ignored(client: Any, tg_inbox: Any) -> None:
    post(client, tg_inbox, update(1, message={**msg(text="beep"), "from": user(is_bot=True)}))
    post(client, tg_inbox, update(2, message=msg(11, new_chat_members=[user()])))
    assert list(InboundEvent.objects.values_list("status", flat=True)) == ["ignored", "ignored"]
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{nope", "not JSON"),
        (b"[1]", "JSON object"),
        (b"{}", "update_id"),
        (b'{"update_id": "7"}', "update_id"),
        (b'{"update_id": true}', "update_id"),
        (b'{"update_id": 7, "message": "x"}', "must be an object"),
        (b'{"update_id": 7, "message": {"message_id": 1, "chat": {}}}', "chat.id"),
        (b'{"update_id": 7, "message": {"message_id": "1", "chat": {"id": 5}}}', "message_id"),
    ],
)
def test_malformed_update_is_400_and_nothing_stored(client: Any, tg_inbox: Any, raw: bytes, error: str) -> None:
    resp = post(client, tg_inbox, None, raw=raw)
    assert resp.status_code == 400, resp.content
    assert error in resp.json()["error"]
    assert InboundEvent.objects.count() == 0


def test_oversized_update_is_413(client: Any, tg_inbox: Any) -> None:
    resp = post(client, tg_inbox, update(message=msg(text="x" * (1024 * 1024))))
    assert resp.status_code == 413
    assert InboundEvent.objects.count() == 0


def test_unknown_kinds_are_kept(client: Any, tg_inbox: Any) -> None:
    post(client, tg_inbox, update(1, message=msg(10, contact={"phone_number": "+420777", "first_name": "X"})))
    post(client, tg_inbox, update(2, message=msg(11, poll={"id": "p", "question": "?"})))
    post(client, tg_inbox, update(3, message=msg(12, location={"latitude": 50.08, "longitude": 14.42})))
    contact, poll, location = Message.objects.order_by("id")
    assert (contact.text, contact.metadata["unsupported"]) == ("", {"type": "contact"})
    assert (poll.text, poll.metadata["unsupported"]) == ("", {"type": "poll"})
    assert location.text.startswith("📍 50.08, 14.42")
    assert "unsupported" not in location.metadata
    assert location.metadata["telegram"]["location"] == {"latitude": 50.08, "longitude": 14.42}


def test_group_chat_is_one_ticket_per_chat(client: Any, tg_inbox: Any) -> None:
    group = {"id": -100777, "type": "supergroup", "title": "Shop fans"}
    post(client, tg_inbox, update(1, message=msg(5, chat=group, text="hello")))
    other = msg(6, chat=group, text="me too")
    other["from"] = user(id=5151, first_name="Petr", last_name="")
    post(client, tg_inbox, update(2, message=other))
    post(client, tg_inbox, update(3, message=msg(7, text="private question")))
    tickets = list(Ticket.objects.order_by("id"))
    assert len(tickets) == 2
    assert tickets[0].thread_key == "telegram:-100777"
    assert sorted(m.external_id for m in tickets[0].messages.all()) == ["-100777:5", "-100777:6"]
    assert [m.external_id for m in tickets[1].messages.all()] == ["4242:7"]


# --- media ------------------------------------------------------------------------------------
@respx.mock
def test_photo_is_downloaded_largest_size(client: Any, tg_inbox: Any) -> None:
    get_file = respx.post(f"{API}/bot{TOKEN}/getFile").mock(
        return_value=httpx.Response(
            200, json={"ok": True, "result": {"file_id": "big", "file_path": "photos/file_7.jpg"}}
        )
    )
    download = respx.get(f"{API}/file/bot{TOKEN}/photos/file_7.jpg").mock(
        return_value=httpx.Response(200, content=b"\xff\xd8\xff\xe0JPEGDATA", headers={"content-type": "image/jpeg"})
    )
    photo = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 1000},
        {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 90000},
    ]
    post(client, tg_inbox, update(message=msg(photo=photo, caption="broken box")))
    assert get_file.call_count == 1
    assert json.loads(get_file.calls[0].request.content) == {"file_id": "big"}
    assert download.call_count == 1
    message = Message.objects.get()
    assert message.text == "broken box"
    [attachment] = message.attachments.all()
    assert (attachment.filename, attachment.content_type, attachment.size) == ("file_7.jpg", "image/jpeg", 12)


@respx.mock
def test_document_over_20_mb_is_listed_not_fetched(client: Any, tg_inbox: Any) -> None:
    route = respx.post(f"{API}/bot{TOKEN}/getFile")
    document = {"file_id": "d", "file_unique_id": "d", "file_name": "log.zip", "file_size": 21 * 1024 * 1024}
    post(client, tg_inbox, update(message=msg(document=document)))
    assert route.call_count == 0
    message = Message.objects.get()
    assert message.metadata["media_skipped"] == [
        {"filename": "log.zip", "type": "document", "reason": f"{21 * 1024 * 1024} bytes, over {10 * 1024 * 1024}"}
    ]
    assert message.attachments.count() == 0


@respx.mock
def test_voice_download_failure_is_retried_and_token_is_not_kept(client: Any, tg_inbox: Any, lost_tasks: Any) -> None:
    from channels_inbox.actions.process import do_process_inbound_event

    respx.post(f"{API}/bot{TOKEN}/getFile").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"file_id": "v", "file_path": "voice/f.oga"}})
    )
    respx.get(f"{API}/file/bot{TOKEN}/voice/f.oga").mock(side_effect=httpx.ConnectError(f"boom {TOKEN}"))
    post(client, tg_inbox, update(message=msg(voice={"file_id": "v", "file_unique_id": "v", "duration": 3})))
    event = InboundEvent.objects.get()
    assert do_process_inbound_event(event.pk) == "retry"
    event.refresh_from_db()
    assert event.status == InboundEventStatus.PENDING
    assert event.attempts == 1
    assert "media fetch failed" in event.last_error
    assert TOKEN not in event.last_error
    assert Message.objects.count() == 0


# --- edits ------------------------------------------------------------------------------------
def test_edit_updates_the_text_and_keeps_history(client: Any, tg_inbox: Any) -> None:
    post(client, tg_inbox, update(1, message=msg(10, text="teh order")))
    post(client, tg_inbox, update(2, edited_message=msg(10, text="the order", edit_date=1764676900)))
    message = Message.objects.get()
    assert message.text == "the order"
    assert message.metadata["edits"] == [{"text": "teh order", "at": "2025-12-02T12:01:40+00:00"}]
    assert [e.type for e in message.ticket.events.order_by("seq")][-1] == TicketEventType.MESSAGE_EDITED
    last = message.ticket.events.order_by("seq").last()
    assert last is not None
    assert last.message_id == message.pk
    # an older edit arriving late changes nothing
    post(client, tg_inbox, update(3, edited_message=msg(10, text="teh ordr", edit_date=1764676850)))
    message.refresh_from_db()
    assert message.text == "the order"
    assert len(message.metadata["edits"]) == 1


def test_edit_before_its_original_is_stored_and_original_adds_history(client: Any, tg_inbox: Any) -> None:
    post(client, tg_inbox, update(2, edited_message=msg(10, text="the order", edit_date=1764676900)))
    message = Message.objects.get()
    assert message.external_id == "4242:10"
    assert message.text == "the order"
    assert message.metadata["telegram"]["edited_first"] is True
    assert InboundEvent.objects.get().message == message
    post(client, tg_inbox, update(1, message=msg(10, text="teh order")))
    message.refresh_from_db()
    assert Message.objects.count() == 1
    assert message.text == "the order"
    assert message.metadata["edits"] == [{"text": "teh order", "at": "2025-12-02T12:01:40+00:00"}]
    assert [e.type for e in message.ticket.events.order_by("seq")] == [
        TicketEventType.CREATED,
        TicketEventType.MESSAGE_RECEIVED,
        TicketEventType.MESSAGE_EDITED,
    ]


# --- albums -----------------------------------------------------------------------------------
def album_part(n: int, caption: str = "") -> dict[str, Any]:
    fields: dict[str, Any] = {
        "media_group_id": "1337",
        "photo": [{"file_id": f"f{n}", "file_unique_id": f"u{n}", "width": 100, "height": 100}],
    }
    if caption:
        fields["caption"] = caption
    return msg(20 + n, **fields)


def mock_files() -> None:
    for n in range(1, 4):
        respx.post(f"{API}/bot{TOKEN}/getFile", json={"file_id": f"f{n}"}).mock(
            return_value=httpx.Response(200, json={"ok": True, "result": {"file_path": f"photos/p{n}.jpg"}})
        )
        respx.get(f"{API}/file/bot{TOKEN}/photos/p{n}.jpg").mock(
            return_value=httpx.Response(
                200, content=b"\xff\xd8\xff" + bytes([n]) * 8, headers={"content-type": "image/jpeg"}
            )
        )


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 1, 2)])
@respx.mock
def test_album_parts_become_one_message(client: Any, tg_inbox: Any, order: tuple[int, ...]) -> None:
    mock_files()
    for n in order:
        post(client, tg_inbox, update(100 + n, message=album_part(n, caption="three photos" if n == 1 else "")))
    message = Message.objects.get()
    assert message.external_id == "4242:album:1337"
    assert message.text == "three photos"
    assert message.metadata["telegram"]["parts"] == [21, 22, 23]
    assert sorted(a.filename for a in message.attachments.all()) == ["p1.jpg", "p2.jpg", "p3.jpg"]
    assert Ticket.objects.count() == 1
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert set(InboundEvent.objects.values_list("message", flat=True)) == {message.pk}


@respx.mock
def test_album_parts_in_one_batch_are_merged(tg_inbox: Any, lost_tasks: Any) -> None:
    from django.test import Client

    from channels_inbox.actions.process import do_process_inbound_event

    mock_files()
    client = Client()
    for n in (2, 1, 3):
        post(client, tg_inbox, update(100 + n, message=album_part(n, caption=f"c{n}")))
    first = InboundEvent.objects.order_by("id").first()
    assert first is not None
    assert do_process_inbound_event(first.pk, batch_size=10) == "processed"
    message = Message.objects.get()
    assert message.text == "c1\n\nc2\n\nc3"
    assert message.attachments.count() == 3


@pytest.mark.postgres
@respx.mock
def test_album_parts_processed_concurrently_are_merged(tg_inbox: Any, lost_tasks: Any) -> None:
    import threading

    from django.db import connection
    from django.test import Client

    from channels_inbox.actions.process import do_process_inbound_event

    mock_files()
    client = Client()
    for n in (1, 2, 3):
        post(client, tg_inbox, update(100 + n, message=album_part(n)))
    ids = list(InboundEvent.objects.order_by("id").values_list("pk", flat=True))
    barrier = threading.Barrier(3)
    outcomes: list[str] = []

    def work(pk: int) -> None:
        barrier.wait()
        try:
            outcomes.append(do_process_inbound_event(pk, batch_size=1))
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(pk,)) for pk in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["processed"] * 3
    message = Message.objects.get()
    assert message.metadata["telegram"]["parts"] == [21, 22, 23]
    assert message.attachments.count() == 3


# --- sending ----------------------------------------------------------------------------------
@pytest.fixture
def ticket(client: Any, tg_inbox: Any) -> Ticket:
    post(client, tg_inbox, update(1, message=msg(10, text="help")))
    return Ticket.objects.get()


def reply(ticket: Ticket, agent: Any, text: str = "On its way!", attachments: Any = ()) -> Any:
    from helpdesk.actions.replies import do_reply

    return do_reply(ticket, actor=agent, text=text, attachments=attachments)


@respx.mock
def test_reply_is_sent_with_sendmessage(ticket: Ticket, agent: Any) -> None:
    route = respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 77, "chat": {"id": 4242}}})
    )
    message = reply(ticket, agent)
    assert route.call_count == 1
    assert json.loads(route.calls[0].request.content) == {"chat_id": 4242, "text": "On its way!"}
    delivery = message.deliveries.get()
    assert (delivery.status, delivery.provider_id, delivery.recipient) == ("sent", "4242:77", "4242")


@respx.mock
def test_long_reply_is_split(ticket: Ticket, agent: Any) -> None:
    route = respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 78}})
    )
    text = ("word " * 1000).strip() + "\n" + "x" * 100
    reply(ticket, agent, text)
    sent = [json.loads(c.request.content)["text"] for c in route.calls]
    assert len(sent) == 2
    assert all(len(s) <= 4096 for s in sent)
    assert " ".join(sent).replace("\n", " ").split() == text.replace("\n", " ").split()


@respx.mock
def test_attachment_is_sent_with_senddocument(ticket: Ticket, agent: Any) -> None:
    from helpdesk.composer import OutgoingFile

    respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 80}})
    )
    doc = respx.post(f"{API}/bot{TOKEN}/sendDocument").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 81}})
    )
    reply(ticket, agent, "see the invoice", [OutgoingFile("invoice.txt", b"total: 10 EUR", "text/plain")])
    assert doc.call_count == 1
    body = doc.calls[0].request.content
    assert b'name="chat_id"\r\n\r\n4242' in body
    assert b'name="document"; filename="invoice.txt"' in body
    assert b"total: 10 EUR" in body


@respx.mock
def test_rate_limited_send_is_deferred_by_retry_after(ticket: Ticket, agent: Any, lost_tasks: Any) -> None:
    from channels_inbox.actions.delivery import do_attempt_delivery

    respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(
        return_value=httpx.Response(
            429,
            json={
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 17",
                "parameters": {"retry_after": 17},
            },
        )
    )
    message = reply(ticket, agent)
    delivery = message.deliveries.get()
    assert do_attempt_delivery(delivery.pk) == "deferred"
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert delivery.attempts == 0
    assert delivery.next_attempt_at is not None
    assert 15 <= (delivery.next_attempt_at - delivery.updated_at).total_seconds() <= 18


@respx.mock
def test_blocked_bot_fails_without_retry(ticket: Ticket, agent: Any) -> None:
    respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(
        return_value=httpx.Response(
            403, json={"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
        )
    )
    message = reply(ticket, agent)
    delivery = message.deliveries.get()
    assert delivery.status == "failed"
    assert delivery.attempts == 1
    assert "blocked the bot" in delivery.last_error
    assert "Forbidden: bot was blocked by the user" in delivery.last_error
    assert TOKEN not in delivery.last_error


@respx.mock
def test_server_error_is_retried(ticket: Ticket, agent: Any, lost_tasks: Any) -> None:
    from channels_inbox.actions.delivery import do_attempt_delivery

    respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(return_value=httpx.Response(502, text="Bad Gateway"))
    message = reply(ticket, agent)
    delivery = message.deliveries.get()
    assert do_attempt_delivery(delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert delivery.last_error == "Telegram sendMessage: HTTP 502"


@respx.mock
def test_group_reply_goes_to_the_group_quoting_the_last_message(client: Any, tg_inbox: Any, agent: Any) -> None:
    route = respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 9}})
    )
    post(client, tg_inbox, update(1, message=msg(5, chat={"id": -100777, "type": "supergroup"}, text="hi")))
    message = reply(Ticket.objects.get(), agent)
    assert json.loads(route.calls[0].request.content) == {
        "chat_id": -100777,
        "text": "On its way!",
        "reply_parameters": {"message_id": 5, "allow_sending_without_reply": True},
    }
    assert message.deliveries.get().provider_id == "-100777:9"


# --- the webhook ------------------------------------------------------------------------------
@respx.mock
def test_set_webhook_exact_request(tg_inbox: Any, settings: Any) -> None:
    from channels_inbox.actions.telegram import do_set_telegram_webhook

    settings.SITE_URL = "https://desk.example.com"
    route = respx.post(f"{API}/bot{TOKEN}/setWebhook").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": True, "description": "Webhook was set"})
    )
    summary = do_set_telegram_webhook(tg_inbox)
    assert json.loads(route.calls[0].request.content) == {
        "url": f"https://desk.example.com/webhooks/telegram/{tg_inbox.uuid}/",
        "secret_token": tg_inbox.secret("webhook_secret"),
        "allowed_updates": ["message", "edited_message"],
        "max_connections": 40,
    }
    assert (
        summary
        == f"Telegram now delivers @shop_bot's messages and edits to https://desk.example.com/webhooks/telegram/{tg_inbox.uuid}/"
    )


@respx.mock
def test_set_webhook_error_carries_telegrams_description_not_the_token(tg_inbox: Any, settings: Any) -> None:
    from channels_inbox.actions.telegram import do_set_telegram_webhook
    from channels_inbox.adapters.base import DeliveryError

    settings.SITE_URL = "https://desk.example.com"
    respx.post(f"{API}/bot{TOKEN}/setWebhook").mock(
        return_value=httpx.Response(401, json={"ok": False, "error_code": 401, "description": "Unauthorized"})
    )
    with pytest.raises(DeliveryError) as caught:
        do_set_telegram_webhook(tg_inbox)
    assert str(caught.value) == "Telegram setWebhook: Unauthorized"
    assert caught.value.retryable is False


@respx.mock
def test_set_webhook_refuses_plain_http_site(tg_inbox: Any, settings: Any) -> None:
    from channels_inbox.actions.telegram import do_set_telegram_webhook
    from channels_inbox.adapters.base import DeliveryError

    settings.SITE_URL = "http://desk.example.com:8000"
    with pytest.raises(DeliveryError, match="HTTPS"):
        do_set_telegram_webhook(tg_inbox)
    assert respx.calls.call_count == 0


@respx.mock
def test_management_command_sets_and_shows_the_webhook(tg_inbox: Any, settings: Any) -> None:
    settings.SITE_URL = "https://desk.example.com"
    respx.post(f"{API}/bot{TOKEN}/setWebhook").mock(return_value=httpx.Response(200, json={"ok": True, "result": True}))
    respx.post(f"{API}/bot{TOKEN}/getWebhookInfo").mock(
        return_value=httpx.Response(
            200,
            json={
                "ok": True,
                "result": {
                    "url": f"https://desk.example.com/webhooks/telegram/{tg_inbox.uuid}/",
                    "pending_update_count": 3,
                    "last_error_date": 1764676800,
                    "last_error_message": "Wrong response from the webhook: 403 Forbidden",
                },
            },
        )
    )
    out = StringIO()
    call_command("telegram_webhook", tg_inbox.slug, stdout=out)
    assert "Telegram now delivers @shop_bot's" in out.getvalue()
    out = StringIO()
    call_command("telegram_webhook", tg_inbox.slug, "--info", stdout=out)
    text = out.getvalue()
    assert "connected to this inbox: yes" in text
    assert "pending updates: 3" in text
    assert "last error (2025-12-02T12:00:00+00:00): Wrong response from the webhook: 403 Forbidden" in text
    assert TOKEN not in text
    with pytest.raises(CommandError, match="no Telegram inbox"):
        call_command("telegram_webhook", "nope")


@respx.mock
def test_bot_token_never_reaches_the_logs(ticket: Ticket, agent: Any, caplog: Any) -> None:
    import logging

    respx.post(f"{API}/bot{TOKEN}/sendMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": {"message_id": 77}})
    )
    with caplog.at_level(logging.INFO):
        reply(ticket, agent)
    assert "POST https://api.telegram.org/bot<token>/sendMessage" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text


@respx.mock
def test_edit_of_an_album_caption(client: Any, tg_inbox: Any) -> None:
    mock_files()
    post(client, tg_inbox, update(101, message=album_part(1, caption="two photos")))
    post(client, tg_inbox, update(102, message=album_part(2)))
    edited = album_part(1, caption="two photos of the damage")
    edited["edit_date"] = 1764676900
    post(client, tg_inbox, update(103, edited_message=edited))
    message = Message.objects.get()
    assert message.text == "two photos of the damage"
    assert message.metadata["edits"] == [{"text": "two photos", "at": "2025-12-02T12:01:40+00:00"}]
    assert message.attachments.count() == 2


def test_previous_secret_is_accepted_after_a_rotation(client: Any, tg_inbox: Any) -> None:
    from channels_inbox.actions.inboxes import do_rotate_inbox_secret

    old = tg_inbox.secret("webhook_secret")
    new = do_rotate_inbox_secret(tg_inbox, name="webhook_secret")
    assert new != old
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in new)
    assert post(client, tg_inbox, update(1, message=msg(10, text="a")), secret=old).status_code == 200
    assert post(client, tg_inbox, update(2, message=msg(11, text="b")), secret=new).status_code == 200
    assert Message.objects.count() == 2


def test_oversized_file_from_getfile_answer_is_listed(client: Any, tg_inbox: Any) -> None:
    with respx.mock:
        respx.post(f"{API}/bot{TOKEN}/getFile").mock(
            return_value=httpx.Response(
                400, json={"ok": False, "error_code": 400, "description": "Bad Request: file is too big"}
            )
        )
        post(client, tg_inbox, update(message=msg(video={"file_id": "v", "file_unique_id": "v"}, caption="clip")))
    message = Message.objects.get()
    assert message.text == "clip"
    assert message.metadata["media_skipped"] == [
        {"filename": "video.mp4", "type": "video", "reason": "Telegram getFile: Bad Request: file is too big"}
    ]


@respx.mock
def test_album_part_edit_before_the_parts(client: Any, tg_inbox: Any) -> None:
    mock_files()
    edited = album_part(1, caption="photos, edited")
    edited["edit_date"] = 1764676900
    post(client, tg_inbox, update(103, edited_message=edited))
    message = Message.objects.get()
    assert message.external_id == "4242:album:1337"
    assert message.text == "photos, edited"
    assert message.metadata["media_skipped"] == [
        {"filename": "photo.jpg", "type": "photo", "reason": "sent with an edit"}
    ]
    post(client, tg_inbox, update(101, message=album_part(1, caption="photos")))
    post(client, tg_inbox, update(102, message=album_part(2)))
    message.refresh_from_db()
    assert Message.objects.count() == 1
    assert message.text == "photos, edited"
    assert "media_skipped" not in message.metadata
    assert sorted(a.filename for a in message.attachments.all()) == ["p1.jpg", "p2.jpg"]
    assert message.metadata["telegram"]["parts"] == [21, 22]
