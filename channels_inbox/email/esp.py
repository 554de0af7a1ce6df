"""Inbound mail from an ESP's webhook, verified and parsed by django-anymail's own views.

For each supported ESP, anymail's inbound webhook view class is instantiated per request
with the inbox's credentials as settings overrides (the same keyword arguments
`View.as_view(**kwargs)` would pass): HTTP basic auth `"<inbox slug>:<webhook_secret>"`
(and the previous secret while a rotation is under way) for every ESP, plus Mailgun's
HMAC signature with the inbox secret `esp_signing_key`.

Why the view's `run_validators` and `parse_events` are called directly instead of going
through its `post()` and a receiver on `anymail.signals.inbound`:

- the outcomes must stay apart: a failed check is our 403, a body anymail cannot read is
  our 400, a fetch anymail needs (Brevo attachments) that fails is our 503 so the ESP tries
  again — `post()` answers a failed check with Django's SuspiciousOperation 400 and an
  unreadable body with a 500 (retried by the ESP for ever);
- every event of the request must be stored in one transaction before we answer 2xx; a
  signal receiver sees events one at a time, a raising receiver stops the others, and the
  signal is process-global, so a receiver would need a per-request collector (a contextvar)
  to tell our request's events from those of any other anymail URL the project mounts;
- nothing here depends on global ANYMAIL settings: all credentials come from the inbox.

`run_validators` and `parse_events` are the two steps anymail's `post()` itself runs (its
documented subclass contract); the one thing its views do outside them — Amazon SNS's
401 challenge before it sends basic auth — is done here the same way.

The request anymail sees is a copy whose body we read under our own limit and whose form
fields we parsed ourselves with the standard library, so that a raw MIME form field keeps
its exact bytes and a large mail is not refused by Django's DATA_UPLOAD_MAX_MEMORY_SIZE
(meant for the desk's forms, not for a 30 MB message).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from email.encoders import encode_base64
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import requests
from anymail.exceptions import AnymailConfigurationError, AnymailError, AnymailWebhookValidationFailure
from anymail.signals import AnymailInboundEvent
from anymail.utils import DEFAULT_DOWNLOAD_CHUNK_SIZE
from anymail.webhooks.amazon_ses import AmazonSESInboundWebhookView
from anymail.webhooks.base import AnymailBaseWebhookView
from anymail.webhooks.brevo import BrevoInboundWebhookView
from anymail.webhooks.mailgun import MailgunInboundWebhookView
from anymail.webhooks.mailjet import MailjetInboundWebhookView
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from anymail.webhooks.sendgrid import SendGridInboundWebhookView
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict

from channels_inbox.actions.receive_email import email_dedupe_key
from channels_inbox.adapters.base import BadPayload, SignatureError

if TYPE_CHECKING:
    from channels_inbox.models import Inbox


# The ESPs whose inbound webhooks we take, by the name used in /webhooks/email/<esp>/<uuid>/.
ESP_NAMES = ("mailgun", "postmark", "sendgrid", "amazon_ses", "mailjet", "brevo")
# An ESP-provided text kept with the event is cut to this many characters.
_MAX_EXTRA_CHARS = 100_000


class AuthChallenge(Exception):
    """No credentials sent yet: answer 401 with a Basic challenge (Amazon SNS waits for one)."""


class EspUnavailable(Exception):
    """Something the ESP's payload needs fetched could not be fetched (→ 503, the ESP retries)."""


@dataclass
class EspMail:
    """One inbound mail of an ESP request, ready to store."""

    raw: bytes
    dedupe_key: str
    # ESP-provided facts the raw MIME does not carry (envelope recipient, spam score…).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class EspRequest:
    mails: list[EspMail]
    # An Amazon SNS subscription waiting for the admin to confirm it (topic, SubscribeURL).
    subscriptions: list[dict[str, str]] = field(default_factory=list)


