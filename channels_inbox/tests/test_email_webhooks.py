"""ESP inbound webhooks (/webhooks/email/<esp>/<uuid>/): each ESP's request as the ESP sends it,
verified by anymail with the inbox's credentials, stored before the 200, deduplicated."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from channels_inbox.actions.inboxes import do_create_inbox, do_rotate_inbox_secret, do_update_inbox_settings
from channels_inbox.email.tokens import reply_address
from channels_inbox.models import InboundEvent, InboundEventStatus, Inbox
from customers.models import Identity
from helpdesk.models import Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

SIGNING_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
SUPPORT = "support@example.com"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass
class Mail:
    """What the customer sent; each ESP below delivers it its own way."""

    event_id: str = "evt-0001"
    message_id: str = "<CAF=jana.1@mail.customer.example>"
    subject: str = "Printer on fire"
    text: str = "Hello, the printer in room 4 is on fire.\n"
    html: str = "<p>Hello, the printer in room 4 is <b>on fire</b>.</p>"
    sender: str = "jana@customer.example"
    sender_name: str = "Jana Nováková"
    to: str = SUPPORT
    envelope_to: str = ""
    attachment: tuple[str, bytes, str] | None = ("report.txt", b"fire report\n", "text/plain")
    extra_headers: dict[str, str] = field(default_factory=dict)
    # Fixed raw bytes (else built from the fields, with fresh MIME boundaries).
    raw: bytes = b""

    @property
    def recipient(self) -> str:
        return self.envelope_to or self.to

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("Message-ID", self.message_id),
            ("Date", format_datetime(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))),
            ("From", f"{self.sender_name} <{self.sender}>"),
            ("To", self.to),
            ("Subject", self.subject),
            *self.extra_headers.items(),
        ]

    def mime(self) -> bytes:
        if self.raw:
            return self.raw
        message = EmailMessage()
        for name, value in self.headers():
            message[name] = value
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        if self.attachment:
            name, content, ctype = self.attachment
            maintype, subtype = ctype.split("/")
            message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
        return message.as_bytes()


@dataclass
class Req:
    data: Any
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def mailgun_signature(timestamp: str, token: str, key: str = SIGNING_KEY) -> str:
    return hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def _mailgun_security(mail: Mail) -> dict[str, str]:
    timestamp = "1772443800"
    token = hashlib.sha256(mail.event_id.encode()).hexdigest()[:50]
    return {"timestamp": timestamp, "token": token, "signature": mailgun_signature(timestamp, token)}


def mailgun_mime(mail: Mail) -> Req:
    """Mailgun route `forward("https://…/mailgun/…")` to a URL for raw MIME: `body-mime`."""
    return Req(
        data={
            "recipient": mail.recipient,
            "sender": mail.sender,
            "from": f"{mail.sender_name} <{mail.sender}>",
            "subject": mail.subject,
            "body-mime": mail.mime().decode("utf-8"),
            **_mailgun_security(mail),
        },
        content_type="multipart/form-data",
    )


def mailgun_parsed(mail: Mail) -> Req:
    """Mailgun's fully parsed form: message-headers, body-plain/html, stripped-text, attachment-N."""
    data: dict[str, Any] = {
        "recipient": mail.recipient,
        "sender": mail.sender,
        "from": f"{mail.sender_name} <{mail.sender}>",
        "subject": mail.subject,
        "body-plain": mail.text,
        "body-html": mail.html,
        "stripped-text": mail.text.strip(),
        "message-headers": json.dumps([list(h) for h in mail.headers()]),
        "content-id-map": "{}",
        **_mailgun_security(mail),
    }
    if mail.attachment:
        name, content, ctype = mail.attachment
        data["attachment-count"] = "1"
        data["attachment-1"] = SimpleUploadedFile(name, content, content_type=ctype)
    return Req(data=data, content_type="multipart/form-data")


def postmark(mail: Mail) -> Req:
    """Postmark inbound JSON (no RawEmail): FromFull, ToFull, Headers, bodies, base64 attachments."""
    attachments = []
    if mail.attachment:
        name, content, ctype = mail.attachment
        attachments.append(
            {
                "Name": name,
                "Content": base64.b64encode(content).decode(),
                "ContentType": ctype,
                "ContentLength": len(content),
                "ContentID": "",
            }
        )
    skip = {"From", "To", "Subject", "Date"}
    payload = {
        "FromName": mail.sender_name,
        "MessageStream": "inbound",
        "From": mail.sender,
        "FromFull": {"Email": mail.sender, "Name": mail.sender_name, "MailboxHash": ""},
        "To": mail.to,
        "ToFull": [{"Email": mail.to, "Name": "", "MailboxHash": ""}],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": mail.recipient,
        "Subject": mail.subject,
        "MessageID": mail.event_id,
        "ReplyTo": "",
        "MailboxHash": "",
        "Date": "Mon, 2 Mar 2026 09:30:00 +0000",
        "TextBody": mail.text,
        "HtmlBody": mail.html,
        "StrippedTextReply": mail.text.strip(),
        "Tag": "",
        "Headers": [
            {"Name": "Return-Path", "Value": f"<{mail.sender}>"},
            {"Name": "X-Spam-Score", "Value": "0.4"},
            *({"Name": n, "Value": v} for n, v in mail.headers() if n not in skip),
        ],
        "Attachments": attachments,
    }
    return Req(data=json.dumps(payload))


