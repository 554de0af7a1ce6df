"""The ticket list: built-in, channel and saved views, sorts, filters in the query string, saving views."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from helpdesk.actions.views import MAX_VIEW_NAME_CHARS, InvalidView, do_delete_view, do_save_view
from helpdesk.models import SavedView, Team
from helpdesk.permissions import access_saved_view, ticket_policy, view_policy
from helpdesk.selectors import (
    MAX_CURSOR_CHARS,
    SORTS,
    FilterError,
    Page,
    default_sort,
    filter_query,
    filter_tickets,
    filters_from_data,
    is_view,
    parse_ticket_filters,
    saved_views_of,
    ticket_page,
    view_filters,
    view_tabs,
)
from helpdesk.views.desk import staff_required


def _id(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


@staff_required
def ticket_list(request: HttpRequest) -> HttpResponse:
    """`/desk/?view=…&sort=…&status=…` or `?saved=<id>`: one page of tickets, by cursor.

    An unknown view is "All open"; "Due soon" opens in deadline order, every other view in last
    activity order; an unknown sort or a filter value that names nothing is a 400
    with the reason; a cursor of another sort (or garbage) shows the first page, saying so.
    """
    user = request.user
    view = request.GET.get("view", "") or "open"
    view = view if is_view(view) else "open"
    sort = request.GET.get("sort", "")
    saved: SavedView | None = None
    error = ""
    page = Page(tickets=[], next_cursor=None)
    try:
        base = None
        if request.GET.get("saved"):
            saved_id = _id(request.GET["saved"])
            if saved_id is None:
                raise Http404("no such view")
            saved = access_saved_view(user, saved_id)
            saved_filters, _ = filters_from_data(saved.filters)
            base = filter_tickets(ticket_policy.visible(user), saved_filters, user)
            sort = sort or saved.sort
        sort = sort or default_sort(view)
        if sort not in SORTS:
            raise FilterError(f"Unknown sort {sort[:40]!r}; one of: {', '.join(SORTS)}.")
        filters = parse_ticket_filters(request.GET)
        cursor = request.GET.get("cursor", "")[: MAX_CURSOR_CHARS + 1]
        page = ticket_page(user, view, cursor or None, sort=sort, filters=filters, tickets=base)
    except FilterError as exc:
        error = str(exc)
        sort = sort if sort in SORTS else default_sort(view)
    # The query of this list without the cursor: the "Older" link keeps view, sort and filters.
    query: list[tuple[str, str]] = [("saved", str(saved.pk))] if saved else [("view", view)]
    if sort != ("activity" if saved else default_sort(view)):
        query.append(("sort", sort))
    current = filter_query(request.GET)
    for name, value in current.items():
        query.extend((name, v) for v in (value if isinstance(value, list) else [value]))
    context: dict[str, Any] = {
        "page": page,
        "view": "" if saved else view,
        "page_query": urlencode(query),
        "error": error,
    }
    if request.GET.get("partial"):
        return render(request, "desk/_ticket_rows.html", context, status=400 if error else 200)
    # What "Save this view" stores: the view's own filters (when filters can say them) and the given ones.
    to_save = dict(saved.filters) if saved else view_filters(view)
    if to_save is not None:
        to_save.update(current)
    context.update(
        {
            "tabs": view_tabs(user),
            "saved_views": saved_views_of(user),
            "saved": saved,
            "sort": sort,
            "sorts": SORTS,
            "sort_base": urlencode([q for q in query if q[0] != "sort"]),
            "save_filters": None if to_save is None else _pairs(to_save),
            "can_delete_saved": saved is not None and view_policy.can_delete(user, saved),
            "can_share": view_policy.can_share(user),
            "share_teams": _share_teams(user),
            "max_view_name": MAX_VIEW_NAME_CHARS,
        }
    )
    return render(request, "desk/ticket_list.html", context, status=400 if error else 200)


def _pairs(filters: dict[str, Any]) -> list[tuple[str, str]]:
    return [(name, str(v)) for name, value in filters.items() for v in (value if isinstance(value, list) else [value])]


def _share_teams(user: Any) -> list[tuple[int, str]]:
    """The teams an admin or supervisor may share a view with (every team); none for others."""
    if not view_policy.can_share(user):
        return []
    return list(Team.objects.order_by("name").values_list("id", "name"))


def _saved_filters(request: HttpRequest) -> dict[str, Any]:
    """The filters posted with "Save this view" (the same names as the list's query string)."""
    return filter_query(request.POST)


@require_POST
@staff_required
def save_view(request: HttpRequest) -> HttpResponse:
    """Save the posted filters and sort as a view: personal (`scope=me`) or a team's (`scope=<team id>`)."""
    scope = request.POST.get("scope", "me")
    team = None
    try:
        if scope != "me":
            team_id = _id(scope)
            team = Team.objects.filter(pk=team_id).first() if team_id is not None else None
            if team is None:
                raise InvalidView("Choose yourself or a team to share the view with.")
        name = request.POST.get("name", "").replace("\x00", "")
        saved = do_save_view(
            actor=request.user,  # type: ignore[arg-type]
            name=name[: MAX_VIEW_NAME_CHARS * 4],
            filters=_saved_filters(request),
            sort=request.POST.get("sort", "activity")[:40],
            team=team,
        )
    except (InvalidView, FilterError) as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("desk:ticket_list"))
    except PermissionDenied:
        messages.error(request, "Only admins and supervisors share views with a team.")
        return HttpResponseRedirect(reverse("desk:ticket_list"))
    messages.success(request, f"Saved the view “{saved.name}”.")
    return HttpResponseRedirect(reverse("desk:ticket_list") + f"?saved={saved.pk}")


@require_POST
@staff_required
def delete_view(request: HttpRequest, view_id: int) -> HttpResponse:
    saved = access_saved_view(request.user, view_id)
    do_delete_view(saved, actor=request.user)  # type: ignore[arg-type]
    messages.success(request, f"Deleted the view “{saved.name}”.")
    return HttpResponseRedirect(reverse("desk:ticket_list"))
