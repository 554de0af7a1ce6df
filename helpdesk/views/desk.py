"""The agent desk: ticket list, ticket page, reply, note, status, assignment, email views, held mail."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from channels_inbox.actions.delivery import do_retry_delivery
from channels_inbox.actions.review import do_discard_held_events, do_release_held_events
from channels_inbox.models import OutboundDelivery
from helpdesk.actions.notifications import do_mark_ticket_notifications_read
from helpdesk.actions.replies import NoRecipient, ReplyWindowClosed, do_add_note, do_reply
from helpdesk.actions.tickets import do_assign_ticket, do_change_status
from helpdesk.canned import placeholder_values, render_canned
from helpdesk.composer import (
    BoundedUploadHandler,
    InvalidUpload,
    active_inboxes,
    default_target,
    limits_text,
    over_limit_error,
    parse_target,
    read_uploads,
    reply_targets,
)
from helpdesk.models import Attachment, Ticket, TicketStatus, User
from helpdesk.permissions import (
    access_canned,
    access_message,
    access_ticket,
    can_review_held_events,
    canned_policy,
    is_staff_member,
    ticket_policy,
)
from helpdesk.selectors import (
    held_events_page,
    message_html_body,
    news_since,
    raw_email,
    ticket_ccs,
    ticket_timeline,
)

# Types a browser may show inline; everything else is only ever downloaded.
INLINE_SAFE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}
# The longest reply or note an agent may write (the API channel's own limit for a message).
MAX_TEXT_CHARS = 100_000


def staff_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_staff_member(request.user):
            raise PermissionDenied("this account is not a helpdesk agent")
        return view(request, *args, **kwargs)

    return wrapper


def _side_context(user: Any, ticket: Ticket) -> dict[str, Any]:
    """What the ticket page's side panel shows (desk/_ticket_side.html)."""
    return {
        "ticket": ticket,
        "identities": list(ticket.customer.identities.all()),
        "ccs": ticket_ccs(ticket),
        "statuses": TicketStatus.choices,
        "agents": User.objects.filter(agent__isnull=False, is_active=True).order_by("first_name", "username"),
        "can_edit": ticket_policy.can_edit(user, ticket),
    }


def _composer_context(ticket: Ticket, timeline: list[Any], identities: list[Any], chosen: str) -> dict[str, Any]:
    """The composer's reply channels: every (active inbox, identity) pair that can be answered
    on, and the selected one (the posted choice when re-rendering a draft, else the default).
    The identities are the side panel's and the timeline the page's: one query, the inboxes."""
    from helpdesk.views.calls import composer_windows

    targets = reply_targets(active_inboxes(), identities)
    if not any(t.value == chosen for t in targets):
        default = default_target(targets, ticket, timeline)
        chosen = default.value if default else ""
    choices, windows = composer_windows(ticket, targets, chosen)
    return {"reply_targets": targets, "reply_target": chosen, "reply_choices": choices, "reply_windows": windows}


def _ticket_page(request: HttpRequest, ticket: Ticket, *, status: int = 200, **extra: Any) -> HttpResponse:
    from helpdesk.views.calls import channel_timeline

    timeline = channel_timeline(ticket, ticket_timeline(ticket))
    side = _side_context(request.user, ticket)
    can_reply = ticket_policy.can_reply(request.user, ticket)
    context = {
        "timeline": timeline,
        **side,
        "can_reply": can_reply,
        "canned_responses": list(canned_policy.usable(request.user).only("pk", "title")),
        "attachment_limits": limits_text(),
        **(_composer_context(ticket, timeline, side["identities"], extra.get("draft_target", "")) if can_reply else {}),
        **extra,
    }
    return render(request, "desk/ticket_detail.html", context, status=status)


@staff_required
def ticket_detail(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number)
    do_mark_ticket_notifications_read(ticket, actor=request.user)  # type: ignore[arg-type]
    # Without JavaScript the composer's canned-response picker reloads the page with ?canned=<id>.
    raw = request.GET.get("canned", "")
    draft = ""
    if raw:
        if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
            raise Http404("no such canned response")
        canned = access_canned(request.user, int(raw))
        identities = list(ticket.customer.identities.all())
        draft = render_canned(canned.body, placeholder_values(ticket, request.user, identities))
    return _ticket_page(request, ticket, draft=draft)


@staff_required
def ticket_timeline_fragment(request: HttpRequest, number: int) -> HttpResponse:
    from helpdesk.views.calls import channel_timeline

    ticket = access_ticket(request.user, number)
    timeline = channel_timeline(ticket, ticket_timeline(ticket))
    return render(request, "desk/_timeline_fragment.html", {"ticket": ticket, "timeline": timeline})


