"""The adapter interface every channel implements, and the normalized shapes it produces.

An adapter is three functions plus its quirks:

- `verify(inbox, request)` — is this request really from the provider? (constant-time)
- `split(inbox, request)` — the request's items with their dedupe keys, validated enough
  to refuse a malformed body before anything is stored;
- `parse(inbox, raw, headers)` — one stored item → an `InboundMessage` (or a
  `DeliveryStatusUpdate`, or None for an event that carries no message);
- `send(inbox, outbound)` — deliver an outbound message, return the provider's id.

And, where a provider needs them: `handshake` (a GET the provider sends to check the URL,
e.g. Meta's hub.challenge), `webhook_reply` (the body the provider expects back, e.g.
Twilio's TwiML), `reply_window` (when a free-form reply is allowed, e.g. WhatsApp's 24 h).
`parse` may also return a `ChannelEvent`: something that changes what is stored (an edit,
a reaction, a read watermark, a call's status) without being a new message.

Adding a channel adds an adapter and registers it; the ticketing core does not change.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery
    from helpdesk.models import Ticket


class SignatureError(Exception):
    """The request is not signed by the inbox's provider (→ 403, nothing stored)."""


class BadPayload(Exception):
    """The body cannot be understood (→ 400, nothing stored)."""


class PayloadTooLarge(Exception):
    """The body is over the limit (→ 413, nothing stored)."""


class DeliveryError(Exception):
    """Sending failed. Retryable errors are tried again with backoff; others fail at once."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeliveryDeferred(Exception):
    """Not now: try this delivery again in `seconds` (e.g. a chat visitor who may be back in a
    moment). Neither a failure nor an attempt: the attempt count is given back."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"deferred for {seconds:.0f} s")
        self.seconds = max(float(seconds), 1.0)


@dataclass(frozen=True)
class IdentityRef:
    kind: str
    value: str


@dataclass
class InboundSender:
    """Who sent it: identities in order of strength (the first one is the channel's own)."""

    identities: list[IdentityRef]
    name: str = ""
    language: str = ""


@dataclass
class InboundAttachment:
    filename: str
    content: bytes
    declared_type: str = ""
    # An email part's Content-ID (without <>), for cid: references from the HTML.
    content_id: str = ""
    inline: bool = False