def body_limit() -> int:
    """The largest request body taken: JSON ESPs carry a mail's attachments in base64 (4/3 larger)."""
    return max(settings.WEBHOOK_MAX_BODY_BYTES, settings.EMAIL_MAX_BYTES * 4 // 3 + 65_536)


class _MissingApiKey(Exception):
    pass


class _BrevoInboundView(BrevoInboundWebhookView):
    """Brevo's payload names attachments by a download token; fetching one needs the API key."""

    api_key: str

    def _fetch_attachment(self, attachment: dict[str, Any]) -> Any:
        if not self.api_key:
            raise _MissingApiKey("this Brevo mail has attachments; set the inbox secret esp_api_key to fetch them")
        return super()._fetch_attachment(attachment)


class _AmazonSESInboundView(AmazonSESInboundWebhookView):
    """Amazon SES receipts published by SNS with the mail in the notification ("SNS" action).

    Two things anymail's view does are not done here, by design: confirming an SNS
    subscription by fetching its SubscribeURL (our servers make no arbitrary outbound
    requests: the URL is handed to the admin instead), and downloading mail stored in S3
    (the "S3" receipt action needs AWS credentials and boto3; the SNS action carries
    mail up to 150 KB in the notification itself). So boto3 is not needed.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.auto_confirm_enabled = False
        self.session_params: dict[str, Any] = {}
        self.client_params: dict[str, Any] = {}
        self.kms_key_id = None
        self.chunk_size = DEFAULT_DOWNLOAD_CHUNK_SIZE
        self.subscriptions: list[dict[str, str]] = []
        # Skips AmazonSESBaseWebhookView.__init__, which reads boto3 session settings.
        AnymailBaseWebhookView.__init__(self, **kwargs)

    def auto_confirm_sns_subscription(self, sns_message: dict[str, Any]) -> None:
        # Reached only after basic auth passed: the subscription is meant for this inbox.
        self.subscriptions.append(
            {
                "topic_arn": str(sns_message.get("TopicArn") or ""),
                "subscribe_url": str(sns_message.get("SubscribeURL") or ""),
            }
        )

    def fetch_s3_chunks(self, bucket_name: str, object_key: str) -> Any:
        raise AnymailConfigurationError(
            "mail stored in S3 is not fetched: use the SES receipt rule action 'SNS' (encoding BASE64)"
            f" for this inbox (object {bucket_name}:{object_key})"
        )


class _SendGridInboundView(SendGridInboundWebhookView):
    """SendGrid's view, without the warning its __init__ gives on every request that anymail
    no longer supports SendGrid officially (its inbound parsing is unchanged, and our tests
    cover both of its modes)."""

    def __init__(self, **kwargs: Any) -> None:
        AnymailBaseWebhookView.__init__(self, **kwargs)


def _basic_auth(inbox: Inbox) -> list[str]:
    secrets = [inbox.secret("webhook_secret"), inbox.secret("previous_webhook_secret")]
    return [f"{inbox.slug}:{secret}" for secret in secrets if secret]


_VIEWS: dict[str, type[AnymailBaseWebhookView]] = {
    "mailgun": MailgunInboundWebhookView,
    "postmark": PostmarkInboundWebhookView,
    "sendgrid": _SendGridInboundView,
    "amazon_ses": _AmazonSESInboundView,
    "mailjet": MailjetInboundWebhookView,
    "brevo": _BrevoInboundView,
}


def _view(inbox: Inbox, esp: str) -> AnymailBaseWebhookView:
    basic_auth = _basic_auth(inbox)
    if not basic_auth:
        # anymail would let an unauthenticated request through (with a warning): never here.
        raise SignatureError("the inbox has no webhook_secret")
    kwargs: dict[str, Any] = {"webhook_secret": basic_auth}
    if esp == "mailgun":
        key = inbox.secret("esp_signing_key")
        if not key or not key.isascii():
            raise SignatureError("mailgun needs the inbox secret esp_signing_key (Mailgun's webhook signing key)")
        kwargs["webhook_signing_key"] = key
    if esp == "brevo":
        kwargs["api_key"] = inbox.secret("esp_api_key")
    return _VIEWS[esp](**kwargs)


# --- the request anymail sees ----------------------------------------------------------------


def _disposition(part: Message) -> tuple[str, str | None]:
    """A form-data part's field name and filename (None: not a file).

    Browsers and ESPs send them as raw UTF-8 in the header (RFC 7578 §4.2), which the email
    package would turn into replacement characters: read the header's raw bytes instead.
    """
    for header, value in part.raw_items():
        if header.lower() == "content-disposition":
            text = str(value).encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
            holder = Message()
            holder["Content-Disposition"] = text
            param = holder.get_param("name", header="content-disposition")
            name = collapse_rfc2231_value(param) if isinstance(param, tuple) else param
            return (name if isinstance(name, str) else ""), holder.get_filename()
    return "", None


def _form(content_type: str, full_content_type: str, body: bytes) -> tuple[QueryDict, MultiValueDict, dict[str, bytes]]:
    """Form fields, files and the exact bytes of each field (the first of a name)."""
    post = QueryDict(mutable=True)
    files: MultiValueDict = MultiValueDict()
    raw: dict[str, bytes] = {}
    if content_type == "application/x-www-form-urlencoded":
        try:
            # Latin-1 maps bytes to code points one to one: each value's exact bytes come back.
            pairs = parse_qsl(
                body.decode("latin-1"),
                keep_blank_values=True,
                encoding="latin-1",
                max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
            )
        except ValueError as exc:
            raise BadPayload(f"unreadable form: {exc}") from None
        for key, value in pairs:
            data = value.encode("latin-1")
            key_text = key.encode("latin-1").decode("utf-8", errors="replace")
            post.appendlist(key_text, data.decode("utf-8", errors="replace"))
            raw.setdefault(key_text, data)
    elif content_type == "multipart/form-data":
        head = b"Content-Type: " + full_content_type.encode("latin-1", errors="replace") + b"\r\n\r\n"
        message = BytesParser(policy=compat32).parsebytes(head + body)
        parts = message.get_payload() if message.is_multipart() else None
        if not isinstance(parts, list) or not parts:
            raise BadPayload("multipart/form-data body without parts")
        limit = (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS or 1000) + (settings.DATA_UPLOAD_MAX_NUMBER_FILES or 100)
        if len(parts) > limit:
            raise BadPayload(f"more than {limit} form fields")
        for part in parts:
            if not isinstance(part, Message):
                continue
            name, filename = _disposition(part)
            if not name:
                continue
            payload = part.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            if filename is not None:
                safe = PurePosixPath(filename.replace("\\", "/")).name or "attachment"
                files.appendlist(name, SimpleUploadedFile(safe, content, part.get_content_type()))
            else:
                charset = part.get_content_charset() or "utf-8"
                try:
                    text = content.decode(charset, errors="replace")
                except LookupError:
                    text = content.decode("utf-8", errors="replace")
                post.appendlist(name, text)
                raw.setdefault(name, content)
    post._mutable = False
    return post, files, raw


def _anymail_request(request: HttpRequest, body: bytes) -> tuple[HttpRequest, dict[str, bytes]]:
    copy = HttpRequest()
    copy.method = "POST"
    copy.path = copy.path_info = request.path
    copy.META = dict(request.META)
    copy.content_type = request.content_type
    copy.content_params = request.content_params
    # The body, read under our limit: `body` returns it without Django's in-memory size check.
    copy._body = body
    copy.POST, copy.FILES, raw = _form(request.content_type or "", request.META.get("CONTENT_TYPE", ""), body)
    return copy, raw


# --- events → mails -------------------------------------------------------------------------


def _raw_mime(esp: str, event: AnymailInboundEvent, fields: dict[str, bytes]) -> bytes:
    """The mail as the ESP had it where the ESP sends it whole; else anymail's rebuilt MIME."""
    if esp == "mailgun" and fields.get("body-mime"):
        return fields["body-mime"]
    if esp == "sendgrid" and fields.get("email"):
        return fields["email"]
    esp_event = event.esp_event
    if esp == "amazon_ses" and isinstance(esp_event, dict) and isinstance(esp_event.get("content"), str):
        action = esp_event.get("receipt", {}).get("action", {})
        if action.get("encoding") == "BASE64":
            return base64.b64decode(esp_event["content"].encode("ascii"))
        return esp_event["content"].encode("utf-8", errors="surrogateescape")
    if esp == "postmark" and isinstance(esp_event, dict) and isinstance(esp_event.get("RawEmail"), str):
        return esp_event["RawEmail"].encode("utf-8", errors="surrogateescape")
    message = event.message
    for part in message.walk():
        # anymail's constructed attachments hold raw bytes with no transfer encoding, which
        # serializing would damage (line endings of binary content): base64 them first.
        constructed = "Content-Transfer-Encoding" not in part and part.get_content_maintype() != "message"
        if constructed and not part.is_multipart():
            encode_base64(part)
    try:
        return bytes(message.as_bytes())
    except (ValueError, TypeError, LookupError, UnicodeError):
        return str(message.as_string()).encode("utf-8", errors="replace")


def _extras(event: AnymailInboundEvent) -> dict[str, str]:
    message = event.message
    extras: dict[str, str] = {}

    def keep(name: str, value: Any) -> None:
        if value is not None and value != "":
            extras[name] = str(value)[:_MAX_EXTRA_CHARS]

    keep("envelope-recipient", getattr(message, "envelope_recipient", None))
    keep("envelope-sender", getattr(message, "envelope_sender", None))
    keep("spam-score", getattr(message, "spam_score", None))
    spam = getattr(message, "spam_detected", None)
    if spam is not None:
        extras["spam-detected"] = "true" if spam else "false"
    keep("stripped-text", getattr(message, "stripped_text", None))
    keep("esp-event-id", event.event_id)
    return extras


def _dedupe_key(esp: str, event: AnymailInboundEvent, raw: bytes) -> str:
    event_id = str(event.event_id or "").strip()
    if not event_id:
        return email_dedupe_key(raw)
    if len(event_id) > 200 or not event_id.isprintable():
        event_id = "sha256:" + hashlib.sha256(event_id.encode("utf-8", errors="replace")).hexdigest()
    return f"esp:{esp}:{event_id}"


# Errors anymail raises (or lets through) for a body it cannot read: our 400.
_PAYLOAD_ERRORS: tuple[type[BaseException], ...] = (
    AnymailError,
    AnymailConfigurationError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    LookupError,
)


def read_esp_request(inbox: Inbox, esp: str, request: HttpRequest, body: bytes) -> EspRequest:
    """Verify and parse one ESP webhook request for an email inbox; nothing is stored here.

    Raises SignatureError (403), AuthChallenge (401), BadPayload (400) or EspUnavailable (503).
    Any other exception is a fault of ours and becomes a 500, which the ESP retries.
    """
    view = _view(inbox, esp)
    if esp == "amazon_ses" and not request.META.get("HTTP_AUTHORIZATION"):
        # Amazon SNS sends the URL's credentials only after a 401 challenge.
        raise AuthChallenge("basic auth required")
    anymail_request, fields = _anymail_request(request, body)
    try:
        view.run_validators(anymail_request)
    except AnymailWebhookValidationFailure as exc:
        raise SignatureError(str(exc)) from None
    except _PAYLOAD_ERRORS as exc:
        raise BadPayload(f"unreadable {esp} payload: {exc}"[:500]) from None
    try:
        events: list[AnymailInboundEvent] = view.parse_events(anymail_request)
    except _MissingApiKey as exc:
        raise EspUnavailable(str(exc)) from None
    except requests.RequestException as exc:
        raise EspUnavailable(f"fetching from {esp} failed: {exc}"[:500]) from None
    except AnymailConfigurationError as exc:
        # Typically a tracking webhook pointed at the inbound URL: nothing to store.
        raise BadPayload(f"not an inbound {esp} payload: {exc}"[:500]) from None
    except _PAYLOAD_ERRORS as exc:
        raise BadPayload(f"unreadable {esp} payload: {exc.__class__.__name__}: {exc}"[:500]) from None
    mails = []
    for event in events:
        if event.message is None:
            continue
        raw = _raw_mime(esp, event, fields)
        mails.append(EspMail(raw=raw, dedupe_key=_dedupe_key(esp, event, raw), headers=_extras(event)))
    subscriptions = list(getattr(view, "subscriptions", []))
    return EspRequest(mails=mails, subscriptions=subscriptions)