def sendgrid_raw(mail: Mail) -> Req:
    """SendGrid Inbound Parse with "POST the raw, full MIME message": the `email` field."""
    return Req(
        data={
            "email": mail.mime().decode("utf-8"),
            "to": mail.to,
            "from": f"{mail.sender_name} <{mail.sender}>",
            "subject": mail.subject,
            "envelope": json.dumps({"to": [mail.recipient], "from": mail.sender}),
            "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}),
            "spam_score": "0.1",
            "SPF": "pass",
            "dkim": "{@customer.example : pass}",
            "sender_ip": "192.0.2.10",
        },
        content_type="multipart/form-data",
    )


def sendgrid_parsed(mail: Mail) -> Req:
    """SendGrid Inbound Parse default: `headers` block, text, html, attachment-info, attachmentN."""
    data: dict[str, Any] = {
        "headers": "".join(f"{n}: {v}\r\n" for n, v in mail.headers()),
        "text": mail.text,
        "html": mail.html,
        "to": mail.to,
        "from": f"{mail.sender_name} <{mail.sender}>",
        "subject": mail.subject,
        "envelope": json.dumps({"to": [mail.recipient], "from": mail.sender}),
        "charsets": json.dumps({"to": "UTF-8", "html": "UTF-8", "subject": "UTF-8", "from": "UTF-8", "text": "UTF-8"}),
        "spam_score": "0.1",
        "attachments": "0",
    }
    if mail.attachment:
        name, content, ctype = mail.attachment
        data["attachments"] = "1"
        data["attachment-info"] = json.dumps({"attachment1": {"filename": name, "name": name, "type": ctype}})
        data["attachment1"] = SimpleUploadedFile(name, content, content_type=ctype)
    return Req(data=data, content_type="multipart/form-data")


TOPIC = "arn:aws:sns:eu-west-1:123456789012:switchboard-inbound"


def _sns(message_type: str, body: dict[str, Any]) -> Req:
    return Req(
        data=json.dumps({"Type": message_type, **body}),
        content_type="text/plain; charset=UTF-8",
        headers={
            "x-amz-sns-message-type": message_type,
            "x-amz-sns-message-id": body["MessageId"],
            "x-amz-sns-topic-arn": TOPIC,
            "User-Agent": "Amazon Simple Notification Service Agent",
        },
    )


def amazon_ses(mail: Mail) -> Req:
    """An SNS Notification carrying an SES receipt whose action is SNS with BASE64 content."""
    receipt = {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-03-02T09:30:01.000Z",
            "source": mail.sender,
            "messageId": mail.event_id,
            "destination": [mail.to],
            "headersTruncated": False,
            "headers": [{"name": n, "value": v} for n, v in mail.headers()],
            "commonHeaders": {"from": [mail.sender], "to": [mail.to], "subject": mail.subject},
        },
        "receipt": {
            "timestamp": "2026-03-02T09:30:01.000Z",
            "processingTimeMillis": 310,
            "recipients": [mail.recipient],
            "spamVerdict": {"status": "PASS"},
            "virusVerdict": {"status": "PASS"},
            "spfVerdict": {"status": "PASS"},
            "dkimVerdict": {"status": "PASS"},
            "dmarcVerdict": {"status": "PASS"},
            "action": {"type": "SNS", "topicArn": TOPIC, "encoding": "BASE64"},
        },
        "content": base64.b64encode(mail.mime()).decode(),
    }
    return _sns(
        "Notification",
        {
            "MessageId": f"sns-{mail.event_id}",
            "TopicArn": TOPIC,
            "Subject": "Amazon SES Email Receipt Notification",
            "Message": json.dumps(receipt),
            "Timestamp": "2026-03-02T09:30:01.500Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+...",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        },
    )


def mailjet(mail: Mail) -> Req:
    """Mailjet Parse API JSON: Headers dict, Parts with ContentRef, Text-part, Html-part, AttachmentN."""
    payload: dict[str, Any] = {
        "Sender": mail.sender,
        "Recipient": mail.recipient,
        "Date": "20260302T093000",
        "From": f"{mail.sender_name} <{mail.sender}>",
        "Subject": mail.subject,
        "Headers": {"Return-Path": [f"<{mail.sender}>"], **dict(mail.headers())},
        "Parts": [
            {"Headers": {"Content-Type": 'text/plain; charset="UTF-8"'}, "ContentRef": "Text-part"},
            {"Headers": {"Content-Type": 'text/html; charset="UTF-8"'}, "ContentRef": "Html-part"},
        ],
        "SpamAssassinScore": "1.3",
        "Text-part": mail.text,
        "Html-part": mail.html,
    }
    if mail.attachment:
        name, content, ctype = mail.attachment
        payload["Parts"].append(
            {
                "Headers": {
                    "Content-Type": f'{ctype}; name="{name}"',
                    "Content-Disposition": f'attachment; filename="{name}"',
                    "Content-Transfer-Encoding": "base64",
                },
                "ContentRef": "Attachment1",
            }
        )
        payload["Attachment1"] = base64.b64encode(content).decode()
    return Req(data=json.dumps(payload))


