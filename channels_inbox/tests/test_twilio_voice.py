"""Twilio Voice: the incoming call's TwiML, the call on a ticket, status callbacks, voicemail."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import respx
from django.conf import settings
from twilio.request_validator import RequestValidator

from channels_inbox.models import InboundEvent, InboundEventStatus
from customers.models import Identity
from helpdesk.models import Attachment, Direction, Message, Ticket, TicketEvent
from helpdesk.models.call import Call

pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNT = "AC" + "a" * 32
TOKEN = "test-voice-auth-token"
OUR_NUMBER = "+14155550122"
CALLER = "+442071838750"
REC_BASE = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings"


def sid(n: int, prefix: str = "CA") -> str:
    return f"{prefix}{n:032x}"


@pytest.fixture
def inbox(db: Any) -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(
        kind="twilio_voice",
        name="Phone",
        values={"account_sid": ACCOUNT, "auth_token": TOKEN, "default_region": "GB"},
    )
    return inbox


def url_of(inbox: Any, query: str = "") -> str:
    return f"{settings.SITE_URL}/webhooks/twilio_voice/{inbox.uuid}/" + (f"?{query}" if query else "")


def post(client: Any, inbox: Any, params: dict[str, str], *, query: str = "", token: str = TOKEN) -> Any:
    """POST exactly as Twilio does: a form signed over the full URL (query included) + params."""
    signature = RequestValidator(token).compute_signature(url_of(inbox, query), params)
    path = f"/webhooks/twilio_voice/{inbox.uuid}/" + (f"?{query}" if query else "")
    return client.post(
        path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )


def incoming(n: int = 1, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid(n),
        "AccountSid": ACCOUNT,
        "From": "02071838750",
        "To": OUR_NUMBER,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "CallerName": "ADA LOVELACE",
    } | extra


def status(n: int, call_status: str, duration: str = "") -> dict[str, str]:
    params = incoming(n, CallStatus=call_status)
    if duration:
        params["CallDuration"] = duration
    return params


def recording(n: int, rec: int = 7, duration: str = "42", rec_status: str = "completed") -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT,
        "CallSid": sid(n),
        "RecordingSid": sid(rec, "RE"),
        "RecordingUrl": f"{REC_BASE}/{sid(rec, 'RE')}",
        "RecordingStatus": rec_status,
        "RecordingDuration": duration,
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
    }


def expected_twiml(inbox: Any) -> str:
    url = url_of(inbox)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say language="en-US">Thank you for calling. Please leave a message after the tone.</Say>'
        f'<Record action="{url}?event=recorded" maxLength="120" playBeep="true" '
        f'recordingStatusCallback="{url}?event=recording" recordingStatusCallbackMethod="POST" />'
        "<Hangup /></Response>"
    )


def test_incoming_call_answers_with_the_voicemail_twiml_and_opens_a_ticket_with_a_call(client: Any, inbox: Any) -> None:
    response = post(client, inbox, incoming(1))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml; charset=utf-8"
    assert response.content.decode() == expected_twiml(inbox)
    # the caller's message, ticket and customer (E.164 identity, CNAM name)
    message = Message.objects.get(inbox=inbox)
    assert (message.external_id, message.direction, message.text) == (
        f"call:{sid(1)}",
        Direction.INBOUND,
        f"Incoming call from {CALLER}",
    )
    assert message.metadata["call"] == {"sid": sid(1), "from": CALLER, "to": OUR_NUMBER, "status": "ringing"}
    identity = Identity.objects.get(kind="phone", value=CALLER)
    assert message.author_customer_id == identity.customer_id
    assert identity.customer.name == "ADA LOVELACE"
    ticket = Ticket.objects.get()
    call = Call.objects.get()
    assert (call.ticket_id, call.customer_id, call.inbox_id, call.message_id) == (
        ticket.pk,
        identity.customer_id,
        inbox.pk,
        message.pk,
    )
    assert (call.direction, call.status, call.from_number, call.to_number, call.provider_id) == (
        "inbound",
        "ringing",
        CALLER,
        OUR_NUMBER,
        sid(1),
    )
    logged = TicketEvent.objects.get(ticket=ticket, type="call_logged")
    assert logged.data == {"call_id": call.pk, "direction": "inbound", "status": "ringing", "manual": False}
    assert InboundEvent.objects.get().dedupe_key == f"call:{sid(1)}:ringing"


def test_greeting_and_no_voicemail_settings_shape_the_twiml(client: Any) -> None:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(
        kind="twilio_voice",
        name="Phone 2",
        values={
            "account_sid": ACCOUNT,
            "auth_token": TOKEN,
            "greeting": "Hallo & welkom",
            "say_language": "nl-NL",
            "voicemail": "false",
        },
    )
    response = post(client, inbox, incoming(2))
    assert response.content.decode() == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say language="nl-NL">Hallo &amp; welkom</Say><Hangup /></Response>'
    )


def test_a_wrong_signature_is_refused_and_nothing_is_stored(client: Any, inbox: Any) -> None:
    response = post(client, inbox, incoming(1), token="not-the-token")
    assert response.status_code == 403
    assert InboundEvent.objects.count() == 0
    assert Call.objects.count() == 0
    # signed without the query string the callback URL carries: also refused
    signature = RequestValidator(TOKEN).compute_signature(url_of(inbox), recording(1))
    refused = client.post(
        f"/webhooks/twilio_voice/{inbox.uuid}/?event=recording",
        data=urlencode(recording(1)),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert refused.status_code == 403
    assert InboundEvent.objects.count() == 0


def test_a_redelivered_call_is_answered_again_but_stored_once(client: Any, inbox: Any) -> None:
    post(client, inbox, incoming(1))
    again = post(client, inbox, incoming(1))
    assert again.status_code == 200
    assert again.content.decode() == expected_twiml(inbox)
    assert InboundEvent.objects.count() == 1
    assert (Message.objects.count(), Call.objects.count(), Ticket.objects.count()) == (1, 1, 1)


@pytest.mark.parametrize(
    ("call_status", "duration", "ours"),
    [("completed", "65", "answered"), ("no-answer", "", "missed"), ("busy", "", "missed"), ("failed", "", "failed")],
)
def test_status_callback_moves_the_call(client: Any, inbox: Any, call_status: str, duration: str, ours: str) -> None:
    post(client, inbox, incoming(1))
    response = post(client, inbox, status(1, call_status, duration))
    assert response.status_code == 200
    assert response.content.decode() == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    call = Call.objects.get()
    assert call.status == ours
    assert call.duration_seconds == (int(duration) if duration else None)
    assert call.ended_at is not None
    assert InboundEvent.objects.get(dedupe_key=f"call:{sid(1)}:{call_status}").status == InboundEventStatus.PROCESSED
    updated = TicketEvent.objects.get(type="call_updated")
    assert updated.data == {"call_id": call.pk, "old_status": "ringing", "new_status": ours}
    assert Message.objects.get().metadata["call"]["status"] == ours


def test_status_callbacks_out_of_order_only_move_up(client: Any, inbox: Any) -> None:
    post(client, inbox, incoming(1))
    post(client, inbox, status(1, "completed", "30"))
    # the incoming call redelivered, then a late no-answer: the call stays answered
    post(client, inbox, incoming(1))
    post(client, inbox, status(1, "no-answer"))
    call = Call.objects.get()
    assert (call.status, call.duration_seconds) == ("answered", 30)
    late = InboundEvent.objects.get(dedupe_key=f"call:{sid(1)}:no-answer")
    assert late.status == InboundEventStatus.IGNORED
    assert TicketEvent.objects.filter(type="call_updated").count() == 1
    assert InboundEvent.objects.count() == 3


def test_a_status_for_an_unknown_call_is_kept_as_ignored(client: Any, inbox: Any) -> None:
    response = post(client, inbox, status(9, "busy"))
    assert response.status_code == 200
    assert InboundEvent.objects.get().status == InboundEventStatus.IGNORED
    assert Call.objects.count() == 0


@respx.mock
def test_a_completed_recording_is_downloaded_and_attached_as_voicemail(client: Any, inbox: Any) -> None:
    audio = b"ID3\x03\x00" + b"\x00" * 200
    route = respx.get(f"{REC_BASE}/{sid(7, 'RE')}.mp3").mock(
        return_value=httpx.Response(200, content=audio, headers={"Content-Type": "audio/mpeg"})
    )
    post(client, inbox, incoming(1))
    recorded = post(
        client, inbox, incoming(1, CallStatus="completed", RecordingSid=sid(7, "RE")), query="event=recorded"
    )
    assert recorded.content.decode() == '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>'
    assert InboundEvent.objects.count() == 1  # the <Record action> request stores nothing
    response = post(client, inbox, recording(1), query="event=recording")
    assert response.status_code == 200
    assert response.content.decode() == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    # exactly one download, of the .mp3, with Basic auth (account SID : auth token)
    assert route.call_count == 1
    sent = route.calls[0].request
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    call = Call.objects.get()
    attachment = Attachment.objects.get()
    assert (call.status, call.recording_id, call.recording_duration_seconds) == ("voicemail", attachment.pk, 42)
    assert (attachment.message_id, attachment.filename, attachment.size) == (
        call.message_id,
        f"voicemail-{sid(7, 'RE')}.mp3",
        len(audio),
    )
    assert attachment.file.read() == audio
    assert InboundEvent.objects.get(dedupe_key=f"recording:{sid(7, 'RE')}").status == InboundEventStatus.PROCESSED
    updated = TicketEvent.objects.get(type="call_updated")
    assert updated.data == {"call_id": call.pk, "old_status": "ringing", "new_status": "voicemail"}
    # redelivered: no second download, no second attachment; a later completed stays voicemail
    post(client, inbox, recording(1), query="event=recording")
    post(client, inbox, status(1, "completed", "50"))
    assert route.call_count == 1
    assert Attachment.objects.count() == 1
    call.refresh_from_db()
    assert (call.status, call.duration_seconds) == ("voicemail", 50)


@respx.mock
def test_an_oversize_recording_is_noted_and_the_call_is_still_a_voicemail(
    client: Any, inbox: Any, settings: Any
) -> None:
    settings.CHANNEL_MEDIA_MAX_BYTES = 100
    respx.get(f"{REC_BASE}/{sid(7, 'RE')}.mp3").mock(
        return_value=httpx.Response(200, content=b"x" * 500, headers={"Content-Type": "audio/mpeg"})
    )
    post(client, inbox, incoming(1))
    post(client, inbox, recording(1), query="event=recording")
    call = Call.objects.get()
    assert (call.status, call.recording_id, call.recording_duration_seconds) == ("voicemail", None, 42)
    assert call.notes.startswith("Recording not stored: too large")
    assert Attachment.objects.count() == 0
    skipped = Message.objects.get().metadata["media_skipped"]
    assert [s["filename"] for s in skipped] == [f"voicemail-{sid(7, 'RE')}.mp3"]
    assert InboundEvent.objects.get(dedupe_key=f"recording:{sid(7, 'RE')}").status == InboundEventStatus.PROCESSED


@respx.mock
def test_an_unavailable_recording_is_retried(client: Any, inbox: Any) -> None:
    route = respx.get(f"{REC_BASE}/{sid(7, 'RE')}.mp3").mock(return_value=httpx.Response(503))
    post(client, inbox, incoming(1))
    post(client, inbox, recording(1), query="event=recording")
    # in the tests Celery runs the backoff retries at once: every attempt fetched again
    event = InboundEvent.objects.get(dedupe_key=f"recording:{sid(7, 'RE')}")
    assert (event.status, event.attempts) == (InboundEventStatus.FAILED, settings.INBOUND_MAX_ATTEMPTS)
    assert route.call_count == settings.INBOUND_MAX_ATTEMPTS > 1
    assert "MediaUnavailable" in event.last_error
    call = Call.objects.get()
    assert (call.status, call.recording_id) == ("ringing", None)


def test_a_recording_url_off_twilio_is_refused(client: Any, inbox: Any) -> None:
    params = recording(1) | {"RecordingUrl": "https://evil.example.com/rec"}
    response = post(client, inbox, params, query="event=recording")
    assert response.status_code == 400
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize(
    "params",
    [
        {"CallSid": "nope", "From": CALLER, "CallStatus": "ringing"},
        {"CallSid": sid(1), "From": CALLER, "CallStatus": "dancing"},
        {"CallSid": sid(1), "CallStatus": "ringing"},
        {"CallSid": sid(1), "From": CALLER, "CallStatus": "ringing", "AccountSid": "AC" + "b" * 32},
    ],
)
def test_a_malformed_body_is_refused_with_400(client: Any, inbox: Any, params: dict[str, str]) -> None:
    response = post(client, inbox, params)
    assert response.status_code == 400
    assert InboundEvent.objects.count() == 0


def test_an_anonymous_caller_still_gets_a_ticket(client: Any, inbox: Any) -> None:
    post(client, inbox, incoming(3, From="anonymous", CallerName=""))
    message = Message.objects.get()
    assert message.text == "Incoming call from anonymous"
    assert message.author_customer_id is not None
    assert Identity.objects.get(customer_id=message.author_customer_id).value == f"twilio_voice:{sid(3)}"
    assert Call.objects.get().from_number == "anonymous"


def test_a_voice_inbox_cannot_send() -> None:
    from channels_inbox.adapters import get_adapter
    from channels_inbox.adapters.base import DeliveryError

    adapter = get_adapter("twilio_voice")
    with pytest.raises(DeliveryError) as raised:
        adapter.send(None, None)  # type: ignore[arg-type]
    assert raised.value.retryable is False
    assert "answer by SMS or email" in str(raised.value)
    assert adapter.recipient_for(None, []) == ""  # type: ignore[arg-type]


def test_creating_an_inbox_needs_the_auth_token(db: Any) -> None:
    from channels_inbox.actions.inboxes import do_create_inbox

    with pytest.raises(ValueError, match="auth_token"):
        do_create_inbox(kind="twilio_voice", name="No token", values={"account_sid": ACCOUNT})


def test_a_status_batched_with_its_waiting_call_is_applied_after_it(inbox: Any) -> None:
    """Stored in order but processed in one batch (ChannelEvents apply before the batch's
    messages are ingested): the status waits for its call, then moves it."""
    from django.utils import timezone

    from channels_inbox.actions.process import do_process_inbound_event

    now = timezone.now()
    ringing = InboundEvent.objects.create(
        inbox=inbox, dedupe_key=f"call:{sid(1)}:ringing", payload=urlencode(incoming(1)).encode(), next_attempt_at=now
    )
    done = InboundEvent.objects.create(
        inbox=inbox,
        dedupe_key=f"call:{sid(1)}:completed",
        payload=urlencode(status(1, "completed", "12")).encode(),
        next_attempt_at=now,
    )
    assert do_process_inbound_event(ringing.pk, batch_size=10) == "processed"
    done.refresh_from_db()
    assert done.status == InboundEventStatus.PROCESSED
    call = Call.objects.get()
    assert (call.status, call.duration_seconds) == ("answered", 12)
