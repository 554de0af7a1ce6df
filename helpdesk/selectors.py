"""Reads for the desk: lists and the ticket page, prefetched for the whole page."""

from __future__ import annotations

import base64
import binascii
import html as html_lib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import nh3
from django.db.models import BinaryField, Exists, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Substr
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_inbox.email.parse import parse_email
from channels_inbox.email.tokens import strip_reply_prefixes
from channels_inbox.models import InboundEvent, InboundEventStatus
from customers.models import Identity, IdentityKind
from helpdesk.html import sanitize_html
from helpdesk.models import (
    Attachment,
    Message,
    Priority,
    Tag,
    Team,
    Ticket,
    TicketCC,
    TicketEvent,
    TicketEventType,
    TicketStatus,
)
from helpdesk.models.ticket import UNSOLVED_STATUSES
from helpdesk.permissions import team_ids_of, ticket_policy

PAGE_SIZE = 50

VIEWS: dict[str, str] = {
    "open": "All open",
    "mine": "Mine",
    "unassigned": "Unassigned",
    "my_teams": "My teams",
    "pending": "Pending",
    "due_soon": "Due soon",
    "solved": "Solved",
    "all": "All",
}
# "Due soon": unsolved tickets whose next SLA deadline is at most this many hours away (or past).
DUE_SOON_HOURS = 4
# The sort a view opens in when none is asked for.
DEFAULT_SORTS: dict[str, str] = {"due_soon": "deadline"}


# Sorts of the ticket list; every one pages by a cursor (its sort key, id).
SORTS: dict[str, str] = {
    "activity": "Last activity",
    "waiting": "Waiting since",
    "priority": "Priority",
    "deadline": "Deadline",
}


def default_sort(view: str) -> str:
    return DEFAULT_SORTS.get(view, "activity")


# A channel view's key: "channel:" and the inbox kind ("channel:email").
CHANNEL_VIEW_PREFIX = "channel:"
_CHANNEL_LABELS = {"api": "API", "sms": "SMS"}


def channel_view_label(kind: str) -> str:
    return _CHANNEL_LABELS.get(kind, kind.replace("_", " ").capitalize())


def is_view(view: str) -> bool:
    """A built-in view or the view of a channel this desk has an adapter for."""
    from channels_inbox.adapters import adapter_kinds

    if view.startswith(CHANNEL_VIEW_PREFIX):
        return view.removeprefix(CHANNEL_VIEW_PREFIX) in adapter_kinds()
    return view in VIEWS


def view_queryset(user: Any, view: str, *, now: datetime | None = None) -> QuerySet[Ticket]:
    """The tickets of a built-in or channel view that `user` may see (`now`: for "Due soon")."""
    tickets = ticket_policy.visible(user)
    open_statuses = [TicketStatus.NEW, TicketStatus.OPEN]
    if view == "mine":
        return tickets.filter(assignee=user, status__in=UNSOLVED_STATUSES)
    if view == "unassigned":
        return tickets.filter(assignee__isnull=True, status__in=open_statuses)
    if view == "my_teams":
        return tickets.filter(team_id__in=team_ids_of(user), status__in=UNSOLVED_STATUSES)
    if view == "pending":
        return tickets.filter(status__in=[TicketStatus.PENDING, TicketStatus.ON_HOLD])
    if view == "solved":
        return tickets.filter(status__in=[TicketStatus.SOLVED, TicketStatus.CLOSED])
    if view == "due_soon":
        # Served by the partial ticket_sla_due_idx (same status list, deadline not null).
        return due_soon(tickets, now=now)
    if view == "all":
        return tickets
    if view.startswith(CHANNEL_VIEW_PREFIX):
        # A channel's open tickets (ticket_channel_activity_idx).
        return tickets.filter(channel=view.removeprefix(CHANNEL_VIEW_PREFIX), status__in=open_statuses)
    return tickets.filter(status__in=open_statuses)


def due_soon(tickets: QuerySet[Ticket], *, now: datetime | None = None, hours: float | None = None) -> QuerySet[Ticket]:
    """The unsolved ones among `tickets` with an SLA deadline within `hours` (DUE_SOON_HOURS) of
    `now`, overdue ones included."""
    from datetime import timedelta

    now = now or timezone.now()
    bound = now + timedelta(hours=DUE_SOON_HOURS if hours is None else hours)
    return tickets.filter(status__in=UNSOLVED_STATUSES, sla_due_at__isnull=False, sla_due_at__lte=bound)