def brevo(mail: Mail, attachments: list[dict[str, Any]] | None = None) -> Req:
    """Brevo inbound parsing webhook: `items`, each with Uuid, Headers, RawTextBody, RawHtmlBody."""
    item = {
        "Uuid": [mail.event_id],
        "MessageId": mail.message_id.strip("<>"),
        "InReplyTo": None,
        "From": {"Name": mail.sender_name, "Address": mail.sender},
        "To": [{"Name": None, "Address": mail.to}],
        "Cc": None,
        "ReplyTo": None,
        "SentAtDate": "Mon, 2 Mar 2026 09:30:00 +0000",
        "Subject": mail.subject,
        "Attachments": attachments or [],
        "Headers": {**dict(mail.headers()), "Delivered-To": mail.recipient, "Return-Path": f"<{mail.sender}>"},
        "SpamScore": 0.4,
        "ExtractedMarkdownMessage": mail.text.strip(),
        "ExtractedMarkdownSignature": None,
        "RawHtmlBody": mail.html,
        "RawTextBody": mail.text,
    }
    return Req(data=json.dumps({"items": [item]}))


BUILDERS: dict[str, tuple[str, Callable[[Mail], Req]]] = {
    "mailgun-mime": ("mailgun", mailgun_mime),
    "mailgun-parsed": ("mailgun", mailgun_parsed),
    "postmark": ("postmark", postmark),
    "sendgrid-raw": ("sendgrid", sendgrid_raw),
    "sendgrid-parsed": ("sendgrid", sendgrid_parsed),
    "amazon_ses": ("amazon_ses", amazon_ses),
    "mailjet": ("mailjet", mailjet),
    "brevo": ("brevo", lambda mail: brevo(replace(mail, attachment=None))),
}
VARIANTS = sorted(BUILDERS)


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def inbox(db: Any) -> Inbox:
    inbox, _ = do_create_inbox(
        kind="email",
        name="Support",
        slug="support",
        values={"address": SUPPORT, "esp_signing_key": SIGNING_KEY},
    )
    return inbox


def auth(inbox: Inbox, secret: str | None = None, user: str | None = None) -> str:
    credentials = f"{user or inbox.slug}:{secret if secret is not None else inbox.secret('webhook_secret')}"
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def post(
    client: Client,
    inbox: Inbox,
    esp: str,
    req: Req,
    *,
    authorization: str | None = "",
    uuid: str = "",
    suffix: str = "",
) -> Any:
    headers = dict(req.headers)
    if authorization == "":
        authorization = auth(inbox)
    if authorization is not None:
        headers["Authorization"] = authorization
    url = f"/webhooks/email/{esp}/{uuid or inbox.uuid}/{suffix}"
    if req.content_type == "multipart/form-data":
        return client.post(url, data=req.data, headers=headers)
    return client.post(url, data=req.data, content_type=req.content_type, headers=headers)


def deliver(client: Client, inbox: Inbox, variant: str, mail: Mail | None = None, **kwargs: Any) -> Any:
    esp, build = BUILDERS[variant]
    # Mailgun posts raw MIME only to a URL ending in "mime".
    suffix = "mime" if variant == "mailgun-mime" else ""
    return post(client, inbox, esp, build(mail or Mail()), suffix=suffix, **kwargs)


def test_mailgun_raw_mime_is_taken_at_both_of_its_urls(client: Client, inbox: Inbox) -> None:
    raw = Mail().mime()
    for index, suffix in enumerate(["mime", ""]):
        resp = post(client, inbox, "mailgun", mailgun_mime(Mail(event_id=f"m{index}", raw=raw)), suffix=suffix)
        assert resp.status_code == 200, resp.content
    assert [bytes(e.payload) for e in InboundEvent.objects.order_by("pk")] == [raw, raw]


def test_mailgun_parsed_form_without_attachments_comes_urlencoded(client: Client, inbox: Inbox) -> None:
    # given: Mailgun sends application/x-www-form-urlencoded when the mail has no attachments
    from urllib.parse import urlencode

    req = mailgun_parsed(Mail(attachment=None))
    # when
    resp = post(
        client, inbox, "mailgun", Req(data=urlencode(req.data), content_type="application/x-www-form-urlencoded")
    )
    # then
    assert resp.status_code == 200, resp.content
    event = InboundEvent.objects.get()
    assert event.headers["stripped-text"] == "Hello, the printer in room 4 is on fire."
    assert Ticket.objects.get().customer.name == "Jana Nováková"


