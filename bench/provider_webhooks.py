"""Realistic provider webhooks for the messaging channels, signed exactly as each provider signs.

Used by the demo (`seed_demo`, `bench/replay_webhooks.py`), the load test
(`bench/webhook_load.py`) and tests (`tests/test_channel_demo.py`). Pure Python: no Django
needed to build or sign, so a script can build webhooks for a remote instance.

    hook = build_message(InboxRef(kind, uuid, settings, secrets), site_url)
    httpx.post(hook.url, content=hook.body, headers=hook.headers)

Each call makes new provider ids (`hook.provider_id`: MessageSid, wamid, mid, update_id,
CallSid), unique in this process (a random base plus a counter), so no two built webhooks
are redeliveries of each other; send the same `SignedWebhook` twice for a redelivery.

Protocol facts: /work/shared/reference/channel-specs.md §1–3.
- Twilio (SMS, WhatsApp, Voice): form-encoded, `X-Twilio-Signature` from
  `twilio.request_validator.RequestValidator(auth_token).compute_signature(url, params)` over
  the exact URL Twilio calls (SITE_URL + path).
- Meta (WhatsApp Cloud, Messenger, Instagram): JSON as Meta sends it (non-ASCII escaped as
  \\uXXXX), `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>`.
- Telegram: JSON update, `X-Telegram-Bot-Api-Secret-Token: <the setWebhook secret_token>`.

The secret and routing values are read from the inbox's secrets/settings under the names the
adapters use (several accepted spellings, see `SECRET_NAMES`); pass `secret=` to override.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The kinds that take provider webhooks at /webhooks/<kind>/<uuid>/ (web_form posts to the help
# center, not here).
WEBHOOK_KINDS = ("twilio_sms", "twilio_whatsapp", "whatsapp", "messenger", "instagram", "telegram", "twilio_voice")

# Where each kind's signing secret lives (inbox secrets first, then settings), in order.
SECRET_NAMES: dict[str, tuple[str, ...]] = {
    "twilio_sms": ("auth_token", "twilio_auth_token"),
    "twilio_whatsapp": ("auth_token", "twilio_auth_token"),
    "twilio_voice": ("auth_token", "twilio_auth_token"),
    "whatsapp": ("app_secret", "meta_app_secret"),
    "messenger": ("app_secret", "meta_app_secret"),
    "instagram": ("app_secret", "instagram_app_secret", "meta_app_secret"),
    "telegram": ("secret_token", "webhook_secret", "webhook_secret_token"),
}

# Our side of the conversation: each kind's number / page / account, from settings when set.
_OWN_ID_NAMES: dict[str, tuple[str, ...]] = {
    "twilio_sms": ("phone_number", "from_number", "number", "from"),
    "twilio_whatsapp": ("whatsapp_number", "phone_number", "from_number", "number", "from"),
    "twilio_voice": ("phone_number", "number", "from_number"),
    "whatsapp": ("phone_number_id",),
    "messenger": ("page_id",),
    "instagram": ("instagram_account_id", "ig_user_id", "ig_id", "account_id", "page_id"),
    "telegram": ("bot_id",),
}
_OWN_DEFAULTS = {
    "twilio_sms": "+14155550100",
    "twilio_whatsapp": "+14155550111",
    "twilio_voice": "+14155550122",
    "whatsapp": "106540352242922",
    "messenger": "104217385937812",
    "instagram": "17841400000000001",
    "telegram": "7000000001",
}
DEMO_ACCOUNT_SID = "AC" + "d" * 32

_counter = itertools.count(secrets.randbelow(10**9) * 1000)


def _next() -> int:
    return next(_counter)


def bsuid(wa_id: str) -> str:
    """A business-scoped user id (`user_id`, §2.2), stable for a phone number."""
    return "US." + str(int(hashlib.sha256(wa_id.encode()).hexdigest()[:15], 16))


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass(frozen=True)
class InboxRef:
    """What a builder needs of an inbox (a model instance works too: same attribute names)."""

    kind: str
    uuid: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sender:
    name: str
    phone: str  # E.164
    language: str = "en"


SENDERS = (
    Sender("Emily Carter", "+12025550143", "en"),
    Sender("Jana Nováková", "+420601123456", "cs"),
    Sender("Иван Петров", "+79123456789", "ru"),
    Sender("王芳", "+8613800138000", "zh"),
    Sender("Lucía Fernández", "+5215512345678", "es"),  # WhatsApp's Mexican +521 form
    Sender("João Silva", "+5511987654321", "pt"),
)
TEXTS = (
    "Hi! My order #4471 hasn't arrived yet, can you check?",
    "Dobrý den, chtěla bych změnit doručovací adresu.",
    "Здравствуйте, не могу оплатить заказ картой.",
    "你好，我想退货，请问怎么操作？",
    "Hola, ¿tienen la talla M en azul? 👕",
    "Olá! Recebi o produto errado 😕",
)


@dataclass(frozen=True)
class SignedWebhook:
    kind: str
    url: str  # the full public URL the provider calls (what Twilio signs)
    body: bytes
    headers: dict[str, str]
    provider_id: str  # the id the spine dedupes on (MessageSid, wamid, mid, update_id, CallSid)
    summary: str = ""

    @property
    def path(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def webhook_request(self, site_url: str | None = None) -> Any:
        """The `channels_inbox.adapters.base.WebhookRequest` the view would build (needs Django)."""
        from channels_inbox.adapters.base import WebhookRequest

        url = (site_url.rstrip("/") + self.path) if site_url else self.url
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        return WebhookRequest(
            method="POST",
            url=url,
            body=self.body,
            headers={k.lower(): v for k, v in self.headers.items()},
            query=query,
        )


def webhook_url(site_url: str, kind: str, inbox_uuid: str) -> str:
    return f"{site_url.rstrip('/')}/webhooks/{kind}/{inbox_uuid}/"


def inbox_secret(inbox: InboxRef | Any, override: str | None = None) -> str:
    if override:
        return override
    names = SECRET_NAMES.get(inbox.kind, ())
    for source in (inbox.secrets or {}, inbox.settings or {}):
        for name in names:
            value = source.get(name)
            if value:
                return str(value)
    raise LookupError(f"inbox of kind {inbox.kind!r} has none of the secrets {', '.join(names)}")


def own_id(inbox: InboxRef | Any) -> str:
    for name in _OWN_ID_NAMES.get(inbox.kind, ()):
        value = (inbox.settings or {}).get(name)
        if value:
            return str(value).removeprefix("whatsapp:")
    return _OWN_DEFAULTS.get(inbox.kind, "")


# --- signers -------------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def meta_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def meta_body(payload: Mapping[str, Any]) -> bytes:
    # As Meta sends it: compact, non-ASCII escaped as \uXXXX.
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def _twilio(kind: str, url: str, token: str, params: dict[str, str], provider_id: str, summary: str) -> SignedWebhook:
    return SignedWebhook(
        kind=kind,
        url=url,
        body=urllib.parse.urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "X-Twilio-Signature": twilio_signature(token, url, params),
        },
        provider_id=provider_id,
        summary=summary,
    )


def _meta(
    kind: str, url: str, app_secret: str, payload: dict[str, Any], provider_id: str, summary: str
) -> SignedWebhook:
    body = meta_body(payload)
    return SignedWebhook(
        kind=kind,
        url=url,
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            "X-Hub-Signature-256": meta_signature(app_secret, body),
        },
        provider_id=provider_id,
        summary=summary,
    )


# --- builders (one inbound message each) ----------------------------------------------------


def _pick(n: int, seq: tuple[Any, ...]) -> Any:
    return seq[n % len(seq)]


def _sender(n: int, sender: Sender | None) -> Sender:
    """The given sender, else a new customer per build (the load test: many customers, not six)."""
    if sender is not None:
        return sender
    base = _pick(n, SENDERS)
    return Sender(f"{base.name} {n % 100000}", f"+1202{5000000 + n % 5000000}", base.language)


def _scoped_id(base: int, n: int, sender: Sender | None) -> int:
    """A platform-scoped user id (PSID, IGSID, Telegram user id): stable for a given `sender`
    (one customer across a conversation), else new per build."""
    if sender is not None:
        return base + int("".join(c for c in sender.phone if c.isdigit())) % 10**9
    return base + 10**9 + n % 10**9


def twilio_sms(
    inbox: Any, site_url: str, *, sender: Sender | None = None, text: str | None = None, secret: str | None = None
) -> SignedWebhook:
    n = _next()
    who = _sender(n, sender)
    body = text if text is not None else _pick(n, TEXTS)
    sid = _sid("SM")
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "",
        "To": own_id(inbox),
        "MessagingServiceSid": str((inbox.settings or {}).get("messaging_service_sid") or ""),
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": str((inbox.settings or {}).get("account_sid") or DEMO_ACCOUNT_SID),
        "From": who.phone,
        "ApiVersion": "2010-04-01",
    }
    params = {k: v for k, v in params.items() if v != "" or k in ("Body", "FromZip")}
    url = webhook_url(site_url, inbox.kind, str(inbox.uuid))
    return _twilio(inbox.kind, url, inbox_secret(inbox, secret), params, sid, f"SMS from {who.phone}: {body}")


def twilio_whatsapp(
    inbox: Any, site_url: str, *, sender: Sender | None = None, text: str | None = None, secret: str | None = None
) -> SignedWebhook:
    n = _next()
    who = _sender(n, sender)
    body = text if text is not None else _pick(n, TEXTS)
    sid = _sid("SM")
    params = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": who.name,
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": who.phone.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": "whatsapp:" + own_id(inbox),
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": str((inbox.settings or {}).get("account_sid") or DEMO_ACCOUNT_SID),
        "From": "whatsapp:" + who.phone,
        "ApiVersion": "2010-04-01",
    }
    url = webhook_url(site_url, inbox.kind, str(inbox.uuid))
    return _twilio(
        inbox.kind, url, inbox_secret(inbox, secret), params, sid, f"WhatsApp (Twilio) from {who.name}: {body}"
    )


def twilio_voice(
    inbox: Any, site_url: str, *, sender: Sender | None = None, text: str | None = None, secret: str | None = None
) -> SignedWebhook:
    """An incoming call (`CallStatus=ringing`), the voice webhook Twilio calls first."""
    n = _next()
    who = _sender(n, sender)
    sid = _sid("CA")
    to = own_id(inbox)
    params = {
        "Called": to,
        "ToState": "CA",
        "CallerCountry": "US",
        "Direction": "inbound",
        "CallerState": "",
        "ToZip": "94105",
        "CallSid": sid,
        "To": to,
        "CallerZip": "",
        "ToCountry": "US",
        "CallToken": "",
        "CalledZip": "94105",
        "ApiVersion": "2010-04-01",
        "CalledCity": "SAN FRANCISCO",
        "CallStatus": "ringing",
        "From": who.phone,
        "AccountSid": str((inbox.settings or {}).get("account_sid") or DEMO_ACCOUNT_SID),
        "CalledCountry": "US",
        "CallerCity": "",
        "ToCity": "SAN FRANCISCO",
        "FromCountry": "",
        "Caller": who.phone,
        "FromCity": "",
        "CalledState": "CA",
        "FromZip": "",
        "FromState": "",
    }
    url = webhook_url(site_url, inbox.kind, str(inbox.uuid))
    return _twilio(inbox.kind, url, inbox_secret(inbox, secret), params, sid, f"Incoming call from {who.phone}")


def whatsapp(
    inbox: Any, site_url: str, *, sender: Sender | None = None, text: str | None = None, secret: str | None = None
) -> SignedWebhook:
    """A WhatsApp Cloud API text message (`object=whatsapp_business_account`)."""
    n = _next()
    who = _sender(n, sender)
    body = text if text is not None else _pick(n, TEXTS)
    wamid = "wamid.HBgL" + uuid.uuid4().hex.upper() + "AA=="
    wa_id = who.phone.lstrip("+")
    phone_number_id = own_id(inbox)
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": str(
                    (inbox.settings or {}).get("waba_id")
                    or (inbox.settings or {}).get("business_account_id")
                    or "102290129340398"
                ),
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": str(
                                    (inbox.settings or {}).get("display_phone_number") or "15550783881"
                                ),
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": who.name}, "wa_id": wa_id, "user_id": bsuid(wa_id)}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": body},
                                }
                            ],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    url = webhook_url(site_url, inbox.kind, str(inbox.uuid))
    return _meta(inbox.kind, url, inbox_secret(inbox, secret), payload, wamid, f"WhatsApp from {who.name}: {body}")


def _messaging(
    inbox: Any, site_url: str, obj: str, sender_id: str, text: str, secret: str | None, label: str
) -> SignedWebhook:
    page = own_id(inbox)
    now_ms = int(time.time() * 1000)
    mid = ("m_" if obj == "page" else "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj") + uuid.uuid4().hex
    payload = {
        "object": obj,
        "entry": [
            {
                "time": now_ms,
                "id": page,
                "messaging": [
                    {
                        "sender": {"id": sender_id},
                        "recipient": {"id": page},
                        "timestamp": now_ms,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }
    url = webhook_url(site_url, inbox.kind, str(inbox.uuid))
    return _meta(inbox.kind, url, inbox_secret(inbox, secret), payload, mid, f"{label} from {sender_id}: {text}")


def messenger(
    inbox: Any, site_url: str, *, sender: Sender | None = None, text: str | None = None, secret: str | None = None
) -> SignedWebhook:
    n = _next()
    psid = str(_scoped_id(7000000000000000, n, sender))
    return _messaging(inbox, site_url, "page", psid, text if text is not None else _pick(n, TEXTS), secret, "Messenger")


def instagram(
    inbox: Any, site_url: str, *, sender: Sender | None = None, text: str | None = None, secret: str | None = None
) -> SignedWebhook:
    n = _next()
    igsid = str(_scoped_id(1780000000000000, n, sender))
    return _messaging(
        inbox, site_url, "instagram", igsid, text if text is not None else _pick(n, TEXTS), secret, "Instagram"
    )


def telegram(
    inbox: Any, site_url: str, *, sender: Sender | None = None, text: str | None = None, secret: str | None = None
) -> SignedWebhook:
    n = _next()
    who = _sender(n, sender)
    body = text if text is not None else _pick(n, TEXTS)
    update_id = 100000000 + n  # unique in this process; Telegram's are ~9 digits
    user_id = _scoped_id(5000000000, n, sender)
    first, _, last = who.name.partition(" ")
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first, "language_code": who.language}
    if last:
        user["last_name"] = last
    chat: dict[str, Any] = {"id": user_id, "first_name": first, "type": "private"}
    if last:
        chat["last_name"] = last
    payload = {
        "update_id": update_id,
        "message": {
            "message_id": 1 + n % 1000000,
            "from": user,
            "chat": chat,
            "date": int(time.time()),
            "text": body,
        },
    }
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    url = webhook_url(site_url, inbox.kind, str(inbox.uuid))
    return SignedWebhook(
        kind=inbox.kind,
        url=url,
        body=raw,
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": inbox_secret(inbox, secret),
        },
        provider_id=str(update_id),
        summary=f"Telegram from {who.name}: {body}",
    )


BUILDERS: dict[str, Callable[..., SignedWebhook]] = {
    "twilio_sms": twilio_sms,
    "twilio_whatsapp": twilio_whatsapp,
    "whatsapp": whatsapp,
    "messenger": messenger,
    "instagram": instagram,
    "telegram": telegram,
    "twilio_voice": twilio_voice,
}


def build_message(inbox: Any, site_url: str, **kwargs: Any) -> SignedWebhook:
    """One realistic inbound webhook for the inbox's kind, signed with its secret."""
    try:
        builder = BUILDERS[inbox.kind]
    except KeyError:
        raise LookupError(f"no webhook builder for kind {inbox.kind!r}") from None
    return builder(inbox, site_url, **kwargs)


