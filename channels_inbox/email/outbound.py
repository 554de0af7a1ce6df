"""Outgoing mail: agent replies and auto-acknowledgements, through the inbox's email backend.

`send_delivery` turns one OutboundDelivery into a MIME message and hands it to the inbox's
backend: an anymail ESP (setting `esp`), an SMTP server (setting `smtp_url`), or Django's
default backend (EMAIL_URL). The headers make the answer find its ticket again:

- `Message-ID` is ours, made once per message and stored on it (`Message.external_id`)
  before the first attempt, so a retry sends the same id and a reply or a bounce that
  names it finds the message (and, as `provider_id`, the delivery);
- `Reply-To` is the ticket's signed reply address, the subject carries `[#N]`;
- `In-Reply-To`/`References` chain to the customer's latest mail (RFC 5322 §3.6.4).

Failures become `DeliveryError`s: temporary ones (4xx, timeouts, a server that is down,
an ESP's 429/5xx) are retried with backoff, permanent ones (5xx, a refused login, a
missing library) fail at once with the reason. Secrets never appear in a reason.

`queue_auto_acks` acknowledges new tickets (setting `auto_ack`), at most once per sender
per day, never to machines or to ourselves (RFC 3834). See docs/email.md.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import make_msgid, quote
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailError,
    AnymailRecipientsRefused,
)
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.utils import timezone
from django.utils.html import escape, linebreaks, strip_tags
from django.utils.module_loading import import_string

from channels_inbox.adapters.base import DeliveryError, SendResult
from channels_inbox.adapters.email import is_own_address, own_addresses, setting_flag
from channels_inbox.email.tokens import reply_address, subject_token, subject_with_token
from customers.models import Identity, IdentityKind
from customers.normalize import InvalidIdentity, normalize_email
from helpdesk.models import Direction, Message

if TYPE_CHECKING:
    from channels_inbox.models import Inbox, OutboundDelivery
    from helpdesk.actions.ingest import IngestResult
    from helpdesk.models import Ticket

# RFC 3834 §3.1.7 and Microsoft's extension: our acknowledgements are machine-made, and
# other responders must not answer them (no out-of-office ping-pong).
AUTO_REPLY_HEADERS = {
    "Auto-Submitted": "auto-replied",
    "X-Auto-Response-Suppress": "All",
    "Precedence": "auto_reply",
}
TICKET_HEADER = "X-Switchboard-Ticket"
# References: the thread's first id and its latest ones (RFC 5322 §3.6.4 lets us trim the middle).
MAX_REFERENCES = 10
ACK_INTERVAL = timedelta(hours=24)
DEFAULT_ACK_SUBJECT = "We received your request [#{number}]"
DEFAULT_ACK_TEXT = (
    "Hello,\n\n"
    'Thank you for your message. We have opened request #{number} ("{subject}") and will '
    "get back to you as soon as we can.\n\n"
    "To add anything, simply reply to this email and keep [#{number}] in the subject.\n\n"
    "This is an automatic message."
)
# Local parts that belong to machines and lists, never to a person who wants an answer
# (Zammad's send_no_auto_response_reg_exp, widened to the usual no-reply spellings).
_MACHINE_LOCAL = re.compile(
    r"^(mailer-daemon|postmaster|abuse|root|daemon|nobody|listserv|majordomo|bounces?|owner-.*|.*-request)$"
    r"|(^|[-_.])(no[-_.]?reply|do[-_.]?not[-_.]?reply)([-_.]|$)",
    re.I,
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_MESSAGE_ID = re.compile(r"^[\x21-\x7e]{1,250}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class EspBackend:
    """How to build one anymail ESP backend from an inbox's settings."""

    path: str
    # The backend's keyword for the API key (anymail names it per ESP).
    key_kwarg: str = "api_key"
    # For ESPs with two credentials, esp_api_key is "first:second" for these two keywords.
    key_pair: tuple[str, str] | None = None
    # A package the backend imports beyond requests (named when it is missing).
    requires: str = ""