def _back(number: int) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("desk:ticket_detail", args=[number]))


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _after_edit(request: HttpRequest, number: int, *, saved: str = "", seq: int | None = None) -> HttpResponse:
    """The answer to a side-panel form: back to the ticket page; posted with htmx, the panel itself
    (with the ticket's header line out of band), and the seq of the event the edit wrote in
    `HX-Trigger`, so the page's websocket layer refreshes the timeline without announcing the
    agent's own change as news."""
    if not _is_htmx(request):
        return _back(number)
    try:
        ticket = access_ticket(request.user, number)
    except Http404:
        # The edit took the ticket out of this agent's sight (for example unassigned from them).
        messages.info(request, f"Ticket #{number} is no longer in your views.")
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("desk:ticket_list")
        return response
    if saved:
        messages.success(request, saved)
    context = {**_side_context(request.user, ticket), "panel_update": True}
    response = render(request, "desk/_ticket_side_update.html", context)
    if seq is not None:
        response["HX-Trigger"] = json.dumps({"desk:seq": seq})
    return response


def _seen_seq(request: HttpRequest, ticket: Ticket) -> int:
    """The composer's `seen_seq`: the last event the agent's page showed (none posted: all seen)."""
    raw = request.POST.get("seen_seq", "")
    if raw.isascii() and raw.isdigit() and len(raw) < 19:
        return int(raw)
    return ticket.last_event_seq


def _posted_text(request: HttpRequest) -> str:
    """The composer's text; NUL characters (which PostgreSQL cannot store) are dropped."""
    text = request.POST.get("text", "").replace("\x00", "")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"The text is too long ({len(text)} characters; at most {MAX_TEXT_CHARS}).")
    return text


@csrf_exempt  # checked by csrf_protect below, once the upload handler is in place
@require_POST
def ticket_reply(request: HttpRequest, number: int) -> HttpResponseBase:
    # The files' total is bounded while they are read: the handler has to be installed before
    # anything reads the body, the CSRF check included (Django's documented pattern).
    bounded = BoundedUploadHandler(request, settings.REPLY_ATTACHMENTS_MAX_TOTAL_BYTES)
    request.upload_handlers = [bounded, *request.upload_handlers]
    return _ticket_reply(request, number)


@csrf_protect
@staff_required
def _ticket_reply(request: HttpRequest, number: int) -> HttpResponse:
    note = request.POST.get("mode") == "note"
    ticket = access_ticket(request.user, number, for_="note" if note else "reply")
    status = "" if note else request.POST.get("status", "")
    # The composer's channel choice, "<inbox id>:<identity id>" (none posted: the ticket's inbox
    # and the first address of the customer it can reach).
    target = "" if note else request.POST.get("target", "").strip()
    uploads = request.FILES.getlist("files")
    try:
        text = _posted_text(request)
        # A draft written before the customer wrote again, or before another agent answered, is
        # not sent: the page comes back with the news, the draft and a warning; sending again
        # (the page now shows the news) goes through. Uploaded files cannot come back with it.
        news = news_since(ticket, _seen_seq(request, ticket), viewer=request.user)
        if news and text.strip():
            return _ticket_page(
                request,
                ticket,
                status=409,
                draft=text,
                draft_mode=request.POST.get("mode"),
                draft_target=target[:40],
                stale_news=news,
                dropped_files=[str(u.name)[:200] for u in uploads],
            )
        if status and status not in TicketStatus.values:
            raise ValueError(f"Unknown status {status[:40]!r}.")
    except (ValueError, NoRecipient) as exc:
        messages.error(request, str(exc))
        return _back(number)
    try:
        # Errors of the files or the channel choice keep the draft: the page comes back with it.
        if getattr(request, "upload_over_limit", False):
            raise over_limit_error()
        files = read_uploads(uploads)
        if note:
            written = do_add_note(ticket, actor=request.user, text=text, attachments=files)  # type: ignore[arg-type]
            from helpdesk.views.notifications import flash_mention_report

            flash_mention_report(request, written)  # which @mentions notified nobody, and why
        else:
            from helpdesk.views.calls import posted_window_option

            inbox, identity = parse_target(target, ticket) if target else (None, None)
            template, tag = posted_window_option(request, inbox or ticket.inbox)
            do_reply(
                ticket,
                actor=request.user,  # type: ignore[arg-type]
                text=text,
                inbox=inbox,
                identity=identity,
                attachments=files,
                template=template,
                tag=tag,
            )
            if status and status != ticket.status:
                do_change_status(ticket, status=status, actor=request.user)  # type: ignore[arg-type]
    except (ValueError, NoRecipient) as exc:
        if isinstance(exc, ReplyWindowClosed):
            # The channel's window is closed: the draft comes back with the reason and the
            # window's options (a template or a tag) to choose from, or another channel.
            messages.error(request, f"Not sent: {exc}")
            return _ticket_page(
                request,
                ticket,
                status=409,
                draft=text,
                draft_mode=request.POST.get("mode"),
                draft_target=target[:40],
                dropped_files=[str(u.name)[:200] for u in uploads],
                window_error=str(exc),
            )
        if not text.strip() or not (target or uploads or isinstance(exc, InvalidUpload)):
            messages.error(request, str(exc))
            return _back(number)
        messages.error(request, f"Not sent: {exc}")
        return _ticket_page(
            request,
            ticket,
            status=400,
            draft=text,
            draft_mode=request.POST.get("mode"),
            draft_target=target[:40],
            dropped_files=[str(u.name)[:200] for u in uploads],
        )
    return _back(number)


