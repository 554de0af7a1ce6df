"""Desk search: tickets (by subject, message text, customer) and customers, for one agent.

On PostgreSQL the words are matched against stored `search_vector` columns of tickets
(subject) and messages (text) with GIN indexes, and against customers' names through an
expression index (customers/models/customer.py); identities match by their exact,
normalized value. On SQLite (embedded mode) every word must occur (LIKE) in the subject, a
message, the customer's name or one of their identities. Both return the same shape, and
only tickets `ticket_policy.visible(user)` allows; the queries of a page do not grow with
the results (PostgreSQL adds the estimate below, and a walk's statement).

How a PostgreSQL page is found (bench/workspace.py measures it at a million tickets): a
common word matches hundreds of thousands of messages, a rare one a handful, and no single
plan serves both. PostgreSQL's own estimate of the matching messages (an EXPLAIN, not run)
chooses: for common words the page walks the most recently active tickets (one
index-ordered branch per status, merged) and keeps those that match, stopping once the page
is full, so it reads a few hundred tickets instead of every match; for rarer words the GIN
indexes give every match at once (few, so cheap). Both give the same tickets in the same
order; when a walk finds less than a page (the estimate was wrong) the GIN indexes answer.
Ordering by rank ranks the `RANK_CANDIDATES` most recent matching tickets (found the same
way), best first: for words with at most that many matches that is every match; beyond it,
the newest of them only — an older, better-ranked match is not shown by rank (it is by recency).
The plans are never prepared on the server: generic plans made rare-word searches ~20×
slower (floors.md §7; the settings set `prepare_threshold=None`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    Window,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Greatest, RowNumber
from django.utils.safestring import SafeString

from customers.models import Customer, Identity, IdentityKind
from customers.models.customer import NameSearchDocument
from customers.normalize import InvalidIdentity, normalize_email, normalize_phone
from helpdesk.models import Direction, Message, Ticket, TicketStatus
from helpdesk.permissions import ticket_policy
from helpdesk.search_text import MAX_QUERY_CHARS, highlight, prepare_text, query_terms
from helpdesk.selectors import TicketFilters, decode_cursor, encode_cursor, filter_tickets

SEARCH_PAGE_SIZE = 25
# Customers shown above the tickets (first page only).
CUSTOMER_LIMIT = 10
SORTS = ("recent", "relevance")
# Words the embedded (LIKE) search takes from a query at most.
_MAX_LIKE_WORDS = 8
# PostgreSQL: when to walk recent tickets instead of reading every match from the GIN indexes.
# Looking at one ticket on the walk costs about WALK_COST_RATIO of reading one matching message
# (at a million tickets on stock PostgreSQL settings, ~10 µs and ~20 µs; bench/README.md): the
# walk is taken when the tickets it is expected to look at for a page, times that ratio, are
# fewer than the estimated matching messages (and those are at least WALK_FROM_MESSAGES). It
# looks through WALK_MARGIN times the tickets expected to hold a page, never more than WALK_MAX.
WALK_FROM_MESSAGES = 2000
WALK_COST_RATIO = 0.5
WALK_MARGIN = 2.0
WALK_MAX = 20_000
# PostgreSQL: ordering by rank ranks at most this many of the most recent matching tickets,
# found the same way (a walk, or the GIN indexes).
RANK_CANDIDATES = 50


class SearchError(ValueError):
    """A query the search refuses (too long); the message is shown to the agent."""


@dataclass
class TicketHit:
    ticket: Ticket
    # The ticket's subject with the query's words marked (escaped, then marked).
    subject: SafeString
    # The best-matching message's text around the match; empty when only the subject or
    # the customer matched.
    snippet: SafeString | str = ""
    snippet_is_note: bool = False


@dataclass
class CustomerHit:
    customer: Customer
    identities: list[Identity]
    # Tickets of the customer this agent may see.
    ticket_count: int


@dataclass
class SearchResults:
    q: str
    sort: str
    tickets: list[TicketHit] = field(default_factory=list)
    next_cursor: str | None = None
    customers: list[CustomerHit] = field(default_factory=list)
    # The query had words, or filters were given: something was searched.
    searched: bool = False


def clean_query(raw: str) -> str:
    """The query as searched: without NUL characters and surrounding space; SearchError if too long."""
    q = raw.replace("\x00", "").strip()
    if len(q) > MAX_QUERY_CHARS:
        raise SearchError(f"The search is too long ({len(q)} characters; at most {MAX_QUERY_CHARS}).")
    return q


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def search(
    user: Any,
    q: str,
    filters: TicketFilters,
    *,
    sort: str = "recent",
    cursor: str | None = None,
    size: int = SEARCH_PAGE_SIZE,
) -> SearchResults:
    """One page of tickets matching `q` and `filters` for `user`, and (first page) the matching customers.

    `q` comes from `clean_query`. Sorted by last activity (`recent`) or, on PostgreSQL, by
    rank (`relevance`: the best of the subject's and the messages' ts_rank); cursor pages
    either way. A query without words and without filters searches nothing.
    """
    sort = sort if sort in SORTS else "recent"
    terms = query_terms(q)
    results = SearchResults(q=q, sort=sort)
    if not terms and not filters.active:
        return results
    results.searched = True
    base = filter_tickets(ticket_policy.visible(user), filters, user)
    tsquery = SearchQuery(prepare_text(q), search_type="websearch", config="simple") if terms else None
    postgres_text = tsquery is not None and on_postgres()
    by_rank = sort == "relevance" and postgres_text
    related = ("customer", "assignee", "team", "inbox")
    if by_rank:
        assert tsquery is not None
        candidates = _recent_match_ids(base, q, tsquery, filters, RANK_CANDIDATES, WALK_MAX)
        # The candidates come from `base` (visibility and filters applied): fetch them by id.
        rows = _rank_page(Ticket.objects.filter(id__in=candidates).select_related(*related), tsquery, cursor, size)
        next_cursor = _encode_rank_cursor(rows[size - 1]) if len(rows) > size else None
    else:
        position = decode_cursor(cursor) if cursor else None
        if position is not None:
            when, pk = position
            # The `lte` bound is redundant but is what lets the index start at the cursor
            # (PostgreSQL cannot use the OR as an index condition).
            base = base.filter(Q(last_activity_at__lte=when), Q(last_activity_at__lt=when) | Q(id__lt=pk))
        if postgres_text:
            assert tsquery is not None
            rows = _recent_matching_page(base, q, tsquery, filters, size + 1, related)
        else:
            tickets = _matching_like(base, q) if terms else base
            rows = list(tickets.select_related(*related).order_by("-last_activity_at", "-id")[: size + 1])
        next_cursor = encode_cursor(rows[size - 1]) if len(rows) > size else None
    rows = rows[:size]
    snippets = _snippets(rows, q, tsquery) if terms and rows else {}
    whole_words = on_postgres()
    for ticket in rows:
        text, is_note = snippets.get(ticket.pk, ("", False))
        results.tickets.append(
            TicketHit(
                ticket=ticket,
                subject=highlight(ticket.subject, terms, whole_words=whole_words, width=300),
                snippet=highlight(text, terms, whole_words=whole_words) if text else "",
                snippet_is_note=is_note,
            )
        )
    results.next_cursor = next_cursor
    if terms and not cursor:
        results.customers = search_customers(user, q)
    return results


# --- which tickets match ---------------------------------------------------------------------


def _matching_postgres(tickets: QuerySet[Ticket], q: str, tsquery: SearchQuery) -> QuerySet[Ticket]:
    # One set of candidate ids (a UNION of small, index-served parts), so the planner reads
    # each GIN index once and fetches the tickets by primary key, instead of testing an OR
    # of subqueries on every ticket.
    by_message = Message.objects.filter(search_vector=tsquery).order_by().values("ticket_id")
    by_subject = Ticket.objects.filter(search_vector=tsquery).order_by().values("id")
    by_customer = Ticket.objects.filter(customer_id__in=_customer_ids_postgres(q)).order_by().values("id")
    return tickets.filter(id__in=by_message.union(by_subject, by_customer))


def _estimated_matches(document: str) -> tuple[float, float]:
    """PostgreSQL's estimates of the messages matching `document` and of all tickets (one EXPLAIN, not run)."""
    message, ticket = Message._meta.db_table, Ticket._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {message} WHERE search_vector @@"  # noqa: S608  (table names)
            f" websearch_to_tsquery('simple'::regconfig, %s) UNION ALL SELECT 1 FROM {ticket}",
            [document],
        )
        row = cursor.fetchone()
    plan: Any = json.loads(row[0]) if row and isinstance(row[0], str) else (row[0] if row else None)
    try:
        messages, tickets = (float(child["Plan Rows"]) for child in plan[0]["Plan"]["Plans"])
    except (KeyError, IndexError, TypeError, ValueError):
        # A plan of another shape: no estimate, so the GIN indexes answer (always right).
        return 0.0, 1.0
    return messages, tickets


