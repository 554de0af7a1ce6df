"""The ticket page's macro picker: choose a macro, see what it will do to this ticket, apply it.

`GET  tickets/<n>/macro/?macro=<id>` the preview: with htmx the picker alone (desk/_macros.html),
     without JavaScript the ticket page with the preview in it.
`POST tickets/<n>/macro/` (`macro`, `seen_seq`) applies it, all or nothing, and goes back to the
     ticket. A macro that sends a reply after a customer message or another agent's reply the page
     had not shown is not applied: the page comes back (409) with the news and the preview, and
     applying again from there goes through (views/desk.py ticket_reply does the same for drafts).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from helpdesk.actions.macros import StaleTicket, do_apply_macro, macro_refusal
from helpdesk.actions.replies import NoRecipient
from helpdesk.macros import InvalidMacro, plan_macro, validate_steps
from helpdesk.models import Macro, Ticket
from helpdesk.permissions import access_macro, access_ticket, macro_policy, ticket_policy
from helpdesk.views.desk import _ticket_page, staff_required


def _id(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 19 else None


def _chosen(request: HttpRequest, data: Any) -> Macro:
    macro_id = _id(data.get("macro", ""))
    if macro_id is None:
        raise Http404("no such macro")
    return access_macro(request.user, macro_id)


def _preview_context(request: HttpRequest, ticket: Ticket, macro: Macro, seen_seq: int) -> dict[str, Any]:
    """The picker with the chosen macro's preview for this ticket (or why it cannot be applied)."""
    context: dict[str, Any] = {"macro_chosen": macro, "macro_seen_seq": seen_seq, "macro_preview": None}
    try:
        steps = validate_steps(macro.actions)
        context["macro_refusal"] = macro_refusal(ticket, macro, request.user, steps)
        context["macro_preview"] = plan_macro(steps, ticket, request.user)
    except InvalidMacro as exc:
        context["macro_refusal"] = f"“{macro.name}” cannot be applied: {exc}"
    return context


@require_http_methods(["GET", "POST"])
@staff_required
def ticket_macro(request: HttpRequest, number: int) -> HttpResponse:
    ticket = access_ticket(request.user, number)
    if request.method == "POST":
        return _apply(request, ticket)
    macro = _chosen(request, request.GET)
    # The page's own seq (htmx sends the composer's); a page loaded afresh shows everything.
    posted = _id(request.GET.get("seen_seq", ""))
    seen_seq = min(posted, ticket.last_event_seq) if posted is not None else ticket.last_event_seq
    context = _preview_context(request, ticket, macro, seen_seq)
    if request.headers.get("HX-Request") == "true":
        macros = list(macro_policy.usable(request.user).only("pk", "name"))
        return render(request, "desk/_macros.html", {"ticket": ticket, "macros": macros, **context})
    return _ticket_page(request, ticket, **context)


def _apply(request: HttpRequest, ticket: Ticket) -> HttpResponse:
    macro = _chosen(request, request.POST)
    raw = request.POST.get("seen_seq", "")
    seen_seq = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
    back = HttpResponseRedirect(reverse("desk:ticket_detail", args=[ticket.number]))
    try:
        do_apply_macro(ticket, macro, actor=request.user, seen_seq=seen_seq)  # type: ignore[arg-type]
    except StaleTicket as exc:
        ticket.refresh_from_db()
        context = _preview_context(request, ticket, macro, ticket.last_event_seq)
        return _ticket_page(request, ticket, status=409, macro_stale_news=exc.news, **context)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
        return back
    except InvalidMacro as exc:
        messages.error(request, f"“{macro.name}” cannot be applied: {exc} Nothing was changed.")
        return back
    except (ValueError, NoRecipient) as exc:
        messages.error(request, f"“{macro.name}” was not applied: {exc}. Nothing was changed.")
        return back
    messages.success(request, f"Applied “{macro.name}”.")
    ticket.refresh_from_db()
    if not ticket_policy.can_view(request.user, ticket):
        # The macro moved the ticket out of this agent's sight (another team, another assignee).
        return HttpResponseRedirect(reverse("desk:ticket_list"))
    return back
