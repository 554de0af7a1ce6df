"""Meta channels: WhatsApp Cloud API, Messenger, Instagram — handshake, signature, items,
media, statuses, reactions, watermarks, sending and the customer-service window."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from django.utils import timezone

from channels_inbox.actions.delivery import do_attempt_delivery
from channels_inbox.models import InboundEvent, InboundEventStatus, OutboundDelivery
from customers.models import Identity
from helpdesk.actions.replies import ReplyWindowClosed, do_reply
from helpdesk.models import DeliveryStatus, Message, Ticket, TicketEventType

pytestmark = pytest.mark.django_db(transaction=True)

APP_SECRET = "meta-app-secret"
TOKEN = "EAAG-system-user-token"
GRAPH = "https://graph.facebook.com/v21.0"
PHONE_ID = "1098765"
PAGE_ID = "5550001"
IG_ID = "17841400000"


def make_inbox(kind: str, **settings: Any) -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(
        kind=kind,
        name=f"Shop {kind}",
        values={"app_secret": APP_SECRET, "access_token": TOKEN, "graph_version": "v21.0", **settings},
    )
    return inbox


@pytest.fixture
def wa(db: Any) -> Any:
    return make_inbox(
        "whatsapp",
        phone_number_id=PHONE_ID,
        templates=[{"name": "order_update", "language": "en", "body": "Hi {{1}}, news on {{2}}", "params": 2}],
    )


@pytest.fixture
def fb(db: Any) -> Any:
    return make_inbox("messenger", page_id=PAGE_ID)


@pytest.fixture
def ig(db: Any) -> Any:
    return make_inbox("instagram", ig_id=IG_ID)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(
    client: Any, inbox: Any, payload: Any = None, *, raw: bytes | None = None, signature: str | None = "ok"
) -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {}
    if signature is not None:
        headers["X-Hub-Signature-256"] = sign(body) if signature == "ok" else signature
    return client.post(
        f"/webhooks/{inbox.kind}/{inbox.uuid}/", data=body, content_type="application/json", headers=headers
    )


def wa_message(mid: str = "wamid.AAA", type_: str = "text", ts: int | None = None, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "from": "14155550123",
        "id": mid,
        "timestamp": str(ts or int(time.time())),
        "type": type_,
    }
    if type_ == "text" and "text" not in fields:
        message["text"] = {"body": "Where is my order?"}
    message.update(fields)
    return message


def wa_payload(
    *, messages: tuple[Any, ...] | list[Any] = (), statuses: tuple[Any, ...] | list[Any] = (), phone_id: str = PHONE_ID
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_id},
        "contacts": [{"profile": {"name": "Jana Nováková"}, "wa_id": "14155550123"}],
    }
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": value}]}],
    }


def wa_status(wamid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": status, "timestamp": str(int(time.time())), "recipient_id": "14155550123", **extra}


def page_payload(obj: str, own: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {"object": obj, "entry": [{"id": own, "time": int(time.time() * 1000), "messaging": list(events)}]}


def page_message(mid: str = "m_1", sender: str = "PSID-77", **message: Any) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": PAGE_ID},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": mid, "text": "Hello there", **message},
    }


# --- handshake ------------------------------------------------------------------------------
def test_handshake_answers_the_challenge(client: Any, wa: Any) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": wa.secret("verify_token"), "hub.challenge": "1158201444"}
    resp = client.get(f"/webhooks/whatsapp/{wa.uuid}/", query)
    assert resp.status_code == 200
    assert resp.content == b"1158201444"
    assert resp["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "VERIFY", "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
def test_handshake_with_a_wrong_token_is_403(client: Any, fb: Any, query: dict[str, str]) -> None:
    query = {k: (fb.secret("verify_token") if v == "VERIFY" else v) for k, v in query.items()}
    resp = client.get(f"/webhooks/messenger/{fb.uuid}/", query)
    assert resp.status_code == 403
    assert b"1" not in resp.content


# --- signature ------------------------------------------------------------------------------
def test_signature_is_over_the_raw_bytes_with_emoji_and_escapes(client: Any, wa: Any) -> None:
    payload = wa_payload(messages=[wa_message(text={"body": "Olá 😕"})])
    raw_utf8 = json.dumps(payload, ensure_ascii=False).encode()
    assert post(client, wa, raw=raw_utf8).status_code == 200
    payload2 = wa_payload(messages=[wa_message("wamid.BBB", text={"body": "Olá 😕 again"})])
    escaped = json.dumps(payload2).encode()  # \u00e1 / \ud83d\ude15 as Meta sends them
    assert b"\\ud83d" in escaped
    assert post(client, wa, raw=escaped).status_code == 200
    texts = list(Message.objects.order_by("id").values_list("text", flat=True))
    assert texts == ["Olá 😕", "Olá 😕 again"]


@pytest.mark.parametrize("signature", [None, "", "sha256=", "sha256=" + "0" * 64, "sha1=abc", "RESIGN"])
def test_wrong_or_missing_signature_is_403_and_nothing_stored(client: Any, wa: Any, signature: str | None) -> None:
    body = json.dumps(wa_payload(messages=[wa_message()])).encode()
    if signature == "RESIGN":
        signature = sign(body, "another-secret")
    resp = post(client, wa, raw=body, signature=signature)
    assert resp.status_code == 403
    assert InboundEvent.objects.count() == 0
    assert Message.objects.count() == 0


def test_signature_over_other_bytes_is_refused(client: Any, wa: Any) -> None:
    body = json.dumps(wa_payload(messages=[wa_message()])).encode()
    resp = client.post(
        f"/webhooks/whatsapp/{wa.uuid}/",
        data=body.replace(b"order", b"ordex"),
        content_type="application/json",
        headers={"X-Hub-Signature-256": sign(body)},
    )
    assert resp.status_code == 403
    assert InboundEvent.objects.count() == 0


# --- WhatsApp inbound -----------------------------------------------------------------------
def test_text_message_becomes_a_ticket_with_phone_identity(client: Any, wa: Any) -> None:
    ts = 1764676800
    resp = post(client, wa, wa_payload(messages=[wa_message(ts=ts)]))
    assert resp.status_code == 200, resp.content
    message = Message.objects.get()
    assert message.text == "Where is my order?"
    assert message.external_id == "wamid.AAA"
    assert message.sent_at is not None
    assert int(message.sent_at.timestamp()) == ts
    ticket = message.ticket
    assert ticket.thread_key == "wa:14155550123"
    assert ticket.customer is not None
    assert ticket.customer.name == "Jana Nováková"
    assert list(Identity.objects.values_list("kind", "value")) == [("phone", "+14155550123")]
    assert InboundEvent.objects.get().dedupe_key == "wamid.AAA"


def test_bsuid_without_phone_is_its_own_identity(client: Any, wa: Any) -> None:
    message = wa_message()
    del message["from"]
    message["user_id"] = "US.13491208655302741918"
    assert post(client, wa, wa_payload(messages=[message])).status_code == 200
    assert list(Identity.objects.values_list("kind", "value")) == [("whatsapp", "US.13491208655302741918")]
    assert Ticket.objects.get().thread_key == "wa:US.13491208655302741918"


def test_replay_is_not_duplicated(client: Any, wa: Any) -> None:
    payload = wa_payload(messages=[wa_message()])
    assert post(client, wa, payload).status_code == 200
    assert post(client, wa, payload).status_code == 200
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


def test_multi_entry_batch_is_looped(client: Any, wa: Any) -> None:
    first = wa_payload(messages=[wa_message("wamid.1"), wa_message("wamid.2", text={"body": "second"})])
    second = wa_payload(messages=[wa_message("wamid.3", text={"body": "third"})])
    first["entry"].append(second["entry"][0])
    assert post(client, wa, first).status_code == 200
    assert sorted(InboundEvent.objects.values_list("dedupe_key", flat=True)) == ["wamid.1", "wamid.2", "wamid.3"]
    assert list(Message.objects.order_by("id").values_list("external_id", flat=True)) == [
        "wamid.1",
        "wamid.2",
        "wamid.3",
    ]
    assert Ticket.objects.count() == 1


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (json.dumps({"object": "page", "entry": []}).encode(), 400),
        (json.dumps({"object": "whatsapp_business_account", "entry": "x"}).encode(), 400),
        (json.dumps(wa_payload(messages=[{"type": "text"}])).encode(), 400),
        (json.dumps(wa_payload(messages=[wa_message()], phone_id="999")).encode(), 400),
    ],
)
def test_malformed_is_400_and_nothing_stored(client: Any, wa: Any, raw: bytes, status: int) -> None:
    assert post(client, wa, raw=raw).status_code == status
    assert InboundEvent.objects.count() == 0


def test_oversized_body_is_413(client: Any, wa: Any) -> None:
    raw = json.dumps(wa_payload(messages=[wa_message(text={"body": "x" * (3 * 1024 * 1024)})])).encode()
    assert post(client, wa, raw=raw).status_code == 413
    assert InboundEvent.objects.count() == 0


def test_unknown_type_is_kept_as_unsupported(client: Any, wa: Any) -> None:
    resp = post(client, wa, wa_payload(messages=[wa_message(type_="order", order={"catalog_id": "1"})]))
    assert resp.status_code == 200
    message = Message.objects.get()
    assert message.text == ""
    assert message.metadata["unsupported"] == {"type": "order"}


def test_location_interactive_button_and_context(client: Any, wa: Any) -> None:
    messages = [
        wa_message("wamid.L", type_="location", location={"latitude": 50.08, "longitude": 14.42, "name": "Shop"}),
        wa_message(
            "wamid.I",
            type_="interactive",
            interactive={"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}},
        ),
        wa_message(
            "wamid.B",
            type_="button",
            button={"text": "Stop promos", "payload": "stop"},
            context={"from": "1", "id": "wamid.OUT"},
        ),
    ]
    assert post(client, wa, wa_payload(messages=messages)).status_code == 200
    rows = {m.external_id: m for m in Message.objects.all()}
    assert rows["wamid.L"].text == "Location: 50.08, 14.42 (Shop)"
    assert rows["wamid.I"].text == "Yes"
    assert rows["wamid.B"].text == "Stop promos"
    assert rows["wamid.B"].metadata["reply_to"] == {"external_id": "wamid.OUT"}


@respx.mock
def test_media_is_downloaded_with_the_bearer_token(client: Any, wa: Any) -> None:
    content = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    lookup = respx.get(f"{GRAPH}/MEDIA1").mock(
        return_value=httpx.Response(
            200,
            json={
                "url": "https://lookaside.fbsbx.com/whatsapp/x?mid=1",
                "mime_type": "image/png",
                "sha256": hashlib.sha256(content).hexdigest(),
                "file_size": len(content),
            },
        )
    )
    download = respx.get("https://lookaside.fbsbx.com/whatsapp/x?mid=1").mock(
        return_value=httpx.Response(200, content=content, headers={"content-type": "image/png"})
    )
    image = {
        "id": "MEDIA1",
        "mime_type": "image/png",
        "sha256": hashlib.sha256(content).hexdigest(),
        "caption": "my parcel",
    }
    assert post(client, wa, wa_payload(messages=[wa_message(type_="image", image=image)])).status_code == 200
    assert lookup.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert download.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    message = Message.objects.get()
    assert message.text == "my parcel"
    attachment = message.attachments.get()
    assert attachment.size == len(content)
    assert attachment.sha256 == hashlib.sha256(content).hexdigest()
    assert "media_skipped" not in message.metadata


@respx.mock
def test_media_with_a_wrong_sha256_or_too_large_is_listed_not_stored(client: Any, wa: Any, settings: Any) -> None:
    settings.CHANNEL_MEDIA_MAX_BYTES = 100
    respx.get(f"{GRAPH}/M1").mock(
        return_value=httpx.Response(200, json={"url": "https://cdn.example/1", "sha256": "ab" * 32})
    )
    respx.get("https://cdn.example/1").mock(return_value=httpx.Response(200, content=b"abc"))
    respx.get(f"{GRAPH}/M2").mock(return_value=httpx.Response(200, json={"url": "https://cdn.example/2"}))
    respx.get("https://cdn.example/2").mock(return_value=httpx.Response(200, content=b"x" * 500))
    messages = [
        wa_message("wamid.1", type_="document", document={"id": "M1", "filename": "a.pdf"}),
        wa_message("wamid.2", type_="video", video={"id": "M2"}),
    ]
    assert post(client, wa, wa_payload(messages=messages)).status_code == 200
    rows = {m.external_id: m for m in Message.objects.all()}
    assert rows["wamid.1"].metadata["media_skipped"] == [{"type": "document", "reason": "sha256 does not match"}]
    assert rows["wamid.2"].metadata["media_skipped"][0]["type"] == "video"
    assert rows["wamid.2"].metadata["media_skipped"][0]["reason"].startswith("too large")
    assert not rows["wamid.1"].attachments.exists()


def test_reaction_is_stored_and_removed(client: Any, wa: Any) -> None:
    assert post(client, wa, wa_payload(messages=[wa_message("wamid.M")])).status_code == 200
    react = wa_message("wamid.R1", type_="reaction", reaction={"message_id": "wamid.M", "emoji": "👍"})
    assert post(client, wa, wa_payload(messages=[react])).status_code == 200
    message = Message.objects.get()
    assert [r["emoji"] for r in message.metadata["reactions"]] == ["👍"]
    assert message.metadata["reactions"][0]["by"] == "customer"
    events = message.ticket.events.filter(type=TicketEventType.MESSAGE_REACTED)
    assert [e.data["emoji"] for e in events] == ["👍"]
    unreact = wa_message("wamid.R2", type_="reaction", reaction={"message_id": "wamid.M", "emoji": ""})
    assert post(client, wa, wa_payload(messages=[unreact])).status_code == 200
    message.refresh_from_db()
    assert message.metadata["reactions"] == []
    unknown = wa_message("wamid.R3", type_="reaction", reaction={"message_id": "wamid.NOPE", "emoji": "❤"})
    assert post(client, wa, wa_payload(messages=[unknown])).status_code == 200
    assert InboundEvent.objects.get(dedupe_key="wamid.R3").status == InboundEventStatus.IGNORED
    assert Message.objects.count() == 1


# --- WhatsApp outbound ----------------------------------------------------------------------
@pytest.fixture
def wa_ticket(client: Any, wa: Any) -> Ticket:
    assert post(client, wa, wa_payload(messages=[wa_message()])).status_code == 200
    return Ticket.objects.get()


@respx.mock
def test_reply_is_sent_as_text_with_exact_request(wa_ticket: Ticket, admin_agent: Any) -> None:
    route = respx.post(f"{GRAPH}/{PHONE_ID}/messages").mock(
        return_value=httpx.Response(200, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT1"}]})
    )
    message = do_reply(wa_ticket, actor=admin_agent, text="It ships today.")
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "14155550123",
        "type": "text",
        "text": {"body": "It ships today."},
    }
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_id == "wamid.OUT1"


@respx.mock
def test_statuses_out_of_order_stay_read(client: Any, wa: Any, wa_ticket: Ticket, admin_agent: Any) -> None:
    respx.post(f"{GRAPH}/{PHONE_ID}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.OUT1"}]})
    )
    message = do_reply(wa_ticket, actor=admin_agent, text="Hi")
    assert post(client, wa, wa_payload(statuses=[wa_status("wamid.OUT1", "read")])).status_code == 200
    assert post(client, wa, wa_payload(statuses=[wa_status("wamid.OUT1", "delivered")])).status_code == 200
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.READ
    keys = set(InboundEvent.objects.values_list("dedupe_key", flat=True))
    assert {"status:wamid.OUT1:read", "status:wamid.OUT1:delivered"} <= keys
    assert InboundEvent.objects.get(dedupe_key="status:wamid.OUT1:delivered").status == InboundEventStatus.IGNORED


@respx.mock
def test_failed_status_carries_the_error(client: Any, wa: Any, wa_ticket: Ticket, admin_agent: Any) -> None:
    respx.post(f"{GRAPH}/{PHONE_ID}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.OUT2"}]})
    )
    message = do_reply(wa_ticket, actor=admin_agent, text="Hi")
    status = wa_status("wamid.OUT2", "failed", errors=[{"code": 131047, "title": "Re-engagement message"}])
    assert post(client, wa, wa_payload(statuses=[status])).status_code == 200
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "Re-engagement message" in message.delivery_error
    assert "131047" in message.delivery_error


@respx.mock
def test_server_error_is_retried_client_error_fails(wa_ticket: Ticket, admin_agent: Any) -> None:
    route = respx.post(f"{GRAPH}/{PHONE_ID}/messages")
    route.mock(return_value=httpx.Response(503, json={"error": {"message": "busy"}}))
    first = OutboundDelivery.objects.get(message=do_reply(wa_ticket, actor=admin_agent, text="one"))
    assert first.status == DeliveryStatus.QUEUED
    assert first.attempts == 1
    assert "503" in first.last_error
    route.mock(return_value=httpx.Response(400, json={"error": {"message": "bad param", "code": 100}}))
    second = OutboundDelivery.objects.get(message=do_reply(wa_ticket, actor=admin_agent, text="two"))
    assert second.status == DeliveryStatus.FAILED
    assert second.attempts == 1
    assert "400" in second.last_error


def age_customer_messages(ticket: Ticket, hours: float) -> None:
    Message.objects.filter(ticket=ticket, direction="inbound").update(
        created_at=timezone.now() - timedelta(hours=hours)
    )


def test_window_open_then_closed_with_templates(wa: Any, wa_ticket: Ticket) -> None:
    window = wa.adapter.reply_window(wa, wa_ticket)
    assert window.open is True
    assert window.closes_at is not None
    age_customer_messages(wa_ticket, 25)
    window = wa.adapter.reply_window(wa, wa_ticket)
    assert window.open is False
    assert "24 hours" in window.reason
    assert [(o.kind, o.name, o.language, o.params) for o in window.options] == [("template", "order_update", "en", 2)]


@respx.mock
def test_closed_window_refuses_free_form_and_sends_a_template(wa_ticket: Ticket, admin_agent: Any) -> None:
    route = respx.post(f"{GRAPH}/{PHONE_ID}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.T1"}]})
    )
    age_customer_messages(wa_ticket, 30)
    with pytest.raises(ReplyWindowClosed):
        do_reply(wa_ticket, actor=admin_agent, text="free form")
    assert not route.called
    template = {"name": "order_update", "language": "en", "params": ["Jana", "#1001"]}
    message = do_reply(wa_ticket, actor=admin_agent, text="Hi Jana, news on #1001", template=template)
    assert json.loads(route.calls.last.request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "14155550123",
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Jana"}, {"type": "text", "text": "#1001"}]}
            ],
        },
    }
    assert OutboundDelivery.objects.get(message=message).provider_id == "wamid.T1"


@respx.mock
def test_send_refuses_free_form_once_the_window_closed(wa_ticket: Ticket, admin_agent: Any) -> None:
    # queued while open (provider down), due again after the window closed: not sent
    route = respx.post(f"{GRAPH}/{PHONE_ID}/messages").mock(return_value=httpx.Response(500))
    delivery = OutboundDelivery.objects.get(message=do_reply(wa_ticket, actor=admin_agent, text="late"))
    assert delivery.status == DeliveryStatus.QUEUED
    age_customer_messages(wa_ticket, 30)
    OutboundDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert do_attempt_delivery(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert "24-hour window" in delivery.last_error
    assert route.call_count == 1


# --- Messenger / Instagram ------------------------------------------------------------------
def test_messenger_message_and_echo(client: Any, fb: Any) -> None:
    echo = page_message("m_echo", is_echo=True)
    reply = page_message("m_2", text="and this", reply_to={"mid": "m_1"})
    payload = page_payload("page", PAGE_ID, page_message("m_1"), echo, reply)
    assert post(client, fb, payload).status_code == 200
    assert sorted(InboundEvent.objects.values_list("dedupe_key", flat=True)) == ["m_1", "m_2"]
    rows = {m.external_id: m for m in Message.objects.all()}
    assert rows["m_1"].text == "Hello there"
    assert rows["m_2"].metadata["reply_to"] == {"external_id": "m_1"}
    assert list(Identity.objects.values_list("kind", "value")) == [("messenger", "PSID-77")]
    assert Ticket.objects.get().thread_key == "messenger:PSID-77"


def test_messenger_wrong_object_is_400(client: Any, fb: Any) -> None:
    assert post(client, fb, page_payload("instagram", PAGE_ID, page_message())).status_code == 400
    assert InboundEvent.objects.count() == 0


@respx.mock
def test_instagram_attachment_is_fetched_without_auth(client: Any, ig: Any) -> None:
    route = respx.get("https://lookaside.fbsbx.com/ig_messaging_cdn/photo.jpg?asset=1").mock(
        return_value=httpx.Response(200, content=b"\xff\xd8\xff" + b"1" * 40, headers={"content-type": "image/jpeg"})
    )
    event = page_message("ig_m1", sender="IGSID-9", text="")
    event["message"]["attachments"] = [
        {"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/photo.jpg?asset=1"}}
    ]
    assert post(client, ig, page_payload("instagram", IG_ID, event)).status_code == 200
    assert "authorization" not in route.calls.last.request.headers
    message = Message.objects.get()
    assert message.attachments.get().size == 43
    assert list(Identity.objects.values_list("kind", "value")) == [("instagram", "IGSID-9")]


@respx.mock
def test_messenger_reply_request_and_read_watermark(client: Any, fb: Any, admin_agent: Any) -> None:
    assert post(client, fb, page_payload("page", PAGE_ID, page_message())).status_code == 200
    ticket = Ticket.objects.get()
    route = respx.post(f"{GRAPH}/{PAGE_ID}/messages").mock(
        return_value=httpx.Response(200, json={"recipient_id": "PSID-77", "message_id": "m_out_1"})
    )
    message = do_reply(ticket, actor=admin_agent, text="Thanks!")
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "recipient": {"id": "PSID-77"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Thanks!"},
    }
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_id == "m_out_1"
    watermark = int((timezone.now() + timedelta(seconds=5)).timestamp() * 1000)
    read = {
        "sender": {"id": "PSID-77"},
        "recipient": {"id": PAGE_ID},
        "timestamp": watermark,
        "read": {"watermark": watermark},
    }
    assert post(client, fb, page_payload("page", PAGE_ID, read)).status_code == 200
    assert InboundEvent.objects.filter(dedupe_key=f"read:PSID-77:{watermark}").exists()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READ
    # an older watermark changes nothing
    old = int((timezone.now() - timedelta(hours=1)).timestamp() * 1000)
    early = {
        "sender": {"id": "PSID-77"},
        "recipient": {"id": PAGE_ID},
        "timestamp": old,
        "delivery": {"watermark": old},
    }
    assert post(client, fb, page_payload("page", PAGE_ID, early)).status_code == 200
    assert InboundEvent.objects.get(dedupe_key=f"delivery:PSID-77:{old}").status == InboundEventStatus.IGNORED


@respx.mock
def test_messenger_human_agent_tag_window(client: Any, fb: Any, admin_agent: Any) -> None:
    assert post(client, fb, page_payload("page", PAGE_ID, page_message())).status_code == 200
    ticket = Ticket.objects.get()
    route = respx.post(f"{GRAPH}/{PAGE_ID}/messages").mock(
        return_value=httpx.Response(200, json={"message_id": "m_out_2"})
    )
    age_customer_messages(ticket, 48)
    window = fb.adapter.reply_window(fb, ticket)
    assert window.open is False
    assert [(o.kind, o.name) for o in window.options] == [("tag", "HUMAN_AGENT")]
    with pytest.raises(ReplyWindowClosed):
        do_reply(ticket, actor=admin_agent, text="free")
    do_reply(ticket, actor=admin_agent, text="Agent here", tag="HUMAN_AGENT")
    assert json.loads(route.calls.last.request.content) == {
        "recipient": {"id": "PSID-77"},
        "messaging_type": "MESSAGE_TAG",
        "message": {"text": "Agent here"},
        "tag": "HUMAN_AGENT",
    }
    age_customer_messages(ticket, 24 * 8)
    window = fb.adapter.reply_window(fb, ticket)
    assert window.open is False
    assert window.options == ()


@respx.mock
def test_media_lookup_outage_is_retried_not_dropped(client: Any, wa: Any) -> None:
    respx.get(f"{GRAPH}/M9").mock(return_value=httpx.Response(503))
    message = wa_message("wamid.9", type_="audio", audio={"id": "M9", "mime_type": "audio/ogg"})
    assert post(client, wa, wa_payload(messages=[message])).status_code == 200
    event = InboundEvent.objects.get()
    assert event.attempts >= 1
    assert "503" in event.last_error
    assert event.status != InboundEventStatus.PROCESSED
    assert Message.objects.count() == 0


@respx.mock
def test_instagram_reply_exact_request(client: Any, ig: Any, admin_agent: Any) -> None:
    event = page_message("ig_m2", sender="IGSID-9", text="Do you ship to Brno?")
    assert post(client, ig, page_payload("instagram", IG_ID, event)).status_code == 200
    route = respx.post(f"{GRAPH}/{IG_ID}/messages").mock(
        return_value=httpx.Response(200, json={"recipient_id": "IGSID-9", "message_id": "ig_out_1"})
    )
    message = do_reply(Ticket.objects.get(), actor=admin_agent, text="Yes, we do.")
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "recipient": {"id": "IGSID-9"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Yes, we do."},
    }
    assert OutboundDelivery.objects.get(message=message).provider_id == "ig_out_1"


def test_instagram_deleted_message_is_flagged(client: Any, ig: Any) -> None:
    event = page_message("ig_m3", sender="IGSID-9", text="", is_deleted=True)
    assert post(client, ig, page_payload("instagram", IG_ID, event)).status_code == 200
    assert Message.objects.get().metadata["instagram"] == {"deleted": True}


def test_inbox_needs_its_secrets_and_id(db: Any) -> None:
    from channels_inbox.actions.inboxes import do_create_inbox

    with pytest.raises(ValueError, match="access_token"):
        do_create_inbox(kind="whatsapp", name="x", values={"phone_number_id": "1", "app_secret": "s"})
    with pytest.raises(ValueError, match="phone_number_id"):
        do_create_inbox(kind="whatsapp", name="y", values={"app_secret": "s", "access_token": "t"})


def test_messenger_reaction_postback_and_instagram_seen(client: Any, fb: Any) -> None:
    now = int(time.time() * 1000)
    react = {"sender": {"id": "PSID-77"}, "timestamp": now, "reaction": {"mid": "m_1", "action": "react", "emoji": "❤"}}
    postback = {
        "sender": {"id": "PSID-77"},
        "timestamp": now,
        "postback": {"mid": "m_pb", "title": "Track order", "payload": "TRACK"},
    }
    assert post(client, fb, page_payload("page", PAGE_ID, page_message(), postback)).status_code == 200
    assert post(client, fb, page_payload("page", PAGE_ID, react)).status_code == 200
    rows = {m.external_id: m for m in Message.objects.all()}
    assert rows["m_pb"].text == "Track order"
    assert [r["emoji"] for r in rows["m_1"].metadata["reactions"]] == ["❤"]
    unreact = {"sender": {"id": "PSID-77"}, "timestamp": now + 1, "reaction": {"mid": "m_1", "action": "unreact"}}
    assert post(client, fb, page_payload("page", PAGE_ID, unreact)).status_code == 200
    rows["m_1"].refresh_from_db()
    assert rows["m_1"].metadata["reactions"] == []


@respx.mock
def test_instagram_messaging_seen_marks_replies_read(client: Any, ig: Any, admin_agent: Any) -> None:
    event = page_message("ig_m4", sender="IGSID-9", text="hi")
    assert post(client, ig, page_payload("instagram", IG_ID, event)).status_code == 200
    respx.post(f"{GRAPH}/{IG_ID}/messages").mock(return_value=httpx.Response(200, json={"message_id": "ig_out_2"}))
    message = do_reply(Ticket.objects.get(), actor=admin_agent, text="hello")
    seen_at = int((timezone.now() + timedelta(seconds=5)).timestamp() * 1000)
    seen = {"sender": {"id": "IGSID-9"}, "recipient": {"id": IG_ID}, "timestamp": seen_at, "read": {"mid": "ig_out_2"}}
    assert post(client, ig, page_payload("instagram", IG_ID, seen)).status_code == 200
    assert InboundEvent.objects.filter(dedupe_key="read:IGSID-9:ig_out_2").exists()
    assert OutboundDelivery.objects.get(message=message).status == DeliveryStatus.READ


@respx.mock
def test_reaction_to_our_reply_is_stored_on_it(client: Any, wa: Any, wa_ticket: Ticket, admin_agent: Any) -> None:
    respx.post(f"{GRAPH}/{PHONE_ID}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.OUT9"}]})
    )
    reply = do_reply(wa_ticket, actor=admin_agent, text="Done!")
    react = wa_message("wamid.R9", type_="reaction", reaction={"message_id": "wamid.OUT9", "emoji": "🙏"})
    assert post(client, wa, wa_payload(messages=[react])).status_code == 200
    reply.refresh_from_db()
    assert [r["emoji"] for r in reply.metadata["reactions"]] == ["🙏"]
