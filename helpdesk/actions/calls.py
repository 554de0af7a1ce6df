"""Calls on tickets: an agent logs a phone call by hand, or a voice inbox (Twilio Voice,
channels_inbox/adapters/twilio_voice.py) reports one.

One write path: the Call row, its entry on the timeline and the CallLogged / CallUpdated
events are written together under the ticket's row lock. A reported call's status only moves
up CALL_STATUS_RANK (the provider's callbacks arrive out of order).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from helpdesk.events import CallLogged, CallUpdated, NoteAdded, append_event
from helpdesk.models import Direction, Message, Ticket, User
from helpdesk.models.call import CALL_STATUS_RANK, Call, CallDirection, CallStatus
from helpdesk.permissions import ticket_policy

if TYPE_CHECKING:
    from channels_inbox.models import Inbox
    from customers.models import Customer

MAX_NOTES_LENGTH = 5000
MAX_NUMBER_LENGTH = 40


def format_duration(seconds: int | None) -> str:
    """4:05, 1:02:03; '' when unknown."""
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def do_log_call(
    ticket: Ticket,
    *,
    actor: User,
    direction: str,
    duration_seconds: int | None,
    notes: str,
    number: str = "",
    status: str = "answered",
    started_at: datetime | None = None,
) -> Call:
    """An agent logs a call by hand: Call(logged_by=actor, inbox=None), an internal note
    ("Outgoing call, 4:05 — notes") and CallLogged(manual=True). ValueError on bad input."""
    if direction not in CallDirection.values:
        raise ValueError(f"direction must be one of: {', '.join(CallDirection.values)}")
    if status not in CallStatus.values:
        raise ValueError(f"status must be one of: {', '.join(CallStatus.values)}")
    if duration_seconds is not None and (isinstance(duration_seconds, bool) or int(duration_seconds) < 0):
        raise ValueError("the duration cannot be negative")
    notes = (notes or "").replace("\x00", "").strip()
    if len(notes) > MAX_NOTES_LENGTH:
        raise ValueError(f"the notes are longer than {MAX_NOTES_LENGTH} characters")
    number = (number or "").strip()
    if len(number) > MAX_NUMBER_LENGTH:
        raise ValueError(f"the number is longer than {MAX_NUMBER_LENGTH} characters")
    if not ticket_policy.can_add_note(actor, ticket):
        raise PermissionDenied("you may not log calls on this ticket")
    label = CallDirection(direction).label
    text = f"{label} call"
    if duration_seconds:
        text += f", {format_duration(duration_seconds)}"
    if status != CallStatus.ANSWERED:
        text += f" ({CallStatus(status).label.lower()})"
    if number:
        text += f", {number}"
    if notes:
        text += f" — {notes}"
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        message = Message.objects.create(ticket=ticket, direction=Direction.NOTE, author_agent=actor, text=text)
        call = Call.objects.create(
            ticket=ticket,
            customer=ticket.customer,
            inbox=None,
            direction=direction,
            status=status,
            from_number=number if direction == CallDirection.INBOUND else "",
            to_number=number if direction == CallDirection.OUTBOUND else "",
            started_at=started_at or timezone.now(),
            duration_seconds=duration_seconds,
            notes=notes,
            logged_by=actor,
            message=message,
        )
        append_event(ticket, NoteAdded(message_id=message.pk), actor=actor, message=message)
        append_event(
            ticket,
            CallLogged(call_id=call.pk, direction=direction, status=status, manual=True),
            actor=actor,
            message=message,
        )
        ticket.last_activity_at = timezone.now()
        ticket.save(update_fields=["last_activity_at", "updated_at"])
    return call


# Statuses after which the call is over.
ENDED = frozenset({CallStatus.ANSWERED, CallStatus.MISSED, CallStatus.FAILED, CallStatus.VOICEMAIL})


def do_record_inbound_call(
    *,
    inbox: Inbox,
    ticket: Ticket,
    message: Message,
    customer: Customer | None,
    provider_id: str,
    from_number: str,
    to_number: str,
) -> Call | None:
    """A voice inbox's incoming call, once its message is on a ticket: Call(inbound, ringing)
    and CallLogged. None when the inbox already has this call (a redelivery)."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if Call.objects.filter(inbox=inbox, provider_id=provider_id).exists():
            return None
        call = Call.objects.create(
            ticket=ticket,
            customer=customer,
            inbox=inbox,
            direction=CallDirection.INBOUND,
            status=CallStatus.RINGING,
            from_number=from_number[:40],
            to_number=to_number[:40],
            provider_id=provider_id[:64],
            started_at=message.created_at or timezone.now(),
            message=message,
        )
        append_event(
            ticket,
            CallLogged(call_id=call.pk, direction=call.direction, status=call.status),
            customer=customer,
            message=message,
        )
    return call


