"""Twilio Voice (`twilio_voice`): incoming calls, missed calls and voicemail on tickets.

One webhook URL (channel-specs §1.1, §1.5, §1.6) takes every signed form POST Twilio makes:

- the incoming call ("A call comes in": `CallStatus` ringing/in-progress, no `RecordingSid`),
  deduped on `call:<CallSid>:ringing`. It becomes a customer message "Incoming call from
  <number>" on the caller's ticket (opened or joined like any message), and `after_ingest`
  writes the Call row (ringing) + CallLogged. Twilio is answered with TwiML: the greeting,
  then `<Record>` for a voicemail (or `<Hangup/>`).
- the call's status callback ("Call status changes": completed/busy/no-answer/failed/
  canceled), deduped on `call:<CallSid>:<CallStatus>`: completed with a duration → answered,
  busy/no-answer/canceled → missed, failed → failed; only up CALL_STATUS_RANK.
- the recording status callback (`?event=recording`, `RecordingSid` + `RecordingStatus`),
  deduped on `recording:<RecordingSid>`: on `completed` the audio (`RecordingUrl` + `.mp3`,
  Basic auth) is stored as an attachment of the call's message, and the call is a voicemail.
- the `<Record action>` request (`?event=recorded`): nothing stored, answered with a hang-up.

A callback about a call this inbox has not recorded: if its incoming-call event is stored but
not processed yet, it is retried (with backoff) so the order does not matter; otherwise it is
kept as an ignored event (a call that never came through this inbox's voice URL).
A voice inbox cannot send: agents answer callers by SMS or email, or log calls by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from twilio.twiml.voice_response import VoiceResponse

from channels_inbox.adapters import register
from channels_inbox.adapters.base import (
    BadPayload,
    ChannelAdapter,
    ChannelEvent,
    DeliveryError,
    IdentityRef,
    InboundMessage,
    InboundSender,
    RawItem,
    SendResult,
    WebhookReply,
    WebhookRequest,
)
from channels_inbox.media import MediaTooLarge, fetch_media
from channels_inbox.twilio_common import form_params, twiml_response, verify_twilio_signature
from customers.models import IdentityKind
from customers.normalize import InvalidIdentity, normalize_phone

if TYPE_CHECKING:
    from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery
    from helpdesk.models.call import Call

SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
DEFAULT_GREETING = "Thank you for calling. Please leave a message after the tone."
MAX_GREETING_CHARS = 4000
# Twilio's <Record maxLength> allows up to 4 hours; a voicemail is short.
MAX_VOICEMAIL_SECONDS = 3600
INCOMING_STATUSES = frozenset({"ringing", "in-progress", "queued", "initiated"})
# Twilio's final CallStatus → ours (completed is answered only with a duration, else missed).
FINAL_STATUSES = {
    "completed": "answered",
    "busy": "missed",
    "no-answer": "missed",
    "canceled": "missed",
    "failed": "failed",
}
RECORDING_STATUSES = frozenset({"in-progress", "completed", "absent", "failed"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
XML = "text/xml; charset=utf-8"


class CallNotYetKnown(Exception):
    """A callback about a call whose incoming-call event is stored but not processed yet:
    the event is retried with backoff (process.py _record_failure)."""


def _one(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name) or [""]
    return values[0].replace("\x00", "")


def _seconds(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 9 else None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"voicemail must be true or false, not {str(value)[:20]!r}")


def _find_call(inbox: Inbox, call_sid: str) -> Call | None:
    """The inbox's call; raises CallNotYetKnown while its incoming-call event still waits."""
    from channels_inbox.models import InboundEvent, InboundEventStatus
    from helpdesk.models.call import Call

    call = Call.objects.filter(inbox=inbox, provider_id=call_sid).first()
    if call is not None:
        return call
    waiting = InboundEvent.objects.filter(
        inbox=inbox, dedupe_key=f"call:{call_sid}:ringing", status=InboundEventStatus.PENDING
    ).exists()
    if waiting:
        raise CallNotYetKnown(f"call {call_sid} is not processed yet")
    return None


@dataclass
class CallStatusChanged(ChannelEvent):
    call_sid: str
    status: str
    duration_seconds: int | None

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        from helpdesk.actions.calls import do_update_call_status

        call = _find_call(inbox, self.call_sid)
        if call is None:
            return False
        return do_update_call_status(call, self.status, duration_seconds=self.duration_seconds)


@dataclass
class RecordingCompleted(ChannelEvent):
    call_sid: str
    recording_sid: str
    recording_url: str
    duration_seconds: int | None
    auth: tuple[str, str]

    def apply(self, inbox: Inbox, event: InboundEvent) -> bool:
        from helpdesk.actions.calls import do_attach_call_recording

        call = _find_call(inbox, self.call_sid)
        if call is None or call.recording_id is not None:
            return False
        filename = f"voicemail-{self.recording_sid}.mp3"
        content: bytes | None = None
        skipped = ""
        try:
            # MediaUnavailable propagates: the event is retried with backoff.
            media = fetch_media(self.recording_url + ".mp3", auth=self.auth)
            content = media.content
        except MediaTooLarge as exc:
            skipped = f"too large ({exc})"
        return do_attach_call_recording(
            call,
            filename=filename,
            content=content,
            declared_type="audio/mpeg",
            duration_seconds=self.duration_seconds,
            skipped_reason=skipped,
        )