# --- every ESP: stored, processed, deduplicated ---------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_valid_delivery_is_stored_then_becomes_a_ticket(client: Client, inbox: Inbox, variant: str) -> None:
    # when
    resp = deliver(client, inbox, variant)
    # then
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"stored": 1, "duplicates": 0}
    event = InboundEvent.objects.get()
    esp = BUILDERS[variant][0]
    assert event.headers["source"] == f"esp:{esp}"
    assert event.status == InboundEventStatus.PROCESSED, event.last_error
    assert b"Printer on fire" in bytes(event.payload)
    ticket = Ticket.objects.get()
    assert ticket.channel == "email"
    assert ticket.subject == "Printer on fire"
    assert ticket.customer.name == "Jana Nováková"
    assert Identity.objects.filter(kind="email", value="jana@customer.example", customer=ticket.customer).exists()
    message = ticket.messages.get()
    assert "printer in room 4 is on fire" in message.text
    assert event.message == message
    if variant != "brevo":
        attachment = message.attachments.get()
        assert attachment.filename == "report.txt"
        assert attachment.size == len(b"fire report\n")


@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - {"brevo"}))
def test_binary_attachments_arrive_byte_for_byte(client: Client, inbox: Inbox, variant: str) -> None:
    # given: a PNG (CR LF and NUL bytes inside) with a non-ASCII name
    mail = Mail(attachment=("Fotka č. 1.png", PNG, "image/png"))
    # when
    resp = deliver(client, inbox, variant, mail)
    # then
    assert resp.status_code == 200, resp.content
    attachment = Message.objects.get().attachments.get()
    assert attachment.sha256 == hashlib.sha256(PNG).hexdigest()
    assert attachment.size == len(PNG)
    assert attachment.content_type == "image/png"
    assert attachment.filename == "Fotka č. 1.png"


@pytest.mark.parametrize("variant", VARIANTS)
def test_redelivery_is_acknowledged_and_not_stored_twice(client: Client, inbox: Inbox, variant: str) -> None:
    # given
    assert deliver(client, inbox, variant).status_code == 200
    # when
    resp = deliver(client, inbox, variant)
    # then
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"stored": 0, "duplicates": 1}
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    ("variant", "key"),
    [
        ("mailgun-mime", "esp:mailgun:" + hashlib.sha256(b"evt-0001").hexdigest()[:50]),
        ("postmark", "esp:postmark:evt-0001"),
        ("amazon_ses", "esp:amazon_ses:evt-0001"),
        ("brevo", "esp:brevo:evt-0001"),
        # No event id from these two: the Message-ID.
        ("sendgrid-raw", "mid:CAF=jana.1@mail.customer.example"),
        ("mailjet", "mid:CAF=jana.1@mail.customer.example"),
    ],
)
def test_dedupe_key_is_the_esp_event_id_else_the_message_id(
    client: Client, inbox: Inbox, variant: str, key: str
) -> None:
    resp = deliver(client, inbox, variant)
    assert resp.status_code == 200, resp.content
    assert InboundEvent.objects.get().dedupe_key == key


@pytest.mark.parametrize("variant", VARIANTS)
def test_wrong_basic_auth_is_refused_and_nothing_is_stored(client: Client, inbox: Inbox, variant: str) -> None:
    for authorization in (auth(inbox, secret="guessed"), auth(inbox, user="other-inbox"), "Bearer x"):
        # when
        resp = deliver(client, inbox, variant, authorization=authorization)
        # then
        assert resp.status_code == 403, (authorization, resp.content)
    assert InboundEvent.objects.count() == 0
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - {"amazon_ses"}))
def test_missing_basic_auth_is_refused(client: Client, inbox: Inbox, variant: str) -> None:
    resp = deliver(client, inbox, variant, authorization=None)
    assert resp.status_code == 403, resp.content
    assert InboundEvent.objects.count() == 0


def test_another_inboxs_credentials_are_refused(client: Client, inbox: Inbox) -> None:
    # given
    other, _ = do_create_inbox(kind="email", name="Sales", values={"address": "sales@example.com"})
    # when: the other inbox's own credentials, on this inbox's URL
    resp = deliver(client, inbox, "postmark", authorization=auth(other))
    # then
    assert resp.status_code == 403, resp.content
    assert InboundEvent.objects.count() == 0


def test_previous_webhook_secret_works_until_the_next_rotation(client: Client, inbox: Inbox) -> None:
    # given
    old = inbox.secret("webhook_secret")
    new = do_rotate_inbox_secret(inbox, name="webhook_secret")
    # when / then
    assert deliver(client, inbox, "postmark", Mail(event_id="a"), authorization=auth(inbox, old)).status_code == 200
    assert deliver(client, inbox, "postmark", Mail(event_id="b"), authorization=auth(inbox, new)).status_code == 200
    do_rotate_inbox_secret(inbox, name="webhook_secret")
    assert deliver(client, inbox, "postmark", Mail(event_id="c"), authorization=auth(inbox, old)).status_code == 403
    assert InboundEvent.objects.count() == 2