@dataclass
class Page:
    tickets: list[Ticket]
    next_cursor: str | None
    # The cursor given was not one of this sort's (another sort's, or garbage): the first page is shown.
    cursor_refused: bool = False


# A cursor this module writes is well under this; anything longer is refused unread.
MAX_CURSOR_CHARS = 200


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _unb64(cursor: str) -> str | None:
    if len(cursor) > MAX_CURSOR_CHARS:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _aware(when: str) -> datetime | None:
    try:
        parsed = parse_datetime(when)
    except ValueError:
        return None
    # Our cursors always carry an offset; a naive time would be compared in the wrong zone.
    if parsed is None or timezone.is_naive(parsed):
        return None
    return parsed


def encode_cursor(ticket: Ticket, sort: str = "activity") -> str:
    """The cursor after `ticket` in `sort`: "activity" `time|id`, "waiting" `w|time or empty|id`,
    "priority" `p|priority|time|id`, "deadline" `d|time or empty|id`."""
    if sort == "deadline":
        due = ticket.sla_due_at.isoformat() if ticket.sla_due_at else ""
        return _b64(f"d|{due}|{ticket.pk}")
    if sort == "waiting":
        waiting = ticket.waiting_since.isoformat() if ticket.waiting_since else ""
        return _b64(f"w|{waiting}|{ticket.pk}")
    if sort == "priority":
        return _b64(f"p|{ticket.priority}|{ticket.last_activity_at.isoformat()}|{ticket.pk}")
    return _b64(f"{ticket.last_activity_at.isoformat()}|{ticket.pk}")


def decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    """The position a last-activity cursor names, or None for anything this module did not write."""
    raw = _unb64(cursor)
    if raw is None:
        return None
    when, _, pk = raw.partition("|")
    parsed = _aware(when)
    if parsed is None or not _is_id(pk):
        return None
    return parsed, int(pk)


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 18


def cursor_filter(cursor: str, sort: str) -> Q | None:
    """The tickets after the position `cursor` names in `sort`; None for a cursor that is not one of
    this sort's (another sort's, tampered with, or garbage)."""
    if sort == "activity":
        position = decode_cursor(cursor)
        if position is None:
            return None
        when, pk = position
        # The first bound repeats what the OR implies: it is what lets the index start at the
        # cursor (an Index Cond) instead of reading and discarding every row before it.
        return Q(last_activity_at__lte=when) & (Q(last_activity_at__lt=when) | Q(id__lt=pk))
    raw = _unb64(cursor)
    if raw is None:
        return None
    parts = raw.split("|")
    if sort == "deadline" and len(parts) == 3 and parts[0] == "d" and _is_id(parts[2]):
        pk = int(parts[2])
        if not parts[1]:
            # Past the tickets with a deadline: among those without one, by id.
            return Q(sla_due_at__isnull=True, id__gt=pk)
        due = _aware(parts[1])
        if due is None:
            return None
        # As for "waiting": the first bound lets ticket_sla_due_idx start at the cursor.
        return (Q(sla_due_at__gte=due) & (Q(sla_due_at__gt=due) | Q(id__gt=pk))) | Q(sla_due_at__isnull=True)
    if sort == "waiting" and len(parts) == 3 and parts[0] == "w" and _is_id(parts[2]):
        pk = int(parts[2])
        if not parts[1]:
            # Past the waiting ones: among those not waiting, by id.
            return Q(waiting_since__isnull=True, id__gt=pk)
        waiting = _aware(parts[1])
        if waiting is None:
            return None
        # As above, the first bound lets the index start at the cursor; the not-waiting come last.
        return (Q(waiting_since__gte=waiting) & (Q(waiting_since__gt=waiting) | Q(id__gt=pk))) | Q(
            waiting_since__isnull=True
        )
    if sort == "priority" and len(parts) == 4 and parts[0] == "p" and _is_id(parts[3]):
        active_at = _aware(parts[2])
        if active_at is None or parts[1] not in {str(v) for v in Priority.values}:
            return None
        priority, pk = int(parts[1]), int(parts[3])
        # The first bound lets the index start at the cursor (see above).
        return Q(priority__lte=priority) & (
            Q(priority__lt=priority) | Q(last_activity_at__lt=active_at) | Q(last_activity_at=active_at, id__lt=pk)
        )
    return None


