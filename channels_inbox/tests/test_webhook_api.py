"""The API channel's webhook: signatures, validation, limits, durability and dedupe."""

from __future__ import annotations

import json
from typing import Any

import pytest

from channels_inbox.models import InboundEvent, InboundEventStatus
from conftest import api_payload, post_signed
from customers.models import Identity
from helpdesk.models import Message, Ticket, TicketEventType

pytestmark = pytest.mark.django_db(transaction=True)


def test_valid_message_is_stored_then_processed_into_a_ticket(client: Any, api_inbox: Any) -> None:
    # when
    resp = post_signed(client, api_inbox, api_payload())
    # then
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"stored": 1, "duplicates": 0}
    event = InboundEvent.objects.get()
    assert event.status == InboundEventStatus.PROCESSED
    assert json.loads(bytes(event.payload))["external_id"] == "msg-1"
    ticket = Ticket.objects.get()
    assert ticket.channel == "api"
    assert ticket.subject == "My order #881 has not arrived."
    assert ticket.customer.name == "Jana Nováková"
    assert {(i.kind, i.value) for i in Identity.objects.all()} == {
        ("external", f"{api_inbox.uuid}:user-42"),
        ("email", "jana@example.com"),
    }
    assert [e.type for e in ticket.events.order_by("seq")] == [
        TicketEventType.CREATED,
        TicketEventType.MESSAGE_RECEIVED,
    ]
    assert event.message == ticket.messages.get()


def test_redelivery_is_acknowledged_and_not_duplicated(client: Any, api_inbox: Any) -> None:
    # given
    post_signed(client, api_inbox, api_payload())
    # when
    resp = post_signed(client, api_inbox, api_payload())
    # then
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"stored": 0, "duplicates": 1}
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=", "sha256=" + "0" * 64, "md5=abc", "sha256=not-hex", "SHA256=" + "a" * 64],
)
def test_wrong_signature_is_refused_and_nothing_is_stored(client: Any, api_inbox: Any, signature: str) -> None:
    # when
    resp = client.post(
        f"/webhooks/api/{api_inbox.uuid}/",
        data=json.dumps(api_payload()),
        content_type="application/json",
        headers={"X-Switchboard-Signature": signature} if signature else {},
    )
    # then
    assert resp.status_code == 403, resp.content
    assert InboundEvent.objects.count() == 0


def test_signature_under_another_secret_is_refused(client: Any, api_inbox: Any) -> None:
    resp = post_signed(client, api_inbox, api_payload(), secret="guessed")
    assert resp.status_code == 403
    assert InboundEvent.objects.count() == 0


def test_signature_over_other_bytes_is_refused(client: Any, api_inbox: Any) -> None:
    # given: signed body, then tampered with in transit
    from channels_inbox.adapters.api import sign

    body = json.dumps(api_payload()).encode()
    signature = sign(api_inbox.secret("signing_secret"), body)
    tampered = body.replace(b"881", b"882")
    # when
    resp = client.post(
        f"/webhooks/api/{api_inbox.uuid}/",
        data=tampered,
        content_type="application/json",
        headers={"X-Switchboard-Signature": signature},
    )
    # then
    assert resp.status_code == 403
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"{}", "external_id"),
        (json.dumps(api_payload(external_id="")).encode(), "external_id"),
        (json.dumps(api_payload(external_id=12)).encode(), "external_id"),
        (json.dumps(api_payload(sender="bob")).encode(), "sender"),
        (json.dumps(api_payload(sender={"name": "x"})).encode(), "identifier"),
        (json.dumps(api_payload(sender={"identifier": "u", "email": "not-an-address"})).encode(), "email"),
        (json.dumps(api_payload(sender={"identifier": "u", "phone": "12"})).encode(), "phone"),
        (json.dumps(api_payload(text="")).encode(), "needs 'text'"),
        (json.dumps(api_payload(text=["a"])).encode(), "'text' must be a string"),
        (json.dumps(api_payload(sent_at="yesterday")).encode(), "sent_at"),
        (json.dumps(api_payload(sent_at="2026-01-01T10:00:00")).encode(), "time zone"),
        (json.dumps(api_payload(attachments={"a": 1})).encode(), "must be a list"),
        (json.dumps(api_payload(attachments=[{"filename": "a.txt", "data": "%%%"}])).encode(), "base64"),
        (json.dumps(api_payload(attachments=[{"filename": "a.txt", "data": "aGk="}] * 21)).encode(), "at most"),
        (json.dumps(api_payload(external_id="x" * 256)).encode(), "longer than"),
    ],
)
def test_malformed_body_is_a_400_and_nothing_is_stored(client: Any, api_inbox: Any, raw: bytes, error: str) -> None:
    # when
    resp = post_signed(client, api_inbox, None, raw=raw)
    # then
    assert resp.status_code == 400, resp.content
    assert error in resp.json()["error"]
    assert InboundEvent.objects.count() == 0