# --- Mailgun's signature --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["mailgun-mime", "mailgun-parsed"])
@pytest.mark.parametrize(
    "tamper",
    [
        {"signature": "0" * 64},
        {"signature": mailgun_signature("1772443800", "x" * 50, key="another-key")},
        {"timestamp": "1772443801"},
        {"token": "y" * 50},
        {"signature": None},
    ],
)
def test_mailgun_needs_its_signature_besides_basic_auth(
    client: Client, inbox: Inbox, variant: str, tamper: dict[str, str | None]
) -> None:
    # given: right basic auth, wrong or missing signature fields
    req = BUILDERS[variant][1](Mail())
    for name, value in tamper.items():
        if value is None:
            del req.data[name]
        else:
            req.data[name] = value
    # when
    resp = post(client, inbox, "mailgun", req)
    # then
    assert resp.status_code == 403, resp.content
    assert InboundEvent.objects.count() == 0


def test_mailgun_without_a_signing_key_is_refused(client: Client, inbox: Inbox) -> None:
    # given: an inbox with no esp_signing_key (an empty key would be one anyone can sign with)
    inbox.secrets = {k: v for k, v in inbox.secrets.items() if k != "esp_signing_key"}
    inbox.save(update_fields=["secrets"])
    req = mailgun_mime(Mail())
    timestamp, token = req.data["timestamp"], req.data["token"]
    req.data["signature"] = hmac.new(b"", f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    # when
    resp = post(client, inbox, "mailgun", req)
    # then
    assert resp.status_code == 403, resp.content
    assert InboundEvent.objects.count() == 0


# --- malformed, oversized, wrong method and address ---------------------------------------------


def _malformed() -> list[tuple[str, Req]]:
    sgn = _mailgun_security(Mail())
    return [
        # signed, but neither body-mime nor message-headers
        ("mailgun", Req(data={"recipient": SUPPORT, **sgn}, content_type="multipart/form-data")),
        ("mailgun", Req(data={"body-plain": "x", **sgn}, content_type="multipart/form-data")),
        # a tracking event's JSON sent to the inbound URL
        (
            "mailgun",
            Req(data=json.dumps({"signature": {**sgn}, "event-data": {"event": "delivered"}})),
        ),
        ("postmark", Req(data="{not json")),
        ("postmark", Req(data="[1, 2]")),
        ("postmark", Req(data=json.dumps({"RecordType": "Bounce", "MessageID": "x"}))),
        ("postmark", Req(data=json.dumps({"Attachments": [{"Name": "a", "ContentType": "text/plain"}]}))),
        ("sendgrid", Req(data={"to": SUPPORT, "subject": "no headers nor email"}, content_type="multipart/form-data")),
        ("sendgrid", Req(data="\xff\xfe garbage", content_type="application/octet-stream")),
        ("amazon_ses", _sns("Notification", {"MessageId": "m-1", "Message": "{not json"})),
        (
            "amazon_ses",
            _sns("Notification", {"MessageId": "m-2", "Message": json.dumps({"notificationType": "Bounce"})}),
        ),
        (
            "amazon_ses",
            Req(
                data="{not json",
                content_type="text/plain",
                headers={"x-amz-sns-message-type": "Notification", "x-amz-sns-message-id": "m-3"},
            ),
        ),
        ("mailjet", Req(data="{not json")),
        ("mailjet", Req(data=json.dumps({"Parts": [{"ContentRef": "Attachment1"}]}))),
        ("brevo", Req(data="[1, 2]")),
        ("brevo", Req(data=json.dumps({"event": "delivered", "email": "x@example.com"}))),
        ("brevo", Req(data=json.dumps({"items": [{"Headers": 12}]}))),
    ]


@pytest.mark.parametrize(("esp", "req"), _malformed())
def test_a_body_anymail_cannot_read_is_a_400_and_nothing_is_stored(
    client: Client, inbox: Inbox, esp: str, req: Req
) -> None:
    # when
    resp = post(client, inbox, esp, req)
    # then
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_body_over_the_limit_is_a_413(client: Client, inbox: Inbox, variant: str, settings: Any) -> None:
    # given
    settings.EMAIL_MAX_BYTES = 1000
    settings.WEBHOOK_MAX_BODY_BYTES = 100_000
    big = Mail(text="fire " * 25_000, html="<p>fire</p>")
    # when
    resp = deliver(client, inbox, variant, big)
    # then
    assert resp.status_code == 413, resp.content
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_mail_over_email_max_bytes_in_a_small_body_is_a_413(
    client: Client, inbox: Inbox, variant: str, settings: Any
) -> None:
    # given: the request fits the body limit, the mail in it does not fit EMAIL_MAX_BYTES
    settings.EMAIL_MAX_BYTES = 600
    settings.WEBHOOK_MAX_BODY_BYTES = 1_000_000
    # when
    resp = deliver(client, inbox, variant)
    # then
    assert resp.status_code == 413, resp.content
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize("esp", ["mailgun", "postmark", "sendgrid", "amazon_ses", "mailjet", "brevo"])
def test_get_is_a_405(client: Client, inbox: Inbox, esp: str) -> None:
    resp = client.get(f"/webhooks/email/{esp}/{inbox.uuid}/", headers={"Authorization": auth(inbox)})
    assert resp.status_code == 405
    assert "POST" in resp["Allow"]


def test_unknown_esp_is_a_404(client: Client, inbox: Inbox) -> None:
    resp = post(client, inbox, "sparkmail", postmark(Mail()))
    assert resp.status_code == 404, resp.content
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize("uuid", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_inbox_is_a_404(client: Client, inbox: Inbox, uuid: str) -> None:
    resp = post(client, inbox, "postmark", postmark(Mail()), uuid=uuid)
    assert resp.status_code == 404, resp.content
    assert InboundEvent.objects.count() == 0


def test_inbox_of_another_kind_is_a_404(client: Client, api_inbox: Inbox) -> None:
    resp = post(client, api_inbox, "postmark", postmark(Mail()), authorization="Basic eDp5")
    assert resp.status_code == 404, resp.content
    assert InboundEvent.objects.count() == 0


def test_inactive_inbox_is_a_404(client: Client, inbox: Inbox) -> None:
    Inbox.objects.filter(pk=inbox.pk).update(is_active=False)
    resp = deliver(client, inbox, "postmark")
    assert resp.status_code == 404, resp.content


def test_the_generic_webhook_door_takes_no_email(client: Client, inbox: Inbox) -> None:
    resp = client.post(f"/webhooks/email/{inbox.uuid}/", data=b"{}", content_type="application/json")
    assert resp.status_code == 404


# --- what is kept ----------------------------------------------------------------------------------


def test_raw_mime_modes_store_the_original_bytes(client: Client, inbox: Inbox) -> None:
    # given: one mail, raw, through the three ESP modes that carry it whole
    raw = Mail().mime()
    # when
    for index, variant in enumerate(["mailgun-mime", "sendgrid-raw", "amazon_ses"]):
        resp = deliver(client, inbox, variant, Mail(event_id=f"e{index}", raw=raw))
        assert resp.status_code == 200, resp.content
        # then
        assert bytes(InboundEvent.objects.order_by("-pk").first().payload) == raw  # type: ignore[union-attr]
        InboundEvent.objects.all().update(message=None)
        InboundEvent.objects.all().delete()
    # Postmark, with "include raw email content in JSON payload" on
    req = postmark(Mail(event_id="e9"))
    req.data = json.dumps({**json.loads(req.data), "RawEmail": raw.decode()})
    assert post(client, inbox, "postmark", req).status_code == 200
    assert bytes(InboundEvent.objects.get().payload) == raw


def test_eight_bit_mail_in_a_form_field_keeps_its_exact_bytes(client: Client, inbox: Inbox) -> None:
    # given: a Latin-1 8bit body, posted by SendGrid's raw mode as the bytes it received
    raw = (
        b"Message-ID: <latin1@customer.example>\r\nFrom: Jana <jana@customer.example>\r\n"
        b"To: support@example.com\r\nSubject: Caf\xe9\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Le caf\xe9 est froid.\r\n"
    )
    boundary = b"xYzZY"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="email"\r\n\r\n' + raw + b"\r\n"
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="envelope"\r\n\r\n'
        b'{"to":["support@example.com"],"from":"jana@customer.example"}\r\n'
        b"--" + boundary + b"--\r\n"
    )
    # when
    resp = client.post(
        f"/webhooks/email/sendgrid/{inbox.uuid}/",
        data=body,
        content_type="multipart/form-data; boundary=xYzZY",
        headers={"Authorization": auth(inbox)},
    )
    # then
    assert resp.status_code == 200, resp.content
    event = InboundEvent.objects.get()
    assert bytes(event.payload) == raw
    assert Message.objects.get().text.startswith("Le café est froid.")


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("mailgun-parsed", {"envelope-sender": "jana@customer.example", "stripped-text": "Hello"}),
        ("postmark", {"envelope-sender": "jana@customer.example", "spam-score": "0.4", "spam-detected": "false"}),
        ("sendgrid-raw", {"envelope-sender": "jana@customer.example", "spam-score": "0.1"}),
        ("amazon_ses", {"envelope-sender": "jana@customer.example", "spam-detected": "false"}),
        ("mailjet", {"envelope-sender": "jana@customer.example", "spam-score": "1.3"}),
        ("brevo", {"spam-score": "0.4", "stripped-text": "Hello"}),
    ],
)
def test_esp_extras_are_kept_with_the_event(
    client: Client, inbox: Inbox, variant: str, expected: dict[str, str]
) -> None:
    resp = deliver(client, inbox, variant, Mail(envelope_to="support+desk@example.com"))
    assert resp.status_code == 200, resp.content
    headers = InboundEvent.objects.get().headers
    assert headers["envelope-recipient"] == "support+desk@example.com"
    for name, value in expected.items():
        assert headers[name].startswith(value), (name, headers)
    assert inbox.secret("webhook_secret") not in json.dumps(headers)