def sort_order(sort: str) -> list[Any]:
    """The ORDER BY of a sort; each ends in id, so equal keys page without gaps or repeats.

    The open queue's views (All open, Unassigned, a channel's) are served by the partial
    ticket_open_activity_idx, ticket_open_waiting_idx, ticket_open_priority_idx and
    ticket_channel_activity_idx; one-status views by ticket_status_activity_idx; Mine and My
    teams by the assignee and team indexes (a sort of one agent's or team's tickets). "Due
    soon" in its deadline order reads the partial ticket_sla_due_idx from its start.
    """
    if sort == "deadline":
        return [F("sla_due_at").asc(nulls_last=True), "id"]
    if sort == "waiting":
        return [F("waiting_since").asc(nulls_last=True), "id"]
    if sort == "priority":
        return ["-priority", "-last_activity_at", "-id"]
    return ["-last_activity_at", "-id"]


def ticket_page(
    user: Any,
    view: str,
    cursor: str | None = None,
    size: int = PAGE_SIZE,
    *,
    sort: str = "activity",
    filters: TicketFilters | None = None,
    tickets: QuerySet[Ticket] | None = None,
    now: datetime | None = None,
) -> Page:
    """One page of a view (or of `tickets`, a saved view's), narrowed by `filters`, in `sort`, by cursor."""
    sort = sort if sort in SORTS else "activity"
    if tickets is None:
        tickets = view_queryset(user, view, now=now)
    if filters is not None:
        tickets = filter_tickets(tickets, filters, user)
    tickets = tickets.select_related("customer", "assignee", "team", "inbox")
    refused = False
    if cursor:
        after = cursor_filter(cursor, sort)
        if after is None:
            refused = True
        else:
            tickets = tickets.filter(after)
    rows = list(tickets.order_by(*sort_order(sort))[: size + 1])
    next_cursor = encode_cursor(rows[size - 1], sort) if len(rows) > size else None
    return Page(tickets=rows[:size], next_cursor=next_cursor, cursor_refused=refused)


# --- the view bar: built-in and channel views with capped counts, saved views -----------------

# Counts stop here: "999+" costs the same at a thousand tickets as at a million.
COUNT_CAP = 1000
# How long one agent's counts are reused (seconds); a ticket that moves shows in a view's count
# within this time, and in its rows at once.
COUNT_CACHE_SECONDS = 30
# Saved views the bar lists at most.
SAVED_VIEWS_SHOWN = 100
# The filters of each built-in view that filters can say ("My teams" cannot: it is several teams).
VIEW_FILTERS: dict[str, dict[str, Any]] = {
    "open": {"status": [TicketStatus.NEW.value, TicketStatus.OPEN.value]},
    "mine": {"assignee": "me", "status": [s.value for s in UNSOLVED_STATUSES]},
    "unassigned": {"assignee": "none", "status": [TicketStatus.NEW.value, TicketStatus.OPEN.value]},
    "pending": {"status": [TicketStatus.PENDING.value, TicketStatus.ON_HOLD.value]},
    "solved": {"status": [TicketStatus.SOLVED.value, TicketStatus.CLOSED.value]},
    "all": {},
}


def view_filters(view: str) -> dict[str, Any] | None:
    """The filters a saved copy of a built-in view gets; None for a view filters cannot say."""
    if view.startswith(CHANNEL_VIEW_PREFIX):
        return {"channel": view.removeprefix(CHANNEL_VIEW_PREFIX), **VIEW_FILTERS["open"]}
    found = VIEW_FILTERS.get(view)
    return dict(found) if found is not None else None


@dataclass
class ViewTab:
    key: str
    label: str
    # The number of tickets, "999+" past the cap.
    count: str


def _capped_counts(user: Any, views: list[str]) -> dict[str, int]:
    """Each view's ticket count up to COUNT_CAP, in one query: a `count(*)` over each view's first
    COUNT_CAP ids (served by the index of its default sort), side by side."""
    from django.core.exceptions import EmptyResultSet
    from django.db import connection as db

    columns: list[str] = []
    params: list[Any] = []
    for i, view in enumerate(views):
        ids = view_queryset(user, view).order_by().values("id")[:COUNT_CAP]
        try:
            sql, view_params = ids.query.sql_with_params()
        except EmptyResultSet:
            columns.append("0")
            continue
        # Django compiled `sql` from the queryset; its values stay bound parameters.
        columns.append(f"(SELECT count(*) FROM ({sql}) AS capped_{i})")  # noqa: S608
        params.extend(view_params)
    with db.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(columns), params)
        row = cursor.fetchone()
    return {view: int(n) for view, n in zip(views, row, strict=True)}


def _view_tabs_key(user: Any) -> str:
    return f"desk:view-tabs:{user.pk}"


