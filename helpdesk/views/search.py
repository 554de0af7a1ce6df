"""Desk search: one page of matching tickets and customers, with filters combinable with the text."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from channels_inbox.adapters import adapter_kinds
from channels_inbox.models import Inbox
from helpdesk.models import Team, TicketStatus
from helpdesk.search import SORTS, SearchError, SearchResults, clean_query, search
from helpdesk.search_text import MAX_QUERY_CHARS
from helpdesk.selectors import FilterError, parse_ticket_filters
from helpdesk.views.desk import staff_required

# A cursor this module wrote is short; anything longer is not one.
_MAX_CURSOR_CHARS = 200


@staff_required
def search_page(request: HttpRequest) -> HttpResponse:
    """`/desk/search/?q=…&status=…`: an empty query (and no filters) shows the form alone.

    A query that is too long or a filter value that names nothing is a 400 with the reason,
    shown above the form.
    """
    raw_q = request.GET.get("q", "")
    sort = request.GET.get("sort", "") or "recent"
    cursor = request.GET.get("cursor", "")[: _MAX_CURSOR_CHARS + 1]
    results = SearchResults(q=raw_q.replace("\x00", "")[:MAX_QUERY_CHARS], sort="recent")
    error = ""
    try:
        if sort not in SORTS:
            raise FilterError(f"Unknown sort {sort[:40]!r}; one of: {', '.join(SORTS)}.")
        q = clean_query(raw_q)
        filters = parse_ticket_filters(request.GET)
        results = search(
            request.user, q, filters, sort=sort, cursor=cursor if len(cursor) <= _MAX_CURSOR_CHARS else None
        )
    except (SearchError, FilterError) as exc:
        error = str(exc)
    context = {
        "results": results,
        "error": error,
        "form": {name: request.GET.get(name, "")[:100] for name in request.GET if name not in ("q", "cursor")},
        "statuses": TicketStatus.choices,
        "channels": adapter_kinds(),
        "teams": list(Team.objects.order_by("name").values_list("id", "name")),
        "inboxes": list(Inbox.objects.order_by("name").values_list("id", "name")),
        "max_query_chars": MAX_QUERY_CHARS,
    }
    return render(request, "desk/search.html", context, status=400 if error else 200)