def test_body_over_the_limit_is_a_413(client: Any, api_inbox: Any, settings: Any) -> None:
    # given
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    # when
    resp = post_signed(client, api_inbox, api_payload(text="x" * 2000))
    # then
    assert resp.status_code == 413
    assert InboundEvent.objects.count() == 0


def test_attachment_over_the_limit_is_a_400(client: Any, api_inbox: Any, settings: Any) -> None:
    import base64

    settings.ATTACHMENT_MAX_BYTES = 10
    data = base64.b64encode(b"x" * 11).decode()
    resp = post_signed(client, api_inbox, api_payload(attachments=[{"filename": "big.bin", "data": data}]))
    assert resp.status_code == 400
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize("path", ["/webhooks/api/not-a-uuid/", "/webhooks/api/00000000-0000-0000-0000-000000000000/"])
def test_unknown_inbox_is_a_404(client: Any, db: Any, path: str) -> None:
    resp = client.post(path, data=b"{}", content_type="application/json")
    assert resp.status_code == 404


def test_inbox_of_another_kind_is_a_404(client: Any, api_inbox: Any) -> None:
    resp = client.post(f"/webhooks/twilio/{api_inbox.uuid}/", data=b"{}", content_type="application/json")
    assert resp.status_code == 404


def test_get_is_a_405(client: Any, api_inbox: Any) -> None:
    resp = client.get(f"/webhooks/api/{api_inbox.uuid}/")
    assert resp.status_code == 405


def test_previous_secret_still_verifies_after_rotation(client: Any, api_inbox: Any) -> None:
    # given
    from channels_inbox.actions.inboxes import do_rotate_inbox_secret

    old = api_inbox.secret("signing_secret")
    new = do_rotate_inbox_secret(api_inbox, name="signing_secret")
    # when / then
    assert post_signed(client, api_inbox, api_payload(external_id="a"), secret=old).status_code == 200
    assert post_signed(client, api_inbox, api_payload(external_id="b"), secret=new).status_code == 200
    assert Message.objects.count() == 2


def test_html_is_sanitized_and_attachments_are_sniffed(client: Any, api_inbox: Any) -> None:
    import base64

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    payload = api_payload(
        html='<p onclick="steal()">Hi <b>there</b><script>alert(1)</script><a href="javascript:x()">l</a></p>',
        attachments=[
            {"filename": "../../etc/passwd.exe", "content_type": "text/plain", "data": base64.b64encode(png).decode()}
        ],
    )
    resp = post_signed(client, api_inbox, payload)
    assert resp.status_code == 200, resp.content
    message = Message.objects.get()
    assert "<script" not in message.html
    assert "onclick" not in message.html
    assert "javascript:" not in message.html
    assert "<b>there</b>" in message.html
    attachment = message.attachments.get()
    assert attachment.filename == "passwd.exe"
    assert attachment.content_type == "image/png"
    assert attachment.declared_content_type == "text/plain"
    assert attachment.size == len(png)


def test_nul_characters_are_dropped_not_fatal(client: Any, api_inbox: Any) -> None:
    # given: NUL in every text field (PostgreSQL cannot store it)
    payload = api_payload(
        external_id="nul\u0000-1",
        subject="Sub\u0000ject",
        text="Hel\u0000lo",
        html="<p>Hel\u0000lo</p>",
        sender={"identifier": "u\u00001", "name": "Ja\u0000na"},
    )
    # when
    resp = post_signed(client, api_inbox, payload)
    # then
    assert resp.status_code == 200, resp.content
    assert InboundEvent.objects.get().status == InboundEventStatus.PROCESSED
    message = Message.objects.get()
    assert message.text == "Hello"
    assert message.external_id == "nul-1"
    assert "\x00" not in message.html
    assert message.ticket.subject == "Subject"
    assert message.ticket.customer.name == "Jana"