def forget_view_counts(user: Any) -> None:
    """Drop the user's cached view counts: the next list shows fresh ones."""
    from django.core.cache import cache

    cache.delete(_view_tabs_key(user))


def view_tabs(user: Any) -> list[ViewTab]:
    """The built-in views and one per inbox kind in use, each with its capped count; reused for
    COUNT_CACHE_SECONDS per agent (two queries when not cached, none when cached)."""
    from django.core.cache import cache

    from channels_inbox.adapters import adapter_kinds
    from channels_inbox.models import Inbox

    key = _view_tabs_key(user)
    cached = cache.get(key)
    if cached is None:
        known = set(adapter_kinds())
        kinds = [k for k in Inbox.objects.order_by("kind").values_list("kind", flat=True).distinct() if k in known]
        views = [*VIEWS, *(CHANNEL_VIEW_PREFIX + kind for kind in kinds)]
        counts = _capped_counts(user, views)
        cached = [(view, counts[view]) for view in views]
        cache.set(key, cached, COUNT_CACHE_SECONDS)
    tabs = []
    for view, n in cached:
        label = VIEWS.get(view) or channel_view_label(view.removeprefix(CHANNEL_VIEW_PREFIX))
        tabs.append(ViewTab(key=view, label=label, count=str(n) if n < COUNT_CAP else f"{COUNT_CAP - 1}+"))
    return tabs


def saved_views_of(user: Any) -> list[Any]:
    """The saved views the bar lists for `user`: their own, then their teams' (one query)."""
    from helpdesk.permissions import view_policy

    views = view_policy.visible(user).select_related("team").order_by(F("team__name").asc(nulls_first=True), "name")
    return list(views[:SAVED_VIEWS_SHOWN])


# --- ticket filters (search; combinable with any view) ---------------------------------------


class FilterError(ValueError):
    """A filter value that names nothing; the message says which and why."""


# The query-string names of the filters, in the order forms show them.
FILTER_PARAMS = (
    "status",
    "channel",
    "inbox",
    "team",
    "assignee",
    "tag",
    "priority",
    "customer",
    "organization",
    "created_from",
    "created_to",
    "updated_from",
    "updated_to",
)


@dataclass
class TicketFilters:
    """Filters on tickets, parsed and checked (see `parse_ticket_filters`); empty ones filter nothing."""

    status: list[str] = field(default_factory=list)
    channel: str = ""
    inbox: int | None = None
    team: int | None = None
    # "me", "none", or an agent's user id as text.
    assignee: str = ""
    # A tag's name; a name no tag has matches no ticket.
    tag: str = ""
    priority: int | None = None
    customer: int | None = None
    # The customer's organization.
    organization: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None

    @property
    def active(self) -> bool:
        return any(getattr(self, name) not in (None, "", []) for name in FILTER_PARAMS)


def _filter_id(name: str, value: str) -> int | None:
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise FilterError(f"{name.capitalize()} must be a number, not {value[:40]!r}.")
    return int(value)


def _filter_day(name: str, value: str, *, end: bool) -> datetime | None:
    """A YYYY-MM-DD day in the current time zone: its start, or (end) the start of the next day."""
    from datetime import timedelta

    from django.utils.dateparse import parse_date

    if not value:
        return None
    try:
        day = parse_date(value[:40])
    except ValueError:
        day = None
    if day is None:
        raise FilterError(f"{name.replace('_', ' ').capitalize()} must be a date like 2025-01-31, not {value[:40]!r}.")
    start = datetime(day.year, day.month, day.day)
    try:
        start = start + timedelta(days=1) if end else start
    except OverflowError:
        raise FilterError(f"{name.replace('_', ' ').capitalize()} is out of range.") from None
    return timezone.make_aware(start)


def _filter_priority(value: str) -> int | None:
    """A priority by number ("3") or name ("high")."""
    if not value:
        return None
    by_name = {label.lower(): number for number, label in Priority.choices}
    if value.lower() in by_name:
        return by_name[value.lower()]
    if value.isascii() and value.isdigit() and len(value) < 3 and int(value) in Priority.values:
        return int(value)
    names = ", ".join(label.lower() for _, label in Priority.choices)
    raise FilterError(f"Unknown priority {value[:40]!r}; one of: {names} (or 1-4).")