@dataclass
class InboundMessage:
    """A message from any channel, normalized. Every adapter's `parse` produces this."""

    external_id: str
    sender: InboundSender
    text: str = ""
    # As received; sanitized by the ingest step before it is stored.
    html: str = ""
    subject: str = ""
    # The adapter's conversation key: messages with the same key join the same ticket.
    thread_key: str = ""
    # Provider ids of earlier messages this one answers (e.g. In-Reply-To, References).
    in_reply_to: list[str] = field(default_factory=list)
    attachments: list[InboundAttachment] = field(default_factory=list)
    sent_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Numbers of tickets the message names itself (a subject token, a signed reply
    # address); it joins one only if its sender is a participant of that ticket.
    ticket_candidates: list[int] = field(default_factory=list)
    # Those of the candidates the message proves it may name (a validly signed reply address,
    # which only the ticket's own mail carries), unlike a subject token anyone can type.
    proven_tickets: list[int] = field(default_factory=list)
    # With no thread key, reply id or candidate: join the customer's latest ticket in the
    # inbox (chat-like channels) or start a new ticket (email: a new mail is a new request).
    thread_by_customer: bool = True
    # Sent by a machine (auto-reply, out-of-office, list mail): it may join an existing
    # ticket but never opens, reopens or wakes one, and is never answered automatically.
    automatic: bool = False
    # Other people on the message (email Cc): they become CCs of its ticket.
    cc: list[InboundSender] = field(default_factory=list)


@dataclass
class DeliveryStatusUpdate:
    """A provider's report on an outbound message (sent, delivered, read, failed)."""

    provider_id: str
    status: str
    error: str = ""
    occurred_at: datetime | None = None


class ChannelEvent:
    """A parsed item that is not a new message: an edit, a reaction, a read watermark, a
    call's status. `apply` makes the change through the actions, inside the transaction that
    marks the stored event processed, and returns False when it changes nothing (the event is
    then kept as ignored: about a message we do not have, or not a step forward)."""

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class WebhookReply:
    """The HTTP answer a provider expects (a handshake's challenge, TwiML, ...)."""

    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    body: bytes = b""


@dataclass(frozen=True)
class WindowOption:
    """A way to reach the customer while the window is closed: an approved template
    (`kind="template"`, WhatsApp) or a message tag (`kind="tag"`, e.g. HUMAN_AGENT)."""

    kind: str
    name: str
    label: str = ""
    language: str = ""
    # The template's text with {{1}}, {{2}}... placeholders, for the composer's preview.
    body: str = ""
    params: int = 0


@dataclass(frozen=True)
class ReplyWindow:
    """Whether a free-form reply may go out now on this inbox to this ticket's customer.

    `open`: it may; `closes_at`: until when (None: no end known). When closed, `reason` says
    why in words an agent understands, and `options` lists what may still be sent. A reply
    that chooses an option carries it in its message's metadata: `{"template": {"name",
    "language", "params": [...]}}` or `{"tag": "HUMAN_AGENT"}`."""

    open: bool
    closes_at: datetime | None = None
    reason: str = ""
    options: tuple[WindowOption, ...] = ()


@dataclass
class RawItem:
    """One item of a webhook request, to be stored as one InboundEvent."""

    dedupe_key: str
    raw: bytes


@dataclass
class WebhookRequest:
    """What an adapter sees of an HTTP request: exact bytes and headers, nothing parsed."""

    method: str
    url: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass
class SendResult:
    provider_id: str = ""


class ChannelAdapter:
    kind: ClassVar[str]
    label: ClassVar[str]
    # Secrets generated when an inbox of this kind is created (shown once).
    generated_secrets: ClassVar[tuple[str, ...]] = ()
    # Settings that are secrets (passwords, API keys): set like settings, stored as secrets.
    secret_settings: ClassVar[tuple[str, ...]] = ()
    # False for channels that do not take the generic `/webhooks/<kind>/<uuid>/` POST.
    accepts_webhooks: ClassVar[bool] = True
    # Settings an admin may set (`inbox create --set key=value`), with their help text.
    settings_help: ClassVar[dict[str, str]] = {}
    required_settings: ClassVar[tuple[str, ...]] = ()
    # Secret settings an inbox of this kind cannot work without (checked when it is created).
    required_secrets: ClassVar[tuple[str, ...]] = ()
    max_body_bytes: ClassVar[int | None] = None

    def new_secrets(self) -> dict[str, str]:
        return {name: secrets.token_hex(32) for name in self.generated_secrets}

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - set(self.settings_help)
        if unknown:
            raise ValueError(f"unknown settings for {self.kind}: {', '.join(sorted(unknown))}")
        missing = [name for name in self.required_settings if not values.get(name)]
        if missing:
            raise ValueError(f"missing settings for {self.kind}: {', '.join(missing)}")
        return values

    def verify(self, inbox: Inbox, request: WebhookRequest) -> None:
        raise NotImplementedError

    def split(self, inbox: Inbox, request: WebhookRequest) -> list[RawItem]:
        raise NotImplementedError

    def parse(
        self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]
    ) -> InboundMessage | DeliveryStatusUpdate | ChannelEvent | None:
        raise NotImplementedError

    def handshake(self, inbox: Inbox, request: WebhookRequest) -> WebhookReply | None:
        """Answer a GET to the webhook URL (a provider checking it); None: 405."""
        return None

    def webhook_reply(self, inbox: Inbox, request: WebhookRequest, stored: int, duplicates: int) -> WebhookReply | None:
        """The answer to a verified, stored POST (None: the JSON count of stored items)."""
        return None

    def reply_window(self, inbox: Inbox, ticket: Ticket) -> ReplyWindow | None:
        """When this inbox may send a free-form reply to the ticket's customer (None: always)."""
        return None

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        raise NotImplementedError

    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        """The address to answer this customer on through this inbox ('' if none)."""
        raise NotImplementedError

    def sender_rate_limit(self, inbox: Inbox) -> int | None:
        """Messages per sender per hour above which new ones are held for review (None: no limit)."""
        return None

    def after_ingest(self, inbox: Inbox, results: list[Any]) -> None:
        """Channel work once messages are on their tickets, in the same transaction
        (e.g. email's auto-acknowledgement, written as an outbox row)."""