@register
class TwilioVoiceAdapter(ChannelAdapter):
    kind = "twilio_voice"
    label = "Phone (Twilio Voice)"
    # Twilio's voice webhooks are small forms.
    max_body_bytes: ClassVar[int | None] = 64 * 1024
    secret_settings = ("auth_token", "api_key_sid", "api_key_secret")
    required_settings = ("account_sid",)
    required_secrets = ("auth_token",)
    settings_help: ClassVar[dict[str, str]] = {
        "account_sid": "Twilio Account SID (AC…)",
        "greeting": f"What callers hear first (default: {DEFAULT_GREETING!r})",
        "voicemail": "Record a voicemail after the greeting (true/false, default true)",
        "max_voicemail_seconds": "Longest voicemail in seconds (default 120, at most 3600)",
        "say_language": "Language of the spoken greeting (default en-US)",
        "default_region": "Region for national caller numbers (e.g. GB)",
        "auth_token": "Auth Token (verifies webhooks; downloads recordings when no API key is set)",
        "api_key_sid": "API key SID (SK…) for downloading recordings (optional)",
        "api_key_secret": "API key secret (optional)",
    }

    def clean_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        values = super().clean_settings(values)
        if not str(values.get("account_sid") or "").startswith("AC"):
            raise ValueError("account_sid must start with AC")
        greeting = str(values.get("greeting") or DEFAULT_GREETING).replace("\x00", "").strip()
        if len(greeting) > MAX_GREETING_CHARS:
            raise ValueError(f"greeting is longer than {MAX_GREETING_CHARS} characters")
        values["greeting"] = greeting or DEFAULT_GREETING
        values["voicemail"] = _bool(values.get("voicemail", True))
        raw_max = values.get("max_voicemail_seconds", 120)
        try:
            max_seconds = int(raw_max)
        except (TypeError, ValueError) as exc:
            raise ValueError("max_voicemail_seconds must be a whole number") from exc
        if not 1 <= max_seconds <= MAX_VOICEMAIL_SECONDS:
            raise ValueError(f"max_voicemail_seconds must be 1–{MAX_VOICEMAIL_SECONDS}")
        values["max_voicemail_seconds"] = max_seconds
        values["say_language"] = str(values.get("say_language") or "en-US")[:20]
        if values.get("api_key_sid") and not values.get("api_key_secret"):
            raise ValueError("api_key_sid needs api_key_secret")
        return values

    # --- inbound ---------------------------------------------------------------------------
    def verify(self, inbox: Inbox, request: WebhookRequest) -> None:
        verify_twilio_signature(inbox.secret("auth_token"), request)

    def _kind_of(self, request: WebhookRequest, params: Mapping[str, list[str]]) -> str:
        """incoming, status, recording or recorded (the <Record action> request)."""
        event = request.query.get("event", "")
        if event == "recorded":
            return "recorded"
        if event == "recording" or _one(params, "RecordingStatus"):
            return "recording"
        status = _one(params, "CallStatus")
        if status in FINAL_STATUSES:
            return "status"
        if status in INCOMING_STATUSES and not _one(params, "RecordingSid"):
            return "incoming"
        raise BadPayload(f"unknown voice request (CallStatus {status[:40]!r})")

    def split(self, inbox: Inbox, request: WebhookRequest) -> list[RawItem]:
        params = form_params(request.body)
        call_sid = _one(params, "CallSid")
        if not SID.fullmatch(call_sid) or not call_sid.startswith("CA"):
            raise BadPayload("CallSid is missing or malformed")
        account = _one(params, "AccountSid")
        if account and account != inbox.settings.get("account_sid"):
            raise BadPayload("AccountSid is not this inbox's account")
        kind = self._kind_of(request, params)
        if kind == "recorded":
            return []
        if kind == "recording":
            recording_sid = _one(params, "RecordingSid")
            if not SID.fullmatch(recording_sid) or not recording_sid.startswith("RE"):
                raise BadPayload("RecordingSid is missing or malformed")
            status = _one(params, "RecordingStatus")
            if status not in RECORDING_STATUSES:
                raise BadPayload(f"unknown RecordingStatus {status[:40]!r}")
            if status != "completed":
                return [RawItem(dedupe_key=f"recording:{recording_sid}:{status}", raw=request.body)]
            self._recording_url(params)
            return [RawItem(dedupe_key=f"recording:{recording_sid}", raw=request.body)]
        if kind == "status":
            return [RawItem(dedupe_key=f"call:{call_sid}:{_one(params, 'CallStatus')}", raw=request.body)]
        if not _one(params, "From"):
            raise BadPayload("From is missing")
        return [RawItem(dedupe_key=f"call:{call_sid}:ringing", raw=request.body)]

    def _recording_url(self, params: Mapping[str, list[str]]) -> str:
        url = _one(params, "RecordingUrl")
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not (host == "twilio.com" or host.endswith(".twilio.com")):
            raise BadPayload("RecordingUrl must be an https URL at twilio.com")
        return url

    def _phone(self, inbox: Inbox, raw: str) -> str:
        """E.164, or '' for a number that is none (anonymous, a SIP or client address)."""
        try:
            return normalize_phone(raw, inbox.settings.get("default_region") or None)
        except InvalidIdentity:
            return ""

    def parse(self, inbox: Inbox, raw: bytes, headers: Mapping[str, str]) -> InboundMessage | ChannelEvent | None:
        params = form_params(raw)
        call_sid = _one(params, "CallSid")
        if _one(params, "RecordingStatus"):
            if _one(params, "RecordingStatus") != "completed":
                return None
            return RecordingCompleted(
                call_sid=call_sid,
                recording_sid=_one(params, "RecordingSid"),
                recording_url=self._recording_url(params),
                duration_seconds=_seconds(_one(params, "RecordingDuration")),
                auth=self._auth(inbox),
            )
        status = _one(params, "CallStatus")
        if status in FINAL_STATUSES:
            duration = _seconds(_one(params, "CallDuration"))
            ours = FINAL_STATUSES[status]
            if status == "completed" and not duration:
                ours = "missed"
            return CallStatusChanged(call_sid=call_sid, status=ours, duration_seconds=duration)
        raw_from = _one(params, "From")[:40]
        phone = self._phone(inbox, raw_from)
        to = _one(params, "To")[:40]
        name = _one(params, "CallerName")[:200]
        if phone:
            identity = IdentityRef(IdentityKind.PHONE, phone)
        else:
            # No caller id: a customer of its own for this call (never merged with others).
            identity = IdentityRef(IdentityKind.EXTERNAL, f"twilio_voice:{call_sid}")
        number = phone or raw_from or "an unknown number"
        return InboundMessage(
            external_id=f"call:{call_sid}",
            sender=InboundSender(identities=[identity], name=name),
            text=f"Incoming call from {number}",
            thread_by_customer=True,
            metadata={
                "call": {
                    "sid": call_sid,
                    "from": phone or raw_from,
                    "to": self._phone(inbox, to) or to,
                    "status": "ringing",
                }
            },
        )

    def after_ingest(self, inbox: Inbox, results: list[Any]) -> None:
        """The Call row and CallLogged for each incoming call now on its ticket."""
        from helpdesk.actions.calls import do_record_inbound_call

        for result in results:
            message = getattr(result, "message", None)
            ticket = getattr(result, "ticket", None)
            if message is None or ticket is None:
                continue
            info = (message.metadata or {}).get("call")
            if not isinstance(info, dict) or not info.get("sid"):
                continue
            do_record_inbound_call(
                inbox=inbox,
                ticket=ticket,
                message=message,
                customer=message.author_customer,
                provider_id=str(info["sid"]),
                from_number=str(info.get("from") or ""),
                to_number=str(info.get("to") or ""),
            )

    def _auth(self, inbox: Inbox) -> tuple[str, str]:
        key, secret = inbox.secret("api_key_sid"), inbox.secret("api_key_secret")
        if key and secret:
            return key, secret
        return str(inbox.settings.get("account_sid") or ""), inbox.secret("auth_token")

    def webhook_url(self, inbox: Inbox) -> str:
        from channels_inbox.actions.inboxes import webhook_url

        return webhook_url(inbox)

    def twiml_for_call(self, inbox: Inbox) -> VoiceResponse:
        """What a caller hears: the greeting, then the voicemail recording (or a hang-up)."""
        settings = inbox.settings or {}
        response = VoiceResponse()
        response.say(
            str(settings.get("greeting") or DEFAULT_GREETING), language=str(settings.get("say_language") or "en-US")
        )
        if settings.get("voicemail", True) is not False:
            url = self.webhook_url(inbox)
            response.record(
                max_length=int(settings.get("max_voicemail_seconds") or 120),
                play_beep=True,
                action=f"{url}?event=recorded",
                recording_status_callback=f"{url}?event=recording",
                recording_status_callback_method="POST",
            )
        # After a voicemail (or a silent caller, when <Record> goes on to the next verb).
        response.hangup()
        return response

    def webhook_reply(self, inbox: Inbox, request: WebhookRequest, stored: int, duplicates: int) -> WebhookReply:
        response = VoiceResponse()
        params = form_params(request.body)
        kind = self._kind_of(request, params)
        if kind == "incoming":
            response = self.twiml_for_call(inbox)
        elif kind == "recorded":
            response.hangup()
        return WebhookReply(content_type=XML, body=twiml_response(response))

    # --- outbound ----------------------------------------------------------------------------
    def send(self, inbox: Inbox, delivery: OutboundDelivery) -> SendResult:
        raise DeliveryError("a voice inbox cannot send messages; answer by SMS or email", retryable=False)

    def recipient_for(self, inbox: Inbox, customer_identities: list[IdentityRef]) -> str:
        return ""
