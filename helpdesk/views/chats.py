"""Live chat in the desk: the agent's availability, and a chat ticket's end, transfer, transcript
and "seen" forms (templates/desk/_chat_panel.html, _chat_availability.html).

Plain POST forms that redirect back (CSRF on); posted with htmx, the side-panel forms answer
with the side panel (as every side-panel form: helpdesk/views/desk.py `_after_edit`) and the
availability form with itself.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from channels_inbox.models import ChatConversation
from helpdesk.actions.chats import (
    MAX_CAPACITY,
    MIN_CAPACITY,
    ChatAvailability,
    availability_of,
    do_end_chat,
    do_set_chat_availability,
    do_transfer_chat,
)
from helpdesk.models import Message, Team, Ticket, User
from helpdesk.models.message import Direction
from helpdesk.permissions import access_ticket
from helpdesk.views.desk import _after_edit, _is_htmx, staff_required


def _id(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 19 else None


def access_chat(user: Any, number: int, *, for_: str = "edit") -> tuple[Ticket, ChatConversation]:
    """The ticket (ticket_policy decides: 404 not visible, 403 not allowed) and its chat (404: none)."""
    ticket = access_ticket(user, number, for_=for_)
    conversation = ChatConversation.objects.select_related("visitor").filter(ticket_id=ticket.pk).first()
    if conversation is None:
        raise Http404("this ticket has no chat")
    conversation.ticket = ticket
    return ticket, conversation


# --- availability (top bar, /desk/me/) ---------------------------------------------------------


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")[:2000]
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False)
    if safe and target.startswith("/desk/") and not target.startswith("//"):
        return target
    return reverse("desk:ticket_list")


def _availability_fragment(request: HttpRequest, availability: ChatAvailability, *, status: int = 200) -> HttpResponse:
    current = request.headers.get("HX-Current-URL", "")
    path = "/" + current.split("://", 1)[-1].split("/", 1)[-1] if "://" in current else ""
    context = {"chat_availability": availability, "chat_next": path if path.startswith("/desk/") else ""}
    return render(request, "desk/_chat_availability.html", context, status=status)


@require_http_methods(["GET", "POST"])
@staff_required
def chat_availability(request: HttpRequest) -> HttpResponse:
    """GET: the top bar's control (htmx loads it when the cache did not know it). POST: set it."""
    user: User = request.user  # type: ignore[assignment]
    wants_json = "application/json" in request.headers.get("Accept", "")
    if request.method == "GET":
        availability = availability_of(user)
        if wants_json:
            return JsonResponse({"available": availability.available, "capacity": availability.capacity})
        return _availability_fragment(request, availability)
    available = request.POST.get("available", "") in ("on", "1", "true")
    raw = request.POST.get("capacity", "").strip()
    capacity = _id(raw) if raw else None
    try:
        if raw and capacity is None:
            raise ValueError(f"Chat capacity is {MIN_CAPACITY} to {MAX_CAPACITY} chats.")
        result = do_set_chat_availability(user, available=available, capacity=capacity, actor=user)
    except ValueError as exc:
        if wants_json:
            return JsonResponse({"error": str(exc)}, status=400)
        if _is_htmx(request):
            messages.error(request, str(exc))
            return _availability_fragment(request, availability_of(user), status=400)
        messages.error(request, str(exc))
        return HttpResponseRedirect(_next(request))
    if wants_json:
        return JsonResponse({"available": result.available, "capacity": result.capacity})
    if _is_htmx(request):
        return _availability_fragment(request, result)
    state = "available for chat" if result.available else "not available for chat"
    messages.success(request, f"You are {state} (up to {result.capacity} at once).")
    return HttpResponseRedirect(_next(request))


# --- a chat ticket's forms -----------------------------------------------------------------------


@require_POST
@staff_required
def chat_end(request: HttpRequest, number: int) -> HttpResponse:
    _, conversation = access_chat(request.user, number)
    do_end_chat(conversation, actor=request.user, by="agent")  # type: ignore[arg-type]
    ticket = Ticket.objects.only("last_event_seq").get(pk=conversation.ticket_id)
    return _after_edit(request, number, saved="Chat ended.", seq=ticket.last_event_seq)


@require_POST
@staff_required
def chat_transfer(request: HttpRequest, number: int) -> HttpResponse:
    _, conversation = access_chat(request.user, number)
    agent_id, team_id = _id(request.POST.get("agent", "")), _id(request.POST.get("team", ""))
    to_agent = User.objects.filter(pk=agent_id, agent__isnull=False, is_active=True).first() if agent_id else None
    to_team = Team.objects.filter(pk=team_id).first() if team_id else None
    if (request.POST.get("agent") and to_agent is None) or (request.POST.get("team") and to_team is None):
        messages.error(request, "No such agent or team.")
        return _after_edit(request, number)
    try:
        moved = do_transfer_chat(conversation, actor=request.user, to_agent=to_agent, to_team=to_team)  # type: ignore[arg-type]
    except ValueError as exc:
        messages.error(request, str(exc))
        return _after_edit(request, number)
    to = " and ".join(x for x in (to_agent.display_name if to_agent else "", to_team.name if to_team else "") if x)
    return _after_edit(request, number, saved=f"Chat transferred to {to}.", seq=moved.ticket.last_event_seq)


@require_POST
@staff_required
def chat_transcript(request: HttpRequest, number: int) -> HttpResponse:
    _, conversation = access_chat(request.user, number, for_="reply")
    # None: the visitor's known address (the widget backend decides which).
    email = request.POST.get("email", "").strip()[:320] or None
    try:
        if email is not None:
            validate_email(email)
    except ValidationError:
        messages.error(request, "Give the email address the transcript goes to.")
        return _after_edit(request, number)
    try:
        from channels_inbox.actions.chat import do_request_chat_transcript
    except ImportError:
        messages.error(request, "Transcripts by email are not available on this server yet.")
        return _after_edit(request, number)
    try:
        sent_to = do_request_chat_transcript(conversation, email=email, actor=request.user)  # type: ignore[arg-type]
    except ValueError as exc:
        messages.error(request, str(exc))
        return _after_edit(request, number)
    return _after_edit(request, number, saved=f"The transcript is on its way to {sent_to or email}.")


@require_POST
@staff_required
def chat_seen(request: HttpRequest, number: int) -> HttpResponse:
    """The agent's page shows the chat's messages up to `message_id` (none given: the newest
    visitor message): the visitor's widget shows "Seen". Posted by the panel when it loads."""
    _, conversation = access_chat(request.user, number, for_="reply")
    newest = (
        Message.objects.filter(ticket_id=conversation.ticket_id, direction=Direction.INBOUND)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    given = _id(request.POST.get("message_id", ""))
    message_id = min(given, newest) if given and newest else newest
    if message_id and message_id > conversation.agent_read_message_id:
        try:
            from channels_inbox.actions.chat import do_mark_chat_seen
        except ImportError:
            return HttpResponse(status=204)
        do_mark_chat_seen(conversation, actor=request.user, message_id=message_id)  # type: ignore[arg-type]
    return HttpResponse(status=204)
