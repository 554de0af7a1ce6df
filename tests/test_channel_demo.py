"""The demo's and the load test's provider webhooks (bench/provider_webhooks.py) against the real
adapters: each builder's request passes the registered adapter's verify, split and parse, a
tampered one is refused, and through the webhook view it is stored once, also when redelivered."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from typing import Any

import pytest
from django.conf import settings
from twilio.request_validator import RequestValidator

from bench import provider_webhooks as pw
from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.adapters import adapter_kinds, get_adapter
from channels_inbox.adapters.base import InboundMessage, SignatureError
from channels_inbox.models import InboundEvent, Inbox

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = [pytest.param(kind, id=kind) for kind in pw.WEBHOOK_KINDS]
SIGNATURE_HEADERS = ("X-Twilio-Signature", "X-Hub-Signature-256", "X-Telegram-Bot-Api-Secret-Token")
MESSAGE_KINDS = {"twilio_sms", "twilio_whatsapp", "whatsapp", "messenger", "instagram", "telegram"}


def registered(kind: str) -> None:
    if kind not in adapter_kinds():
        pytest.skip(f"no {kind} adapter registered yet")


def make_inbox(kind: str) -> Inbox:
    values = pw.demo_inbox_values(kind, get_adapter(kind))
    inbox, _secrets = do_create_inbox(kind=kind, name=f"Demo {kind}", values=values)
    return inbox


def headers_for_client(hook: pw.SignedWebhook) -> dict[str, str]:
    return {
        "HTTP_" + name.upper().replace("-", "_"): value
        for name, value in hook.headers.items()
        if name != "Content-Type"
    }


# --- the signers themselves (no adapter needed) ----------------------------------------------


def test_the_twilio_signature_is_what_twilios_validator_accepts() -> None:
    inbox = pw.InboxRef("twilio_sms", "0" * 32, {}, {"auth_token": "tok"})
    hook = pw.twilio_sms(inbox, "https://desk.example.com", text="Hello")
    params = dict(urllib.parse.parse_qsl(hook.body.decode(), keep_blank_values=True))
    assert params["Body"] == "Hello"
    assert params["MessageSid"] == hook.provider_id
    assert params["NumMedia"] == "0"
    assert hook.url == "https://desk.example.com/webhooks/twilio_sms/" + "0" * 32 + "/"
    assert RequestValidator("tok").validate(hook.url, params, hook.headers["X-Twilio-Signature"])
    assert not RequestValidator("other").validate(hook.url, params, hook.headers["X-Twilio-Signature"])


@pytest.mark.parametrize("kind", ["twilio_sms", "twilio_whatsapp", "twilio_voice"])
def test_the_twilio_webhooks_pass_the_shared_twilio_verifier(kind: str) -> None:
    from channels_inbox.twilio_common import verify_twilio_signature

    inbox = pw.InboxRef(kind, "3" * 32, {}, {"auth_token": "tok"})
    request = pw.build_message(inbox, settings.SITE_URL).webhook_request()
    verify_twilio_signature("tok", request)
    with pytest.raises(SignatureError):
        verify_twilio_signature("other-token", request)


def test_the_meta_signature_is_hmac_sha256_of_the_exact_body_with_non_ascii_escaped() -> None:
    inbox = pw.InboxRef("whatsapp", "1" * 32, {"phone_number_id": "123"}, {"app_secret": "s3cret"})
    hook = pw.whatsapp(inbox, "http://x", text="Olá 😕")
    assert b"\\u00e1" in hook.body
    assert "á".encode() not in hook.body
    expected = "sha256=" + hmac.new(b"s3cret", hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["X-Hub-Signature-256"] == expected


def test_every_build_makes_new_provider_ids() -> None:
    refs = [pw.InboxRef(kind, "2" * 32, {}, dict.fromkeys(pw.SECRET_NAMES[kind], "x")) for kind in pw.WEBHOOK_KINDS]
    ids = [pw.build_message(ref, "http://x").provider_id for ref in refs for _ in range(50)]
    assert len(set(ids)) == len(ids)


# --- against the registered adapters --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_built_webhook_passes_the_adapters_verify_split_and_parse(kind: str) -> None:
    registered(kind)
    inbox = make_inbox(kind)
    hook = pw.build_message(inbox, settings.SITE_URL, text="Hello from the demo")
    request = hook.webhook_request()
    adapter = inbox.adapter
    # verify: passes as built, refuses a wrong signature (Twilio, Meta: also a changed body)
    adapter.verify(inbox, request)
    forged = {k: (v[:-4] + "AAAA" if k in SIGNATURE_HEADERS else v) for k, v in hook.headers.items()}
    with pytest.raises(SignatureError):
        adapter.verify(inbox, pw.SignedWebhook(kind, hook.url, hook.body, forged, "").webhook_request())
    if kind != "telegram":  # Telegram's secret header does not cover the body
        changed = pw.SignedWebhook(kind, hook.url, hook.body + b"0", hook.headers, "").webhook_request()
        with pytest.raises(SignatureError):
            adapter.verify(inbox, changed)
    # split: one item, deduped on the provider's id
    items = adapter.split(inbox, request)
    assert len(items) == 1
    assert hook.provider_id in pw.dedupe_tokens(items[0].dedupe_key)
    # parse: the customer's message (voice: the call, whatever the adapter makes of it)
    parsed = adapter.parse(inbox, items[0].raw, request.headers)
    if kind in MESSAGE_KINDS:
        assert isinstance(parsed, InboundMessage)
        assert parsed.text == "Hello from the demo"
    else:
        assert parsed is not None


@pytest.mark.parametrize("kind", KINDS)
def test_a_built_webhook_is_stored_once_through_the_view_also_when_redelivered(client: Any, kind: str) -> None:
    registered(kind)
    inbox = make_inbox(kind)
    hook = pw.build_message(inbox, settings.SITE_URL)
    content_type = hook.headers["Content-Type"]
    # when: delivered, then redelivered
    first = client.post(hook.path, data=hook.body, content_type=content_type, **headers_for_client(hook))
    again = client.post(hook.path, data=hook.body, content_type=content_type, **headers_for_client(hook))
    # then: both acknowledged, one stored event
    assert first.status_code == 200, first.content
    assert again.status_code == 200, again.content
    events = list(InboundEvent.objects.filter(inbox=inbox))
    assert len(events) == 1
    assert hook.provider_id in pw.dedupe_tokens(events[0].dedupe_key)
    # and a wrong signature is refused with nothing more stored
    bad = dict(headers_for_client(hook))
    for name in ("HTTP_X_TWILIO_SIGNATURE", "HTTP_X_HUB_SIGNATURE_256", "HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN"):
        if name in bad:
            bad[name] = "sha256=" + "0" * 64
    refused = client.post(hook.path, data=hook.body, content_type=content_type, **bad)
    assert refused.status_code == 403
    assert InboundEvent.objects.filter(inbox=inbox).count() == 1
