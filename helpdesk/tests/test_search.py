"""Desk search: what it finds, for whom, with which filters, and what it survives."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from channels_inbox.adapters.base import IdentityRef, InboundMessage, InboundSender
from customers.actions.resolve import do_resolve_customer
from customers.models import IdentityKind
from helpdesk.actions.ingest import do_ingest_message
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.actions.tickets import do_assign_ticket, do_change_status
from helpdesk.models import Message, Ticket, TicketStatus
from helpdesk.search import SEARCH_PAGE_SIZE
from helpdesk.search_text import MAX_QUERY_CHARS, highlight, prepare_text, query_terms
from helpdesk.tests.conftest import ingest, logged_in, new_ticket
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

URL = "/desk/search/"
_ids = count(1)

# A search page: session, user, role, teams, the team and inbox lists of the form, one page
# of tickets (customer, assignee, team, inbox joined), their best messages, the customers
# with their visible ticket counts, and those customers' identities. PostgreSQL adds one: the
# planner's estimate of the matching messages, which chooses the plan (helpdesk/search.py).
SEARCH_QUERIES = 10 + (1 if connection.vendor == "postgresql" else 0)


def mail_in(inbox: Any, subject: str, text: str, *, name: str = "Jana Nováková", email: str = "") -> Ticket:
    """One inbound message with a subject from a customer with an email identity, through the real actions."""
    email = email or f"person{next(_ids)}@example.cz"
    sender = InboundSender(identities=[IdentityRef(IdentityKind.EMAIL, email)], name=name)
    inbound = InboundMessage(
        external_id=f"search-{next(_ids)}", sender=sender, text=text, subject=subject, thread_by_customer=False
    )
    customer = do_resolve_customer(sender, seen_at=timezone.now())
    ticket = do_ingest_message(inbox=inbox, inbound=inbound, customer=customer).ticket
    assert ticket is not None
    return ticket


def found(client: Client, q: str = "", **params: Any) -> list[int]:
    resp = client.get(URL, {"q": q, **params})
    assert resp.status_code == 200, resp.content
    return [hit.ticket.number for hit in resp.context["results"].tickets]


def customers_found(client: Client, q: str) -> list[str]:
    resp = client.get(URL, {"q": q})
    assert resp.status_code == 200, resp.content
    return [hit.customer.name for hit in resp.context["results"].customers]


# --- the text helpers ------------------------------------------------------------------------


def test_cjk_runs_become_bigrams_on_both_sides() -> None:
    # given / when
    document = prepare_text("我的订单还没有到，iPhone订单 Ok")
    query = prepare_text("订单")
    # then
    assert document.split() == [
        "我的",
        "的订",
        "订单",
        "单还",
        "还没",
        "没有",
        "有到",
        ",iphone",
        "订单",
        "ok",
    ]  # NFKC: "，" is ","
    assert query.split() == ["订单"]


def test_prepare_text_keeps_web_search_syntax_before_a_cjk_run() -> None:
    # websearch_to_tsquery reads: not 订单, and the phrase 退款
    assert " ".join(prepare_text('-订单 "退款"').split()) == '-订单 "退款 "'


def test_query_terms_skip_negations_and_or() -> None:
    assert query_terms('Refund OR -spam "订单号" x!') == ["refund", "订单号", "订单", "单号", "x"]


def test_highlight_escapes_the_text_then_marks_the_words() -> None:
    # when
    snippet = highlight("<script>alert(1)</script> please refund my order", ["refund"])
    # then
    assert "<script>" not in snippet
    assert "&lt;script&gt;" in snippet
    assert "<mark>refund</mark>" in snippet


def test_highlight_shows_the_window_around_a_late_match() -> None:
    # when
    snippet = highlight("filler " * 200 + "the parcel arrived broken", ["broken"])
    # then
    assert snippet.startswith("…")
    assert "<mark>broken</mark>" in snippet


# --- what it finds ---------------------------------------------------------------------------


def test_finds_by_subject_word(agent: Any, api_inbox: Any) -> None:
    # given
    wanted = mail_in(api_inbox, "Invoice missing for March", "Hello there")
    mail_in(api_inbox, "Something else", "Hello again")
    # when
    numbers = found(logged_in(agent), "invoice")
    # then
    assert numbers == [wanted.number]


def test_finds_by_message_word_and_marks_it(agent: Any, api_inbox: Any) -> None:
    # given
    wanted = mail_in(api_inbox, "Question", "The parcel arrived completely squashed, <b>sadly</b>.")
    mail_in(api_inbox, "Question", "All good here")
    # when
    resp = logged_in(agent).get(URL, {"q": "squashed"})
    # then
    assert resp.status_code == 200, resp.content
    assert [h.ticket.number for h in resp.context["results"].tickets] == [wanted.number]
    body = resp.content.decode()
    assert "<mark>squashed</mark>" in body
    assert "&lt;b&gt;sadly&lt;/b&gt;" in body


def test_finds_by_customer_name_and_email(agent: Any, api_inbox: Any) -> None:
    # given
    wanted = mail_in(api_inbox, "Hi", "Hello", name="Tomáš Svoboda", email="tomas.svoboda@acme.example")
    mail_in(api_inbox, "Hi", "Hello", name="Ivan Petrov")
    client = logged_in(agent)
    # when / then
    assert found(client, "Svoboda") == [wanted.number]
    assert found(client, "tomas.svoboda@acme.example") == [wanted.number]
    assert found(client, "Tomas.Svoboda@ACME.example") == [wanted.number]
    assert customers_found(client, "Svoboda") == ["Tomáš Svoboda"]


def test_customer_section_shows_identities_and_ticket_count(agent: Any, api_inbox: Any) -> None:
    # given
    mail_in(api_inbox, "First", "one", name="Olga Smirnova", email="olga@example.ru")
    mail_in(api_inbox, "Second", "two", name="Olga Smirnova", email="olga@example.ru")
    # when
    resp = logged_in(agent).get(URL, {"q": "Smirnova"})
    # then
    assert resp.status_code == 200, resp.content
    [hit] = resp.context["results"].customers
    assert hit.ticket_count == 2
    assert [i.value for i in hit.identities] == ["olga@example.ru"]
    assert "olga@example.ru" in resp.content.decode()


def test_finds_czech_words_with_diacritics(agent: Any, api_inbox: Any) -> None:
    # given
    wanted = mail_in(api_inbox, "Reklamace", "Dobrý den, hrnek v zásilce byl rozbitý.")
    mail_in(api_inbox, "Reklamace", "Dobrý den, vše v pořádku.")
    # when / then
    assert found(logged_in(agent), "rozbitý zásilce") == [wanted.number]


def test_finds_russian_words(agent: Any, api_inbox: Any) -> None:
    # given
    wanted = mail_in(api_inbox, "Вопрос", "Здравствуйте, мой заказ не пришёл.")
    mail_in(api_inbox, "Вопрос", "Спасибо за помощь.")
    # when / then
    assert found(logged_in(agent), "заказ") == [wanted.number]


def test_finds_a_two_character_chinese_word_inside_a_sentence(agent: Any, api_inbox: Any) -> None:
    # given
    wanted = mail_in(api_inbox, "问题", "你好，我的订单还没有到，请帮我查一下。")
    mail_in(api_inbox, "问题", "谢谢你的帮助。")
    # when
    resp = logged_in(agent).get(URL, {"q": "订单"})
    # then
    assert resp.status_code == 200, resp.content
    assert [h.ticket.number for h in resp.context["results"].tickets] == [wanted.number]
    assert "<mark>订单</mark>" in resp.content.decode()


def test_every_word_must_match(agent: Any, api_inbox: Any) -> None:
    # given
    both = mail_in(api_inbox, "Refund", "The refund for the broken lamp")
    mail_in(api_inbox, "Refund", "The refund for the jacket")
    # when / then
    assert found(logged_in(agent), "refund lamp") == [both.number]


def test_newly_ingested_messages_are_findable_at_once(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "First message", thread_key="conv-1")
    client = logged_in(agent)
    assert found(client, "pineapple") == []
    # when
    again = ingest(api_inbox, "A second message about a pineapple", thread_key="conv-1")
    # then
    assert again.pk == ticket.pk
    assert found(client, "pineapple") == [ticket.number]


def test_replies_and_notes_are_findable(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "Where is my order?")
    # when
    do_reply(ticket, actor=agent, text="It ships tomorrow by courier")
    do_add_note(ticket, actor=agent, text="Customer prefers the warehouse pickup")
    # then
    client = logged_in(agent)
    assert found(client, "courier") == [ticket.number]
    resp = client.get(URL, {"q": "warehouse"})
    assert [h.ticket.number for h in resp.context["results"].tickets] == [ticket.number]
    assert resp.context["results"].tickets[0].snippet_is_note


def test_factory_written_rows_are_findable(agent: Any) -> None:
    # given: rows written through save() (not an action) get their search documents too
    ticket = new_ticket(subject="Marmalade question")
    MessageFactory(ticket=ticket, text="about the quince jelly")
    client = logged_in(agent)
    # when / then
    assert found(client, "marmalade") == [ticket.number]
    assert found(client, "quince") == [ticket.number]


# --- filters and visibility --------------------------------------------------------------------


def test_filters_combine_with_the_text(agent: Any, admin_agent: Any, api_inbox: Any, support_team: Any) -> None:
    # given
    open_mine = mail_in(api_inbox, "Broken kettle", "kettle")
    do_assign_ticket(open_mine, assignee=agent, actor=admin_agent)
    do_change_status(open_mine, status=TicketStatus.OPEN, actor=admin_agent)
    solved = mail_in(api_inbox, "Broken kettle", "kettle")
    do_change_status(solved, status=TicketStatus.SOLVED, actor=admin_agent)
    unassigned = mail_in(api_inbox, "Broken kettle", "kettle")
    other = mail_in(api_inbox, "Broken toaster", "toaster")
    do_assign_ticket(other, assignee=agent, actor=admin_agent)
    client = logged_in(agent)
    # when / then
    assert set(found(client, "kettle")) == {open_mine.number, solved.number, unassigned.number}
    assert found(client, "kettle", status="solved") == [solved.number]
    assert found(client, "kettle", assignee="me") == [open_mine.number]
    assert found(client, "kettle", assignee=str(agent.pk)) == [open_mine.number]
    assert set(found(client, "kettle", assignee="none")) == {solved.number, unassigned.number}
    assert found(client, "kettle", status="open", assignee="me", channel="api", inbox=str(api_inbox.pk)) == [
        open_mine.number
    ]
    assert found(client, "kettle", channel="email") == []
    assert found(client, "kettle", customer=str(solved.customer_id)) == [solved.number]


def test_date_filters(agent: Any, api_inbox: Any) -> None:
    # given
    old = mail_in(api_inbox, "Lamp", "lamp")
    Ticket.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    recent = mail_in(api_inbox, "Lamp", "lamp")
    client = logged_in(agent)
    day = (timezone.localdate() - timedelta(days=3)).isoformat()
    # when / then
    assert found(client, "lamp", created_from=day) == [recent.number]
    assert found(client, "lamp", created_to=day) == [old.number]
    assert set(found(client, "lamp", updated_from=timezone.localdate().isoformat())) == {old.number, recent.number}


def test_team_filter_and_filters_without_text(agent: Any, api_inbox: Any, support_team: Any) -> None:
    # given
    in_team = new_ticket(subject="Team thing", team=support_team)
    new_ticket(subject="Teamless thing")
    client = logged_in(agent)
    # when / then
    assert found(client, "thing", team=str(support_team.pk)) == [in_team.number]
    assert found(client, "", team=str(support_team.pk)) == [in_team.number]


def test_another_teams_ticket_never_appears(
    agent: Any, light_agent: Any, admin_agent: Any, billing_team: Any, api_inbox: Any
) -> None:
    # given
    hidden = new_ticket(subject="Secret merger plans", team=billing_team)
    MessageFactory(ticket=hidden, text="the zanzibar contract")
    visible = ingest(api_inbox, "Public zanzibar question")
    # when / then
    for user in (agent, light_agent):
        client = logged_in(user)
        assert found(client, "zanzibar") == [visible.number]
        assert found(client, "merger") == []
        assert found(client, "merger", team=str(billing_team.pk)) == []
        assert customers_found(client, hidden.customer.name) == []
    assert set(found(logged_in(admin_agent), "zanzibar")) == {visible.number, hidden.number}


def test_customer_with_only_hidden_tickets_is_not_listed(agent: Any, billing_team: Any, api_inbox: Any) -> None:
    # given
    ticket = mail_in(api_inbox, "Hi", "hello", name="Quentin Hidden")
    Ticket.objects.filter(pk=ticket.pk).update(team=billing_team)
    # when / then
    assert customers_found(logged_in(agent), "Quentin") == []


# --- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "q",
    [
        "a & b | !c",
        "(((",
        "foo:*",
        "'",
        "\\",
        "'; DROP TABLE helpdesk_ticket; --",
        "1' OR '1'='1",
        '"unterminated',
        "-",
        "or",
        "& | ! ( ) : * ' \\ < > <-> <2>",
        "%_%",
        "a\x00b",
        "\x00",
        "😀 🎉",
        "订单 & | !",
        "x" * MAX_QUERY_CHARS,
    ],
)
def test_hostile_queries_never_fail(agent: Any, api_inbox: Any, q: str) -> None:
    # given
    ingest(api_inbox, "My order 100% arrived_late")
    # when
    resp = logged_in(agent).get(URL, {"q": q})
    # then
    assert resp.status_code == 200, resp.content
    assert Ticket.objects.count() == 1


def test_nul_bytes_are_dropped_from_the_query(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "A question about the teapot")
    # when / then
    assert found(logged_in(agent), "tea\x00pot") == [ticket.number]


def test_too_long_query_is_a_clear_error(agent: Any) -> None:
    # when
    resp = logged_in(agent).get(URL, {"q": "x" * (MAX_QUERY_CHARS + 1)})
    # then
    assert resp.status_code == 400, resp.content
    assert f"at most {MAX_QUERY_CHARS}" in resp.content.decode()


def test_empty_query_shows_the_form(agent: Any, api_inbox: Any) -> None:
    # given
    ingest(api_inbox)
    # when
    resp = logged_in(agent).get(URL)
    # then
    assert resp.status_code == 200, resp.content
    assert not resp.context["results"].searched
    assert 'id="search-q"' in resp.content.decode()
    assert "No tickets found" not in resp.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "exploded"}, "Unknown status"),
        ({"channel": "pigeon"}, "Unknown channel"),
        ({"inbox": "abc"}, "Inbox must be a number"),
        ({"team": "1; DROP"}, "Team must be a number"),
        ({"team": "9" * 40}, "Team must be a number"),
        ({"assignee": "someone"}, "Assignee must be a number"),
        ({"customer": "-1"}, "Customer must be a number"),
        ({"created_from": "yesterday"}, "must be a date"),
        ({"created_to": "2025-02-30"}, "must be a date"),
        ({"updated_to": "9999-12-31"}, "out of range"),
        ({"sort": "random"}, "Unknown sort"),
        ({"inbox": "٣"}, "Inbox must be a number"),
    ],
)
def test_unknown_filter_values_are_clear_errors(agent: Any, params: dict[str, str], message: str) -> None:
    # when
    resp = logged_in(agent).get(URL, {"q": "order", **params})
    # then
    assert resp.status_code == 400, resp.content
    assert message in resp.content.decode()


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "cnwxfDE=", "x" * 5000, "\x00"])
def test_malformed_cursor_is_ignored(agent: Any, api_inbox: Any, cursor: str) -> None:
    # given
    ticket = ingest(api_inbox, "About the teapot")
    # when / then
    assert found(logged_in(agent), "teapot", cursor=cursor) == [ticket.number]
    assert found(logged_in(agent), "teapot", cursor=cursor, sort="relevance") == [ticket.number]


def test_anonymous_is_sent_to_the_login_page(client: Client) -> None:
    resp = client.get(URL, {"q": "x"})
    assert resp.status_code == 302
    assert "/desk/login/" in resp["Location"]


def test_top_bar_has_the_search_box(agent: Any) -> None:
    # when
    resp = logged_in(agent).get("/desk/")
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert re.search(r'<label for="desk-search"[^>]*>[^<]+</label>', body)
    assert re.search(r'<input type="search" id="desk-search" name="q"', body)
    assert "accesskey" not in body


# --- pages and their cost ----------------------------------------------------------------------


def _many(api_inbox: Any, n: int, word: str) -> list[Ticket]:
    return [mail_in(api_inbox, f"Order {i}", f"the {word} number {i}", name=f"{word} Person") for i in range(n)]


def test_cursor_pages_return_every_ticket_once_in_order(agent: Any, api_inbox: Any) -> None:
    # given
    tickets = _many(api_inbox, SEARCH_PAGE_SIZE + 7, "walrus")
    client = logged_in(agent)
    # when
    seen: list[int] = []
    cursor = ""
    for _ in range(5):
        resp = client.get(URL, {"q": "walrus", "cursor": cursor})
        assert resp.status_code == 200, resp.content
        seen += [hit.ticket.number for hit in resp.context["results"].tickets]
        cursor = resp.context["results"].next_cursor or ""
        if not cursor:
            break
    # then
    expected = list(Ticket.objects.filter(pk__in=[t.pk for t in tickets]).order_by("-last_activity_at", "-id"))
    assert seen == [t.number for t in expected]
    assert "More results" in client.get(URL, {"q": "walrus"}).content.decode()


def test_query_count_does_not_grow_with_results(agent: Any, api_inbox: Any, django_assert_num_queries: Any) -> None:
    # given
    _many(api_inbox, 2, "narwhal")
    client = logged_in(agent)
    # when / then
    with django_assert_num_queries(SEARCH_QUERIES):
        resp = client.get(URL, {"q": "narwhal"})
    assert len(resp.context["results"].tickets) == 2
    _many(api_inbox, SEARCH_PAGE_SIZE + 3, "narwhal")
    with django_assert_num_queries(SEARCH_QUERIES):
        resp = client.get(URL, {"q": "narwhal", "status": "new"})
    assert len(resp.context["results"].tickets) == SEARCH_PAGE_SIZE
    assert len(resp.context["results"].customers) == 10


# --- PostgreSQL only ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_write_paths_fill_the_stored_columns(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = mail_in(api_inbox, "Kettle 订单", "The lid of the kettle")
    chat = ingest(api_inbox, "Another question")
    do_reply(chat, actor=agent, text="We send a new lid")
    # then
    assert not Message.objects.filter(search_vector__isnull=True).exists()
    assert not Ticket.objects.filter(search_vector__isnull=True).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_vector::text FROM helpdesk_ticket WHERE id = %s", [ticket.pk])
        assert cursor.fetchone()[0] == "'kettle':1 '订单':2"


@pytest.mark.postgres
def test_relevance_sort_ranks_and_pages(agent: Any, api_inbox: Any) -> None:
    # given
    best = mail_in(api_inbox, "Gazpacho gazpacho", "gazpacho gazpacho gazpacho soup")
    for i in range(SEARCH_PAGE_SIZE + 3):
        mail_in(api_inbox, f"Lunch {i}", f"a long note about lunch {i} " * 5 + "gazpacho")
    client = logged_in(agent)
    # when
    seen: list[int] = []
    cursor = ""
    for _ in range(5):
        resp = client.get(URL, {"q": "gazpacho", "sort": "relevance", "cursor": cursor})
        assert resp.status_code == 200, resp.content
        seen += [hit.ticket.number for hit in resp.context["results"].tickets]
        cursor = resp.context["results"].next_cursor or ""
        if not cursor:
            break
    # then
    assert seen[0] == best.number
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == SEARCH_PAGE_SIZE + 4


@pytest.mark.postgres
def test_web_search_syntax_works(agent: Any, api_inbox: Any) -> None:
    # given
    lamp = mail_in(api_inbox, "Lamp", "broken lamp shade")
    vase = mail_in(api_inbox, "Vase", "broken vase")
    client = logged_in(agent)
    # when / then
    assert found(client, "broken -lamp") == [vase.number]
    assert found(client, '"lamp shade"') == [lamp.number]
    assert set(found(client, "lamp or vase")) == {lamp.number, vase.number}


@pytest.mark.postgres
def test_a_two_word_search_uses_the_gin_index(agent: Any, api_inbox: Any) -> None:
    # given
    from django.contrib.postgres.search import SearchQuery

    from helpdesk.permissions import ticket_policy
    from helpdesk.search import _matching_postgres
    from helpdesk.search_text import prepare_text

    ingest(api_inbox, "parcel arrived broken")
    tsquery = SearchQuery(prepare_text("parcel broken"), search_type="websearch", config="simple")
    tickets = _matching_postgres(ticket_policy.visible(agent), "parcel broken", tsquery)
    sql, params = tickets.order_by("-last_activity_at", "-id")[:26].query.sql_with_params()
    # when
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # then
    assert "message_search_idx" in plan, plan
    assert "ticket_search_idx" in plan, plan
    assert "customer_name_search_idx" in plan, plan


# --- PostgreSQL: the two plans of a page give the same answer --------------------------------


def _matching_world(api_inbox: Any) -> tuple[list[Ticket], list[Ticket]]:
    """Tickets matching "sorbet" (by subject, by a message, by the customer's name) and others,
    interleaved in last activity, with a few sharing one last-activity time."""
    matching, other = [], []
    base = timezone.now() - timedelta(days=1)
    for i in range(14):
        if i % 3 == 0:
            ticket = mail_in(api_inbox, f"Sorbet question {i}", "hello")
        elif i % 3 == 1:
            ticket = mail_in(api_inbox, f"Question {i}", f"the lemon sorbet melted {i}")
        else:
            ticket = mail_in(api_inbox, f"Question {i}", "hello", name=f"Sorbet Family {i}")
        matching.append(ticket)
        other.append(mail_in(api_inbox, f"Unrelated {i}", "nothing to see"))
        for n, t in enumerate((matching[-1], other[-1])):
            when = base + timedelta(minutes=(i // 2) * 10 + n)  # pairs of matches share a time
            Ticket.objects.filter(pk=t.pk).update(last_activity_at=when)
    return matching, other


def _all_pages(user: Any, q: str, *, sort: str = "recent", size: int = 4) -> list[int]:
    from helpdesk.search import search
    from helpdesk.selectors import TicketFilters

    seen: list[int] = []
    cursor = None
    for _ in range(20):
        results = search(user, q, TicketFilters(), sort=sort, cursor=cursor, size=size)
        seen += [hit.ticket.pk for hit in results.tickets]
        cursor = results.next_cursor
        if not cursor:
            break
    return seen


@pytest.mark.postgres
@pytest.mark.parametrize("walk", [0, 1, 3, 6, 1000])
def test_recent_pages_are_the_same_whichever_plan_answers(
    agent: Any, api_inbox: Any, monkeypatch: Any, walk: int
) -> None:
    # given: a walk through `walk` recent tickets, which finds a page (1000), part of one, or
    # none; or (0) no walk, the GIN indexes
    import helpdesk.search

    matching, _ = _matching_world(api_inbox)
    monkeypatch.setattr(helpdesk.search, "_walk_size", lambda document, limit, most: walk)
    # when
    seen = _all_pages(agent, "sorbet")
    # then: every match once, in (last activity, id) order, and nothing else
    expected = Ticket.objects.filter(pk__in=[t.pk for t in matching]).order_by("-last_activity_at", "-id")
    assert seen == [t.pk for t in expected]


@pytest.mark.postgres
def test_the_walk_respects_filters_and_visibility(
    agent: Any, api_inbox: Any, billing_team: Any, monkeypatch: Any
) -> None:
    # given
    import helpdesk.search
    from helpdesk.search import search
    from helpdesk.selectors import TicketFilters

    matching, _ = _matching_world(api_inbox)
    hidden = matching[:3]
    Ticket.objects.filter(pk__in=[t.pk for t in hidden]).update(team=billing_team)
    Ticket.objects.filter(pk=matching[3].pk).update(status=TicketStatus.SOLVED)
    monkeypatch.setattr(helpdesk.search, "_walk_size", lambda document, limit, most: 1000)
    # when
    everything = search(agent, "sorbet", TicketFilters(), size=50)
    solved = search(agent, "sorbet", TicketFilters(status=["solved"]), size=50)
    # then
    assert {h.ticket.pk for h in everything.tickets} == {t.pk for t in matching[3:]}
    assert [h.ticket.pk for h in solved.tickets] == [matching[3].pk]


@pytest.mark.postgres
def test_rank_order_ranks_the_most_recent_matches(agent: Any, api_inbox: Any, monkeypatch: Any) -> None:
    # given: the best-ranked ticket is the oldest match
    import helpdesk.search

    best = mail_in(api_inbox, "Sorbet sorbet", "sorbet sorbet sorbet sorbet")
    Ticket.objects.filter(pk=best.pk).update(last_activity_at=timezone.now() - timedelta(days=30))
    matching, _ = _matching_world(api_inbox)
    # when: every match is a candidate
    everything = _all_pages(agent, "sorbet", sort="relevance")
    # then
    assert everything[0] == best.pk
    assert sorted(everything) == sorted({best.pk, *(t.pk for t in matching)})
    # when: only the 5 most recent matches are
    monkeypatch.setattr(helpdesk.search, "RANK_CANDIDATES", 5)
    for walk in (0, 2, 1000):
        monkeypatch.setattr(helpdesk.search, "_walk_size", lambda document, limit, most, walk=walk: walk)
        bounded = _all_pages(agent, "sorbet", sort="relevance", size=2)
        # then: those five, each once, best first (ties by id, newest first)
        recent = list(Ticket.objects.filter(pk__in=[t.pk for t in matching]).order_by("-last_activity_at", "-id")[:5])
        assert sorted(bounded) == sorted(t.pk for t in recent)
        assert best.pk not in bounded


@pytest.mark.postgres
def test_walk_size_follows_the_estimate(monkeypatch: Any) -> None:
    # given
    import helpdesk.search
    from helpdesk.search import WALK_COST_RATIO, WALK_FROM_MESSAGES, WALK_MARGIN, _walk_size

    def estimate(messages: float, tickets: float = 1_000_000) -> None:
        monkeypatch.setattr(helpdesk.search, "_estimated_matches", lambda document: (messages, tickets))

    # when / then: rare words go to the GIN indexes
    estimate(WALK_FROM_MESSAGES - 1)
    assert _walk_size("x", 26, 10_000) == 0
    # common words walk WALK_MARGIN times the tickets expected to hold a page
    estimate(100_000)
    assert _walk_size("x", 26, 10_000) == int(WALK_MARGIN * 26 / 0.1)
    # fewer matches than that walk would cost (in WALK_COST_RATIO): the GIN indexes
    estimate(3_000)
    assert 26 / 0.003 * WALK_COST_RATIO > 3_000
    assert _walk_size("x", 26, 10_000) == 0
    # a walk longer than allowed is not taken
    estimate(5_000)
    assert _walk_size("x", 26, 20_000) == int(WALK_MARGIN * 26 / 0.005)
    assert _walk_size("x", 26, 1_000) == 0
    # more matches than tickets: at least the page itself
    estimate(5_000_000)
    assert _walk_size("x", 26, 10_000) == 52


@pytest.mark.postgres
def test_estimate_reads_the_plan(agent: Any, api_inbox: Any) -> None:
    # given
    from helpdesk.search import _estimated_matches

    ingest(api_inbox, "a parcel question")
    # when
    messages, tickets = _estimated_matches(prepare_text("parcel & 'x' | !"))
    # then
    assert messages >= 0
    assert tickets >= 1
