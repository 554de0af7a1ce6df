"""The ticket page's messaging-channel parts: the composer's customer-service windows and
window options, the channel items of the timeline (calls, quoted replies, reactions, edits,
unsupported messages, call and reaction events), the raw event of a channel message, and the
"Log a call" form.

The timeline's extra data comes in a fixed number of queries whatever the ticket's size
(quoted messages in one query, calls in one, channel events in one): see `channel_timeline`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from helpdesk.actions.replies import reply_window_for
from helpdesk.models import Call, CallDirection, CallStatus, Message, Ticket, TicketEvent
from helpdesk.permissions import access_message, access_ticket
from helpdesk.views.desk import staff_required

if TYPE_CHECKING:
    from channels_inbox.adapters.base import ReplyWindow, WindowOption
    from channels_inbox.models import Inbox
    from helpdesk.composer import ReplyTarget

# Channel events shown as lines on the timeline (their labels: TicketEventType).
CHANNEL_EVENT_TYPES = ("call_logged", "call_updated", "message_edited", "message_reacted")
# How much of a quoted message the timeline shows.
QUOTE_CHARS = 160
# The most parameters a posted template may carry (WhatsApp allows far fewer in practice).
MAX_POSTED_PARAMS = 20
# A manual call's notes: as long as do_log_call takes.
MAX_CALL_NOTES_CHARS = 5000  # helpdesk.actions.calls.MAX_NOTES_LENGTH
MAX_CALL_SECONDS = 24 * 3600
_DURATION = re.compile(r"^([0-9]{1,4}):([0-5][0-9])$")
_NUMBER = re.compile(r"^[0-9+()\-. ]{3,40}$")


# --- the composer: windows and their options ---------------------------------------------


@dataclass
class ComposerChoice:
    """One entry of the composer's channel picker."""

    value: str
    label: str
    inbox_pk: int
    closed: bool


@dataclass
class ComposerTemplate:
    value: str
    option: WindowOption
    param_numbers: list[int]


@dataclass
class ComposerWindow:
    """A channel's window as the composer shows it (only inboxes whose adapter has one)."""

    inbox_pk: int
    inbox_name: str
    window: ReplyWindow
    closes_in: str
    templates: list[ComposerTemplate] = field(default_factory=list)
    tags: list[WindowOption] = field(default_factory=list)