def parse_ticket_filters(params: Any) -> TicketFilters:
    """Filters from a query string (a QueryDict); FilterError for a value that names nothing.

    Ids are checked for form only: an id of nothing (or of something the agent may not
    see) simply matches no ticket.
    """
    from channels_inbox.adapters import adapter_kinds

    def one(name: str) -> str:
        return str(params.get(name, "") or "").replace("\x00", "").strip()

    statuses = [s.strip() for s in params.getlist("status") if s.strip()] if hasattr(params, "getlist") else []
    if not statuses and one("status"):
        statuses = [one("status")]
    for status in statuses:
        if status not in TicketStatus.values:
            raise FilterError(f"Unknown status {status[:40]!r}; one of: {', '.join(TicketStatus.values)}.")
    channel = one("channel")
    if channel and channel not in adapter_kinds():
        raise FilterError(f"Unknown channel {channel[:40]!r}; one of: {', '.join(adapter_kinds())}.")
    assignee = one("assignee")
    if assignee not in ("", "me", "none"):
        _filter_id("assignee", assignee)
    # Tags are stored lower-cased (helpdesk/actions/ticket_fields.py normalize_tag).
    tag = one("tag").lower()
    if len(tag) > 64:
        raise FilterError(f"Tag is too long ({len(tag)} characters; at most 64).")
    priority = _filter_priority(one("priority"))
    filters = TicketFilters(
        status=list(dict.fromkeys(statuses)),
        channel=channel,
        inbox=_filter_id("inbox", one("inbox")),
        team=_filter_id("team", one("team")),
        assignee=assignee,
        tag=tag,
        priority=priority,
        customer=_filter_id("customer", one("customer")),
        organization=_filter_id("organization", one("organization")),
        created_from=_filter_day("created_from", one("created_from"), end=False),
        created_to=_filter_day("created_to", one("created_to"), end=True),
        updated_from=_filter_day("updated_from", one("updated_from"), end=False),
        updated_to=_filter_day("updated_to", one("updated_to"), end=True),
    )
    return filters


def filters_from_data(data: Any) -> tuple[TicketFilters, dict[str, Any]]:
    """A saved view's filters (a JSON object of query-string values) parsed like a query string,
    and the values to store; FilterError for an unknown field or a value that names nothing."""
    from django.http import QueryDict

    if not isinstance(data, dict):
        raise FilterError("Filters must be an object of field names and values.")
    unknown = sorted(str(name)[:40] for name in data if name not in FILTER_PARAMS)
    if unknown:
        raise FilterError(f"Unknown filter {', '.join(unknown)}; one of: {', '.join(FILTER_PARAMS)}.")
    params = QueryDict(mutable=True)
    for name, value in data.items():
        values = value if isinstance(value, list) and name == "status" else [value]
        for one_value in values[: len(TicketStatus.values)]:
            if not isinstance(one_value, str | int) or isinstance(one_value, bool):
                raise FilterError(f"{name.capitalize()} must be text, not {type(one_value).__name__}.")
            text = str(one_value)
            if len(text) > 100:
                raise FilterError(f"{name.capitalize()} is too long ({len(text)} characters; at most 100).")
            params.appendlist(name, text)
    filters = parse_ticket_filters(params)
    stored: dict[str, Any] = {}
    for name in FILTER_PARAMS:
        if name == "status":
            if filters.status:
                stored[name] = filters.status
        elif (value := params.get(name, "").replace("\x00", "").strip()) != "":
            stored[name] = value.lower() if name == "tag" else value
    return filters, stored


def filter_query(params: Any) -> dict[str, Any]:
    """The filter values of a query string, as a saved view stores them (unchecked: parse them)."""
    data: dict[str, Any] = {}
    for name in FILTER_PARAMS:
        values = [v[:100] for v in params.getlist(name) if v.strip()][: len(TicketStatus.values)]
        if values:
            data[name] = values if name == "status" else values[0]
    return data


def filter_tickets(tickets: QuerySet[Ticket], filters: TicketFilters, user: Any) -> QuerySet[Ticket]:
    """`tickets` narrowed by `filters` (date "to" bounds are exclusive: the day after the last one)."""
    if filters.status:
        tickets = tickets.filter(status__in=filters.status)
    if filters.channel:
        tickets = tickets.filter(channel=filters.channel)
    if filters.inbox is not None:
        tickets = tickets.filter(inbox_id=filters.inbox)
    if filters.team is not None:
        tickets = tickets.filter(team_id=filters.team)
    if filters.assignee == "me":
        tickets = tickets.filter(assignee_id=user.pk)
    elif filters.assignee == "none":
        tickets = tickets.filter(assignee__isnull=True)
    elif filters.assignee:
        tickets = tickets.filter(assignee_id=int(filters.assignee))
    if filters.tag:
        tickets = tickets.filter(tags__name=filters.tag)
    if filters.priority is not None:
        tickets = tickets.filter(priority=filters.priority)
    if filters.customer is not None:
        tickets = tickets.filter(customer_id=filters.customer)
    if filters.organization is not None:
        tickets = tickets.filter(customer__organization_id=filters.organization)
    if filters.created_from is not None:
        tickets = tickets.filter(created_at__gte=filters.created_from)
    if filters.created_to is not None:
        tickets = tickets.filter(created_at__lt=filters.created_to)
    if filters.updated_from is not None:
        tickets = tickets.filter(updated_at__gte=filters.updated_from)
    if filters.updated_to is not None:
        tickets = tickets.filter(updated_at__lt=filters.updated_to)
    return tickets


