"""Outgoing email through a real SMTP conversation (aiosmtpd on a loopback port), the ESP
path through anymail's test backend, and auto-acknowledgements of new tickets."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.core import mail as django_mail
from django.db import transaction
from django.utils import timezone

from channels_inbox.actions.delivery import do_attempt_delivery
from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.email import outbound
from channels_inbox.email.outbound import (
    EspBackend,
    delivery_error,
    email_transport,
    fill_placeholders,
    is_machine_address,
    parse_smtp_url,
    queue_auto_acks,
)
from channels_inbox.email.tokens import numbers_in_addresses
from channels_inbox.models import Inbox, OutboundDelivery
from customers.models import IdentityKind
from helpdesk.actions.ingest import IngestResult
from helpdesk.actions.replies import do_reply
from helpdesk.attachments import store_attachment
from helpdesk.models import DeliveryStatus, Direction, Message, Ticket, TicketCC, TicketEventType, TicketStatus
from tests.factories import IdentityFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The AUTH tests speak plain SMTP on loopback on purpose.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

SMTP_USER = "desk@example.com"
SMTP_PASSWORD = "s3cret-Pa55word"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- a real SMTP server --------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    authenticated: bool
    accepted: bool

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.content, policy=policy.default)


@dataclass
class Recorder:
    """aiosmtpd handler: keeps every DATA it is given; answers as the test tells it to."""

    mails: list[Received] = field(default_factory=list)
    # Answers to the next DATA commands, in turn; then 250.
    data_replies: list[str] = field(default_factory=list)
    # Answer to every RCPT (None: accept).
    rcpt_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.data_replies.pop(0) if self.data_replies else "250 Message accepted for delivery"
        self.mails.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content or envelope.content,
                authenticated=bool(session.authenticated),
                accepted=reply.startswith("250"),
            )
        )
        return reply

    @property
    def accepted(self) -> list[Received]:
        return [m for m in self.mails if m.accepted]


@dataclass
class SmtpServer:
    port: int
    handler: Recorder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def _serve(**kwargs: Any) -> Iterator[SmtpServer]:
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.test", **kwargs)
    controller.start()
    try:
        yield SmtpServer(port=port, handler=handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from _serve()


@pytest.fixture
def auth_smtp() -> Iterator[SmtpServer]:
    """A server that takes mail only after AUTH (plain text allowed: loopback, no TLS)."""
    yield from _serve(authenticator=_authenticator, auth_required=True, auth_require_tls=False)


# --- inboxes and mail in -------------------------------------------------------------------------


def email_inbox(**values: Any) -> Inbox:
    inbox, _ = do_create_inbox(
        kind="email",
        name="Support",
        values={"address": "support@example.com", "aliases": "help@example.com", **values},
    )
    return inbox


@pytest.fixture
def inbox(smtp: SmtpServer) -> Inbox:
    return email_inbox(smtp_url=f"smtp://127.0.0.1:{smtp.port}")


def customer_mail(
    *,
    sender: str = "Jana Nováková <jana@example.org>",
    to: str = "Support <support@example.com>",
    subject: str = "Order 881 has not arrived",
    message_id: str = "<c-1@mail.example.org>",
    cc: str = "",
    headers: dict[str, str] | None = None,
    text: str = "Hello, my order #881 has not arrived yet.",
) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    if cc:
        mail["Cc"] = cc
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    mail["Date"] = "Mon, 01 Dec 2025 10:00:00 +0000"
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(text)
    return mail.as_bytes()


def receive(inbox: Inbox, raw: bytes) -> None:
    do_receive_email(inbox, raw, source="test")


def only_ticket() -> Ticket:
    return Ticket.objects.select_related("inbox", "customer").get()


def delivery_of(message: Message) -> OutboundDelivery:
    return OutboundDelivery.objects.get(message=message)


def body_parts(received: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content().replace("\r\n", "\n")
        for part in received.walk()
        if part.get_content_type() in ("text/plain", "text/html") and not part.get_filename()
    }


# --- agent replies over SMTP ---------------------------------------------------------------------


def test_agent_reply_arrives_with_threading_headers_bodies_and_attachment(
    inbox: Inbox, smtp: SmtpServer, agent: Any
) -> None:
    # given: a customer's mail (itself a reply in an older thread) copying a colleague and our alias
    receive(
        inbox,
        customer_mail(
            cc="Carl Colleague <Carl@Example.org>, Help <help@example.com>",
            headers={"References": "<older-1@mail.example.org> <older-2@mail.example.org>"},
        ),
    )
    ticket = only_ticket()
    assert ticket.ccs.count() == 1
    # and: a CC whose only address is one of ours (never mailed)
    ours: Any = IdentityFactory(value="help+old@example.com", kind=IdentityKind.EMAIL)
    TicketCC.objects.create(ticket=ticket, customer=ours.customer)
    # when: the agent replies with an attachment
    with transaction.atomic():
        message = do_reply(ticket, actor=agent, text="Thanks & sorry <b>Jana</b>.\n\nIt ships today.")
        store_attachment(message, "Rechnung März.pdf", b"%PDF-1.4 invoice bytes", "application/pdf")
    # then: one SMTP transaction to the customer and the CC
    assert len(smtp.handler.accepted) == 1
    received = smtp.handler.accepted[0]
    assert received.mail_from == "support@example.com"
    assert sorted(received.rcpt_tos) == ["carl@example.org", "jana@example.org"]
    sent = received.message
    assert sent["From"].addresses[0].display_name == "Ada Agent (Support)"
    assert sent["From"].addresses[0].addr_spec == "support@example.com"
    assert [a.addr_spec for a in sent["To"].addresses] == ["jana@example.org"]
    assert [a.addr_spec for a in sent["Cc"].addresses] == ["carl@example.org"]
    reply_to = sent["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+")
    assert reply_to.endswith("@example.com")
    assert numbers_in_addresses(inbox, [reply_to]) == [ticket.number]
    assert sent["Subject"] == f"Re: Order 881 has not arrived [#{ticket.number}]"
    assert sent["X-Switchboard-Ticket"] == str(ticket.number)
    assert sent["Auto-Submitted"] is None
    # and: our Message-ID, stored on the message and the delivery
    message.refresh_from_db()
    delivery = delivery_of(message)
    assert message.external_id
    assert message.external_id.endswith("@example.com")
    assert sent["Message-ID"] == f"<{message.external_id}>"
    assert delivery.provider_id == message.external_id
    assert delivery.status == DeliveryStatus.SENT
    assert message.delivery_status == DeliveryStatus.SENT
    # and: chained to the customer's mail
    assert sent["In-Reply-To"] == "<c-1@mail.example.org>"
    assert sent["References"].split() == [
        "<older-1@mail.example.org>",
        "<older-2@mail.example.org>",
        "<c-1@mail.example.org>",
    ]
    # and: text and HTML alternatives (the text escaped into paragraphs) and the attachment
    parts = body_parts(sent)
    assert parts["text/plain"].strip() == "Thanks & sorry <b>Jana</b>.\n\nIt ships today."
    assert "<p>Thanks &amp; sorry &lt;b&gt;Jana&lt;/b&gt;.</p>" in parts["text/html"]
    assert "<p>It ships today.</p>" in parts["text/html"]
    files = list(sent.iter_attachments())
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [("Rechnung März.pdf", "application/pdf")]
    assert files[0].get_content() == b"%PDF-1.4 invoice bytes"


def test_html_reply_is_sent_as_written(inbox: Inbox, smtp: SmtpServer, agent: Any) -> None:
    # given
    receive(inbox, customer_mail())
    # when
    do_reply(only_ticket(), actor=agent, text="Plain version", html="<p>Rich <strong>version</strong></p>")
    # then
    parts = body_parts(smtp.handler.accepted[0].message)
    assert parts["text/plain"].strip() == "Plain version"
    assert "<p>Rich <strong>version</strong></p>" in parts["text/html"]


def test_customer_answer_to_our_mail_threads_back_onto_the_ticket(inbox: Inbox, smtp: SmtpServer, agent: Any) -> None:
    # given: our reply as the customer received it
    receive(inbox, customer_mail())
    ticket = only_ticket()
    do_reply(ticket, actor=agent, text="Could you send the order number?")
    sent = smtp.handler.accepted[0].message
    # when: the customer answers it the way a mail client does
    answer = EmailMessage()
    answer["From"] = "Jana Nováková <jana@example.org>"
    answer["To"] = str(sent["Reply-To"])
    answer["Subject"] = "Re: " + str(sent["Subject"])
    answer["Message-ID"] = make_msgid(domain="mail.example.org")
    answer["In-Reply-To"] = str(sent["Message-ID"])
    answer["References"] = f"{sent['References']} {sent['Message-ID']}"
    answer.set_content("It is 881.")
    receive(inbox, answer.as_bytes())
    # then: on the same ticket
    assert Ticket.objects.count() == 1
    inbound = ticket.messages.filter(direction=Direction.INBOUND).order_by("id")
    assert [m.text.strip() for m in inbound] == ["Hello, my order #881 has not arrived yet.", "It is 881."]


@pytest.mark.parametrize("by", ["message_id", "reply_address"])
def test_each_of_our_headers_alone_threads_the_answer(inbox: Inbox, smtp: SmtpServer, agent: Any, by: str) -> None:
    # given
    receive(inbox, customer_mail())
    ticket = only_ticket()
    do_reply(ticket, actor=agent, text="Anything else?")
    sent = smtp.handler.accepted[0].message
    # when: an answer with a fresh subject that keeps only one of our threading handles
    answer = EmailMessage()
    answer["From"] = "jana@example.org"
    answer["To"] = str(sent["Reply-To"]) if by == "reply_address" else "support@example.com"
    answer["Subject"] = "one more thing"
    answer["Message-ID"] = make_msgid(domain="mail.example.org")
    if by == "message_id":
        answer["In-Reply-To"] = str(sent["Message-ID"])
    answer.set_content("Also the invoice, please.")
    receive(inbox, answer.as_bytes())
    # then
    assert Ticket.objects.count() == 1
    assert ticket.messages.filter(direction=Direction.INBOUND).count() == 2


def test_bounce_of_our_mail_finds_its_delivery_by_message_id(inbox: Inbox, smtp: SmtpServer, agent: Any) -> None:
    # given: a sent reply
    receive(inbox, customer_mail())
    ticket = only_ticket()
    message = do_reply(ticket, actor=agent, text="Shipped.")
    sent = smtp.handler.accepted[0].message
    # when: the customer's server reports it undeliverable, naming our Message-ID
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.org>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; jana@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 mailbox unavailable\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.com\r\nMessage-ID: {sent['Message-ID']}\r\nSubject: {sent['Subject']}\r\n\r\n"
        "--B--\r\n"
    ).encode()
    receive(inbox, dsn)
    # then
    delivery = delivery_of(message)
    assert delivery.status == DeliveryStatus.FAILED
    assert "mailbox unavailable" in delivery.last_error
    assert Ticket.objects.count() == 1


def test_smtp_login_uses_the_password_secret(auth_smtp: SmtpServer, agent: Any) -> None:
    # given: the user in the URL, the password as a secret
    inbox = email_inbox(smtp_url=f"smtp://desk%40example.com@127.0.0.1:{auth_smtp.port}", smtp_password=SMTP_PASSWORD)
    assert SMTP_PASSWORD not in str(inbox.settings)
    receive(inbox, customer_mail())
    # when
    message = do_reply(only_ticket(), actor=agent, text="Logged in.")
    # then
    assert delivery_of(message).status == DeliveryStatus.SENT
    assert len(auth_smtp.handler.accepted) == 1
    assert auth_smtp.handler.accepted[0].authenticated


def test_wrong_smtp_password_fails_at_once_and_shows_on_the_ticket(auth_smtp: SmtpServer, agent: Any) -> None:
    # given
    inbox = email_inbox(
        smtp_url=f"smtp://desk%40example.com@127.0.0.1:{auth_smtp.port}", smtp_password="not-the-Pa55word"
    )
    receive(inbox, customer_mail())
    ticket = only_ticket()
    # when
    message = do_reply(ticket, actor=agent, text="Will not arrive.")
    # then: failed after one attempt, with the server's reason and without the password
    delivery = delivery_of(message)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert "535" in delivery.last_error
    assert "login refused" in delivery.last_error
    assert "not-the-Pa55word" not in delivery.last_error
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "535" in message.delivery_error
    event = ticket.events.filter(type=TicketEventType.DELIVERY_CHANGED).last()
    assert event is not None
    assert event.data["status"] == "failed"
    assert "535" in event.data["error"]
    assert auth_smtp.handler.mails == []


def test_temporary_rejection_is_retried_with_backoff_and_the_same_message_id(
    inbox: Inbox, smtp: SmtpServer, agent: Any
) -> None:
    # given: the server turns the first DATA away for now
    smtp.handler.data_replies = ["451 4.3.0 try later"]
    receive(inbox, customer_mail())
    # when
    message = do_reply(only_ticket(), actor=agent, text="Second time lucky.")
    # then: still queued, due after the backoff
    delivery = delivery_of(message)
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.attempts == 1
    assert "451" in delivery.last_error
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=20)
    # when: the retry comes due
    OutboundDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert do_attempt_delivery(delivery.pk) == "sent"
    # then: delivered on the second attempt, with the Message-ID of the first
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 2
    first, second = smtp.handler.mails
    assert not first.accepted
    assert second.accepted
    assert first.message["Message-ID"] == second.message["Message-ID"] == f"<{delivery.provider_id}>"
    assert Message.objects.get(pk=message.pk).external_id == delivery.provider_id


def test_permanent_rejection_fails_at_once_with_the_reason(inbox: Inbox, smtp: SmtpServer, agent: Any) -> None:
    # given
    smtp.handler.rcpt_reply = "550 5.1.1 <jana@example.org>: no such user"
    receive(inbox, customer_mail())
    # when
    message = do_reply(only_ticket(), actor=agent, text="Nobody home.")
    # then
    delivery = delivery_of(message)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert "550 5.1.1" in delivery.last_error
    assert "no such user" in delivery.last_error
    message.refresh_from_db()
    assert "no such user" in message.delivery_error


def test_server_down_is_retried(agent: Any) -> None:
    # given: nothing listens on the inbox's SMTP port
    inbox = email_inbox(smtp_url=f"smtp://127.0.0.1:{free_port()}")
    receive(inbox, customer_mail())
    # when
    message = do_reply(only_ticket(), actor=agent, text="Anyone there?")
    # then
    delivery = delivery_of(message)
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.attempts == 1
    assert "connection refused" in delivery.last_error
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > timezone.now()


def test_without_smtp_url_or_esp_the_default_backend_sends(agent: Any) -> None:
    # given: no per-inbox transport (tests run Django's locmem backend as EMAIL_BACKEND)
    inbox = email_inbox()
    receive(inbox, customer_mail())
    # when
    message = do_reply(only_ticket(), actor=agent, text="Via the default backend.")
    # then
    assert delivery_of(message).status == DeliveryStatus.SENT
    assert len(django_mail.outbox) == 1
    sent = django_mail.outbox[0]
    assert sent.to == ["jana@example.org"]
    assert sent.extra_headers["Message-ID"] == f"<{Message.objects.get(pk=message.pk).external_id}>"


# --- ESPs through anymail ------------------------------------------------------------------------


def test_esp_path_passes_the_message_to_the_anymail_backend(monkeypatch: Any, agent: Any) -> None:
    # given: an ESP entry that is anymail's own test backend (it records instead of calling an API)
    monkeypatch.setitem(outbound.ESP_BACKENDS, "recorder", EspBackend("anymail.backends.test.EmailBackend"))
    inbox = email_inbox(esp="recorder", esp_api_key="key-123")
    receive(inbox, customer_mail())
    # when
    message = do_reply(only_ticket(), actor=agent, text="Through the ESP.")
    # then: the ESP got our message with our headers; its own id is kept beside ours
    delivery = delivery_of(message)
    assert delivery.status == DeliveryStatus.SENT
    assert len(django_mail.outbox) == 1
    sent: Any = django_mail.outbox[0]
    params = sent.anymail_test_params
    assert [a.addr_spec for a in params["to"]] == ["jana@example.org"]
    assert params["text_body"] == "Through the ESP."
    message.refresh_from_db()
    assert params["extra_headers"]["Message-ID"] == f"<{message.external_id}>"
    assert params["extra_headers"]["In-Reply-To"] == "<c-1@mail.example.org>"
    assert delivery.provider_id == message.external_id
    assert message.metadata["email"]["esp_message_id"] == "0"


@pytest.mark.parametrize(
    ("esp", "values", "expected"),
    [
        ("postmark", {"esp_api_key": "pm-token"}, {"server_token": "pm-token"}),
        (
            "mailgun",
            {"esp_api_key": "mg-key", "esp_sender_domain": "mg.example.com"},
            {"api_key": "mg-key", "sender_domain": "mg.example.com"},
        ),
        ("resend", {"esp_api_key": "re-key"}, {"api_key": "re-key"}),
        ("mailjet", {"esp_api_key": "pub:priv"}, {"api_key": "pub", "secret_key": "priv"}),
    ],
)
def test_esp_backend_gets_the_inbox_credentials(
    db: Any, esp: str, values: dict[str, str], expected: dict[str, str]
) -> None:
    # given
    inbox = email_inbox(esp=esp, **values)
    # when
    transport = email_transport(inbox)
    # then
    assert type(transport.connection).__module__ == f"anymail.backends.{esp}"
    for name, value in expected.items():
        assert getattr(transport.connection, name) == value


def test_esp_whose_library_is_missing_fails_with_a_clear_reason(agent: Any) -> None:
    # given: amazon_ses needs boto3, which this installation does not have
    inbox = email_inbox(esp="amazon_ses")
    receive(inbox, customer_mail())
    # when
    message = do_reply(only_ticket(), actor=agent, text="Via SES.")
    # then
    delivery = delivery_of(message)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert "boto3" in delivery.last_error


def test_unknown_esp_or_missing_key_fails_at_once(agent: Any) -> None:
    inbox = email_inbox(esp="pigeon")
    receive(inbox, customer_mail())
    delivery = delivery_of(do_reply(only_ticket(), actor=agent, text="x"))
    assert delivery.status == DeliveryStatus.FAILED
    assert "unknown ESP 'pigeon'" in delivery.last_error
    with pytest.raises(Exception, match="esp_api_key"):
        email_transport(email_inbox(esp="postmark"))


# --- error classification and settings -----------------------------------------------------------


def http_response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "Reason"
    response._content = b'{"message": "from the ESP"}'
    return response


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (smtplib.SMTPRecipientsRefused({"a@example.org": (450, b"4.2.0 mailbox busy")}), True),
        (
            smtplib.SMTPRecipientsRefused(
                {"a@example.org": (450, b"4.2.0 busy"), "b@example.org": (550, b"5.1.1 unknown")}
            ),
            False,
        ),
        (smtplib.SMTPDataError(451, b"4.3.0 try later"), True),
        (smtplib.SMTPDataError(554, b"5.7.1 spam"), False),
        (smtplib.SMTPSenderRefused(553, b"5.7.1 not yours", "support@example.com"), False),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), False),
        (smtplib.SMTPConnectError(421, b"too busy"), True),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (TimeoutError("timed out"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (AnymailAPIError("ESP down", status_code=503), True),
        (AnymailAPIError("slow down", status_code=429), True),
        (AnymailAPIError("no response"), True),
        (AnymailAPIError("bad request", status_code=400), False),
        (AnymailRecipientsRefused(), False),
        (AnymailRequestsAPIError("refused", response=http_response(422)), False),
        (AnymailRequestsAPIError("unavailable", response=http_response(502)), True),
        (AnymailRequestsAPIError("no answer"), True),
    ],
)
def test_failures_are_classified_as_temporary_or_permanent(exc: BaseException, retryable: bool) -> None:
    error = delivery_error(exc, label="test")
    assert error is not None
    assert error.retryable is retryable


def test_reasons_never_carry_secrets_and_unknown_errors_pass_through() -> None:
    error = delivery_error(
        smtplib.SMTPAuthenticationError(535, b"password hunter2-xyz rejected"), label="SMTP", hidden=["hunter2-xyz"]
    )
    assert error is not None
    assert "hunter2-xyz" not in str(error)
    assert "535" in str(error)
    assert delivery_error(KeyError("bug"), label="SMTP") is None


def test_smtp_urls_are_read_like_email_url() -> None:
    plain = parse_smtp_url("smtp://127.0.0.1:2525")
    assert (plain.host, plain.port, plain.username, plain.use_tls, plain.use_ssl) == (
        "127.0.0.1",
        2525,
        "",
        False,
        False,
    )
    tls = parse_smtp_url("smtp+tls://desk%40example.com@smtp.example.com")
    assert (tls.host, tls.port, tls.username, tls.use_tls, tls.use_ssl) == (
        "smtp.example.com",
        587,
        "desk@example.com",
        True,
        False,
    )
    ssl = parse_smtp_url("smtp+ssl://smtp.example.com")
    assert (ssl.port, ssl.use_tls, ssl.use_ssl) == (465, False, True)
    with pytest.raises(Exception, match="smtp_url"):
        parse_smtp_url("http://smtp.example.com")


# --- auto-acknowledgements -----------------------------------------------------------------------


@pytest.fixture
def ack_inbox(smtp: SmtpServer) -> Inbox:
    return email_inbox(smtp_url=f"smtp://127.0.0.1:{smtp.port}", auto_ack="true")


def test_new_ticket_is_acknowledged_once(ack_inbox: Inbox, smtp: SmtpServer) -> None:
    # when: a new request comes in
    receive(ack_inbox, customer_mail())
    # then: one acknowledgement, marked as machine-made, threading to the customer's mail
    ticket = only_ticket()
    assert len(smtp.handler.accepted) == 1
    received = smtp.handler.accepted[0]
    assert received.rcpt_tos == ["jana@example.org"]
    ack = received.message
    assert ack["Subject"] == f"We received your request [#{ticket.number}]"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert ack["Precedence"] == "auto_reply"
    assert ack["In-Reply-To"] == "<c-1@mail.example.org>"
    assert ack["References"] == "<c-1@mail.example.org>"
    assert numbers_in_addresses(ack_inbox, [ack["Reply-To"].addresses[0].addr_spec]) == [ticket.number]
    assert ack["From"].addresses[0].display_name == "Support"
    assert f"#{ticket.number}" in body_parts(ack)["text/plain"]
    # and: recorded as an automatic reply, not as an agent's answer
    message = ticket.messages.get(direction=Direction.OUTBOUND)
    assert message.author_agent is None
    assert message.metadata["auto_ack"] is True
    assert delivery_of(message).status == DeliveryStatus.SENT
    types = list(ticket.events.values_list("type", flat=True))
    assert TicketEventType.AUTO_REPLY_SENT in types
    assert TicketEventType.REPLY_ADDED not in types
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.NEW
    assert ticket.first_reply_at is None
    assert ticket.waiting_since is not None
    # when: the same sender opens a second ticket within the day
    receive(ack_inbox, customer_mail(subject="Another question", message_id="<c-2@mail.example.org>"))
    # then: a second ticket, no second acknowledgement
    assert Ticket.objects.count() == 2
    assert len(smtp.handler.accepted) == 1
    # when: a day later
    OutboundDelivery.objects.update(created_at=timezone.now() - timedelta(hours=25))
    receive(ack_inbox, customer_mail(subject="Third question", message_id="<c-3@mail.example.org>"))
    # then
    assert len(smtp.handler.accepted) == 2


def test_one_acknowledgement_per_sender_within_a_batch(ack_inbox: Inbox, smtp: SmtpServer, lost_tasks: Any) -> None:
    # given: two new requests of one sender stored, their processing tasks lost
    receive(ack_inbox, customer_mail())
    receive(ack_inbox, customer_mail(subject="Second", message_id="<c-2@mail.example.org>"))
    from channels_inbox.actions.process import do_process_inbound_event
    from channels_inbox.models import InboundEvent

    first = InboundEvent.objects.order_by("pk").first()
    assert first is not None
    # when: one worker processes both in one batch
    do_process_inbound_event(first.pk, batch_size=10)
    # then: two tickets, one acknowledgement queued
    assert Ticket.objects.count() == 2
    acks = OutboundDelivery.objects.filter(message__metadata__auto_ack=True)
    assert [d.recipient for d in acks] == ["jana@example.org"]


def test_automatic_mail_is_not_acknowledged(ack_inbox: Inbox, smtp: SmtpServer) -> None:
    # given: a known customer
    receive(ack_inbox, customer_mail())
    assert len(smtp.handler.accepted) == 1
    # when: their out-of-office notice arrives about something new
    receive(
        ack_inbox,
        customer_mail(
            subject="Out of office", message_id="<ooo-1@mail.example.org>", headers={"Auto-Submitted": "auto-replied"}
        ),
    )
    # then: nothing goes out
    assert len(smtp.handler.accepted) == 1


def test_acknowledgement_guards(ack_inbox: Inbox, smtp: SmtpServer) -> None:
    # given: a new ticket whose message we mark, in turn, as automatic or from a machine address
    receive(ack_inbox, customer_mail())
    ticket = only_ticket()
    message = ticket.messages.get(direction=Direction.INBOUND)
    OutboundDelivery.objects.all().delete()
    Message.objects.filter(direction=Direction.OUTBOUND).delete()
    cases = [
        {"from": "Jana <jana@example.org>", "automatic": ["auto-submitted"]},
        {"from": "Shop <no-reply@shop.example.org>"},
        {"from": "MAILER-DAEMON@mx.example.org"},
        {"from": "Us <support+old@example.com>"},
        {"parse_error": "broken", "from": "jana@example.org"},
    ]
    for summary in cases:
        message.metadata = {"email": summary}
        # when
        queue_auto_acks(ack_inbox, [IngestResult(message, ticket, created_ticket=True)])
    # then
    assert not OutboundDelivery.objects.exists()
    # and: the same result from a person is acknowledged (the guard is the metadata, not the setup)
    message.metadata = {"email": {"from": "Jana <jana@example.org>"}}
    queue_auto_acks(ack_inbox, [IngestResult(message, ticket, created_ticket=True)])
    assert OutboundDelivery.objects.count() == 1


def test_acknowledgement_disabled_sends_nothing(inbox: Inbox, smtp: SmtpServer) -> None:
    receive(inbox, customer_mail())
    assert Ticket.objects.count() == 1
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    assert smtp.handler.mails == []


def test_acknowledgement_text_from_settings(smtp: SmtpServer) -> None:
    # given: templates with placeholders, one unknown, one trying to reach an attribute
    inbox = email_inbox(
        smtp_url=f"smtp://127.0.0.1:{smtp.port}",
        auto_ack="yes",
        auto_ack_subject="Got it: {subject}",
        auto_ack_text="Dear {name}, ticket {number} about {subject}. {unknown} {name.__class__} {",
    )
    # when
    receive(inbox, customer_mail())
    # then: the token is added to a subject without one; unknown placeholders stay as written
    ticket = only_ticket()
    ack = smtp.handler.accepted[0].message
    assert ack["Subject"] == f"Got it: Order 881 has not arrived [#{ticket.number}]"
    text = body_parts(ack)["text/plain"].strip()
    assert text == (
        f"Dear Jana Nováková, ticket {ticket.number} about Order 881 has not arrived. {{unknown}} {{name.__class__}} {{"
    )


def test_placeholders_and_machine_addresses() -> None:
    assert fill_placeholders("{number}/{missing}/{number.real}", {"number": "7"}) == "7/{missing}/{number.real}"
    assert is_machine_address("noreply@example.org")
    assert is_machine_address("do-not-reply@example.org")
    assert is_machine_address("shop.no_reply@example.org")
    assert is_machine_address("mailer-daemon@example.org")
    assert is_machine_address("list-request@example.org")
    assert not is_machine_address("bruno.replyton@example.org")
    assert not is_machine_address("jana@example.org")