def closes_in(closes_at: datetime | None, now: datetime | None = None) -> str:
    """`3 h`, `45 min` ('' without an end)."""
    if closes_at is None:
        return ""
    seconds = int((closes_at - (now or timezone.now())).total_seconds())
    if seconds <= 0:
        return ""
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{max(seconds // 60, 1)} min"


def composer_windows(
    ticket: Ticket, targets: list[ReplyTarget], chosen: str
) -> tuple[list[ComposerChoice], list[ComposerWindow]]:
    """The picker's entries (closed windows marked) and each reachable inbox's window."""
    windows: dict[int, ComposerWindow | None] = {}
    for target in targets:
        inbox = target.inbox
        if inbox.pk in windows:
            continue
        window = reply_window_for(inbox, ticket)
        if window is None:
            windows[inbox.pk] = None
            continue
        shown = ComposerWindow(inbox.pk, inbox.name, window, closes_in(window.closes_at) if window.open else "")
        for option in window.options:
            if option.kind == "template":
                value = f"template:{option.name}:{option.language}"
                shown.templates.append(ComposerTemplate(value, option, list(range(1, option.params + 1))))
            elif option.kind == "tag":
                shown.tags.append(option)
        windows[inbox.pk] = shown
    choices = []
    for target in targets:
        w = windows.get(target.inbox.pk)
        closed = w is not None and not w.window.open
        label = f"{target.label} — window closed" if closed else target.label
        choices.append(ComposerChoice(target.value, label, target.inbox.pk, closed))
    return choices, [w for w in windows.values() if w is not None]


def posted_window_option(request: HttpRequest, inbox: Inbox) -> tuple[dict[str, Any] | None, str]:
    """The window option posted for the chosen inbox: (template, tag); (None, '') for free-form.

    The composer names its fields per inbox (`window_option:<inbox id>`, and
    `params:<inbox id>:<name>:<language>` for a template's parameters), so a page without
    JavaScript that posts every inbox's fields still means the chosen inbox's."""
    raw = request.POST.get(f"window_option:{inbox.pk}", "").strip()[:200]
    if raw.startswith("tag:"):
        return None, raw[4:]
    if raw.startswith("template:"):
        name, _, language = raw[len("template:") :].partition(":")
        params = request.POST.getlist(f"params:{inbox.pk}:{name}:{language}")[:MAX_POSTED_PARAMS]
        return {"name": name, "language": language, "params": [p.replace("\x00", "") for p in params]}, ""
    return None, ""


# --- the timeline --------------------------------------------------------------------------


@dataclass
class Quote:
    """The message a channel message answers (metadata["reply_to"]), as the timeline quotes it."""

    found: bool
    snippet: str = ""
    author: str = ""
    pk: int | None = None


def _list_of_dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def channel_timeline(ticket: Ticket, timeline: list[Any]) -> list[Any]:
    """The page's timeline with the channel items: each message gets `quote`, `reaction_list`,
    `edit_list`, `unsupported_type`, `skipped_media` and `call_list` (the calls whose entry it
    is); calls without a message on the timeline and the channel events join as items of their
    own (calls marked `is_call`). Three queries whatever the number of messages."""
    shown_messages = [item for item in timeline if isinstance(item, Message)]
    wanted: set[tuple[int, str]] = set()
    for message in shown_messages:
        metadata = message.metadata if isinstance(message.metadata, dict) else {}
        reply_to = metadata.get("reply_to")
        external_id = reply_to.get("external_id") if isinstance(reply_to, dict) else None
        if isinstance(external_id, str) and external_id and message.inbox_id:
            wanted.add((message.inbox_id, external_id[:255]))
    quoted: dict[tuple[int, str], Message] = {}
    if wanted:
        # One query for every quoted message; only the customer's own conversations (a quote
        # never shows a message of another customer's ticket).
        rows = Message.objects.filter(
            inbox_id__in={inbox for inbox, _ in wanted},
            external_id__in={ext for _, ext in wanted},
            ticket__customer_id=ticket.customer_id,
        ).select_related("author_customer", "author_agent")
        for row in rows:
            if row.inbox_id is not None:
                quoted[(row.inbox_id, row.external_id)] = row
    calls = list(ticket.calls.select_related("recording", "logged_by").order_by("started_at", "id"))
    by_message: dict[int, list[Call]] = {}
    loose: list[Any] = []
    shown_ids = {m.pk for m in shown_messages}
    for call in calls:
        call.is_call = True  # type: ignore[attr-defined]
        call.duration_text = duration_text(call.duration_seconds)  # type: ignore[attr-defined]
        if call.message_id in shown_ids:
            by_message.setdefault(call.message_id, []).append(call)
        else:
            call.created_at = call.started_at
            loose.append(call)
    for message in shown_messages:
        metadata = message.metadata if isinstance(message.metadata, dict) else {}
        reply_to = metadata.get("reply_to")
        external_id = reply_to.get("external_id") if isinstance(reply_to, dict) else None
        message.quote = None  # type: ignore[attr-defined]
        if isinstance(external_id, str) and external_id:
            found = quoted.get((message.inbox_id or 0, external_id[:255]))
            if found is None:
                message.quote = Quote(found=False)  # type: ignore[attr-defined]
            else:
                author = found.author_agent or found.author_customer
                text = found.text or ""
                snippet = text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS].rstrip() + "…"
                name = author.display_name if author is not None else ""
                message.quote = Quote(True, snippet, name, found.pk)  # type: ignore[attr-defined]
        # Normalized to the keys the template reads (stored metadata may lack some).
        message.reaction_list = [  # type: ignore[attr-defined]
            {"emoji": str(r["emoji"]), "by": str(r.get("by") or "customer"), "at": str(r.get("at") or "")}
            for r in _list_of_dicts(metadata.get("reactions"))
            if r.get("emoji")
        ]
        message.edit_list = [  # type: ignore[attr-defined]
            {"text": str(e.get("text") or ""), "at": str(e.get("at") or "")}
            for e in _list_of_dicts(metadata.get("edits"))
        ]
        unsupported = metadata.get("unsupported")
        message.unsupported_type = (  # type: ignore[attr-defined]
            str(unsupported.get("type") or "unknown") if isinstance(unsupported, dict) else ""
        )
        message.skipped_media = [  # type: ignore[attr-defined]
            {"name": str(m.get("filename") or m.get("type") or "file"), "reason": str(m.get("reason") or "skipped")}
            for m in _list_of_dicts(metadata.get("media_skipped"))
        ]
        message.call_list = by_message.get(message.pk, [])  # type: ignore[attr-defined]
    events = list(ticket.events.filter(type__in=CHANNEL_EVENT_TYPES).select_related("actor", "actor_customer"))
    if not loose and not events:
        return timeline
    merged = [*timeline, *loose, *events]
    merged.sort(key=lambda item: (item.created_at, 0 if isinstance(item, TicketEvent) else 1))
    return merged


def duration_text(seconds: int | None) -> str:
    """`4:05`, `1:02:03` ('' when unknown)."""
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@staff_required
def message_event_raw(request: HttpRequest, message_id: int) -> HttpResponse:
    """The raw provider event a channel message was made from (e.g. an unsupported message's
    payload), downloaded, never rendered."""
    from channels_inbox.models import InboundEvent

    message = access_message(request.user, message_id)
    payload = InboundEvent.objects.filter(message=message).order_by("id").values_list("payload", flat=True).first()
    if not payload:
        raise Http404("no raw event is kept for this message")
    response = HttpResponse(bytes(payload), content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="message-{message.pk}-event.txt"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private"
    return response


# --- logging a call by hand ----------------------------------------------------------------


def parse_call_form(post: Any) -> tuple[dict[str, Any], list[str]]:
    """The "Log a call" form's values for do_log_call, and its errors (none: valid)."""
    errors = []
    direction = str(post.get("direction", ""))
    if direction not in CallDirection.values:
        errors.append("Choose whether the call was incoming or outgoing.")
    status = str(post.get("status", "") or CallStatus.ANSWERED)
    if status not in (CallStatus.ANSWERED, CallStatus.MISSED):
        errors.append("A logged call is answered or missed.")
    raw_duration = str(post.get("duration", "")).strip()
    duration: int | None = None
    if raw_duration:
        match = _DURATION.match(raw_duration)
        if match is None:
            errors.append("Write the duration as minutes:seconds, e.g. 4:05.")
        else:
            duration = int(match[1]) * 60 + int(match[2])
            if duration > MAX_CALL_SECONDS:
                errors.append("A call lasts at most 24 hours.")
    number = str(post.get("number", "")).strip()
    if number and not _NUMBER.match(number):
        errors.append("The number may hold only digits, spaces, + ( ) - and . (at most 40).")
    notes = str(post.get("notes", "")).replace("\x00", "")
    if len(notes) > MAX_CALL_NOTES_CHARS:
        errors.append(f"The notes are too long (at most {MAX_CALL_NOTES_CHARS} characters).")
    values = {"direction": direction, "status": status, "duration_seconds": duration, "number": number, "notes": notes}
    return values, errors


@require_POST
@staff_required
def ticket_log_call(request: HttpRequest, number: int) -> HttpResponse:
    from helpdesk.views.desk import _ticket_page

    # Logging a call is writing on the customer-facing record: the same right as replying.
    ticket = access_ticket(request.user, number, for_="reply")
    values, errors = parse_call_form(request.POST)
    if errors:
        for error in errors:
            messages.error(request, f"Call not logged: {error}")
        posted = {k: str(request.POST.get(k, ""))[:200] for k in ("direction", "status", "duration", "number")}
        return _ticket_page(request, ticket, status=400, call_form=posted, call_form_open=True)
    try:
        from helpdesk.actions.calls import do_log_call
    except ImportError:
        messages.error(request, "Calls cannot be logged yet on this installation.")
        return HttpResponseRedirect(reverse("desk:ticket_detail", args=[number]))
    try:
        do_log_call(ticket, actor=request.user, **values)  # type: ignore[arg-type]
    except PermissionDenied:
        raise
    except ValueError as exc:
        messages.error(request, f"Call not logged: {exc}")
        return _ticket_page(request, ticket, status=400, call_form_open=True)
    messages.success(request, "Call logged.")
    return HttpResponseRedirect(reverse("desk:ticket_detail", args=[number]))