@pytest.mark.parametrize("variant", ["mailgun-mime", "postmark", "amazon_ses"])
def test_envelope_recipient_threads_a_bcc_reply_by_its_signed_address(
    client: Client, inbox: Inbox, variant: str
) -> None:
    # given: a ticket of Jana's, and her reply that names it only in the envelope (Bcc to the reply address)
    assert deliver(client, inbox, variant, Mail(event_id="first")).status_code == 200
    ticket = Ticket.objects.get()
    reply = Mail(
        event_id="second",
        message_id="<reply.2@mail.customer.example>",
        subject="Something else entirely",
        to="facilities@customer.example",
        envelope_to=reply_address(inbox, ticket.number),
    )
    # when
    resp = deliver(client, inbox, variant, reply)
    # then
    assert resp.status_code == 200, resp.content
    assert Ticket.objects.count() == 1
    assert ticket.messages.count() == 2


# --- Amazon SNS --------------------------------------------------------------------------------------


def test_amazon_sns_gets_a_401_challenge_before_it_sends_credentials(client: Client, inbox: Inbox) -> None:
    resp = deliver(client, inbox, "amazon_ses", authorization=None)
    assert resp.status_code == 401, resp.content
    assert resp["WWW-Authenticate"].startswith("Basic ")
    assert InboundEvent.objects.count() == 0