# The ESPs anymail 15.2 sends through; keyword names from each backend's __init__.
ESP_BACKENDS: dict[str, EspBackend] = {
    "amazon_ses": EspBackend(
        "anymail.backends.amazon_ses.EmailBackend",
        key_kwarg="",
        key_pair=("aws_access_key_id", "aws_secret_access_key"),
        requires="boto3",
    ),
    "brevo": EspBackend("anymail.backends.brevo.EmailBackend"),
    "mailersend": EspBackend("anymail.backends.mailersend.EmailBackend", key_kwarg="api_token"),
    "mailgun": EspBackend("anymail.backends.mailgun.EmailBackend"),
    "mailjet": EspBackend("anymail.backends.mailjet.EmailBackend", key_pair=("api_key", "secret_key")),
    "mailtrap": EspBackend("anymail.backends.mailtrap.EmailBackend", key_kwarg="api_token"),
    "mandrill": EspBackend("anymail.backends.mandrill.EmailBackend"),
    "postal": EspBackend("anymail.backends.postal.EmailBackend"),
    "postmark": EspBackend("anymail.backends.postmark.EmailBackend", key_kwarg="server_token"),
    "resend": EspBackend("anymail.backends.resend.EmailBackend"),
    "sendgrid": EspBackend("anymail.backends.sendgrid.EmailBackend"),
    "sparkpost": EspBackend("anymail.backends.sparkpost.EmailBackend"),
}


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str
    use_tls: bool
    use_ssl: bool


@dataclass
class Transport:
    """A backend ready to send, with how to name it in errors and what to keep out of them."""

    connection: BaseEmailBackend
    label: str
    hidden: tuple[str, ...] = ()
    esp: bool = False


# --- sending ---------------------------------------------------------------------------------


def send_delivery(inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
    """Send one delivery's message; returns our Message-ID (without <>) as the provider id."""
    address = _inbox_address(inbox)
    message = delivery.message
    message_id = ensure_message_id(message, address.rpartition("@")[2])
    mail = build_email(inbox, delivery, message_id)
    transport = email_transport(inbox)
    try:
        sent = transport.connection.send_messages([mail])
    except Exception as exc:
        error = delivery_error(exc, label=transport.label, hidden=transport.hidden)
        if error is None:
            raise
        raise error from exc
    if not sent:
        raise DeliveryError(f"{transport.label}: the backend did not send the message", retryable=False)
    if transport.esp:
        _remember_esp_message_id(message.pk, getattr(getattr(mail, "anymail_status", None), "message_id", None))
    return SendResult(provider_id=message_id)


def ensure_message_id(message: Message, domain: str) -> str:
    """The message's Message-ID (without <>): made and stored once, before the first attempt.

    Stored with its own UPDATE (committed at once: sending runs outside a transaction), so
    a retry, even by another worker, sends the same id.
    """
    if message.external_id:
        return message.external_id
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    candidate = make_msgid(domain=domain or None).strip("<>")
    if not Message.objects.filter(pk=message.pk, external_id="").update(external_id=candidate):
        candidate = Message.objects.filter(pk=message.pk).values_list("external_id", flat=True).get()
    message.external_id = candidate
    return candidate


def build_email(inbox: Inbox, delivery: OutboundDelivery, message_id: str) -> EmailMultiAlternatives:
    message = delivery.message
    ticket = message.ticket
    auto_ack = bool(message.metadata.get("auto_ack"))
    name = from_name(inbox, message)
    address = _inbox_address(inbox)
    stored_subject = str((message.metadata.get("email") or {}).get("subject") or "")
    subject = _one_line(stored_subject or subject_with_token(ticket.subject, ticket.number))
    headers = {"Message-ID": f"<{message_id}>", TICKET_HEADER: str(ticket.number)}
    headers.update(thread_headers(ticket))
    if auto_ack:
        headers.update(AUTO_REPLY_HEADERS)
    text = message.text or strip_tags(message.html)
    html = message.html or linebreaks(text, autoescape=True)
    continuity = not auto_ack and is_chat_continuity(delivery)
    link = chat_link(ticket) if continuity else ""
    if link:
        # A chat continued by email: the visitor may go back to the conversation page. The link
        # opens that conversation for whoever holds it, so it goes to the visitor alone.
        text = f"{text}\n\nContinue the conversation: {link}"
        html = f'{html}\n<p>Continue the conversation: <a href="{escape(link)}">{escape(link)}</a></p>'
    mail = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=mailbox(name, address),
        to=[delivery.recipient],
        # An acknowledgement answers its sender only; replies go to everyone on the ticket.
        # A chat's continuity copy goes to the visitor only (it carries their conversation link).
        cc=[] if auto_ack or continuity else cc_addresses(inbox, ticket, exclude=[delivery.recipient]),
        reply_to=[reply_address(inbox, ticket.number)],
        headers=headers,
    )
    mail.attach_alternative(html, "text/html")
    for attachment in message.attachments.all():
        with attachment.file.open("rb") as handle:
            content = handle.read()
        mail.attach(attachment.filename, content, attachment.content_type or "application/octet-stream")
    return mail