def dedupe_tokens(dedupe_key: str) -> set[str]:
    """The parts of a stored dedupe key that can be a provider id (adapters may prefix or join
    ids, e.g. `update:123` or `SM…:delivered`)."""
    import re

    return {part for part in re.split(r"[:|/,\s]+", dedupe_key) if part} | {dedupe_key}


# Demo signing secrets (fixed: the embedded demo's inboxes are seeded with them).
DEMO_SECRETS = {
    "auth_token": "demo-twilio-auth-token-0123456789ab",
    "app_secret": "demo-meta-app-secret-0123456789abcd",
    "secret_token": "demo-telegram-secret-token_0123456789",
}


# Demo values for the inbox settings and secrets the adapters declare (only the names an
# adapter declares are used; fixed, so a demo's webhooks can be signed from outside).
DEMO_VALUES: dict[str, str] = {
    "auth_token": DEMO_SECRETS["auth_token"],
    "twilio_auth_token": DEMO_SECRETS["auth_token"],
    "account_sid": DEMO_ACCOUNT_SID,
    "api_key": "SK" + "d" * 32,
    "api_key_sid": "SK" + "d" * 32,
    "api_secret": "demo-twilio-api-secret",
    "api_key_secret": "demo-twilio-api-secret",
    "app_secret": DEMO_SECRETS["app_secret"],
    "meta_app_secret": DEMO_SECRETS["app_secret"],
    "instagram_app_secret": DEMO_SECRETS["app_secret"],
    "access_token": "demo-meta-access-token",
    "page_access_token": "demo-meta-page-token",
    "system_user_token": "demo-meta-system-user-token",
    "verify_token": "demo-meta-verify-token",
    "waba_id": "102290129340398",
    "business_account_id": "102290129340398",
    "display_phone_number": "15550783881",
    "bot_token": "7000000001:AAdemo-telegram-bot-token-not-real",
    "bot_username": "switchboard_demo_bot",
    "webhook_secret": DEMO_SECRETS["secret_token"],
    "secret_token": DEMO_SECRETS["secret_token"],
    "webhook_secret_token": DEMO_SECRETS["secret_token"],
}


def demo_inbox_values(kind: str, adapter: Any) -> dict[str, str]:
    """Values for `do_create_inbox(kind=, values=)`: every declared setting or secret we know a
    demo value for (our own number / page / account per kind, the fixed demo secrets)."""
    declared = {
        *getattr(adapter, "settings_help", {}),
        *getattr(adapter, "secret_settings", ()),
        *getattr(adapter, "generated_secrets", ()),
    }
    values: dict[str, str] = {}
    for name in sorted(declared):
        if name in _OWN_ID_NAMES.get(kind, ()):
            own = _OWN_DEFAULTS[kind]
            values[name] = own
        elif name in DEMO_VALUES:
            values[name] = DEMO_VALUES[name]
    return values