def test_sns_header_and_body_must_agree(client: Client, inbox: Inbox) -> None:
    req = amazon_ses(Mail())
    req.headers["x-amz-sns-message-id"] = "another-id"
    resp = post(client, inbox, "amazon_ses", req)
    assert resp.status_code == 403, resp.content
    assert InboundEvent.objects.count() == 0


def test_sns_subscription_confirmation_is_handed_to_the_admin_not_fetched(
    client: Client, inbox: Inbox, caplog: Any, monkeypatch: Any
) -> None:
    # given: any outbound HTTP from here would fail the test
    import requests

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no outbound request may be made")

    monkeypatch.setattr(requests.Session, "request", no_network)
    subscribe_url = (
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336412f37"
    )
    req = _sns(
        "SubscriptionConfirmation",
        {
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic …",
            "SubscribeURL": subscribe_url,
            "Timestamp": "2026-03-02T09:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
        },
    )
    # when
    with caplog.at_level(logging.WARNING, logger="channels_inbox.views.email_webhooks"):
        resp = post(client, inbox, "amazon_ses", req)
    # then
    assert resp.status_code == 200, resp.content
    assert resp.json() == {
        "stored": 0,
        "duplicates": 0,
        "subscription_confirmation": [{"topic_arn": TOPIC, "subscribe_url": subscribe_url}],
    }
    assert subscribe_url in caplog.text
    assert InboundEvent.objects.count() == 0


def test_sns_subscription_confirmation_with_wrong_credentials_is_refused(client: Client, inbox: Inbox) -> None:
    req = _sns(
        "SubscriptionConfirmation",
        {"MessageId": "m-9", "Token": "t", "TopicArn": TOPIC, "SubscribeURL": "https://sns.example/confirm"},
    )
    resp = post(client, inbox, "amazon_ses", req, authorization=auth(inbox, "guessed"))
    assert resp.status_code == 403, resp.content
    assert "subscribe" not in resp.content.decode().lower()


def test_ses_topic_validation_notification_stores_nothing(client: Client, inbox: Inbox) -> None:
    req = _sns(
        "Notification",
        {
            "MessageId": "m-10",
            "TopicArn": TOPIC,
            "Message": "Successfully validated SNS topic for Amazon SES event publishing.",
        },
    )
    resp = post(client, inbox, "amazon_ses", req)
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"stored": 0, "duplicates": 0}


def test_ses_s3_action_is_refused_with_an_explanation(client: Client, inbox: Inbox) -> None:
    # given: a receipt rule that stored the mail in S3 (not fetched: no outbound requests)
    req = amazon_ses(Mail())
    notification = json.loads(req.data)
    receipt = json.loads(notification["Message"])
    receipt["receipt"]["action"] = {"type": "S3", "bucketName": "mail", "objectKey": "abc", "topicArn": TOPIC}
    del receipt["content"]
    notification["Message"] = json.dumps(receipt)
    req.data = json.dumps(notification)
    # when
    resp = post(client, inbox, "amazon_ses", req)
    # then
    assert resp.status_code == 400, resp.content
    assert "SNS" in resp.json()["error"]
    assert InboundEvent.objects.count() == 0


# --- Brevo's attachments (fetched from Brevo's API) -------------------------------------------------