def _locked(call_id: int) -> tuple[Call, Ticket]:
    call = Call.objects.select_for_update().get(pk=call_id)
    ticket = Ticket.objects.select_for_update().get(pk=call.ticket_id)
    return call, ticket


def _note_status_on_message(call: Call, extra: dict[str, Any] | None = None) -> None:
    """The call's message mirrors its status (metadata["call"]["status"]) for the timeline."""
    if call.message_id is None:
        return
    message = Message.objects.select_for_update().get(pk=call.message_id)
    metadata = dict(message.metadata or {})
    info = dict(metadata.get("call") or {})
    info["status"] = str(call.status)
    if call.duration_seconds is not None:
        info["duration_seconds"] = call.duration_seconds
    info.update(extra or {})
    metadata["call"] = info
    message.metadata = metadata
    message.save(update_fields=["metadata"])


def do_update_call_status(
    call: Call, status: str, *, duration_seconds: int | None = None, at: datetime | None = None
) -> bool:
    """A provider's status callback. The status moves only up CALL_STATUS_RANK; a duration or
    end time not known yet is filled in even when the status stays. False: nothing changed."""
    if status not in CallStatus.values:
        raise ValueError(f"status must be one of: {', '.join(CallStatus.values)}")
    now = at or timezone.now()
    with transaction.atomic():
        call, ticket = _locked(call.pk)
        old = CallStatus(call.status)
        new = CallStatus(status)
        changed: list[str] = []
        if CALL_STATUS_RANK[new] > CALL_STATUS_RANK[old]:
            call.status = new
            changed.append("status")
            if new == CallStatus.ANSWERED and call.answered_at is None:
                call.answered_at = now
                changed.append("answered_at")
        if duration_seconds is not None and call.duration_seconds is None and new in ENDED:
            call.duration_seconds = duration_seconds
            changed.append("duration_seconds")
        if new in ENDED and call.ended_at is None:
            call.ended_at = now
            changed.append("ended_at")
        if not changed:
            return False
        call.save(update_fields=[*changed, "updated_at"])
        _note_status_on_message(call)
        append_event(
            ticket,
            CallUpdated(call_id=call.pk, old_status=str(old), new_status=str(call.status)),
            customer=call.customer,
            message=call.message,
        )
    return True


def do_attach_call_recording(
    call: Call,
    *,
    filename: str,
    content: bytes | None,
    declared_type: str,
    duration_seconds: int | None,
    skipped_reason: str = "",
) -> bool:
    """A call's voicemail: the audio as an attachment of the call's message (`content` None:
    not stored, `skipped_reason` noted on the call and in the message's media_skipped), the
    recording's duration, and the status voicemail. False: the call has its recording already."""
    from helpdesk.attachments import AttachmentTooLarge, store_attachment

    with transaction.atomic():
        call, ticket = _locked(call.pk)
        if call.recording_id is not None or (skipped_reason and "Recording not stored" in call.notes):
            return False
        old = CallStatus(call.status)
        message = Message.objects.select_for_update().get(pk=call.message_id) if call.message_id else None
        if content is not None and message is not None:
            try:
                call.recording = store_attachment(message, filename, content, declared_type)
            except AttachmentTooLarge as exc:
                skipped_reason = f"too large ({exc})"
        elif content is not None:
            skipped_reason = "the call has no message to attach it to"
        if skipped_reason:
            note = f"Recording not stored: {skipped_reason}"
            call.notes = f"{call.notes}\n{note}".strip()
            if message is not None:
                metadata = dict(message.metadata or {})
                metadata["media_skipped"] = [
                    *(metadata.get("media_skipped") or []),
                    {"filename": filename, "reason": skipped_reason},
                ]
                message.metadata = metadata
                message.save(update_fields=["metadata"])
        call.recording_duration_seconds = duration_seconds
        if CALL_STATUS_RANK[CallStatus.VOICEMAIL] > CALL_STATUS_RANK[old]:
            call.status = CallStatus.VOICEMAIL
        if call.ended_at is None:
            call.ended_at = timezone.now()
        call.save()
        extra: dict[str, Any] = {"recording_duration_seconds": duration_seconds}
        _note_status_on_message(call, extra)
        append_event(
            ticket,
            CallUpdated(call_id=call.pk, old_status=str(old), new_status=str(call.status)),
            customer=call.customer,
            message=call.message,
        )
        ticket.last_activity_at = timezone.now()
        ticket.save(update_fields=["last_activity_at", "updated_at"])
    return True