def is_chat_continuity(delivery: OutboundDelivery) -> bool:
    """Whether this mail is a live chat's continuity copy (actions/chat.py
    do_queue_chat_continuity_email): the same message also has a delivery to a chat visitor."""
    from channels_inbox.models import OutboundDelivery

    return (
        OutboundDelivery.objects.filter(message_id=delivery.message_id, inbox__kind="chat")
        .exclude(pk=delivery.pk)
        .exists()
    )


def chat_link(ticket: Ticket) -> str:
    """The hosted conversation page of a ticket that has a live chat ('' for other tickets)."""
    from channels_inbox.chat.frames import conversation_link
    from channels_inbox.models import ChatConversation

    conversation = ChatConversation.objects.filter(ticket_id=ticket.pk).select_related("inbox").first()
    return conversation_link(conversation) if conversation is not None else ""


def from_name(inbox: Inbox, message: Message) -> str:
    """The setting from_name; else "<agent> (<inbox name>)" for an agent's reply; else the inbox name."""
    configured = str(inbox.settings.get("from_name") or "").strip()
    if configured:
        return _one_line(configured)
    agent = message.author_agent
    if agent is not None and agent.display_name:
        return _one_line(f"{agent.display_name} ({inbox.name})")
    return _one_line(inbox.name)


def mailbox(name: str, address: str) -> str:
    """`"Name" <address>`: quoted, so commas and parentheses stay part of the name."""
    return f'"{quote(name)}" <{address}>' if name else address


def cc_addresses(inbox: Inbox, ticket: Ticket, *, exclude: Iterable[str] = ()) -> list[str]:
    """One email address per CC of the ticket (its oldest), never the To address or ours."""
    own = own_addresses(inbox)
    skip = {value.lower() for value in exclude}
    result: list[str] = []
    seen_customers: set[int] = set()
    identities = (
        Identity.objects.filter(kind=IdentityKind.EMAIL, customer__cc_tickets__ticket=ticket)
        .order_by("customer_id", "id")
        .values_list("customer_id", "value")
    )
    for customer_id, value in identities:
        if customer_id in seen_customers or value.lower() in skip or is_own_address(inbox, value, own):
            continue
        seen_customers.add(customer_id)
        skip.add(value.lower())
        result.append(value)
    return result