def ticket_timeline(ticket: Ticket) -> list[Message | TicketEvent]:
    """Messages and the events worth showing between them, in order.

    Each message gets `mail` (an EmailView for email, else None) and `listed_attachments`
    (its attachments without the inline images its HTML shows).
    """
    messages = list(
        ticket.messages.select_related("author_customer", "author_agent", "inbox")
        .prefetch_related(
            Prefetch("attachments", queryset=Attachment.objects.order_by("id")),
            # A list on each message (`delivery_list`): the template reads it twice per message,
            # and a related manager costs more to build than the list it returns.
            Prefetch("deliveries", to_attr="delivery_list"),
        )
        .annotate(has_raw=Exists(InboundEvent.objects.filter(message_id=OuterRef("pk"))))
    )
    for message in messages:
        attachments = list(message.attachments.all())
        shown_inline = inline_images_shown(message, attachments)
        message.listed_attachments = [a for a in attachments if a.pk not in shown_inline]  # type: ignore[attr-defined]
        message.mail = email_view(message, ticket) if message.channel == "email" else None  # type: ignore[attr-defined]
    shown = [
        "status_changed",
        "assigned",
        "team_changed",
        "priority_changed",
        "tags_changed",
        "followup_created",
        "merged",
        "merged_from",
        "created",
    ]
    events = list(
        ticket.events.filter(type__in=shown)
        .select_related("actor", "actor_customer")
        .annotate(
            old_team_pk=Cast(KT("data__old_team_id"), IntegerField()),
            new_team_pk=Cast(KT("data__new_team_id"), IntegerField()),
        )
        .annotate(
            old_team_name=Subquery(Team.objects.filter(pk=OuterRef("old_team_pk")).values("name")[:1]),
            new_team_name=Subquery(Team.objects.filter(pk=OuterRef("new_team_pk")).values("name")[:1]),
        )
    )
    label_field_changes(events)
    timeline: list[Message | TicketEvent] = [*messages, *events]
    timeline.sort(key=lambda item: (item.created_at, 0 if isinstance(item, TicketEvent) else 1))
    return timeline


def label_field_changes(events: Sequence[TicketEvent]) -> None:
    """Give priority and team changes `old_label` and `new_label` to show (team names come
    annotated as `old_team_name` / `new_team_name`: no query here)."""
    priorities = dict(Priority.choices)
    for event in events:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == TicketEventType.PRIORITY_CHANGED:
            old, new = data.get("old"), data.get("new")
            event.old_label = priorities.get(old, str(old)) if isinstance(old, int) else str(old)  # type: ignore[attr-defined]
            event.new_label = priorities.get(new, str(new)) if isinstance(new, int) else str(new)  # type: ignore[attr-defined]
        elif event.type == TicketEventType.TEAM_CHANGED:
            event.old_label = _team_label(data.get("old_team_id"), getattr(event, "old_team_name", None))  # type: ignore[attr-defined]
            event.new_label = _team_label(data.get("new_team_id"), getattr(event, "new_team_name", None))  # type: ignore[attr-defined]


def _team_label(team_id: Any, name: str | None) -> str:
    if not team_id:
        return "no team"
    return name or "a deleted team"


@dataclass
class SideFields:
    """What the ticket page's edit panel shows besides the ticket: its tags and the choices."""

    tags: list[Tag]
    teams: list[Team]
    priorities: list[tuple[int, str]]
    # The number of the ticket this one was merged into, if it was.
    merged_into_number: int | None


