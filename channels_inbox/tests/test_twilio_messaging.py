"""Twilio SMS/MMS and WhatsApp: signed webhooks, status callbacks, media, sending, opt-out."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
import respx
from django.conf import settings
from twilio.request_validator import RequestValidator

from channels_inbox.models import InboundEvent, InboundEventStatus, OutboundDelivery
from customers.models import Customer, Identity
from helpdesk.models import DeliveryStatus, Direction, Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNT = "AC" + "a" * 32
TOKEN = "test-auth-token"
API = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


def sid(n: int, prefix: str = "SM") -> str:
    return f"{prefix}{n:032x}"


@pytest.fixture
def sms_inbox(db: Any) -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(
        kind="twilio_sms",
        name="SMS",
        values={"account_sid": ACCOUNT, "from_number": "+14155550100", "auth_token": TOKEN, "default_region": "GB"},
    )
    return inbox


@pytest.fixture
def wa_inbox(db: Any) -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(
        kind="twilio_whatsapp",
        name="WhatsApp",
        values={
            "account_sid": ACCOUNT,
            "from_number": "+14155550111",
            "auth_token": TOKEN,
            "templates": [
                {"content_sid": "HX" + "b" * 32, "name": "follow_up", "language": "en", "body": "Hi {{1}}", "params": 1}
            ],
        },
    )
    return inbox


def url_of(inbox: Any) -> str:
    return f"{settings.SITE_URL}/webhooks/{inbox.kind}/{inbox.uuid}/"


def post_form(client: Any, inbox: Any, params: dict[str, Any], *, token: str = TOKEN) -> Any:
    """POST exactly as Twilio does: a form, signed over the URL and the sorted parameters."""
    signature = RequestValidator(token).compute_signature(url_of(inbox), params)
    return client.post(
        f"/webhooks/{inbox.kind}/{inbox.uuid}/",
        data=urlencode(params, doseq=True),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )


def inbound(n: int = 1, **extra: Any) -> dict[str, Any]:
    params = {
        "MessageSid": sid(n),
        "SmsSid": sid(n),
        "AccountSid": ACCOUNT,
        "From": "07700 900123",
        "To": "+14155550100",
        "Body": "Where is my parcel?",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
    }
    params.update(extra)
    return params


def test_signed_sms_is_stored_and_becomes_a_ticket(client: Any, sms_inbox: Any) -> None:
    resp = post_form(client, sms_inbox, inbound())
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"].startswith("text/xml")
    assert b"<Response/>" in resp.content
    event = InboundEvent.objects.get()
    assert (event.dedupe_key, event.status) == (sid(1), InboundEventStatus.PROCESSED)
    message = Message.objects.get()
    assert (message.text, message.external_id, message.direction) == ("Where is my parcel?", sid(1), Direction.INBOUND)
    assert message.metadata["twilio_sms"] == {"from": "+447700900123"}
    assert [(i.kind, i.value) for i in Identity.objects.all()] == [("phone", "+447700900123")]
    assert Ticket.objects.get().thread_key == "twilio_sms:+447700900123"


def test_json_body_signed_with_body_sha256_is_accepted(client: Any, sms_inbox: Any) -> None:
    import hashlib

    body = json.dumps(inbound(2)).encode()
    url = url_of(sms_inbox) + "?bodySHA256=" + hashlib.sha256(body).hexdigest()
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    resp = client.post(
        url.removeprefix(settings.SITE_URL),
        data=body,
        content_type="application/json",
        headers={"X-Twilio-Signature": signature},
    )
    assert resp.status_code == 200, resp.content
    assert Message.objects.get().external_id == sid(2)


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_wrong_signature_is_403_and_nothing_stored(client: Any, sms_inbox: Any, token: str) -> None:
    if token:
        resp = post_form(client, sms_inbox, inbound(), token=token)
    else:
        resp = client.post(
            f"/webhooks/twilio_sms/{sms_inbox.uuid}/",
            data=urlencode(inbound()),
            content_type="application/x-www-form-urlencoded",
        )
    assert resp.status_code == 403
    assert InboundEvent.objects.count() == 0
    assert Message.objects.count() == 0


def test_tampered_parameters_are_refused(client: Any, sms_inbox: Any) -> None:
    params = inbound()
    signature = RequestValidator(TOKEN).compute_signature(url_of(sms_inbox), params)
    params["Body"] = "changed"
    resp = client.post(
        f"/webhooks/twilio_sms/{sms_inbox.uuid}/",
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert resp.status_code == 403
    assert InboundEvent.objects.count() == 0


def test_replay_is_not_duplicated(client: Any, sms_inbox: Any) -> None:
    post_form(client, sms_inbox, inbound())
    resp = post_form(client, sms_inbox, inbound())
    assert resp.status_code == 200
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"AccountSid": ACCOUNT, "From": "+447700900123", "Body": "x"}, "MessageSid"),
        (inbound(MessageSid="SMnot-a-sid", SmsSid=""), "MessageSid"),
        (inbound(From=""), "From"),
        (inbound(From="12"), "phone"),
        (inbound(NumMedia="11"), "NumMedia"),
        (inbound(AccountSid="AC" + "f" * 32), "AccountSid"),
        ({"MessageSid": sid(5), "MessageStatus": "exploded"}, "MessageStatus"),
    ],
)
def test_malformed_body_is_400_and_nothing_stored(client: Any, sms_inbox: Any, params: Any, error: str) -> None:
    resp = post_form(client, sms_inbox, params)
    assert resp.status_code == 400, resp.content
    assert error in resp.json()["error"]
    assert InboundEvent.objects.count() == 0


def test_oversized_body_is_413_and_nothing_stored(client: Any, sms_inbox: Any) -> None:
    resp = post_form(client, sms_inbox, inbound(Body="x" * 70_000))
    assert resp.status_code == 413
    assert InboundEvent.objects.count() == 0


@respx.mock
def test_mms_media_is_fetched_with_basic_auth_and_oversize_is_listed(
    client: Any, sms_inbox: Any, settings: Any
) -> None:
    settings.CHANNEL_MEDIA_MAX_BYTES = 1000
    small = respx.get("https://api.twilio.com/media/ME1").mock(
        return_value=httpx.Response(200, content=b"\x89PNGdata", headers={"content-type": "image/png"})
    )
    respx.get("https://api.twilio.com/media/ME2").mock(
        return_value=httpx.Response(200, content=b"x" * 2000, headers={"content-type": "video/mp4"})
    )
    params = inbound(
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/media/ME1",
        MediaContentType0="image/png",
        MediaUrl1="https://api.twilio.com/media/ME2",
        MediaContentType1="video/mp4",
    )
    resp = post_form(client, sms_inbox, params)
    assert resp.status_code == 200
    assert small.calls[0].request.headers["authorization"].startswith("Basic ")
    import base64

    assert base64.b64decode(small.calls[0].request.headers["authorization"][6:]) == f"{ACCOUNT}:{TOKEN}".encode()
    message = Message.objects.get()
    assert [(a.filename, a.content_type) for a in message.attachments.all()] == [("media-1.png", "image/png")]
    assert message.metadata["media_skipped"] == [{"type": "video/mp4", "reason": "too large (2000 bytes, over 1000)"}]


def test_whatsapp_location_reply_and_unknown_types_are_kept(client: Any, wa_inbox: Any) -> None:
    base = {
        "From": "whatsapp:+5511987654321",
        "To": "whatsapp:+14155550111",
        "ProfileName": "Ana",
        "WaId": "5511987654321",
    }
    post_form(
        client, wa_inbox, inbound(1, **base, Body="", MessageType="location", Latitude="-23.5", Longitude="-46.6")
    )
    post_form(client, wa_inbox, inbound(2, **base, Body="", MessageType="interactive"))
    post_form(client, wa_inbox, inbound(3, **base, Body="yes", OriginalRepliedMessageSid=sid(9)))
    rows = {m.external_id: m for m in Message.objects.all()}
    assert rows[sid(1)].text == "Location: -23.5, -46.6"
    assert rows[sid(2)].text == ""
    assert rows[sid(2)].metadata["unsupported"] == {"type": "interactive"}
    assert rows[sid(3)].metadata["reply_to"] == {"external_id": sid(9)}
    customer = Customer.objects.get()
    assert customer.name == "Ana"
    assert rows[sid(3)].metadata["twilio_whatsapp"]["wa_id"] == "5511987654321"


def test_same_number_on_sms_then_whatsapp_is_one_customer(client: Any, sms_inbox: Any, wa_inbox: Any) -> None:
    post_form(client, sms_inbox, inbound(1, From="+447700900123"))
    post_form(client, wa_inbox, inbound(2, From="whatsapp:+447700900123", To="whatsapp:+14155550111"))
    assert Customer.objects.count() == 1
    assert Identity.objects.count() == 1
    assert Ticket.objects.count() == 2  # one conversation per inbox, one customer


# --- outbound ---------------------------------------------------------------------------------


def _customer_ticket(client: Any, inbox: Any, **extra: Any) -> Ticket:
    post_form(client, inbox, inbound(1, **extra))
    return Ticket.objects.get(inbox=inbox)


def twilio_answer(n: int) -> httpx.Response:
    return httpx.Response(201, json={"sid": sid(n), "status": "queued", "account_sid": ACCOUNT})


@respx.mock
def test_sms_reply_exact_request_with_media_and_status_callback(client: Any, sms_inbox: Any, agent: Any) -> None:
    from helpdesk.actions.replies import do_reply
    from helpdesk.composer import OutgoingFile

    ticket = _customer_ticket(client, sms_inbox)
    route = respx.post(API).mock(return_value=twilio_answer(100))
    message = do_reply(
        ticket,
        actor=agent,
        text="It ships today.",
        attachments=[OutgoingFile("a.png", b"\x89PNG1", "image/png"), OutgoingFile("b.png", b"\x89PNG2", "image/png")],
    )
    request = route.calls[0].request
    import base64

    assert base64.b64decode(request.headers["authorization"][6:]) == f"{ACCOUNT}:{TOKEN}".encode()
    form = parse_qs(request.content.decode())
    assert form["To"] == ["+447700900123"]
    assert form["From"] == ["+14155550100"]
    assert form["Body"] == ["It ships today."]
    assert form["StatusCallback"] == [url_of(sms_inbox)]
    assert len(form["MediaUrl"]) == 2
    assert all(u.startswith(settings.SITE_URL + "/files/api/") for u in form["MediaUrl"])
    delivery = OutboundDelivery.objects.get(message=message)
    assert (delivery.status, delivery.provider_id) == (DeliveryStatus.SENT, sid(100))
    message.refresh_from_db()
    assert message.metadata["twilio_sms"]["segments"] == 1


@respx.mock
def test_long_sms_is_split_on_words_and_segments_recorded(client: Any, sms_inbox: Any, agent: Any) -> None:
    from helpdesk.actions.replies import do_reply

    ticket = _customer_ticket(client, sms_inbox)
    route = respx.post(API).mock(side_effect=[twilio_answer(101), twilio_answer(102)])
    text = ("word " * 400).strip() + " ł"  # 2001 characters, the last part in UCS-2
    message = do_reply(ticket, actor=agent, text=text)
    bodies = [parse_qs(c.request.content.decode())["Body"][0] for c in route.calls]
    assert len(bodies) == 2
    assert all(len(b) <= 1600 for b in bodies)
    assert " ".join(bodies) == text
    message.refresh_from_db()
    parts = message.metadata["twilio_sms"]["parts"]
    assert [(p["encoding"], p["segments"]) for p in parts] == [("GSM-7", 11), ("UCS-2", 6)]
    assert OutboundDelivery.objects.get(message=message).provider_id == sid(101)


@respx.mock
def test_5xx_is_retried_and_4xx_fails(client: Any, sms_inbox: Any, agent: Any) -> None:
    from channels_inbox.actions.delivery import do_attempt_delivery
    from helpdesk.actions.replies import do_reply

    ticket = _customer_ticket(client, sms_inbox)
    error = {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}
    respx.post(API).mock(
        side_effect=[
            httpx.Response(503, json={"code": 20500, "message": "down", "status": 503}),
            httpx.Response(400, json=error),
        ]
    )
    message = do_reply(ticket, actor=agent, text="hi")  # first attempt on commit: 503
    delivery = OutboundDelivery.objects.get(message=message)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert "503" in delivery.last_error
    OutboundDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert do_attempt_delivery(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert "21610" in delivery.last_error


@respx.mock
def test_out_of_order_status_callbacks_move_only_forward(client: Any, sms_inbox: Any, agent: Any) -> None:
    from helpdesk.actions.replies import do_reply

    ticket = _customer_ticket(client, sms_inbox)
    respx.post(API).mock(return_value=twilio_answer(200))
    message = do_reply(ticket, actor=agent, text="hi")

    def status(value: str, **extra: Any) -> Any:
        return post_form(
            client, sms_inbox, {"MessageSid": sid(200), "MessageStatus": value, "AccountSid": ACCOUNT, **extra}
        )

    assert status("delivered").status_code == 200
    status("sent")
    status("queued")
    status("delivered")  # replay: deduped
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.DELIVERED
    keys = dict(InboundEvent.objects.filter(dedupe_key__startswith="status:").values_list("dedupe_key", "status"))
    assert keys == {
        f"status:{sid(200)}:delivered": InboundEventStatus.PROCESSED,
        f"status:{sid(200)}:sent": InboundEventStatus.IGNORED,
        f"status:{sid(200)}:queued": InboundEventStatus.IGNORED,
    }
    # a failure of another message, reported after "sent"
    respx.post(API).mock(return_value=twilio_answer(201))
    other = do_reply(ticket, actor=agent, text="again")
    post_form(client, sms_inbox, {"MessageSid": sid(201), "MessageStatus": "undelivered", "ErrorCode": "30003"})
    failed = OutboundDelivery.objects.get(message=other)
    assert failed.status == DeliveryStatus.FAILED
    assert failed.last_error == "Twilio undelivered, error 30003"


@respx.mock
def test_stop_opts_out_and_start_clears(client: Any, sms_inbox: Any, agent: Any) -> None:
    from channels_inbox.adapters.base import DeliveryError

    post_form(client, sms_inbox, inbound(1, Body=" stop "))
    identity = Identity.objects.get()
    assert identity.opted_out_at is not None
    assert Message.objects.get(external_id=sid(1)).text.strip() == "stop"  # still stored
    ticket = Ticket.objects.get()
    # no recipient while opted out
    assert sms_inbox.adapter.recipient_for(sms_inbox, [_ref(identity)]) == ""
    msg = Message.objects.create(ticket=ticket, direction=Direction.OUTBOUND, inbox=sms_inbox, text="hello")
    delivery = OutboundDelivery.objects.create(message=msg, inbox=sms_inbox, recipient=identity.value)
    with pytest.raises(DeliveryError) as caught:
        sms_inbox.adapter.send(sms_inbox, delivery)
    assert caught.value.retryable is False
    assert "opted out" in str(caught.value)
    post_form(client, sms_inbox, inbound(2, Body="START"))
    identity.refresh_from_db()
    assert identity.opted_out_at is None
    assert sms_inbox.adapter.recipient_for(sms_inbox, [_ref(identity)]) == "+447700900123"


def _ref(identity: Identity) -> Any:
    from channels_inbox.adapters.base import IdentityRef

    return IdentityRef(identity.kind, identity.value)


def test_sms_over_the_part_limit_is_refused(client: Any, sms_inbox: Any, settings: Any) -> None:
    from channels_inbox.adapters.base import DeliveryError

    settings.TWILIO_SMS_MAX_PARTS = 1
    ticket = _customer_ticket(client, sms_inbox)
    msg = Message.objects.create(ticket=ticket, direction=Direction.OUTBOUND, inbox=sms_inbox, text="a " * 1000)
    delivery = OutboundDelivery.objects.create(message=msg, inbox=sms_inbox, recipient="+447700900123")
    with pytest.raises(DeliveryError, match="needs 2 SMS") as caught:
        sms_inbox.adapter.send(sms_inbox, delivery)
    assert caught.value.retryable is False


def test_mms_over_limits_is_refused(client: Any, sms_inbox: Any) -> None:
    from channels_inbox.adapters.base import DeliveryError
    from helpdesk.attachments import store_attachment

    ticket = _customer_ticket(client, sms_inbox)
    msg = Message.objects.create(ticket=ticket, direction=Direction.OUTBOUND, inbox=sms_inbox, text="files")
    for i in range(11):
        store_attachment(msg, f"f{i}.png", b"x", "image/png")
    delivery = OutboundDelivery.objects.create(message=msg, inbox=sms_inbox, recipient="+447700900123")
    with pytest.raises(DeliveryError, match="at most 10 files") as caught:
        sms_inbox.adapter.send(sms_inbox, delivery)
    assert caught.value.retryable is False


@respx.mock
def test_whatsapp_window_refusal_and_template_send(client: Any, wa_inbox: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from channels_inbox.adapters.base import DeliveryError

    ticket = _customer_ticket(client, wa_inbox, From="whatsapp:+447700900123", To="whatsapp:+14155550111")
    Message.objects.filter(ticket=ticket).update(created_at=timezone.now() - timedelta(hours=25))
    window = wa_inbox.adapter.reply_window(wa_inbox, ticket)
    assert window.open is False
    assert [(o.kind, o.name, o.label) for o in window.options] == [("template", "HX" + "b" * 32, "follow_up")]
    free = Message.objects.create(ticket=ticket, direction=Direction.OUTBOUND, inbox=wa_inbox, text="hello")
    delivery = OutboundDelivery.objects.create(message=free, inbox=wa_inbox, recipient="+447700900123")
    route = respx.post(API).mock(return_value=twilio_answer(300))
    with pytest.raises(DeliveryError, match="24-hour") as caught:
        wa_inbox.adapter.send(wa_inbox, delivery)
    assert caught.value.retryable is False
    assert not route.called
    templated = Message.objects.create(
        ticket=ticket,
        direction=Direction.OUTBOUND,
        inbox=wa_inbox,
        text="Hi Ana",
        metadata={"template": {"name": "HX" + "b" * 32, "language": "en", "params": ["Ana"]}},
    )
    delivery = OutboundDelivery.objects.create(message=templated, inbox=wa_inbox, recipient="+447700900123")
    assert wa_inbox.adapter.send(wa_inbox, delivery).provider_id == sid(300)
    form = parse_qs(route.calls[0].request.content.decode())
    assert form["To"] == ["whatsapp:+447700900123"]
    assert form["From"] == ["whatsapp:+14155550111"]
    assert form["ContentSid"] == ["HX" + "b" * 32]
    assert json.loads(form["ContentVariables"][0]) == {"1": "Ana"}
    assert "Body" not in form


def test_sms_has_no_reply_window(client: Any, sms_inbox: Any) -> None:
    ticket = _customer_ticket(client, sms_inbox)
    assert sms_inbox.adapter.reply_window(sms_inbox, ticket) is None


def test_brazil_whatsapp_without_the_9_is_the_sms_customer(client: Any, sms_inbox: Any, wa_inbox: Any) -> None:
    post_form(client, sms_inbox, inbound(1, From="+5511987654321"))
    post_form(client, wa_inbox, inbound(2, From="whatsapp:+551187654321", To="whatsapp:+14155550111"))
    assert Customer.objects.count() == 1
    assert list(Identity.objects.values_list("value", flat=True)) == ["+5511987654321"]