def test_brevo_attachments_are_fetched_with_the_api_key(
    client: Client, inbox: Inbox, httpserver: Any, settings: Any
) -> None:
    # given: Brevo's API on a loopback port, the inbox's API key set
    settings.ANYMAIL = {"BREVO_API_URL": httpserver.url_for("/v3/")}
    do_update_inbox_settings(inbox, values={"esp_api_key": "xkeysib-test"})
    httpserver.expect_request("/v3/inbound/attachments/tok-1", headers={"api-key": "xkeysib-test"}).respond_with_data(
        PNG, content_type="image/png"
    )
    attachment = {"Name": "photo.png", "ContentType": "image/png", "ContentLength": len(PNG), "DownloadToken": "tok-1"}
    # when
    resp = post(client, inbox, "brevo", brevo(Mail(attachment=None), attachments=[attachment]))
    # then
    assert resp.status_code == 200, resp.content
    stored = Message.objects.get().attachments.get()
    assert stored.filename == "photo.png"
    assert stored.size == len(PNG)


def test_brevo_attachments_without_an_api_key_are_a_503_so_brevo_retries(client: Client, inbox: Inbox) -> None:
    attachment = {"Name": "photo.png", "ContentType": "image/png", "ContentLength": 3, "DownloadToken": "tok-1"}
    resp = post(client, inbox, "brevo", brevo(Mail(attachment=None), attachments=[attachment]))
    assert resp.status_code == 503, resp.content
    assert "esp_api_key" in resp.json()["error"]
    assert InboundEvent.objects.count() == 0


def test_brevo_api_failure_is_a_503(client: Client, inbox: Inbox, httpserver: Any, settings: Any) -> None:
    settings.ANYMAIL = {"BREVO_API_URL": httpserver.url_for("/v3/")}
    do_update_inbox_settings(inbox, values={"esp_api_key": "xkeysib-test"})
    httpserver.expect_request("/v3/inbound/attachments/tok-1").respond_with_data("down", status=502)
    attachment = {"Name": "photo.png", "ContentType": "image/png", "ContentLength": 3, "DownloadToken": "tok-1"}
    resp = post(client, inbox, "brevo", brevo(Mail(attachment=None), attachments=[attachment]))
    assert resp.status_code == 503, resp.content
    assert InboundEvent.objects.count() == 0


def test_brevo_items_are_stored_together(client: Client, inbox: Inbox) -> None:
    # given: one request with two mails
    first = json.loads(brevo(Mail(event_id="u1", attachment=None)).data)["items"][0]
    second = json.loads(
        brevo(Mail(event_id="u2", message_id="<other@customer.example>", subject="Second", attachment=None)).data
    )["items"][0]
    # when
    resp = post(client, inbox, "brevo", Req(data=json.dumps({"items": [first, second]})))
    # then
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"stored": 2, "duplicates": 0}
    assert sorted(Ticket.objects.values_list("subject", flat=True)) == ["Printer on fire", "Second"]


def test_head_answers_for_a_known_inbox(client: Client, inbox: Inbox) -> None:
    assert client.head(f"/webhooks/email/postmark/{inbox.uuid}/").status_code == 200
    assert client.head("/webhooks/email/postmark/00000000-0000-0000-0000-000000000000/").status_code == 404


@pytest.mark.parametrize("variant", ["postmark", "mailgun-mime", "amazon_ses"])
def test_the_url_printed_at_creation_is_the_one_that_works(client: Client, db: Any, variant: str) -> None:
    # given: an inbox made from the shell, and the URL it printed for the ESP
    import io
    from urllib.parse import unquote, urlsplit

    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "inbox",
        "create",
        "--kind",
        "email",
        "--name",
        "Help",
        "--set",
        f"address={SUPPORT}",
        "--set",
        f"esp_signing_key={SIGNING_KEY}",
        "--json",
        stdout=out,
        stderr=io.StringIO(),
    )
    esp, build = BUILDERS[variant]
    url = urlsplit(json.loads(out.getvalue())["webhook_urls"][esp])
    credentials = base64.b64encode(f"{unquote(url.username or '')}:{unquote(url.password or '')}".encode()).decode()
    req = build(Mail())
    headers = {**req.headers, "Authorization": f"Basic {credentials}"}
    # when: the ESP posts to the URL's path with the URL's credentials
    if req.content_type == "multipart/form-data":
        resp = client.post(url.path, data=req.data, headers=headers)
    else:
        resp = client.post(url.path, data=req.data, content_type=req.content_type, headers=headers)
    # then
    assert resp.status_code == 200, resp.content
    assert Ticket.objects.get().subject == "Printer on fire"


@pytest.mark.parametrize("variant", ["mailgun-mime", "sendgrid-raw", "postmark", "mailjet"])
def test_mail_larger_than_djangos_form_limit_is_taken(
    client: Client, inbox: Inbox, variant: str, settings: Any
) -> None:
    # given: Django's in-memory limit for forms far below the mail's size (the limit is for the desk)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    big = Mail(attachment=("scan.bin", bytes(range(256)) * 400, "application/octet-stream"))
    # when
    resp = deliver(client, inbox, variant, big)
    # then
    assert resp.status_code == 200, resp.content
    assert Message.objects.get().attachments.get().size == 102_400
