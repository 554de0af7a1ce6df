"""The agent's notifications page, read marks, own preferences and the @mention suggestions."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from helpdesk.actions.notifications import (
    do_mark_all_read,
    do_mark_notification_read,
    do_set_notify_by_email,
    handle_of,
    mention_report,
    notification_text,
    resolve_handles,
    staff_users,
    with_policy_facts,
)
from helpdesk.models import AgentProfile, Message, Notification
from helpdesk.permissions import access_ticket, ticket_policy
from helpdesk.views.desk import staff_required

PAGE_SIZE = 25
# The suggestions of the composer: at most this many agents, from this many candidates.
MAX_SUGGESTIONS = 8
MAX_CANDIDATES = 50
MAX_QUERY_CHARS = 100


def _id_or_404(value: int) -> int:
    if not 0 < value < 2**63:
        raise Http404("no such notification")
    return value


def access_notification(user: Any, notification_id: int) -> Notification:
    """One of the user's own notifications, or 404 (another agent's looks absent)."""
    found = (
        Notification.objects.select_related("ticket")
        .filter(pk=_id_or_404(notification_id), recipient_id=user.pk)
        .first()
    )
    if found is None:
        raise Http404("no such notification")
    return found


def _cursor(request: HttpRequest) -> int | None:
    raw = request.GET.get("cursor", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19 and int(raw) > 0):
        raise ValueError("That page link is not valid; start again from the first page.")
    return int(raw)


@staff_required
def notifications_page(request: HttpRequest) -> HttpResponse:
    """The agent's notifications, newest first, PAGE_SIZE a page (cursor: the last id shown)."""
    try:
        cursor = _cursor(request)
    except ValueError as exc:
        return render(request, "desk/notifications.html", {"error": str(exc), "items": []}, status=400)
    rows = Notification.objects.filter(recipient_id=request.user.pk).select_related("ticket", "actor").order_by("-id")
    if cursor is not None:
        rows = rows.filter(pk__lt=cursor)
    page = list(rows[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    items = [
        {
            "n": n,
            "text": notification_text(n),
            # The subject is customer text: shown only while the agent may still see the ticket.
            "subject": n.ticket.subject if ticket_policy.can_view(request.user, n.ticket) else "",
        }
        for n in page
    ]
    context = {
        "items": items,
        "next_cursor": page[-1].pk if more else None,
        "first_page": cursor is None,
        "any_unread": any(n.read_at is None for n in page),
    }
    return render(request, "desk/notifications.html", context)


def _wants_no_page(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true" or "application/json" in request.headers.get("Accept", "")


@require_POST
@staff_required
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponse:
    notification = access_notification(request.user, notification_id)
    do_mark_notification_read(notification, actor=request.user)  # type: ignore[arg-type]
    if _wants_no_page(request):
        return HttpResponse(status=204)
    return HttpResponseRedirect(reverse("desk:notifications"))


@require_POST
@staff_required
def notification_open(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Mark read and go to the ticket (or say it is out of sight now)."""
    notification = access_notification(request.user, notification_id)
    do_mark_notification_read(notification, actor=request.user)  # type: ignore[arg-type]
    number = notification.ticket.number
    if not ticket_policy.can_view(request.user, notification.ticket):
        messages.info(request, f"Ticket #{number} is no longer in your views.")
        return HttpResponseRedirect(reverse("desk:notifications"))
    return HttpResponseRedirect(reverse("desk:ticket_detail", args=[number]))


@require_POST
@staff_required
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    count = do_mark_all_read(actor=request.user)  # type: ignore[arg-type]
    if _wants_no_page(request):
        return HttpResponse(status=204)
    messages.success(request, f"Marked {count} notification{'s' if count != 1 else ''} read.")
    return HttpResponseRedirect(reverse("desk:notifications"))


@require_http_methods(["GET", "POST"])
@staff_required
def preferences(request: HttpRequest) -> HttpResponse:
    """The agent's own preferences: email for mentions and assignments."""
    profile = AgentProfile.objects.filter(user=request.user).first()  # type: ignore[misc]
    context = {"profile": profile, "mention_handle": handle_of(request.user)}
    if request.method == "POST":
        if profile is None:
            messages.error(request, "This account has no agent profile to keep preferences in.")
            return HttpResponseRedirect(reverse("desk:preferences"))
        raw = request.POST.get("notify_by_email", "")
        if raw not in ("", "on"):
            messages.error(request, "Unknown value for email notifications.")
            return render(request, "desk/notifications_preferences.html", context, status=400)
        enabled = do_set_notify_by_email(enabled=raw == "on", actor=request.user)  # type: ignore[arg-type]
        messages.success(request, "Email notifications are on." if enabled else "Email notifications are off.")
        return HttpResponseRedirect(reverse("desk:preferences"))
    return render(request, "desk/notifications_preferences.html", context)


@staff_required
def mentionable_agents(request: HttpRequest, number: int) -> JsonResponse:
    """The agents a note on this ticket can @mention whose name or handle starts with `q`."""
    ticket = access_ticket(request.user, number, for_="note")
    q = request.GET.get("q", "").strip().lstrip("@")
    if len(q) > MAX_QUERY_CHARS or "\x00" in q:
        return JsonResponse({"error": f"q is at most {MAX_QUERY_CHARS} characters"}, status=400)
    candidates = staff_users().exclude(pk=request.user.pk)
    if q:
        candidates = candidates.filter(
            Q(username__istartswith=q)
            | Q(email__istartswith=q)
            | Q(first_name__istartswith=q)
            | Q(last_name__istartswith=q)
        )
    users = with_policy_facts(candidates.order_by("first_name", "last_name", "username")[:MAX_CANDIDATES])
    shown = [u for u in users if ticket_policy.can_view(u, ticket)][:MAX_SUGGESTIONS]
    # A local part two agents share is ambiguous: suggest the whole address instead.
    resolved = resolve_handles(sorted({handle_of(u).lower() for u in shown}))
    agents = []
    for user in shown:
        handle = handle_of(user)
        if len(resolved.get(handle.lower(), [])) != 1:
            handle = user.username
        agents.append({"id": user.pk, "handle": handle, "name": user.display_name})
    return JsonResponse({"agents": agents})


def flash_mention_report(request: HttpRequest, message: Message) -> Message:
    """Tell the author which of a note's mentions notified nobody (and why)."""
    report = mention_report(message)
    if report is not None:
        for problem in report.problems():
            messages.warning(request, problem)
        if report.notified:
            names = ", ".join(u.display_name for u in report.notified[:5])
            more = f" and {len(report.notified) - 5} more" if len(report.notified) > 5 else ""
            messages.info(request, f"Notified {names}{more}.")
    return message