def thread_headers(ticket: Ticket) -> dict[str, str]:
    """In-Reply-To and References for the customer's latest mail on the ticket (none: {})."""
    latest = (
        Message.objects.filter(ticket=ticket, direction=Direction.INBOUND, channel="email")
        .exclude(external_id="")
        .exclude(external_id__startswith="sha256:")
        .order_by("-created_at", "-id")
        .values_list("external_id", "metadata")
        .first()
    )
    if latest is None:
        return {}
    external_id, metadata = latest
    # A mail that reused a taken Message-ID is stored as "<id>#<hash>": it still answers "<id>".
    external_id = external_id.partition("#")[0]
    if not _MESSAGE_ID.match(external_id) or "<" in external_id or ">" in external_id:
        return {}
    stored = ((metadata or {}).get("email") or {}).get("references") or []
    chain = [ref for ref in stored if isinstance(ref, str) and _MESSAGE_ID.match(ref) and "<" not in ref]
    chain = list(dict.fromkeys([*chain, external_id]))
    if len(chain) > MAX_REFERENCES + 1:
        chain = [chain[0], *chain[-MAX_REFERENCES:]]
    return {"In-Reply-To": f"<{external_id}>", "References": " ".join(f"<{ref}>" for ref in chain)}


def _remember_esp_message_id(message_pk: int, esp_id: Any) -> None:
    """Some ESPs (SES) replace our Message-ID: keep theirs next to it, for their status events."""
    if esp_id is None or esp_id == "":
        return
    value: str | list[str] = sorted(str(v) for v in esp_id) if isinstance(esp_id, set) else str(esp_id)
    with transaction.atomic():
        metadata = Message.objects.select_for_update().filter(pk=message_pk).values_list("metadata", flat=True).get()
        metadata = dict(metadata or {})
        metadata["email"] = {**(metadata.get("email") or {}), "esp_message_id": value}
        Message.objects.filter(pk=message_pk).update(metadata=metadata)


def _inbox_address(inbox: Inbox) -> str:
    address = str(inbox.settings.get("address") or "")
    if "@" not in address:
        raise DeliveryError("the inbox has no address to send from", retryable=False)
    return address


def _one_line(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


# --- backends --------------------------------------------------------------------------------


def email_transport(inbox: Inbox) -> Transport:
    """The inbox's backend: its ESP, its SMTP server, or Django's default (EMAIL_URL)."""
    esp = str(inbox.settings.get("esp") or "").strip().lower()
    if esp:
        return _esp_transport(inbox, esp)
    url = str(inbox.settings.get("smtp_url") or "").strip()
    if url:
        return _smtp_transport(inbox, url)
    return Transport(connection=get_connection(fail_silently=False), label="email backend")


def _esp_transport(inbox: Inbox, esp: str) -> Transport:
    spec = ESP_BACKENDS.get(esp)
    if spec is None:
        known = ", ".join(sorted(ESP_BACKENDS))
        raise DeliveryError(f"unknown ESP {esp!r} (known: {known})", retryable=False)
    try:
        import_string(spec.path)
    except ImportError as exc:
        package = spec.requires or getattr(exc, "name", "") or "a library"
        raise DeliveryError(
            f"the {esp} ESP needs the {package} package, which is not installed", retryable=False
        ) from None
    key = inbox.secret("esp_api_key")
    kwargs: dict[str, Any] = {"timeout": settings.DELIVERY_TIMEOUT_SECONDS}
    if spec.key_pair is not None and key:
        first, sep, second = key.partition(":")
        if not sep:
            raise DeliveryError(f"the {esp} ESP needs esp_api_key as '<{spec.key_pair[0]}>:<secret>'", retryable=False)
        credentials = dict(zip(spec.key_pair, (first, second), strict=True))
        if spec.key_kwarg:
            kwargs.update(credentials)
        else:
            kwargs["client_params"] = credentials
    elif spec.key_kwarg:
        if not key:
            raise DeliveryError(f"the {esp} ESP needs the secret esp_api_key", retryable=False)
        kwargs[spec.key_kwarg] = key
    sender_domain = str(inbox.settings.get("esp_sender_domain") or "").strip()
    if esp == "mailgun" and sender_domain:
        kwargs["sender_domain"] = sender_domain
    try:
        connection = get_connection(spec.path, fail_silently=False, **kwargs)
    except (ImproperlyConfigured, AnymailError) as exc:
        raise DeliveryError(_redact(f"{esp}: {exc}", (key,)), retryable=False) from None
    return Transport(connection=connection, label=esp, hidden=(key, *key.split(":")), esp=True)


def _smtp_transport(inbox: Inbox, url: str) -> Transport:
    server = parse_smtp_url(url)
    password = inbox.secret("smtp_password") or unquote(urlsplit(url).password or "")
    connection = get_connection(
        "django.core.mail.backends.smtp.EmailBackend",
        fail_silently=False,
        host=server.host,
        port=server.port,
        username=server.username,
        password=password,
        use_tls=server.use_tls,
        use_ssl=server.use_ssl,
        timeout=settings.DELIVERY_TIMEOUT_SECONDS,
    )
    return Transport(connection=connection, label=f"SMTP {server.host}:{server.port}", hidden=(password,))


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp://`, `smtp+tls://` (or `smtps://`, as django-environ reads it) and `smtp+ssl://`,
    with an optional user (`smtp+tls://user%40example.com@host:587`); the password is a secret."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DeliveryError("smtp_url is not a valid URL", retryable=False) from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps", "smtp+tls", "smtp+ssl") or not parts.hostname:
        raise DeliveryError("smtp_url must look like smtp+tls://user@host:587", retryable=False)
    use_ssl = scheme == "smtp+ssl"
    use_tls = scheme in ("smtp+tls", "smtps")
    default_port = 465 if use_ssl else 587 if use_tls else 25
    return SmtpServer(
        host=parts.hostname,
        port=port or default_port,
        username=unquote(parts.username or ""),
        use_tls=use_tls,
        use_ssl=use_ssl,
    )