def ticket_side_fields(ticket: Ticket, *, editable: bool) -> SideFields:
    """The ticket's tags (by name), and for an editor the teams to move it to: one query each."""
    merged_into_number = None
    if ticket.merged_into_id is not None:
        merged_into_number = Ticket.objects.filter(pk=ticket.merged_into_id).values_list("number", flat=True).first()
    return SideFields(
        tags=list(ticket.tags.order_by("name")),
        teams=list(Team.objects.order_by("name")) if editable else [],
        priorities=list(Priority.choices),
        merged_into_number=merged_into_number,
    )


def events_after(ticket: Ticket, seq: int, limit: int = 500) -> list[TicketEvent]:
    return list(ticket.events.filter(seq__gt=seq).order_by("seq")[:limit])


# What an agent about to send must have seen first: the customer wrote again, or another agent
# answered. Notes, status and field changes do not make a draft stale.
_NEWS_TYPES = [TicketEventType.MESSAGE_RECEIVED, TicketEventType.REPLY_ADDED]


def news_since(ticket: Ticket, seq: int, *, viewer: Any) -> list[TicketEvent]:
    """Customer messages and other agents' replies on `ticket` after event `seq` (oldest first)."""
    return list(
        ticket.events.filter(seq__gt=seq, type__in=_NEWS_TYPES)
        .exclude(actor=viewer)
        .select_related("actor", "actor_customer")
        .order_by("seq")[:20]
    )


# --- email on the ticket page ---------------------------------------------------------------

# Image types a browser shows from an inline `cid:` reference (no SVG: it can carry script).
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Inline images one HTML view embeds at most (bytes); beyond it the rest stay listed as files.
INLINE_EMBED_MAX_BYTES = 8 * 1024 * 1024
_CID_REF = re.compile(r"""\bcid:([^"'\s<>]+)""", re.I)
_SUBJECT_TOKEN = re.compile(r"\[#\d{1,18}\]")


@dataclass
class EmailView:
    """What the timeline shows of one email message (from its metadata["email"])."""

    sender: str
    to: list[str]
    cc: list[str]
    # The message's own subject; "" when it is the ticket's (give or take Re: and the token).
    subject: str
    # The new part of a reply; the full text is shown behind "Show quoted text" when it differs.
    visible_text: str
    full_text: str
    has_quote: bool
    parse_error: str
    automatic: str
    has_html: bool
    has_raw: bool
    over_limit: list[dict[str, Any]] = field(default_factory=list)


def _same_subject(a: str, b: str) -> bool:
    def norm(subject: str) -> str:
        return " ".join(strip_reply_prefixes(_SUBJECT_TOKEN.sub(" ", subject or "")).split()).casefold()

    return norm(a) == norm(b)


def _strings(value: Any, limit: int = 50) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [str(v) for v in value[:limit] if v]
    return []