def _walk_size(document: str, limit: int, most: int) -> int:
    """How many recent tickets to walk for `limit` matches; 0 when the GIN indexes should answer."""
    messages, tickets = _estimated_matches(document)
    if messages < WALK_FROM_MESSAGES:
        return 0
    share = min(1.0, messages / max(tickets, 1.0))
    if limit / share * WALK_COST_RATIO > messages:
        return 0
    walk = int(WALK_MARGIN * limit / share)
    return max(walk, limit) if walk <= most else 0


def _order_recent(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    return tickets.order_by("-last_activity_at", "-id")


def _recent_matching_page(
    tickets: QuerySet[Ticket],
    q: str,
    tsquery: SearchQuery,
    filters: TicketFilters,
    limit: int,
    related: tuple[str, ...],
) -> list[Ticket]:
    """The `limit` most recently active tickets of `tickets` that match (PostgreSQL), newest first.

    Common words: the walk (`_walk_sql`), then — only if it found less than `limit`, i.e. the
    estimate was wrong — the GIN indexes. Rarer words: the GIN indexes at once.
    """
    document = prepare_text(q)
    walk = _walk_size(document, limit, WALK_MAX)
    if walk:
        walked = Ticket.objects.filter(id__in=_walk_sql(tickets, q, document, filters, limit, walk))
        rows = list(_order_recent(walked.select_related(*related))[:limit])
        if len(rows) >= limit:
            return rows
    # The page's ids first, then their rows: the joins run for the page only, not for every match.
    ids = _order_recent(_matching_postgres(tickets, q, tsquery)).values("id")[:limit]
    return list(_order_recent(Ticket.objects.filter(id__in=ids).select_related(*related)))


def _recent_match_ids(
    tickets: QuerySet[Ticket], q: str, tsquery: SearchQuery, filters: TicketFilters, limit: int, most: int
) -> list[int] | QuerySet[Ticket, Any]:
    """The ids of the `limit` most recently active matching tickets: a list, or a subquery (GIN indexes)."""
    document = prepare_text(q)
    walk = _walk_size(document, limit, most)
    if walk:
        sql, params = _walk_sql(tickets, q, document, filters, limit, walk).as_sql(None, connection)  # type: ignore[arg-type]
        with connection.cursor() as cursor:
            cursor.execute(sql[1:-1], params)  # without RawSQL's parentheses
            ids = [row[0] for row in cursor.fetchall()]
        if len(ids) >= limit:
            return ids
    return _order_recent(_matching_postgres(tickets, q, tsquery)).values("id")[:limit]


def _walk_sql(
    tickets: QuerySet[Ticket], q: str, document: str, filters: TicketFilters, limit: int, walk: int
) -> RawSQL:
    """The ids of the first `limit` matching tickets among the `walk` most recently active of `tickets`.

    One index-ordered branch per status (ticket_status_activity_idx), merged by PostgreSQL
    (Merge Append) and read lazily: for common words it stops after a few hundred tickets.
    """
    statuses = filters.status or list(TicketStatus.values)
    try:
        branches = []
        params: list[Any] = []
        for status in statuses:
            branch = _order_recent(tickets.filter(status=status)).values(
                "id", "last_activity_at", "customer_id", "search_vector"
            )[:walk]
            branch_sql, branch_params = branch.query.sql_with_params()
            branches.append(f"({branch_sql})")
            params.extend(branch_params)
        customers_sql, customers_params = _customer_ids_postgres(q).query.sql_with_params()
    except EmptyResultSet:
        return RawSQL("SELECT NULL::bigint WHERE false", [])
    # Django compiled every part from querysets; the values stay bound parameters.
    sql = (
        "SELECT walked.id FROM ("  # noqa: S608
        f" SELECT * FROM ({' UNION ALL '.join(branches)}) AS recent"
        " ORDER BY recent.last_activity_at DESC, recent.id DESC LIMIT %s"
        " ) AS walked"
        " WHERE walked.search_vector @@ websearch_to_tsquery('simple'::regconfig, %s)"
        f" OR walked.customer_id IN ({customers_sql})"
        # A scalar subquery, not EXISTS: PostgreSQL could hash an EXISTS, i.e. read every
        # matching message first, which is what the walk is there to avoid.
        f" OR (SELECT true FROM {Message._meta.db_table} AS m WHERE m.ticket_id = walked.id"
        "   AND m.search_vector @@ websearch_to_tsquery('simple'::regconfig, %s) LIMIT 1)"
        " ORDER BY walked.last_activity_at DESC, walked.id DESC LIMIT %s"
    )
    params += [walk, document, *customers_params, document, limit]
    return RawSQL(sql, params)  # noqa: S611


def _customer_ids_postgres(q: str) -> QuerySet[Customer, Any]:
    name_query = SearchQuery(q, search_type="websearch", config="simple")
    by_name = Customer.objects.annotate(name_doc=NameSearchDocument()).filter(name_doc=name_query).order_by()
    identities = _identity_values(q)
    if not identities:
        return by_name.values("id")
    # Every kind listed, so the (kind, value) unique index serves the lookup.
    owners = Identity.objects.filter(kind__in=IdentityKind.values, value__in=identities).order_by()
    return by_name.values("id").union(owners.values("customer_id"))


def _identity_values(q: str) -> list[str]:
    """The identity values a query may be: itself, as an email, as a phone number (normalized)."""
    raw = q.strip().strip("\"'")
    if not raw or len(raw) > 320:
        return []
    values = {raw, raw.lower()}
    for normalize in (normalize_email, normalize_phone):
        with contextlib.suppress(InvalidIdentity, ValueError):
            values.add(normalize(raw))
    return sorted(values)


def like_words(q: str) -> list[str]:
    """The words of a query for the embedded search: split on spaces, without quotes, "-word"s and "or"."""
    words = []
    for chunk in q.split():
        chunk = chunk.strip("\"'")
        if chunk and not chunk.startswith("-") and chunk.lower() != "or":
            words.append(chunk)
    return list(dict.fromkeys(words))[:_MAX_LIKE_WORDS]


def _matching_like(tickets: QuerySet[Ticket], q: str) -> QuerySet[Ticket]:
    for word in like_words(q):
        tickets = tickets.filter(
            Q(subject__icontains=word)
            | Q(customer__name__icontains=word)
            | Exists(Message.objects.filter(ticket_id=OuterRef("pk"), text__icontains=word))
            | Exists(Identity.objects.filter(customer_id=OuterRef("customer_id"), value__icontains=word))
        )
    return tickets


# --- ordering by rank ------------------------------------------------------------------------


def _rank_page(tickets: QuerySet[Ticket], tsquery: SearchQuery, cursor: str | None, size: int) -> list[Ticket]:
    best_message = (
        Message.objects.filter(ticket_id=OuterRef("pk"), search_vector=tsquery)
        .annotate(r=SearchRank(F("search_vector"), tsquery))
        .order_by("-r")
        .values("r")[:1]
    )
    # ts_rank is a `real`; the cursor carries it as PostgreSQL prints it (exactly, shortest
    # form), so both sides of the comparison are cast back to `real`.
    best = Greatest(
        Coalesce(Subquery(best_message, output_field=FloatField()), Value(0.0)),
        Coalesce(SearchRank(F("search_vector"), tsquery), Value(0.0)),
        output_field=FloatField(),
    )
    ranked = tickets.annotate(rank=_Real(best))
    position = _decode_rank_cursor(cursor) if cursor else None
    if position is not None:
        rank, pk = position
        ranked = ranked.filter(Q(rank__lt=_Real(Value(rank))) | Q(rank=_Real(Value(rank)), id__lt=pk))
    return list(ranked.order_by("-rank", "-id")[: size + 1])


class _Real(Func):
    template = "(%(expressions)s)::real"
    output_field = FloatField()


def _encode_rank_cursor(ticket: Ticket) -> str:
    raw = f"r|{float(getattr(ticket, 'rank', 0.0))!r}|{ticket.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_rank_cursor(cursor: str) -> tuple[float, int] | None:
    """The (rank, id) a relevance cursor names, or None for anything this module did not write."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, rank, pk = raw.split("|")
        position = (float(rank), int(pk))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if tag != "r" or position[0] != position[0] or position[0] in (float("inf"), float("-inf")):
        return None
    return position


# --- snippets --------------------------------------------------------------------------------


def _snippets(rows: list[Ticket], q: str, tsquery: SearchQuery | None) -> dict[int, tuple[str, bool]]:
    """Ticket id → (text, is a note) of its best-matching message, for one page, in one query."""
    ids = [ticket.pk for ticket in rows]
    best: QuerySet[Message, Any]
    if on_postgres() and tsquery is not None:
        # The page's messages by ticket, then the match on each: written so that the GIN index
        # cannot serve it (`|| ''`), since ANDing the GIN bitmap of a common word with the page's
        # few hundred messages costs more than checking them (12 ms for 8,000 matches).
        matches = RawSQL(  # noqa: S611  (the table name is the model's; the query text is a parameter)
            f"({Message._meta.db_table}.search_vector || ''::tsvector)"
            " @@ websearch_to_tsquery('simple'::regconfig, %s)",
            [prepare_text(q)],
            output_field=BooleanField(),
        )
        best = (
            Message.objects.filter(ticket_id__in=ids)
            .alias(hit=matches)
            .filter(hit=True)
            .annotate(r=SearchRank(F("search_vector"), tsquery))
            .order_by("ticket_id", "-r", "-id")
            .distinct("ticket_id")
        )
    else:
        words = like_words(q)
        if not words:
            return {}
        any_word = Q()
        for word in words:
            any_word |= Q(text__icontains=word)
        best = (
            Message.objects.filter(any_word, ticket_id__in=ids)
            .annotate(row=Window(RowNumber(), partition_by=[F("ticket_id")], order_by=[F("id").desc()]))
            .filter(row=1)
        )
    return {
        ticket_id: (text, direction == Direction.NOTE)
        for ticket_id, text, direction in best.values_list("ticket_id", "text", "direction")
    }


# --- customers ---------------------------------------------------------------------------------


def search_customers(user: Any, q: str, limit: int = CUSTOMER_LIMIT) -> list[CustomerHit]:
    """Customers whose name or identity matches `q` and who have a ticket `user` may see.

    Two queries: the customers with their visible ticket count, and their identities.
    """
    if not query_terms(q):
        return []
    if on_postgres():
        customers = Customer.objects.filter(id__in=_customer_ids_postgres(q))
    else:
        customers = Customer.objects.all()
        for word in like_words(q):
            customers = customers.filter(
                Q(name__icontains=word)
                | Exists(Identity.objects.filter(customer_id=OuterRef("pk"), value__icontains=word))
            )
    visible = ticket_policy.visible(user).filter(customer_id=OuterRef("pk"))
    counts = visible.order_by().values("customer_id").annotate(n=Count("id")).values("n")
    found = list(
        customers.filter(Exists(visible))
        .annotate(ticket_count=Subquery(counts))
        .prefetch_related(Prefetch("identities", queryset=Identity.objects.order_by("kind", "id")))
        .order_by(F("last_seen_at").desc(nulls_last=True), "-id")[:limit]
    )
    return [
        CustomerHit(customer=c, identities=list(c.identities.all()), ticket_count=getattr(c, "ticket_count", 0) or 0)
        for c in found
    ]