# --- errors ----------------------------------------------------------------------------------


def delivery_error(exc: BaseException, *, label: str, hidden: Iterable[str] = ()) -> DeliveryError | None:
    """A sending failure as a DeliveryError (retryable or not); None for an unexpected one."""
    found = _classify(exc)
    if found is None:
        return None
    reason, retryable = found
    return DeliveryError(_redact(f"{label}: {reason}", hidden)[:2000], retryable=retryable)


def _classify(exc: BaseException) -> tuple[str, bool] | None:
    # anymail first: its requests-based errors are also OSErrors (via requests' HTTPError).
    if isinstance(exc, AnymailRecipientsRefused):
        return f"recipients refused: {_short(exc)}", False
    if isinstance(exc, AnymailAPIError):
        status = exc.status_code
        retryable = status is None or status == 429 or status >= 500
        return f"{'HTTP ' + str(status) if status else 'API error'}: {_short(exc)}", retryable
    if isinstance(exc, (AnymailError, AnymailConfigurationError, ImproperlyConfigured)):
        return f"{exc.__class__.__name__}: {_short(exc)}", False
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in exc.recipients.items())
        return f"recipients refused: {detail}", bool(codes) and all(_temporary(code) for code in codes)
    if isinstance(exc, smtplib.SMTPConnectError):
        return f"server refused the connection: {exc.smtp_code} {_text(exc.smtp_error)}", True
    if isinstance(exc, smtplib.SMTPResponseException):
        what = {
            smtplib.SMTPAuthenticationError: "login refused",
            smtplib.SMTPSenderRefused: "sender refused",
            smtplib.SMTPDataError: "message refused",
            smtplib.SMTPHeloError: "greeting refused",
        }.get(type(exc), "server answered")
        return f"{what}: {exc.smtp_code} {_text(exc.smtp_error)}", _temporary(exc.smtp_code)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"server does not support what the settings ask for: {exc}", False
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"server closed the connection: {exc}", True
    if isinstance(exc, smtplib.SMTPException):
        return f"{exc.__class__.__name__}: {exc}", True
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc}", False
    if isinstance(exc, TimeoutError):
        return "timed out", True
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server up?)", True
    if isinstance(exc, OSError):
        return f"network error: {exc.__class__.__name__}: {exc}", True
    if isinstance(exc, UnicodeError):
        return f"an address or header cannot be encoded for this server: {exc}", False
    return None