def email_view(message: Message, ticket: Ticket) -> EmailView:
    meta = message.metadata.get("email") if isinstance(message.metadata, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    full_text = message.text or ""
    visible = meta.get("visible_text")
    visible_text = visible if isinstance(visible, str) and visible.strip() else full_text
    subject = str(meta.get("subject") or "")
    over_limit = [
        {"filename": str(item.get("filename") or "attachment"), "size": int(item.get("size") or 0)}
        for item in meta.get("attachments_over_limit") or []
        if isinstance(item, dict)
    ]
    return EmailView(
        sender=str(meta.get("from") or ""),
        to=_strings(meta.get("to")),
        cc=_strings(meta.get("cc")),
        subject="" if not subject or _same_subject(subject, ticket.subject) else subject,
        visible_text=visible_text,
        full_text=full_text,
        has_quote=bool(full_text.strip()) and visible_text.strip() != full_text.strip(),
        parse_error=str(meta.get("parse_error") or ""),
        automatic=str(meta.get("automatic") or ""),
        has_html=bool(message.html),
        has_raw=bool(getattr(message, "has_raw", False)),
        over_limit=over_limit,
    )


def cid_references(html: str) -> set[str]:
    """The Content-IDs an HTML body refers to as `cid:…` (RFC 2392: URL-encoded), lower-cased."""
    return {unquote(html_lib.unescape(ref)).strip("<>").lower() for ref in _CID_REF.findall(html or "")}


def embedded_images(message: Message, attachments: list[Attachment]) -> dict[str, Attachment]:
    """Content-ID (lower-cased) → the attachment the HTML view embeds for it.

    Only attachments of this message with that Content-ID and a safe image type, at most
    INLINE_EMBED_MAX_BYTES together (the first ones, in order); every other `cid:`
    reference stays as it is (a broken image).
    """
    if not message.html:
        return {}
    refs = cid_references(message.html)
    chosen: dict[str, Attachment] = {}
    total = 0
    for attachment in sorted(attachments, key=lambda a: a.pk):
        cid = attachment.content_id.lower()
        if not cid or cid not in refs or cid in chosen or attachment.content_type not in INLINE_IMAGE_TYPES:
            continue
        if total + attachment.size > INLINE_EMBED_MAX_BYTES:
            continue
        chosen[cid] = attachment
        total += attachment.size
    return chosen


def inline_images_shown(message: Message, attachments: list[Attachment]) -> set[int]:
    """Ids of the inline attachments the message's HTML view shows (not listed again as files)."""
    return {a.pk for a in embedded_images(message, attachments).values() if a.inline}


def _data_url(attachment: Attachment) -> str | None:
    try:
        with attachment.file.open("rb") as handle:
            content = handle.read()
    except FileNotFoundError:
        return None
    return f"data:{attachment.content_type};base64,{base64.b64encode(content).decode()}"


def message_html_body(message: Message) -> str:
    """The message's stored HTML, sanitized once more, with its `cid:` images embedded.

    Embedded as data: URLs, not linked: the HTML is shown in a sandboxed frame, whose
    opaque origin makes every request from it cross-site, so the browser sends no session
    cookie (SameSite) and an attachment URL would only find the sign-in page.
    """
    if not message.html:
        return ""
    chosen = embedded_images(message, list(message.attachments.exclude(content_id="")))
    urls = {cid: url for cid, attachment in chosen.items() if (url := _data_url(attachment))}

    def rewrite(element: str, attribute: str, value: str) -> str | None:
        if element == "img" and attribute == "src" and value[:4].lower() == "cid:":
            return urls.get(unquote(value[4:]).strip("<>").lower(), value)
        return value

    return nh3.clean(
        sanitize_html(message.html),
        attribute_filter=rewrite,
        link_rel="noopener noreferrer nofollow",
        url_schemes={"http", "https", "mailto", "tel", "cid"},
    )


def raw_email(message: Message) -> bytes | None:
    """The raw bytes the message was made from (its first inbound event), or None if none are kept."""
    if message.channel != "email":
        return None
    payload = InboundEvent.objects.filter(message=message).order_by("id").values_list("payload", flat=True).first()
    raw = bytes(payload) if payload is not None else b""
    return raw or None


def ticket_ccs(ticket: Ticket) -> list[TicketCC]:
    """The ticket's CCs with their customers and email identities (`email_identities`), prefetched."""
    identities = Identity.objects.filter(kind=IdentityKind.EMAIL).order_by("id")
    return list(
        ticket.ccs.select_related("customer")
        .prefetch_related(Prefetch("customer__identities", queryset=identities, to_attr="email_identities"))
        .order_by("created_at", "id")
    )


# --- held inbound events ------------------------------------------------------------------

HELD_PAGE_SIZE = 100
# Enough of a payload to hold any sane mail's header block.
_HEAD_BYTES = 65_536


@dataclass
class HeldEvent:
    event: InboundEvent
    is_email: bool
    sender: str
    subject: str


@dataclass
class HeldPage:
    events: list[HeldEvent]
    next_before: int | None


def held_event_count() -> int:
    return InboundEvent.objects.filter(status=InboundEventStatus.HELD).count()


def _header_block(head: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end != -1:
            return head[: end + len(separator)]
    return head


def held_events_page(before: int | None = None, size: int = HELD_PAGE_SIZE) -> HeldPage:
    """Held events, newest first, by cursor (id); an email's From and Subject read from its headers.

    Only the start of each payload is read from the database (a held mail may be megabytes).
    """
    events = (
        InboundEvent.objects.filter(status=InboundEventStatus.HELD)
        .select_related("inbox")
        .defer("payload")
        .annotate(head=Substr("payload", 1, _HEAD_BYTES, output_field=BinaryField()))
        .order_by("-id")
    )
    if before is not None:
        events = events.filter(id__lt=before)
    rows = list(events[: size + 1])
    result = []
    for event in rows[:size]:
        is_email = event.inbox.kind == "email"
        sender = subject = ""
        if is_email:
            head = bytes(getattr(event, "head", None) or b"")
            mail = parse_email(_header_block(head))
            if mail.from_ is not None:
                sender = f"{mail.from_.name} <{mail.from_.address}>" if mail.from_.name else mail.from_.address
            subject = mail.subject
        result.append(HeldEvent(event=event, is_email=is_email, sender=sender, subject=subject))
    return HeldPage(events=result, next_before=rows[size - 1].pk if len(rows) > size else None)