@require_POST
@staff_required
def ticket_status(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number, for_="edit")
    status = request.POST.get("status", "")
    if status not in TicketStatus.values:
        messages.error(request, f"Unknown status {status[:40]!r}.")
        return _after_edit(request, number)
    try:
        changed = do_change_status(ticket, status=status, actor=request.user)  # type: ignore[arg-type]
    except ValueError as exc:
        messages.error(request, str(exc))
        return _after_edit(request, number)
    seq = changed.last_event_seq if ticket.status != status else None
    return _after_edit(request, number, saved=f"Status: {TicketStatus(status).label}.", seq=seq)


@require_POST
@staff_required
def ticket_assign(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number, for_="edit")
    raw = request.POST.get("assignee", "").strip()
    assignee = None
    if raw:
        agents = User.objects.filter(agent__isnull=False, is_active=True)
        assignee = agents.filter(pk=int(raw)).first() if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
        if assignee is None:
            messages.error(request, f"No such agent: {raw[:40]!r}.")
            return _after_edit(request, number)
    changed = do_assign_ticket(ticket, assignee=assignee, actor=request.user)  # type: ignore[arg-type]
    seq = changed.last_event_seq if ticket.assignee_id != changed.assignee_id else None
    saved = f"Assigned to {assignee.display_name}." if assignee else "Unassigned."
    return _after_edit(request, number, saved=saved, seq=seq)


@require_POST
@staff_required
def delivery_retry(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(OutboundDelivery.objects.select_related("message__ticket"), pk=delivery_id)
    ticket = access_ticket(request.user, delivery.message.ticket.number, for_="reply")
    do_retry_delivery(delivery, actor=request.user)  # type: ignore[arg-type]
    return _back(ticket.number)


@staff_required
def attachment_download(request: HttpRequest, attachment_id: int) -> HttpResponseBase:
    attachment = get_object_or_404(Attachment.objects.select_related("message__ticket"), pk=attachment_id)
    access_ticket(request.user, attachment.message.ticket.number)
    inline = attachment.content_type in INLINE_SAFE_TYPES and request.GET.get("inline") == "1"
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError:
        raise Http404("the attachment's file is missing from storage") from None
    response = FileResponse(
        handle,
        as_attachment=not inline,
        filename=attachment.filename,
        content_type=attachment.content_type if inline else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# The HTML of an email, shown in a sandboxed frame: no script, nothing remote unless asked,
# no forms, no <base>; its cid: images are embedded as data: URLs. The CSP sandbox gives the
# document an opaque origin even when it is opened directly rather than in the frame.
HTML_VIEW_CSP = (
    "default-src 'none'; img-src 'self' data:{remote}; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"
)


@xframe_options_sameorigin
@staff_required
def message_html(request: HttpRequest, message_id: int) -> HttpResponse:
    message = access_message(request.user, message_id)
    if not message.html:
        raise Http404("the message has no HTML")
    remote = request.GET.get("remote") == "1"
    response = render(request, "desk/message_html.html", {"body": message_html_body(message)})
    response["Content-Security-Policy"] = HTML_VIEW_CSP.format(remote=" https:" if remote else "")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private"
    return response


@staff_required
def message_raw(request: HttpRequest, message_id: int) -> HttpResponse:
    message = access_message(request.user, message_id)
    raw = raw_email(message)
    if raw is None:
        raise Http404("no original is kept for this message")
    response = HttpResponse(raw, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="message-{message.pk}.eml"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private"
    return response


def _posted_ids(request: HttpRequest) -> list[int]:
    values = request.POST.getlist("event")[:1000]
    return [int(v) for v in values if v.isascii() and v.isdigit() and len(v) < 19]


@require_http_methods(["GET", "POST"])
@staff_required
def held_events(request: HttpRequest) -> HttpResponse:
    if not can_review_held_events(request.user):
        raise PermissionDenied("only admins and supervisors review held mail")
    if request.method == "POST":
        ids = _posted_ids(request)
        action = request.POST.get("action", "")
        if not ids:
            messages.error(request, "Select at least one event.")
        elif action == "release":
            count = do_release_held_events(ids, actor=request.user)  # type: ignore[arg-type]
            messages.success(request, f"Released {count} held event{'s' if count != 1 else ''}.")
        elif action == "discard":
            count = do_discard_held_events(ids, actor=request.user)  # type: ignore[arg-type]
            messages.success(request, f"Discarded {count} held event{'s' if count != 1 else ''} (kept as ignored).")
        else:
            messages.error(request, f"Unknown action {action[:40]!r}.")
        return HttpResponseRedirect(reverse("desk:held_events"))
    raw = request.GET.get("before", "")
    before = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
    return render(request, "desk/held_events.html", {"page": held_events_page(before)})
