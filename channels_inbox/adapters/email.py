"""The email channel: raw RFC 822 in (IMAP, an MTA pipe, ESP webhooks), SMTP or an ESP out.

Every way in stores the raw bytes as an InboundEvent first; `parse` turns them into an
InboundMessage with one parser (channels_inbox/email/parse.py). Bounces become delivery
status updates, machine-made mail is marked automatic, mail from our own addresses is
ignored. See docs/email.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

from channels_inbox.adapters import register
from channels_inbox.adapters.base import (
    ChannelAdapter,
    DeliveryStatusUpdate,
    IdentityRef,
    InboundAttachment,
    InboundMessage,
    InboundSender,
    SendResult,
)
from channels_inbox.email.parse import EmailAddress, ParsedEmail, parse_email
from channels_inbox.email.tokens import numbers_in_addresses, numbers_in_subject
from customers.models import IdentityKind
from customers.normalize import InvalidIdentity, normalize_email

if TYPE_CHECKING:
    from channels_inbox.models import Inbox, OutboundDelivery

# Statuses of a delivery report that mean the message will not arrive.
_FAILED_ACTIONS = {"failed"}
DEFAULT_RATE_LIMIT_PER_HOUR = 30
_TRUE = {"1", "true", "yes", "on"}


def setting_flag(inbox: Inbox, name: str, default: bool = False) -> bool:
    value = inbox.settings.get(name)
    if value is None or value == "":
        return default
    return value is True or str(value).strip().lower() in _TRUE


def own_addresses(inbox: Inbox) -> set[str]:
    """The inbox's address and aliases, normalized: mail from these is never a customer's."""
    raw = [str(inbox.settings.get("address") or "")]
    raw += str(inbox.settings.get("aliases") or "").split(",")
    result = set()
    for value in raw:
        try:
            result.add(normalize_email(value))
        except InvalidIdentity:
            continue
    return result


def is_own_address(inbox: Inbox, address: str, own: set[str] | None = None) -> bool:
    """Ours: the inbox address, an alias, or a plus-address of one of them."""
    try:
        normalized = normalize_email(address)
    except InvalidIdentity:
        return False
    own = own_addresses(inbox) if own is None else own
    local, _, domain = normalized.rpartition("@")
    return normalized in own or f"{local.split('+', 1)[0]}@{domain}" in own


def _identity(address: EmailAddress | None) -> IdentityRef | None:
    if address is None:
        return None
    try:
        return IdentityRef(IdentityKind.EMAIL, normalize_email(address.address))
    except InvalidIdentity:
        return None


@register
class EmailAdapter(ChannelAdapter):
    kind = "email"
    label = "Email"
    generated_secrets = ("reply_token_secret", "webhook_secret")
    secret_settings = ("imap_password", "imap_oauth2_token", "smtp_password", "esp_api_key", "esp_signing_key")
    required_settings = ("address",)
    # Mail arrives by IMAP, the MTA pipe, or /webhooks/email/<esp>/<uuid>/ (views/email_webhooks.py).
    accepts_webhooks = False
    settings_help = {
        "address": "the inbox's address, e.g. support@example.com (From of replies; plus-addresses of it thread)",
        "aliases": "other addresses of ours, comma-separated: mail from them is never a customer's",
        "from_name": "display name of outgoing mail (default: the inbox name)",
        "imap_host": "IMAP server to poll (empty: no polling)",
        "imap_port": "IMAP port (default 993 with ssl, else 143)",
        "imap_security": "ssl (default), starttls or none",
        "imap_user": "IMAP login (default: address); password in the secret imap_password",
        "imap_auth": "password (default) or xoauth2 (access token in the secret imap_oauth2_token)",
        "imap_folders": "folders to poll, comma-separated (default INBOX)",
        "imap_idle": "true: `poll_mailboxes --idle` waits for new mail with IMAP IDLE",
        "smtp_url": "outgoing SMTP for this inbox, e.g. smtp+tls://user@smtp.example.com:587"
        " (password in the secret smtp_password); default: EMAIL_URL",
        "esp": "send through an ESP with django-anymail instead (mailgun, postmark, sendgrid, amazon_ses, "
        "mailjet, brevo…); API key in the secret esp_api_key",
        "esp_sender_domain": "the ESP's sending domain where it needs one (Mailgun)",
        "auto_ack": "true: acknowledge new tickets by email (at most once per sender per day)",
        "auto_ack_subject": "subject of the acknowledgement (placeholders {number} and {subject})",
        "auto_ack_text": "text of the acknowledgement (placeholders {number}, {subject}, {name})",
        "rate_limit_per_hour": f"mails per sender per hour before more are held for review"
        f" (default {DEFAULT_RATE_LIMIT_PER_HOUR}; 0: no limit)",
    }

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        try:
            values["address"] = normalize_email(str(values["address"]))
        except InvalidIdentity as exc:
            raise ValueError(f"address: {exc}") from None
        for name in ("imap_port", "rate_limit_per_hour"):
            if values.get(name) not in (None, ""):
                try:
                    number = int(values[name])
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be a whole number") from None
                if number < 0:
                    raise ValueError(f"{name} must not be negative")
                values[name] = number
        if values.get("imap_security") not in (None, "", "ssl", "starttls", "none"):
            raise ValueError("imap_security must be ssl, starttls or none")
        if values.get("imap_auth") not in (None, "", "password", "xoauth2"):
            raise ValueError("imap_auth must be password or xoauth2")
        return values

    # --- inbound ---------------------------------------------------------------------------
    def parse(
        self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]
    ) -> InboundMessage | DeliveryStatusUpdate | None:
        mail = parse_email(raw)
        if mail.error:
            return self._unreadable(inbox, mail)
        if mail.report is not None:
            return self._report(mail)
        own = own_addresses(inbox)
        sender = _identity(mail.from_)
        if sender is None:
            return self._unreadable(inbox, mail, reason="the mail has no usable From address")
        if is_own_address(inbox, sender.value, own):
            # Our own mail coming back (a loop, a copy to ourselves): never a customer's message.
            return None
        cc = []
        seen = {sender.value}
        for address in [*mail.to, *mail.cc]:
            identity = _identity(address)
            if identity is None or identity.value in seen or is_own_address(inbox, identity.value, own):
                continue
            seen.add(identity.value)
            cc.append(InboundSender(identities=[identity], name=address.name[:200]))
        # An ESP's envelope recipient (kept in the event's headers) first: the address the
        # mail was really delivered to, also when it is in no header (Bcc).
        envelope = [str(headers["envelope-recipient"])] if headers.get("envelope-recipient") else []
        recipients = [*envelope, *mail.delivered_to, *(a.address for a in mail.to), *(a.address for a in mail.cc)]
        signed = numbers_in_addresses(inbox, recipients)
        candidates = numbers_in_subject(mail.subject)
        candidates += [n for n in signed if n not in candidates]
        attachments, skipped = [], []
        for part in mail.attachments:
            if len(part.content) > settings.ATTACHMENT_MAX_BYTES:
                skipped.append({"filename": part.filename[:200], "size": len(part.content)})
                continue
            attachments.append(
                InboundAttachment(
                    filename=part.filename,
                    content=part.content,
                    declared_type=part.content_type,
                    content_id=part.content_id,
                    inline=part.inline,
                )
            )
        metadata: dict[str, Any] = {"email": self._summary(mail)}
        if skipped:
            metadata["email"]["attachments_over_limit"] = skipped
        external_id = mail.message_id[:230] or f"sha256:{mail.sha256}"
        if headers.get("message-id-variant"):
            # Another mail with a Message-ID already taken (see actions/receive_email.py).
            external_id = f"{external_id}#{str(headers['message-id-variant'])[:16]}"
        return InboundMessage(
            external_id=external_id,
            sender=InboundSender(identities=[sender], name=(mail.from_.name if mail.from_ else "")[:200]),
            text=mail.text,
            html=mail.html,
            subject=mail.subject[:300],
            in_reply_to=[*mail.references, *mail.in_reply_to][-50:],
            attachments=attachments,
            sent_at=mail.date,
            metadata=metadata,
            ticket_candidates=candidates,
            proven_tickets=signed,
            thread_by_customer=False,
            automatic=bool(mail.automatic),
            cc=cc,
        )

    def _summary(self, mail: ParsedEmail) -> dict[str, Any]:
        """What the desk shows and later mail needs: addresses, ids, the visible part, flags."""

        def fmt(a: EmailAddress) -> str:
            return f"{a.name} <{a.address}>" if a.name else a.address

        summary: dict[str, Any] = {
            "message_id": mail.message_id,
            "from": fmt(mail.from_) if mail.from_ else "",
            "to": [fmt(a) for a in mail.to][:50],
            "cc": [fmt(a) for a in mail.cc][:50],
            "subject": mail.subject[:300],
            "references": mail.references[-10:],
            "visible_text": mail.visible_text,
        }
        if mail.reply_to:
            summary["reply_to"] = [fmt(a) for a in mail.reply_to][:10]
        if mail.automatic:
            summary["automatic"] = mail.automatic
        if mail.defects:
            summary["defects"] = mail.defects[:20]
        if mail.headers:
            summary["headers"] = mail.headers
        return summary

    def _unreadable(self, inbox: Inbox, mail: ParsedEmail, *, reason: str = "") -> InboundMessage:
        """A mail we cannot read still becomes a ticket, with the error shown and the raw kept."""
        reason = reason or mail.error
        sender = _identity(mail.from_)
        identities = [sender] if sender else [IdentityRef(IdentityKind.EXTERNAL, f"{inbox.uuid}:unreadable-mail")]
        return InboundMessage(
            external_id=mail.message_id[:255] or f"sha256:{mail.sha256}",
            sender=InboundSender(
                identities=identities, name=(mail.from_.name if mail.from_ else "") or "Unreadable email"
            ),
            text=(
                f"This email could not be read ({reason}). Nothing was dropped: the original message "
                "is kept and can be downloaded from this ticket."
            ),
            subject=mail.subject[:300] or "Unreadable email",
            thread_by_customer=False,
            metadata={"email": {"parse_error": reason[:2000], "message_id": mail.message_id}},
        )

    def _report(self, mail: ParsedEmail) -> DeliveryStatusUpdate | None:
        """A bounce marks our outbound message failed; read receipts and complaints change nothing."""
        report = mail.report
        assert report is not None
        if report.report_type != "delivery-status" or not report.original_message_id:
            return None
        failed = [r for r in report.recipients if r.action.lower() in _FAILED_ACTIONS or r.status.startswith("5")]
        if not failed:
            return None
        reason = "; ".join(
            f"{r.address}: {r.status} {r.diagnostic}".strip() if r.address else f"{r.status} {r.diagnostic}".strip()
            for r in failed
        )
        return DeliveryStatusUpdate(
            provider_id=report.original_message_id[:255],
            status="failed",
            error=f"bounced: {reason}"[:2000],
            occurred_at=mail.date,
        )

    def sender_rate_limit(self, inbox: Inbox) -> int | None:
        value = inbox.settings.get("rate_limit_per_hour")
        if value in (None, ""):
            return DEFAULT_RATE_LIMIT_PER_HOUR
        return int(value) or None

    # --- outbound --------------------------------------------------------------------------
    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        for identity in customer_identities:
            if identity.kind == IdentityKind.EMAIL:
                return identity.value
        return ""

    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        from channels_inbox.email.outbound import send_delivery

        return send_delivery(inbox, delivery)

    def after_ingest(self, inbox: Inbox, results: list[Any]) -> None:
        from channels_inbox.email.outbound import queue_auto_acks

        queue_auto_acks(inbox, results)
