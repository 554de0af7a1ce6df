"""The ticket list's views: per channel, sorts with their cursors, saved views, capped counts."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.http import QueryDict
from django.test import Client
from django.utils import timezone

from customers.models import Organization
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.views import do_delete_view, do_save_view
from helpdesk.models import Priority, SavedView, Tag, Team, Ticket, TicketStatus
from helpdesk.selectors import (
    COUNT_CAP,
    DUE_SOON_HOURS,
    PAGE_SIZE,
    FilterError,
    cursor_filter,
    encode_cursor,
    filters_from_data,
    forget_view_counts,
    parse_ticket_filters,
    sort_order,
    ticket_page,
    view_queryset,
    view_tabs,
)
from helpdesk.tests.conftest import logged_in, new_ticket
from tests.factories import CustomerFactory, InboxFactory

pytestmark = pytest.mark.django_db

# The list page, counts not cached: session, user, role, teams, the page of tickets, the inbox
# kinds, the capped counts (one query for every view), the saved views.
LIST_QUERIES_COLD = 8
# Counts cached: the same without the kinds and the counts.
LIST_QUERIES_WARM = 6


def numbers(resp: Any) -> list[int]:
    return [t.number for t in resp.context["page"].tickets]


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


def all_pages(client: Client, params: dict[str, Any]) -> tuple[list[int], int]:
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        resp = client.get("/desk/", {**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.content
        assert not resp.context["page"].cursor_refused
        pages += 1
        seen += numbers(resp)
        cursor = resp.context["page"].next_cursor
        if cursor is None:
            return seen, pages
        assert pages < 20


@pytest.fixture
def email_inbox(db: Any) -> Any:
    return InboxFactory(kind="email", name="Support mail", slug="support-mail", settings={}, secrets={})


# --- per-channel views ---------------------------------------------------------------------------


def test_channel_views_are_listed_for_the_kinds_in_use_and_filter_by_channel(agent: Any, email_inbox: Any) -> None:
    # given
    api_inbox = InboxFactory()
    by_mail = new_ticket(inbox=email_inbox, channel="email")
    by_api = new_ticket(inbox=api_inbox, channel="api")
    new_ticket(inbox=email_inbox, channel="email", status=TicketStatus.SOLVED)
    client = logged_in(agent)
    # when
    resp = client.get("/desk/", {"view": "channel:email"})
    # then
    assert resp.status_code == 200, resp.content
    assert numbers(resp) == [by_mail.number]
    labels = {tab.key: tab.label for tab in resp.context["tabs"]}
    assert labels["channel:email"] == "Email"
    assert labels["channel:api"] == "API"
    assert 'href="?view=channel%3Aemail"' in resp.content.decode()
    assert numbers(client.get("/desk/", {"view": "channel:api"})) == [by_api.number]


def test_a_channel_without_an_adapter_is_the_default_view(agent: Any) -> None:
    # given
    t = new_ticket()
    # when
    resp = logged_in(agent).get("/desk/", {"view": "channel:fax"})
    # then
    assert resp.status_code == 200, resp.content
    assert resp.context["view"] == "open"
    assert numbers(resp) == [t.number]


# --- sorts and their cursors ------------------------------------------------------------------------


@pytest.fixture
def many_tickets(db: Any) -> list[Ticket]:
    """Two and a half pages; sort keys repeat in groups so pages split inside equal keys."""
    inbox, customer = InboxFactory(), CustomerFactory()
    base = timezone.now()
    tickets = []
    for i in range(2 * PAGE_SIZE + 17):
        waiting = None if i % 5 == 0 else base - timedelta(hours=i // 6)
        tickets.append(
            new_ticket(
                inbox=inbox,
                customer=customer,
                last_activity_at=base - timedelta(minutes=i // 4),
                waiting_since=waiting,
                priority=Priority.values[i % 3],
            )
        )
    return tickets


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("activity", lambda t: (-t.last_activity_at.timestamp(), -t.pk)),
        (
            "waiting",
            lambda t: (t.waiting_since is None, t.waiting_since.timestamp() if t.waiting_since else 0, t.pk),
        ),
        ("priority", lambda t: (-t.priority, -t.last_activity_at.timestamp(), -t.pk)),
    ],
)
def test_each_sort_pages_every_ticket_once_in_order(
    agent: Any, many_tickets: list[Ticket], sort: str, key: Any
) -> None:
    # given
    expected = [t.number for t in sorted(Ticket.objects.all(), key=key)]
    # when
    seen, pages = all_pages(logged_in(agent), {"view": "all", "sort": sort})
    # then
    assert pages == 3
    assert seen == expected
    assert len(set(seen)) == len(many_tickets)


def test_older_link_keeps_the_sort_and_the_filters(agent: Any, many_tickets: list[Ticket]) -> None:
    # when
    resp = logged_in(agent).get("/desk/", {"view": "all", "sort": "priority", "status": "open"})
    # then
    cursor = resp.context["page"].next_cursor
    assert f'href="?view=all&amp;sort=priority&amp;status=open&amp;cursor={cursor}"' in resp.content.decode()


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("activity", "waiting"),
        ("waiting", "priority"),
        ("priority", "activity"),
        ("waiting", "deadline"),
        ("deadline", "waiting"),
    ],
)
def test_a_cursor_of_another_sort_is_refused_and_the_first_page_shown(
    agent: Any, many_tickets: list[Ticket], written: str, read: str
) -> None:
    # given
    foreign = encode_cursor(many_tickets[10], written)
    assert cursor_filter(foreign, read) is None
    # when
    resp = logged_in(agent).get("/desk/", {"view": "all", "sort": read, "cursor": foreign})
    # then
    assert resp.status_code == 200, resp.content
    assert resp.context["page"].cursor_refused
    assert len(numbers(resp)) == PAGE_SIZE
    assert "belongs to another sort" in resp.content.decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "A" * 100_000,
        "\x00",
        "w|\x00|1",
        base64.urlsafe_b64encode(b"w||").decode(),
        base64.urlsafe_b64encode(b"w|2026-01-01T00:00:00|1").decode(),  # naive
        base64.urlsafe_b64encode(b"p|9|2026-01-01T00:00:00+00:00|1").decode(),  # no such priority
        base64.urlsafe_b64encode(b"p|3|2026-01-01T00:00:00+00:00|" + b"9" * 30).decode(),
        base64.urlsafe_b64encode(b"p|3|2026-01-01T00:00:00+00:00|-1").decode(),
        base64.urlsafe_b64encode(b"p|3|99999-01-01T00:00:00+00:00|1").decode(),
        base64.urlsafe_b64encode("w|２０２６|1".encode()).decode(),
    ],
)
@pytest.mark.parametrize("sort", ["activity", "waiting", "priority", "deadline"])
def test_hostile_cursors_are_refused_not_a_500(agent: Any, cursor: str, sort: str) -> None:
    # given
    t = new_ticket()
    # when
    resp = logged_in(agent).get("/desk/", {"view": "all", "sort": sort, "cursor": cursor})
    # then
    assert resp.status_code == 200, resp.content
    assert resp.context["page"].cursor_refused
    assert numbers(resp) == [t.number]


def test_unknown_sort_is_a_clear_400(agent: Any) -> None:
    # when
    resp = logged_in(agent).get("/desk/", {"sort": "random\x00" + "x" * 5000})
    # then
    assert resp.status_code == 400, resp.content
    assert "Unknown sort" in resp.context["error"]


# --- filters in the query string, and the helper they share with search -------------------------


def test_filters_in_the_query_string_narrow_the_view(agent: Any) -> None:
    # given
    org = Organization.objects.create(name="Acme")
    tag = Tag.objects.create(name="refund")
    match = new_ticket(priority=Priority.HIGH, customer=CustomerFactory(organization=org))
    match.tags.add(tag)
    new_ticket(priority=Priority.HIGH)  # no tag, other organization
    low = new_ticket(priority=Priority.LOW, customer=CustomerFactory(organization=org))
    low.tags.add(tag)
    # when
    resp = logged_in(agent).get(
        "/desk/", {"view": "all", "tag": "Refund", "priority": "high", "organization": str(org.pk)}
    )
    # then
    assert resp.status_code == 200, resp.content
    assert numbers(resp) == [match.number]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "lost"}, "Unknown status"),
        ({"priority": "9"}, "Unknown priority"),
        ({"priority": "hihg"}, "Unknown priority"),
        ({"organization": "acme"}, "Organization must be a number"),
        ({"tag": "t" * 65}, "Tag is too long"),
        ({"channel": "pigeon"}, "Unknown channel"),
        ({"created_from": "yesterday"}, "Created from must be a date"),
    ],
)
def test_filter_values_that_name_nothing_are_a_clear_400(agent: Any, params: dict[str, str], message: str) -> None:
    # when
    resp = logged_in(agent).get("/desk/", params)
    # then
    assert resp.status_code == 400, resp.content
    assert message in resp.context["error"]
    assert message in resp.content.decode()


def test_priority_filter_takes_names_and_numbers() -> None:
    assert parse_ticket_filters(QueryDict("priority=Urgent")).priority == Priority.URGENT
    assert parse_ticket_filters(QueryDict("priority=1")).priority == Priority.LOW
    assert parse_ticket_filters(QueryDict("tag=%20VIP%20")).tag == "vip"
    assert parse_ticket_filters(QueryDict("organization=7")).organization == 7


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"colour": "red"}, "Unknown filter colour"),
        ({"status": ["open", "lost"]}, "Unknown status"),
        ({"team": {"id": 1}}, "Team must be text"),
        ({"assignee": True}, "Assignee must be text"),
        ({"customer": "1" * 200}, "Customer is too long"),
        ([], "Filters must be an object"),
    ],
)
def test_saved_filters_are_checked_by_the_same_helper(data: Any, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        filters_from_data(data)


def test_saved_filters_are_stored_cleaned() -> None:
    # when
    _, stored = filters_from_data({"status": ["open", "open", "new"], "tag": " VIP ", "team": "", "priority": 3})
    # then
    assert stored == {"status": ["open", "new"], "tag": "vip", "priority": "3"}


# --- saved views ------------------------------------------------------------------------------------


def test_agent_saves_a_personal_view_from_the_list_and_opens_it(agent: Any) -> None:
    # given
    urgent = new_ticket(priority=Priority.URGENT)
    new_ticket(priority=Priority.LOW)
    client = logged_in(agent)
    form = client.get("/desk/", {"view": "open", "priority": "urgent"}).content.decode()
    assert 'name="priority" value="urgent"' in form
    # when
    resp = client.post(
        "/desk/views/save/",
        {"name": "Burning", "scope": "me", "status": ["new", "open"], "priority": "urgent", "sort": "waiting"},
    )
    # then
    saved = SavedView.objects.get()
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == f"/desk/?saved={saved.pk}"
    assert (saved.owner, saved.team, saved.sort) == (agent, None, "waiting")
    assert saved.filters == {"status": ["new", "open"], "priority": "urgent"}
    page = client.get(resp["Location"])
    assert page.status_code == 200, page.content
    assert numbers(page) == [urgent.number]
    assert page.context["sort"] == "waiting"
    assert "Burning" in page.content.decode()


def test_another_agents_personal_view_is_invisible(agent: Any, billing_agent: Any) -> None:
    # given
    theirs = do_save_view(actor=billing_agent, name="Bea's", filters={})
    client = logged_in(agent)
    # when
    listed = client.get("/desk/")
    opened = client.get("/desk/", {"saved": theirs.pk})
    deleted = client.post(f"/desk/views/{theirs.pk}/delete/")
    # then
    assert "Bea&#x27;s" not in listed.content.decode()
    assert opened.status_code == 404
    assert deleted.status_code == 404
    assert SavedView.objects.filter(pk=theirs.pk).exists()


def test_team_view_is_seen_by_team_members_only(admin_agent: Any, agent: Any, billing_agent: Any) -> None:
    # given: agent is in Support, billing_agent in Billing
    support = Team.objects.get(slug="support")
    shared = do_save_view(actor=admin_agent, name="Support urgent", filters={"priority": "urgent"}, team=support)
    # when / then
    assert "Support urgent" in logged_in(agent).get("/desk/").content.decode()
    assert logged_in(agent).get("/desk/", {"saved": shared.pk}).status_code == 200
    assert "Support urgent" not in logged_in(billing_agent).get("/desk/").content.decode()
    assert logged_in(billing_agent).get("/desk/", {"saved": shared.pk}).status_code == 404


def test_agents_may_not_share_or_delete_team_views(admin_agent: Any, agent: Any) -> None:
    # given
    support = Team.objects.get(slug="support")
    shared = do_save_view(actor=admin_agent, name="Queue", filters={}, team=support)
    client = logged_in(agent)
    # when
    shared_post = client.post("/desk/views/save/", {"name": "Mine for all", "scope": str(support.pk)})
    delete_post = client.post(f"/desk/views/{shared.pk}/delete/")
    # then
    assert shared_post.status_code == 302
    assert "Only admins and supervisors share views" in " ".join(flashed(shared_post))
    assert not SavedView.objects.filter(name="Mine for all").exists()
    assert delete_post.status_code == 403
    assert SavedView.objects.filter(pk=shared.pk).exists()
    assert 'name="scope"' in client.get("/desk/").content.decode()
    assert f'<option value="{support.pk}">' not in client.get("/desk/").content.decode()


def test_admin_shares_and_deletes_a_team_view(admin_agent: Any) -> None:
    # given
    support = Team.objects.get_or_create(slug="support", defaults={"name": "Support"})[0]
    client = logged_in(admin_agent)
    # when
    client.post("/desk/views/save/", {"name": "Support queue", "scope": str(support.pk), "assignee": "none"})
    shared = SavedView.objects.get()
    deleted = client.post(f"/desk/views/{shared.pk}/delete/")
    # then
    assert (shared.owner, shared.team, shared.created_by) == (None, support, admin_agent)
    assert deleted.status_code == 302
    assert not SavedView.objects.exists()


def test_owner_deletes_their_view(agent: Any) -> None:
    # given
    mine = do_save_view(actor=agent, name="Mine", filters={"assignee": "me"})
    # when
    do_delete_view(mine, actor=agent)
    # then
    assert not SavedView.objects.exists()


@pytest.mark.parametrize(
    ("post", "message"),
    [
        ({"name": ""}, "A view needs a name."),
        ({"name": "   \n "}, "A view needs a name."),
        ({"name": "x" * 81}, "The name is too long"),
        ({"name": "x" * 1_000_000}, "The name is too long"),
        ({"name": "bad\u202ename"}, "control characters"),
        ({"name": "ok", "sort": "random"}, "Unknown sort"),
        ({"name": "ok", "status": "lost"}, "Unknown status"),
        ({"name": "ok", "scope": "99999999"}, "Choose yourself or a team"),
        ({"name": "ok", "scope": "\x00"}, "Choose yourself or a team"),
    ],
)
def test_hostile_saves_are_refused_with_a_message(agent: Any, post: dict[str, str], message: str) -> None:
    # when
    resp = logged_in(agent).post("/desk/views/save/", post)
    # then
    assert resp.status_code == 302
    assert message in " ".join(flashed(resp))
    assert not SavedView.objects.exists()


def test_nul_in_a_name_is_dropped(agent: Any) -> None:
    # when
    logged_in(agent).post("/desk/views/save/", {"name": "Ur\x00gent"})
    # then
    assert SavedView.objects.get().name == "Urgent"


@pytest.mark.parametrize("saved", ["abc", "-1", "9" * 40, "\x00", "99999"])
def test_garbage_saved_view_ids_are_404(agent: Any, saved: str) -> None:
    assert logged_in(agent).get("/desk/", {"saved": saved}).status_code == 404


def test_save_and_delete_refuse_get(agent: Any) -> None:
    # given
    mine = do_save_view(actor=agent, name="Mine", filters={})
    client = logged_in(agent)
    # when / then
    assert client.get("/desk/views/save/").status_code == 405
    assert client.get(f"/desk/views/{mine.pk}/delete/").status_code == 405


# --- counts -------------------------------------------------------------------------------------------


def test_counts_per_view_are_capped(agent: Any, settings: Any, monkeypatch: Any) -> None:
    # given: a cap of 3 and four open tickets, one pending
    monkeypatch.setattr("helpdesk.selectors.COUNT_CAP", 3)
    inbox = InboxFactory()
    for _ in range(4):
        new_ticket(inbox=inbox)
    new_ticket(inbox=inbox, status=TicketStatus.PENDING)
    # when
    tabs = {tab.key: tab.count for tab in view_tabs(agent)}
    # then
    assert tabs["open"] == "2+"
    assert tabs["all"] == "2+"
    assert tabs["pending"] == "1"
    assert tabs["mine"] == "0"
    assert tabs["channel:api"] == "2+"


def test_counts_are_cached_per_agent_for_a_short_time(agent: Any, admin_agent: Any) -> None:
    # given
    new_ticket()
    assert {t.key: t.count for t in view_tabs(agent)}["open"] == "1"
    # when
    new_ticket()
    # then: the cached count for this agent, a fresh one for another, fresh after the cache
    assert {t.key: t.count for t in view_tabs(agent)}["open"] == "1"
    assert {t.key: t.count for t in view_tabs(admin_agent)}["open"] == "2"
    forget_view_counts(agent)
    assert {t.key: t.count for t in view_tabs(agent)}["open"] == "2"


def test_counts_show_on_the_list(agent: Any) -> None:
    # given
    new_ticket()
    # when
    body = logged_in(agent).get("/desk/").content.decode()
    # then
    assert '<span class="view-count" aria-label="1 tickets">1</span>' in body
    assert COUNT_CAP == 1000


def test_agent_without_teams_counts_my_teams_as_zero(db: Any) -> None:
    # given
    loner = do_create_agent(email="loner@example.com", name="Lo Ner", password="pw-loner-123")
    new_ticket()
    # when
    tabs = {tab.key: tab.count for tab in view_tabs(loner)}
    # then
    assert tabs["my_teams"] == "0"
    assert tabs["open"] == "1"


def test_list_query_count_is_fixed(agent: Any, admin_agent: Any, django_assert_num_queries: Any) -> None:
    # given
    support = Team.objects.get(slug="support")
    client = logged_in(agent)
    for _ in range(3):
        new_ticket(inbox=InboxFactory(kind="email"), channel="email")
    do_save_view(actor=agent, name="One", filters={})
    # when / then
    with django_assert_num_queries(LIST_QUERIES_COLD):
        client.get("/desk/", {"view": "all"})
    with django_assert_num_queries(LIST_QUERIES_WARM):
        client.get("/desk/", {"view": "all"})
    # given: more tickets, inboxes of more kinds, more saved views of both kinds
    for i in range(30):
        new_ticket(assignee=agent if i % 2 else None, team=support if i % 3 else None)
    for i in range(5):
        do_save_view(actor=agent, name=f"Mine {i}", filters={"priority": "high"})
        do_save_view(actor=admin_agent, name=f"Team {i}", filters={}, team=support)
    forget_view_counts(agent)
    # when / then
    with django_assert_num_queries(LIST_QUERIES_COLD):
        resp = client.get("/desk/", {"view": "all", "sort": "priority"})
    assert len(numbers(resp)) == 33
    assert len(resp.context["saved_views"]) == 11
    with django_assert_num_queries(LIST_QUERIES_WARM):
        client.get("/desk/", {"view": "channel:email", "sort": "waiting"})


def test_saved_view_page_query_count_is_fixed(agent: Any, django_assert_num_queries: Any) -> None:
    # given
    mine = do_save_view(actor=agent, name="Mine", filters={"status": ["open"]})
    client = logged_in(agent)
    client.get("/desk/")
    # when / then: the saved view itself is one more query
    with django_assert_num_queries(LIST_QUERIES_WARM + 1):
        client.get("/desk/", {"saved": mine.pk})


@pytest.mark.postgres
def test_postgresql_sessions_run_without_jit() -> None:
    # The desk's statements are short; JIT once cost 88–150 ms on a 3 ms query (bench/README.md).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


# --- "Due soon" and the deadline sort ------------------------------------------------------------------


def test_due_soon_lists_unsolved_tickets_due_within_hours_or_overdue_earliest_first(agent: Any) -> None:
    # given
    now = timezone.now()
    billing = Team.objects.create(name="Billing", slug="billing")
    overdue = new_ticket(sla_due_at=now - timedelta(hours=30))
    in_1h = new_ticket(sla_due_at=now + timedelta(hours=1))
    pending = new_ticket(status=TicketStatus.PENDING, sla_due_at=now + timedelta(minutes=20))
    edge = new_ticket(sla_due_at=now + timedelta(hours=DUE_SOON_HOURS, minutes=-5))
    new_ticket(sla_due_at=now + timedelta(hours=DUE_SOON_HOURS, minutes=30))  # later than the window
    new_ticket()  # no SLA
    new_ticket(status=TicketStatus.SOLVED, sla_due_at=now + timedelta(minutes=10))
    new_ticket(team=billing, sla_due_at=now + timedelta(minutes=5))  # not the agent's to see
    # when
    resp = logged_in(agent).get("/desk/", {"view": "due_soon"})
    # then: in deadline order, which is this view's own
    assert resp.status_code == 200
    assert resp.context["sort"] == "deadline"
    assert numbers(resp) == [overdue.number, pending.number, in_1h.number, edge.number]
    tabs = {tab.key: tab for tab in resp.context["tabs"]}
    assert tabs["due_soon"].label == "Due soon"
    assert tabs["due_soon"].count == "4"
    body = resp.content.decode()
    assert '<a href="?view=due_soon" class="active" aria-current="page">Due soon' in body


def test_due_soon_window_is_relative_to_the_given_now(agent: Any) -> None:
    # given: a deadline 5 hours after the real now
    now = timezone.now()
    later = new_ticket(sla_due_at=now + timedelta(hours=5))
    # when / then: seen from two hours on it is due soon
    assert ticket_page(agent, "due_soon", now=now).tickets == []
    assert [t.pk for t in ticket_page(agent, "due_soon", now=now + timedelta(hours=2)).tickets] == [later.pk]


@pytest.fixture
def due_tickets(db: Any) -> list[Ticket]:
    """Two and a half pages of tickets due soon, deadlines repeating in groups of three."""
    inbox, customer = InboxFactory(), CustomerFactory()
    base = timezone.now() - timedelta(hours=1)
    return [
        new_ticket(inbox=inbox, customer=customer, sla_due_at=base + timedelta(minutes=i // 3))
        for i in range(2 * PAGE_SIZE + 17)
    ]


def test_due_soon_pages_every_ticket_once_by_deadline_then_id(agent: Any, due_tickets: list[Ticket]) -> None:
    # given
    expected = [t.number for t in sorted(due_tickets, key=lambda t: (t.sla_due_at, t.pk))]
    # when
    seen, pages = all_pages(logged_in(agent), {"view": "due_soon"})
    # then
    assert pages == 3
    assert seen == expected


def test_deadline_sort_in_another_view_puts_tickets_without_a_deadline_last(agent: Any) -> None:
    # given: deadlines on some, repeating; none on the rest; more than two pages
    inbox, customer = InboxFactory(), CustomerFactory()
    base = timezone.now()
    tickets = [
        new_ticket(inbox=inbox, customer=customer, sla_due_at=None if i % 3 == 0 else base + timedelta(hours=i // 7))
        for i in range(2 * PAGE_SIZE + 5)
    ]
    expected = [t.number for t in sorted(tickets, key=lambda t: (t.sla_due_at is None, t.sla_due_at or base, t.pk))]
    # when
    seen, pages = all_pages(logged_in(agent), {"view": "open", "sort": "deadline"})
    # then
    assert pages == 3
    assert seen == expected


def test_older_link_of_due_soon_keeps_its_view(agent: Any, due_tickets: list[Ticket]) -> None:
    # when
    resp = logged_in(agent).get("/desk/", {"view": "due_soon"})
    # then: the view's own sort is not repeated in the link
    cursor = resp.context["page"].next_cursor
    assert f'href="?view=due_soon&amp;cursor={cursor}"' in resp.content.decode()


def test_due_soon_query_count_is_that_of_any_view(
    agent: Any, due_tickets: list[Ticket], django_assert_num_queries: Any
) -> None:
    # given
    client = logged_in(agent)
    # when / then
    with django_assert_num_queries(LIST_QUERIES_COLD):
        resp = client.get("/desk/", {"view": "due_soon"})
    assert len(numbers(resp)) == PAGE_SIZE
    with django_assert_num_queries(LIST_QUERIES_WARM):
        client.get("/desk/", {"view": "due_soon", "cursor": resp.context["page"].next_cursor})
    with django_assert_num_queries(LIST_QUERIES_WARM):
        client.get("/desk/", {"view": "all", "sort": "deadline"})


@pytest.mark.postgres
def test_due_soon_reads_the_deadline_index(agent: Any, due_tickets: list[Ticket]) -> None:
    from django.db import connection

    # given
    rows = view_queryset(agent, "due_soon").order_by(*sort_order("deadline"))[: PAGE_SIZE + 1]
    after = view_queryset(agent, "due_soon").filter(
        cursor_filter(encode_cursor(due_tickets[60], "deadline"), "deadline")
    )
    for query in (rows, after.order_by(*sort_order("deadline"))[: PAGE_SIZE + 1]):
        sql, params = query.query.sql_with_params()
        # when
        with connection.cursor() as cursor:
            # A test table is tiny: the planner would pick any scan and sort. Steered away from
            # scans that cannot give the order (and from sorting), it must show the index serves it.
            for knob in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                cursor.execute(f"SET LOCAL {knob} = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        # then
        assert "ticket_sla_due_idx" in plan, plan
        assert "Sort" not in plan.split("ticket_sla_due_idx")[0], plan