def _temporary(code: int) -> bool:
    return 400 <= code < 500


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _short(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - anymail's __str__ needs a response some errors lack
        text = " ".join(str(arg) for arg in exc.args) or exc.__class__.__name__
    return " ".join(text.split())[:1000]


def _redact(text: str, hidden: Iterable[str]) -> str:
    for secret in hidden:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


# --- auto-acknowledgements -------------------------------------------------------------------


class _Placeholders(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill_placeholders(template: str, values: Mapping[str, str]) -> str:
    """`{name}`-style placeholders replaced by plain values; anything else left as written.

    Not str.format: a template is admin input, and format would follow `{subject.__class__}`
    or `{name[0]}` and raise on a stray brace.
    """
    known = _Placeholders(values)
    return _PLACEHOLDER.sub(lambda match: known[match[1]], template)


def queue_auto_acks(inbox: Inbox, results: list[IngestResult]) -> None:
    """Acknowledge the new tickets of a batch (setting auto_ack), as outbox rows.

    Only for a person's mail that opened a ticket: never for automatic mail, unreadable
    mail, our own addresses or machine addresses (mailer-daemon, no-reply…), and at most
    one acknowledgement per sender address per inbox in 24 hours (the ones already queued
    or sent, plus the earlier ones of this batch).
    """
    if not setting_flag(inbox, "auto_ack"):
        return
    from channels_inbox.actions.auto_ack import do_queue_auto_ack
    from channels_inbox.models import OutboundDelivery

    own = own_addresses(inbox)
    wanted: list[tuple[IngestResult, str]] = []
    for result in results:
        if not result.created_ticket or result.duplicate or result.message is None or result.ticket is None:
            continue
        summary = (result.message.metadata or {}).get("email") or {}
        if summary.get("automatic") or summary.get("parse_error"):
            continue
        address = sender_address(str(summary.get("from") or ""))
        if not address or is_own_address(inbox, address, own) or is_machine_address(address):
            continue
        wanted.append((result, address))
    if not wanted:
        return
    since = timezone.now() - ACK_INTERVAL
    acknowledged = set(
        OutboundDelivery.objects.filter(
            inbox=inbox,
            recipient__in={address for _, address in wanted},
            created_at__gte=since,
            message__metadata__auto_ack=True,
        ).values_list("recipient", flat=True)
    )
    subject_template = str(inbox.settings.get("auto_ack_subject") or DEFAULT_ACK_SUBJECT)
    text_template = str(inbox.settings.get("auto_ack_text") or DEFAULT_ACK_TEXT)
    for result, address in wanted:
        if address in acknowledged:
            continue
        acknowledged.add(address)
        ticket = result.ticket
        assert ticket is not None
        values = {
            "number": str(ticket.number),
            "subject": _one_line(ticket.subject),
            "name": _one_line(ticket.customer.name if ticket.customer_id else ""),
        }
        subject = _one_line(fill_placeholders(subject_template, values))
        token = subject_token(ticket.number)
        if token not in subject:
            # Replies to the acknowledgement must find the ticket even without our headers.
            subject = f"{subject} {token}".strip()
        text = fill_placeholders(text_template, values)
        do_queue_auto_ack(ticket, inbox=inbox, recipient=address, subject=subject[:300], text=text)


def sender_address(value: str) -> str:
    """The normalized address of a stored `Name <addr>` (or bare `addr`); '' if unusable."""
    value = value.strip()
    if value.endswith(">") and "<" in value:
        value = value[value.rindex("<") + 1 : -1]
    try:
        return normalize_email(value)
    except InvalidIdentity:
        return ""


def is_machine_address(address: str) -> bool:
    local = address.rpartition("@")[0].split("+", 1)[0]
    return bool(_MACHINE_LOCAL.search(local))
