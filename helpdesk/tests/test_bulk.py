"""Bulk actions from the ticket lists: helpdesk/actions/bulk.py and the toolbar's post (views/bulk.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from helpdesk.actions.bulk import MAX_BULK_TICKETS, BulkChange, BulkRefused, do_bulk_edit, do_bulk_merge
from helpdesk.actions.tickets import do_change_status
from helpdesk.models import Tag, Ticket, TicketEvent, TicketEventType, TicketStatus
from helpdesk.tests.conftest import logged_in, new_ticket
from helpdesk.tests.test_desk import LIST_QUERIES

# The embedded desk of the keyboard tests, shared (module-scoped; the browser is the root conftest's).
from tests.test_desk_keyboard import browser_test, desk, row_numbers, selected_numbers, sign_in

__all__ = ["desk"]

# (No module-wide django_db mark: the browser test runs against its own server; every other test
# asks for the database through its agent fixtures.)
BULK = "/desk/bulk/"
# A bulk post before its first ticket: session, user, role, teams, the selected tickets (one query).
BULK_BASE_QUERIES = 5


def flashes(resp: Any) -> list[str]:
    """The messages this response added (the redirects are not followed, so earlier ones stay queued)."""
    return [str(m) for m in get_messages(resp.wsgi_request)][-1:]


def post(client: Any, tickets: list[Ticket] | list[str], **fields: Any) -> Any:
    numbers = [str(t.number) if isinstance(t, Ticket) else t for t in tickets]
    return client.post(BULK, {"ticket": numbers, "next": "/desk/?view=all", **fields})


# --- the actions ------------------------------------------------------------------------------------


def test_status_change_goes_through_the_single_edit_action_per_ticket(agent: Any) -> None:
    # given
    tickets = [new_ticket(status=TicketStatus.OPEN) for _ in range(3)]
    already = new_ticket(status=TicketStatus.PENDING)
    # when
    result = do_bulk_edit([t.number for t in [*tickets, already]], change=BulkChange("status", "pending"), actor=agent)
    # then
    assert sorted(result.changed) == sorted(t.number for t in tickets)
    assert result.unchanged == [already.number]
    for t in tickets:
        t.refresh_from_db()
        assert t.status == TicketStatus.PENDING
        event = TicketEvent.objects.get(ticket=t, type=TicketEventType.STATUS_CHANGED)
        assert event.actor == agent
        assert event.seq == t.last_event_seq
    assert not TicketEvent.objects.filter(ticket=already).exists()
    assert result.summary("Status changed:") == "Status changed: 3 tickets. 1 ticket already so."


def test_tickets_the_agent_may_not_edit_are_skipped_and_counted(
    agent: Any, billing_team: Any, light_agent: Any
) -> None:
    # given: one ticket of the agent's team, one of a team the agent is not in
    mine = new_ticket()
    hidden = new_ticket(team=billing_team)
    # when
    result = do_bulk_edit([mine.number, hidden.number, 99_999_999], change=BulkChange("assign", agent), actor=agent)
    # then: the invisible one and the unknown number are counted as not found, not skipped silently
    assert result.changed == [mine.number]
    assert result.not_found == [hidden.number, 99_999_999]
    assert "2 tickets not found or not visible to you." in result.summary()
    # and a light agent sees them but may edit none
    light = do_bulk_edit([mine.number], change=BulkChange("status", "solved"), actor=light_agent)
    assert light.changed == []
    assert light.not_allowed == [mine.number]
    assert f"Skipped 1 ticket you may not edit (#{mine.number})." in light.summary()
    mine.refresh_from_db()
    assert mine.status == TicketStatus.OPEN


def test_a_failing_ticket_is_reported_and_the_others_still_change(agent: Any, admin_agent: Any) -> None:
    # given
    closed = new_ticket(status=TicketStatus.OPEN)
    do_change_status(closed, status=TicketStatus.CLOSED, actor=admin_agent)
    open_ = new_ticket(status=TicketStatus.OPEN)
    # when
    result = do_bulk_edit([closed.number, open_.number], change=BulkChange("status", "pending"), actor=agent)
    # then
    assert result.changed == [open_.number]
    assert result.failed
    assert result.failed[0][0] == closed.number
    assert "closed ticket stays closed" in result.summary()


def test_tags_are_normalized_added_and_removed(agent: Any) -> None:
    # given
    tickets = [new_ticket(), new_ticket()]
    # when
    added = do_bulk_edit([t.number for t in tickets], change=BulkChange("add_tags", [" VIP ", "vip"]), actor=agent)
    removed = do_bulk_edit([tickets[0].number], change=BulkChange("remove_tags", ["vip"]), actor=agent)
    # then
    assert len(added.changed) == 2
    assert removed.changed == [tickets[0].number]
    assert list(tickets[0].tags.values_list("name", flat=True)) == []
    assert list(tickets[1].tags.values_list("name", flat=True)) == ["vip"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (BulkChange("delete", None), "Unknown bulk action 'delete'"),
        (BulkChange("status", "new"), "Unknown status 'new'"),
        (BulkChange("status", "x" * 500), f"Unknown status {'x' * 40!r}"),
        (BulkChange("add_tags", ["   "]), "Name the tag"),
        (BulkChange("add_tags", ["a,b"]), "cannot contain a comma"),
        (BulkChange("add_tags", ["x" * 65]), "at most 64 characters"),
        (BulkChange("remove_tags", ["bad\u202etag"]), "control or invisible"),
    ],
)
def test_unknown_changes_are_refused_before_any_ticket(agent: Any, change: BulkChange, error: str) -> None:
    t = new_ticket()
    with pytest.raises(BulkRefused, match=re.escape(error)):
        do_bulk_edit([t.number], change=change, actor=agent)
    assert not TicketEvent.objects.exists()
    assert not Tag.objects.exists()


def test_the_cap_and_an_empty_selection_are_refused(agent: Any) -> None:
    with pytest.raises(BulkRefused, match=f"At most {MAX_BULK_TICKETS} tickets at a time"):
        do_bulk_edit(list(range(1, MAX_BULK_TICKETS + 2)), change=BulkChange("status", "open"), actor=agent)
    with pytest.raises(BulkRefused, match="Select at least one ticket"):
        do_bulk_edit([], change=BulkChange("status", "open"), actor=agent)


def test_merge_into_one_of_the_selected(agent: Any) -> None:
    # given
    target, a, b = new_ticket(), new_ticket(), new_ticket()
    # when
    result = do_bulk_merge([a.number, target.number, b.number], into=target.number, actor=agent)
    # then
    assert sorted(result.changed) == sorted([a.number, b.number])
    for source in (a, b):
        source.refresh_from_db()
        assert source.merged_into_id == target.pk
        assert source.status == TicketStatus.CLOSED
    assert TicketEvent.objects.filter(ticket=target, type=TicketEventType.MERGED_FROM).count() == 2


def test_merge_target_must_be_among_the_selected_and_editable(agent: Any, light_agent: Any, billing_team: Any) -> None:
    # given
    a, b, outside = new_ticket(), new_ticket(), new_ticket()
    hidden = new_ticket(team=billing_team)
    # then
    with pytest.raises(BulkRefused, match="must be one of the selected tickets"):
        do_bulk_merge([a.number, b.number], into=outside.number, actor=agent)
    with pytest.raises(BulkRefused, match="was not found"):
        do_bulk_merge([a.number, hidden.number], into=hidden.number, actor=agent)
    with pytest.raises(BulkRefused, match="at least two"):
        do_bulk_merge([a.number], into=a.number, actor=agent)
    with pytest.raises(BulkRefused, match="You may not edit"):
        do_bulk_merge([a.number, b.number], into=a.number, actor=light_agent)
    assert not Ticket.objects.filter(merged_into__isnull=False).exists()


# --- the toolbar's post -----------------------------------------------------------------------------


def test_post_changes_and_redirects_back_to_the_same_view_with_a_summary(agent: Any, admin_agent: Any) -> None:
    # given
    tickets = [new_ticket(), new_ticket()]
    client = logged_in(agent)
    # when
    resp = post(client, tickets, action="assign", assignee=str(admin_agent.pk))
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == "/desk/?view=all"
    assert flashes(resp) == ["Assigned to Alan Admin: 2 tickets."]
    assert set(Ticket.objects.values_list("assignee", flat=True)) == {admin_agent.pk}
    # when: "me", "nobody", a status, a tag
    post(client, tickets, action="assign", assignee="me")
    assert set(Ticket.objects.values_list("assignee", flat=True)) == {agent.pk}
    post(client, tickets, action="assign", assignee="nobody")
    assert set(Ticket.objects.values_list("assignee", flat=True)) == {None}
    resp = post(client, tickets, action="status", status="on_hold")
    assert flashes(resp) == ["Status changed: 2 tickets."]
    resp = post(client, tickets, action="add_tags", tag="Refund")
    assert flashes(resp) == ["Tagged: 2 tickets."]
    assert set(Ticket.objects.values_list("status", "tags__name")) == {("on_hold", "refund")}


def test_skips_are_a_warning_naming_them(light_agent: Any) -> None:
    t = new_ticket()
    resp = post(logged_in(light_agent), [t], action="status", status="solved")
    assert resp.status_code == 302
    messages = list(get_messages(resp.wsgi_request))
    assert [m.level_tag for m in messages] == ["warning"]
    assert str(messages[0]) == f"Status changed: 0 tickets. Skipped 1 ticket you may not edit (#{t.number})."


def test_a_light_agent_is_offered_no_toolbar_and_no_checkboxes(light_agent: Any, agent: Any) -> None:
    # given
    new_ticket()
    # when
    light = logged_in(light_agent).get("/desk/?view=all").content.decode()
    full = logged_in(agent).get("/desk/?view=all").content.decode()
    # then
    assert 'id="bulk-form"' not in light
    assert 'form="bulk-form"' not in light
    assert 'id="bulk-form"' in full
    assert 'form="bulk-form"' in full


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"ticket": ["12abc"], "action": "status", "status": "open"}, "Not a ticket number: '12abc'."),
        ({"ticket": ["-1"], "action": "status", "status": "open"}, "Not a ticket number: '-1'."),
        ({"ticket": ["9" * 40], "action": "status", "status": "open"}, f"Not a ticket number: {'9' * 40!r}."),
        ({"ticket": ["١٢"], "action": "status", "status": "open"}, "Not a ticket number: '١٢'."),
        ({"ticket": [], "action": "status", "status": "open"}, "Select at least one ticket."),
        ({"ticket": ["1"], "action": "<b>x</b>"}, "Unknown bulk action '<b>x</b>'."),
        ({"ticket": ["1"], "action": "status", "status": "bogus"}, "Unknown status 'bogus'."),
        ({"ticket": ["1"], "action": "assign", "assignee": "77777777"}, "No such agent: '77777777'."),
        ({"ticket": ["1"], "action": "add_tags", "tag": ""}, "Name the tag to add or remove."),
        ({"ticket": ["1"], "action": "remove_tags", "tag": "a,b"}, "A tag name cannot contain a comma"),
        (
            {"ticket": [str(n) for n in range(1, MAX_BULK_TICKETS + 2)], "action": "status", "status": "open"},
            f"At most {MAX_BULK_TICKETS} tickets at a time ({MAX_BULK_TICKETS + 1} were selected)",
        ),
        (
            {"ticket": [str(n) for n in range(1, 900)], "action": "status", "status": "open"},
            f"At most {MAX_BULK_TICKETS} tickets at a time (899 were selected)",
        ),
    ],
)
def test_malformed_and_oversized_posts_are_a_clear_error(agent: Any, fields: dict[str, Any], error: str) -> None:
    # when
    resp = logged_in(agent).post(BULK, {"next": "/desk/?view=mine", **fields})
    # then: back to the list with the reason, nothing changed
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == "/desk/?view=mine"
    assert flashes(resp)[0].startswith(error), flashes(resp)
    assert not TicketEvent.objects.exists()


def test_a_post_over_djangos_field_limit_is_a_400(agent: Any) -> None:
    resp = logged_in(agent).post(BULK, {"ticket": [str(n) for n in range(1, 5000)], "action": "status"})
    assert resp.status_code == 400
    assert not TicketEvent.objects.exists()


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/desk/", "/admin/", "javascript:1"])
def test_next_only_goes_back_to_the_desk(agent: Any, next_url: str) -> None:
    t = new_ticket()
    resp = logged_in(agent).post(BULK, {"ticket": [t.number], "action": "status", "status": "open", "next": next_url})
    assert resp["Location"] == "/desk/"


def test_post_needs_the_csrf_token_and_a_staff_login(agent: Any, client: Any) -> None:
    t = new_ticket()
    strict = logged_in(agent, enforce_csrf_checks=True)
    assert strict.post(BULK, {"ticket": [t.number], "action": "status", "status": "solved"}).status_code == 403
    assert client.post(BULK, {"ticket": [t.number], "action": "status", "status": "solved"}).status_code == 302
    assert logged_in(agent).get(BULK).status_code == 405
    t.refresh_from_db()
    assert t.status == TicketStatus.OPEN


def test_merge_asks_which_ticket_to_keep_then_merges(agent: Any, billing_team: Any) -> None:
    # given
    a, b, c = new_ticket(subject="<b>first</b>"), new_ticket(), new_ticket()
    hidden = new_ticket(team=billing_team)
    client = logged_in(agent)
    # when: first post
    resp = post(client, [a, b, c, hidden], action="merge")
    # then: a page to choose on, listing the visible ones (escaped), saying one was left out
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert "&lt;b&gt;first&lt;/b&gt;" in body
    assert "<b>first</b>" not in body
    assert body.count('type="radio" name="into"') == 3
    assert "Not shown (not found or not visible to you)" in body
    assert not Ticket.objects.filter(merged_into__isnull=False).exists()
    # when: a target not among the selected
    resp = post(client, [a, b], action="merge", into=str(c.number), confirm="1")
    assert "must be one of the selected tickets" in flashes(resp)[0]
    # when: confirmed
    resp = post(client, [a, b, c], action="merge", into=str(b.number), confirm="1")
    # then
    assert resp.status_code == 302
    assert flashes(resp) == [f"Merged into #{b.number}: 2 tickets."]
    assert set(Ticket.objects.filter(merged_into=b).values_list("number", flat=True)) == {a.number, c.number}


def test_assign_to_another_agent_without_javascript_asks_whom(agent: Any, admin_agent: Any) -> None:
    t = new_ticket()
    resp = post(logged_in(agent), [t], action="assign", assignee="choose")
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert f'<option value="{admin_agent.pk}">Alan Admin</option>' in body
    assert f'<input type="hidden" name="ticket" value="{t.number}">' in body


def test_agents_fragment_lists_the_assignable_agents(agent: Any, admin_agent: Any) -> None:
    resp = logged_in(agent).get("/desk/bulk/agents/")
    assert resp.status_code == 200, resp.content
    assert f'<option value="{admin_agent.pk}">Alan Admin</option>' in resp.content.decode()


# --- the list and the query counts -----------------------------------------------------------------


def test_list_carries_the_toolbar_and_a_checkbox_per_row_without_a_query_more(
    agent: Any, django_assert_num_queries: Any
) -> None:
    # given
    tickets = [new_ticket() for _ in range(3)]
    client = logged_in(agent)
    client.get("/desk/")  # the session is warm, as in test_desk
    from helpdesk.selectors import forget_view_counts

    forget_view_counts(agent)
    # when / then
    with django_assert_num_queries(LIST_QUERIES):
        resp = client.get("/desk/", {"view": "all"})
    body = resp.content.decode()
    assert '<form method="post" action="/desk/bulk/" id="bulk-form"' in body
    for t in tickets:
        assert f'name="ticket" value="{t.number}" form="bulk-form" aria-label="Select #{t.number}"' in body
    assert 'id="bulk-all"' in body
    assert "/static/desk/bulk" in body
    assert 'name="next" value="/desk/?view=all"' in body


def _bulk_queries(client: Any, tickets: list[Ticket], **fields: Any) -> int:
    with CaptureQueriesContext(connection) as ctx:
        resp = post(client, tickets, **fields)
    assert resp.status_code == 302, resp.content
    return len(ctx)


@pytest.mark.parametrize(
    ("fields", "at_most_per_ticket"),
    [
        # savepoint, lock, event, save, release (today 6)
        ({"action": "status", "status": "pending"}, 8),
        ({"action": "assign", "assignee": "me"}, 8),
        # and the ticket's tags, the tag rows, the link (today 10)
        ({"action": "add_tags", "tag": "bulk"}, 12),
    ],
)
def test_bulk_post_query_count_is_a_constant_per_ticket(
    agent: Any, fields: dict[str, Any], at_most_per_ticket: int
) -> None:
    # given
    client = logged_in(agent)
    post(client, [new_ticket()], action="status", status="open")  # warm the session
    # when: one, three and seven tickets
    one, three, seven = (_bulk_queries(client, [new_ticket() for _ in range(n)], **fields) for n in (1, 3, 7))
    # then: the same number of queries for each further ticket, and only a few
    per_ticket = (three - one) // 2
    assert three - one == 2 * per_ticket
    assert seven - three == 4 * per_ticket
    assert 0 < per_ticket <= at_most_per_ticket
    # and once per post: session, user, role, teams, the selected tickets
    assert one - per_ticket == BULK_BASE_QUERIES


# --- in Chromium (the embedded desk of tests/test_desk_keyboard.py) ---------------------------------


@pytest.mark.slow
@browser_test
def test_toolbar_selection_keys_and_a_tag_in_the_browser(desk: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser, desk["base"])
    page.goto(f"{desk['base']}/desk/?view=all")
    numbers = row_numbers(page)
    add = page.get_by_role("button", name="Add tag")
    merge = page.get_by_role("button", name="Merge…")
    # nothing selected: the buttons wait
    expect(add).to_be_disabled()
    # when j then x: the row chosen with the keyboard is selected for bulk actions
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.locator("#bulk-count")).to_have_text("1 selected:")
    expect(add).to_be_enabled()
    expect(merge).to_be_disabled()
    assert page.is_checked(f"input[name=ticket][value='{numbers[0]}']")
    # when x again: unselected
    page.keyboard.press("x")
    expect(add).to_be_disabled()
    # when a box is clicked, then another with shift: the range between them
    page.click(f"input[name=ticket][value='{numbers[1]}']")
    page.click(f"input[name=ticket][value='{numbers[4]}']", modifiers=["Shift"])
    expect(page.locator("#bulk-count")).to_have_text("4 selected:")
    expect(merge).to_be_enabled()
    # and j still moves the keyboard selection after a click
    page.keyboard.press("j")
    assert selected_numbers(page)
    # when the header box: every row on the page, and again: none
    page.check("#bulk-all")
    expect(page.locator("#bulk-count")).to_have_text(f"{len(numbers)} selected:")
    page.uncheck("#bulk-all")
    expect(add).to_be_disabled()
    # when two rows get a tag
    page.click(f"input[name=ticket][value='{numbers[0]}']")
    page.click(f"input[name=ticket][value='{numbers[2]}']")
    page.fill("#bulk-tag", "Follow-Up")
    page.keyboard.press("Enter")
    # then back on the same view, with the summary
    page.wait_for_url(f"{desk['base']}/desk/?view=all")
    expect(page.locator(".flash")).to_contain_text("Tagged: 2 tickets.")
    # and the other agents load into the assignee choice when it is used
    page.hover("#bulk-assignee")
    expect(page.locator("#bulk-assignee option", has_text="Bo Agent")).to_have_count(1)
    assert page.errors == []
