"""Macros: step validation (helpdesk/macros.py), applying and saving (actions/macros.py), the ticket
page's picker (views/macros.py) and the admin."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext

from helpdesk.actions.macros import StaleTicket, do_apply_macro, do_delete_macro, do_save_macro
from helpdesk.actions.replies import do_reply
from helpdesk.actions.tickets import do_change_status
from helpdesk.macros import InvalidMacro, validate_macro, validate_steps
from helpdesk.models import Direction, Macro, Message, Priority, Team, Ticket, TicketEvent, TicketStatus
from helpdesk.tests.conftest import ingest, logged_in, new_ticket

# The embedded desk of the keyboard tests, shared (module-scoped; the browser is the root conftest's).
from tests.test_desk_keyboard import browser_test, desk, row_numbers, sign_in

__all__ = ["desk"]

# (No module-wide django_db mark: the browser test runs against its own server; the other tests
# ask for the database through their fixtures.)
HX = {"HX-Request": "true"}


def macro(actions: list[dict[str, Any]], *, name: str = "Refund", **scope: Any) -> Macro:
    """A macro stored as the admin would store it (valid steps, straight into the table)."""
    return Macro.objects.create(name=name, actions=validate_steps(actions), **scope)


def errors_of(raw: Any) -> list[str]:
    with pytest.raises(InvalidMacro) as caught:
        validate_steps(raw)
    return caught.value.errors


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"type": "reply"}, 'The steps must be a list of {"type": …, "value": …} objects.'),
        ([], "A macro needs at least one step."),
        (["reply"], "Step 1: must be an object with a type and a value."),
        ([{"type": "delete", "value": 1}], "Step 1: unknown type 'delete'; one of: reply, note, status,"),
        ([{"type": "status"}], "Step 1 (status): the value is missing."),
        ([{"type": "status", "value": "open", "when": "x"}], "Step 1 (status): unknown field 'when'"),
        ([{"type": "status", "value": "bogus"}], "Step 1 (status): 'bogus' is not a status; one of: open,"),
        ([{"type": "status", "value": "new"}], "Step 1 (status): 'new' is not a status"),
        ([{"type": "priority", "value": True}], "Step 1 (priority): True is not a priority; one of: 1 (low),"),
        ([{"type": "priority", "value": "3"}], "Step 1 (priority): '3' is not a priority"),
        ([{"type": "priority", "value": 9}], "Step 1 (priority): 9 is not a priority"),
        ([{"type": "team", "value": 999_999}], "Step 1 (team): there is no team with id 999999."),
        ([{"type": "team", "value": "Support"}], "Step 1 (team): give a team id, or null for no team"),
        ([{"type": "assignee", "value": "someone"}], 'Step 1 (assignee): give "me", "nobody" or an agent id'),
        ([{"type": "assignee", "value": 999_999}], "Step 1 (assignee): there is no active agent with id 999999."),
        ([{"type": "reply", "value": "  "}], "Step 1 (reply): the text is empty."),
        ([{"type": "note", "value": 5}], "Step 1 (note): the text must be a string."),
        ([{"type": "reply", "value": "x" * 20_001}], "Step 1 (reply): the text is too long (20001 characters"),
        ([{"type": "add_tags", "value": []}], "Step 1 (add_tags): give a list of tag names."),
        ([{"type": "add_tags", "value": ["a,b"]}], "Step 1 (add_tags): A tag name cannot contain a comma"),
        ([{"type": "remove_tags", "value": [3]}], "Step 1 (remove_tags): a tag name must be a string, not 3."),
        (
            [{"type": "note", "value": "a"}, {"type": "note", "value": "b"}],
            "Step 2 (note): a macro has one note step at most.",
        ),
        (
            [{"type": "add_tags", "value": ["vip"]}, {"type": "remove_tags", "value": ["VIP"]}],
            "Tags vip are both added and removed.",
        ),
        ([{"type": "note", "value": "x"}] * 9, "A macro has at most 8 steps"),
    ],
)
@pytest.mark.django_db
def test_invalid_steps_say_what_is_wrong(raw: Any, error: str) -> None:
    errors = errors_of(raw)
    assert any(e.startswith(error) for e in errors), errors


def test_every_problem_is_listed_and_valid_steps_are_normalized(agent: Any) -> None:
    # every problem at once
    errors = errors_of([{"type": "status", "value": "x"}, {"type": "priority", "value": 0}])
    assert len(errors) == 2
    # valid: tags normalized, NUL dropped, null team kept
    steps = validate_steps(
        [
            {"type": "note", "value": "a\x00b"},
            {"type": "add_tags", "value": [" VIP ", "vip", "Refund"]},
            {"type": "team", "value": None},
            {"type": "assignee", "value": agent.pk},
        ]
    )
    assert steps == [
        {"type": "note", "value": "ab"},
        {"type": "add_tags", "value": ["vip", "refund"]},
        {"type": "team", "value": None},
        {"type": "assignee", "value": agent.pk},
    ]
    with pytest.raises(InvalidMacro, match="A macro needs a name"):
        validate_macro(name=" ", description="", actions=steps)


# --- saving -----------------------------------------------------------------------------------------


def test_save_and_delete_follow_the_canned_scopes(agent: Any, admin_agent: Any, support_team: Team) -> None:
    steps = [{"type": "status", "value": "pending"}]
    # an agent saves a personal macro; the row says who created it
    mine = do_save_macro(None, name=" Mine ", actions=steps, owner=agent, actor=agent)
    assert (mine.name, mine.created_by, mine.owner) == ("Mine", agent, agent)
    # but not a team's or everyone's
    with pytest.raises(PermissionDenied):
        do_save_macro(None, name="Shared", actions=steps, team=support_team, actor=agent)
    with pytest.raises(PermissionDenied):
        do_save_macro(mine, name="Mine", actions=steps, actor=agent)  # moving it to everyone
    # an admin manages every one
    shared = do_save_macro(None, name="Shared", actions=steps, team=support_team, actor=admin_agent)
    with pytest.raises(PermissionDenied):
        do_delete_macro(shared, actor=agent)
    # invalid steps are refused with their reasons and nothing is stored
    with pytest.raises(InvalidMacro, match="is not a status"):
        do_save_macro(mine, name="Mine", actions=[{"type": "status", "value": "x"}], owner=agent, actor=agent)
    mine.refresh_from_db()
    assert mine.actions == steps
    with pytest.raises(ValueError, match="not both"):
        do_save_macro(None, name="Both", actions=steps, team=support_team, owner=agent, actor=admin_agent)
    do_delete_macro(mine, actor=agent)
    assert list(Macro.objects.values_list("name", flat=True)) == ["Shared"]


# --- applying -----------------------------------------------------------------------------------------


def test_apply_does_every_step_through_the_ticket_actions(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox, "Where is my refund?")
    m = macro(
        [
            {
                "type": "reply",
                "value": "Hi {{ customer.first_name }}, {{ agent.first_name }} here about #{{ ticket.number }}.",
            },
            {"type": "status", "value": "pending"},
            {"type": "priority", "value": 3},
            {"type": "add_tags", "value": ["refund"]},
            {"type": "assignee", "value": "me"},
        ]
    )
    # when
    plan = do_apply_macro(ticket, m, actor=agent)
    # then
    ticket.refresh_from_db()
    assert (ticket.status, ticket.priority, ticket.assignee) == (TicketStatus.PENDING, Priority.HIGH, agent)
    assert list(ticket.tags.values_list("name", flat=True)) == ["refund"]
    reply = Message.objects.get(ticket=ticket, direction=Direction.OUTBOUND)
    assert reply.text == f"Hi Customer, Ada here about #{ticket.number}."
    assert [s.label for s in plan.steps][1:] == [
        "Status: Pending",
        "Priority: High",
        "Add tags: refund",
        "Assign to Ada Agent",
    ]
    types = list(TicketEvent.objects.filter(ticket=ticket, actor=agent).order_by("seq").values_list("type", flat=True))
    assert types == ["reply_added", "status_changed", "status_changed", "priority_changed", "tags_changed", "assigned"]


def test_a_light_agent_applies_a_notes_only_macro_but_nothing_else(light_agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    ticket.refresh_from_db()
    before = ticket.last_event_seq
    notes = macro([{"type": "note", "value": "Checked by {{ agent.name }}"}], name="Checked")
    mixed = macro([{"type": "note", "value": "Escalating"}, {"type": "status", "value": "on_hold"}], name="Escalate")
    reply = macro([{"type": "reply", "value": "Hello"}], name="Hello")
    # when: notes only
    do_apply_macro(ticket, notes, actor=light_agent)
    assert Message.objects.filter(ticket=ticket, direction=Direction.NOTE, text="Checked by Lee Light").exists()
    ticket.refresh_from_db()
    seq = ticket.last_event_seq
    assert seq == before + 1
    # when: a step the light agent may not do: refused before anything changes (not even the note)
    with pytest.raises(PermissionDenied, match="changes the ticket's fields"):
        do_apply_macro(ticket, mixed, actor=light_agent)
    with pytest.raises(PermissionDenied, match="sends a public reply"):
        do_apply_macro(ticket, reply, actor=light_agent)
    ticket.refresh_from_db()
    assert ticket.last_event_seq == seq
    assert ticket.status == TicketStatus.NEW
    assert not Message.objects.filter(text="Escalating").exists()


def test_a_failing_step_rolls_the_whole_macro_back(agent: Any, admin_agent: Any) -> None:
    # given: a closed ticket (its status cannot change) and a macro that notes, then reopens
    ticket = new_ticket()
    do_change_status(ticket, status=TicketStatus.CLOSED, actor=admin_agent)
    m = macro([{"type": "note", "value": "reopening"}, {"type": "status", "value": "open"}])
    # when / then
    with pytest.raises(ValueError, match="closed ticket stays closed"):
        do_apply_macro(ticket, m, actor=agent)
    assert not Message.objects.filter(text="reopening").exists()


def test_a_macro_whose_agent_left_is_refused_before_anything_changes(agent: Any, admin_agent: Any) -> None:
    ticket = new_ticket()
    m = macro([{"type": "note", "value": "handing over"}, {"type": "assignee", "value": admin_agent.pk}])
    admin_agent.is_active = False
    admin_agent.save(update_fields=["is_active"])
    with pytest.raises(InvalidMacro, match="Step 2 \\(assignee\\): there is no active agent"):
        do_apply_macro(ticket, m, actor=agent)
    assert not Message.objects.filter(text="handing over").exists()


def test_a_reply_macro_after_news_is_stale_but_a_notes_macro_is_not(agent: Any, api_inbox: Any) -> None:
    ticket = ingest(api_inbox, "First")
    ticket.refresh_from_db()
    seen = ticket.last_event_seq
    ingest(api_inbox, "Second")
    with pytest.raises(StaleTicket) as caught:
        do_apply_macro(ticket, macro([{"type": "reply", "value": "Hi"}]), actor=agent, seen_seq=seen)
    assert [e.type for e in caught.value.news] == ["message_received"]
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    do_apply_macro(ticket, macro([{"type": "note", "value": "fyi"}], name="FYI"), actor=agent, seen_seq=seen)
    assert Message.objects.filter(text="fyi").exists()


# --- the ticket page's picker --------------------------------------------------------------------------


def test_ticket_page_shows_the_usable_macros_in_one_query(
    agent: Any, billing_agent: Any, billing_team: Team, support_team: Team
) -> None:
    # given: a ticket page without macros (DETAIL_QUERIES in test_desk.py counts the picker's query)
    ticket = new_ticket()
    client = logged_in(agent)
    url = f"/desk/tickets/{ticket.number}/"
    client.get(url)
    with CaptureQueriesContext(connection) as before:
        assert 'id="macro-picker"' not in client.get(url).content.decode()
    # and: everyone's, the agent's team's, the agent's own, another team's and another agent's
    for name, scope in [
        ("Everyone", {}),
        ("Support", {"team": support_team}),
        ("Own", {"owner": agent}),
        ("Billing", {"team": billing_team}),
        ("Bea's", {"owner": billing_agent}),
    ]:
        macro([{"type": "status", "value": "pending"}], name=name, **scope)
    # when
    with CaptureQueriesContext(connection) as after:
        resp = client.get(url)
    # then: the same queries, one of them reading the macros
    assert len(after) == len(before)
    assert len([q for q in after.captured_queries if "helpdesk_macro" in q["sql"]]) == 1
    body = resp.content.decode()
    picker = body.split('id="macro-select"')[1].split("</select>")[0]
    assert re.findall(r'<option value="\d+">([^<]+)</option>', picker) == ["Everyone", "Own", "Support"]
    assert body.index('id="macro-picker"') < body.index('id="composer"')


def test_preview_renders_the_reply_and_the_changes_escaped(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    m = macro(
        [
            {"type": "reply", "value": "<script>x</script> Hi {{ customer.name }}"},
            {"type": "status", "value": "solved"},
        ],
        name="<b>Close</b>",
    )
    client = logged_in(agent)
    url = f"/desk/tickets/{ticket.number}/macro/"
    # when: without JavaScript, the whole page with the preview
    page = client.get(url, {"macro": m.pk})
    # then
    assert page.status_code == 200, page.content
    body = page.content.decode()
    assert 'id="composer"' in body
    assert 'id="macro-preview"' in body
    assert "&lt;script&gt;x&lt;/script&gt; Hi Customer user-42" in body
    assert "<script>x</script>" not in body
    assert "Status: Solved" in body
    assert "&lt;b&gt;Close&lt;/b&gt;" in body
    # when: with htmx, the picker alone, keeping the page's seq
    ticket.refresh_from_db()
    fragment = client.get(url, {"macro": m.pk, "seen_seq": ticket.last_event_seq - 1}, headers=HX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode()
    assert f'name="seen_seq" value="{ticket.last_event_seq - 1}"' in fragment.content.decode()
    # and nothing was applied
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()


@pytest.mark.parametrize("raw", ["", "abc", "-1", "9" * 30, "0"])
def test_a_malformed_or_unknown_macro_is_a_404(agent: Any, raw: str) -> None:
    ticket = new_ticket()
    client = logged_in(agent)
    assert client.get(f"/desk/tickets/{ticket.number}/macro/", {"macro": raw}).status_code == 404
    assert client.post(f"/desk/tickets/{ticket.number}/macro/", {"macro": raw}).status_code == 404


def test_team_and_assignee_steps_go_last_so_a_hand_off_macro_applies_whole(
    agent: Any, billing_team: Team, support_team: Team
) -> None:
    # given: a Support agent's "hand to Billing" macro, the move written first
    ticket = new_ticket(team=support_team)
    m = macro(
        [
            {"type": "team", "value": billing_team.pk},
            {"type": "assignee", "value": "nobody"},
            {"type": "add_tags", "value": ["billing"]},
            {"type": "status", "value": "pending"},
        ],
        name="To Billing",
    )
    # when
    plan = do_apply_macro(ticket, m, actor=agent)
    # then: every step applied, the move after the edits (in the plan the preview shows, too)
    assert [s.type for s in plan.steps] == ["add_tags", "status", "assignee", "team"]
    ticket.refresh_from_db()
    assert (ticket.team_id, ticket.assignee_id, ticket.status) == (billing_team.pk, None, TicketStatus.PENDING)
    assert list(ticket.tags.values_list("name", flat=True)) == ["billing"]
    # and: a ticket the agent sees only because it is theirs, handed to Billing and unassigned
    mine = new_ticket(team=billing_team, assignee=agent)
    plan = do_apply_macro(mine, m, actor=agent)
    assert [s.type for s in plan.steps] == ["add_tags", "status", "team", "assignee"]
    mine.refresh_from_db()
    assert (mine.team_id, mine.assignee_id, mine.status) == (billing_team.pk, None, TicketStatus.PENDING)


def test_another_agents_macro_and_another_teams_ticket_are_404(
    agent: Any, billing_agent: Any, billing_team: Team
) -> None:
    theirs = macro([{"type": "status", "value": "pending"}], owner=billing_agent)
    ours = macro([{"type": "status", "value": "pending"}], name="Ours")
    ticket, hidden = new_ticket(), new_ticket(team=billing_team)
    client = logged_in(agent)
    assert client.post(f"/desk/tickets/{ticket.number}/macro/", {"macro": theirs.pk}).status_code == 404
    assert client.post(f"/desk/tickets/{hidden.number}/macro/", {"macro": ours.pk}).status_code == 404
    hidden.refresh_from_db()
    assert hidden.status == TicketStatus.OPEN


def test_apply_through_the_page_and_the_refusals_it_explains(agent: Any, light_agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    m = macro([{"type": "note", "value": "done"}, {"type": "status", "value": "pending"}], name="Park")
    url = f"/desk/tickets/{ticket.number}/macro/"
    # when: a light agent previews it: the reason instead of the Apply button
    preview = logged_in(light_agent).get(url, {"macro": m.pk})
    assert 'id="macro-refusal"' in preview.content.decode()
    assert 'id="macro-apply"' not in preview.content.decode()
    # and posts it anyway: refused, nothing changed
    refused = logged_in(light_agent).post(url, {"macro": m.pk})
    assert refused.status_code == 302
    assert "Nothing was changed." in str(next(iter(get_messages(refused.wsgi_request))))
    assert not Message.objects.filter(text="done").exists()
    # when: the agent applies it
    applied = logged_in(agent).post(url, {"macro": m.pk})
    # then
    assert applied.status_code == 302
    assert applied["Location"] == f"/desk/tickets/{ticket.number}/"
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.PENDING
    assert Message.objects.filter(text="done", direction=Direction.NOTE).exists()


def test_apply_after_news_comes_back_409_and_goes_through_from_there(
    agent: Any, admin_agent: Any, api_inbox: Any
) -> None:
    # given: the page showed seq S; then another agent replied
    ticket = ingest(api_inbox)
    ticket.refresh_from_db()
    seen = ticket.last_event_seq
    do_reply(ticket, actor=admin_agent, text="Answered already.")
    m = macro([{"type": "reply", "value": "Thanks!"}, {"type": "status", "value": "solved"}])
    client = logged_in(agent)
    url = f"/desk/tickets/{ticket.number}/macro/"
    # when
    resp = client.post(url, {"macro": m.pk, "seen_seq": seen})
    # then: nothing applied, the warning and the preview at the new seq
    assert resp.status_code == 409, resp.content
    body = resp.content.decode()
    assert 'id="macro-stale-warning"' in body
    assert "Alan Admin replied" in body
    ticket.refresh_from_db()
    assert ticket.status != TicketStatus.SOLVED
    assert f'name="seen_seq" value="{ticket.last_event_seq}"' in body
    assert not Message.objects.filter(text="Thanks!").exists()
    # when: applied again from that page
    again = client.post(url, {"macro": m.pk, "seen_seq": ticket.last_event_seq})
    assert again.status_code == 302
    assert Message.objects.filter(text="Thanks!").exists()


def test_apply_needs_the_csrf_token(agent: Any) -> None:
    ticket = new_ticket()
    m = macro([{"type": "status", "value": "pending"}])
    resp = logged_in(agent, enforce_csrf_checks=True).post(f"/desk/tickets/{ticket.number}/macro/", {"macro": m.pk})
    assert resp.status_code == 403
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN


def test_a_macro_taking_the_ticket_away_lands_on_the_list(agent: Any, billing_team: Team) -> None:
    ticket = new_ticket()
    m = macro([{"type": "team", "value": billing_team.pk}])
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/macro/", {"macro": m.pk})
    assert resp.status_code == 302
    assert resp["Location"] == "/desk/"
    assert Ticket.objects.get(pk=ticket.pk).team == billing_team


# --- the admin ----------------------------------------------------------------------------------------


def test_admin_validates_the_steps_and_records_the_creator(admin_client: Any, admin_user: Any) -> None:
    # when: invalid steps
    bad = admin_client.post(
        "/admin/helpdesk/macro/add/",
        {"name": "Bad", "description": "", "actions": json.dumps([{"type": "status", "value": "gone"}])},
    )
    # then: the form again, with the reason
    assert bad.status_code == 200
    assert "is not a status; one of: open" in bad.content.decode()
    assert not Macro.objects.exists()
    # when: valid
    good = admin_client.post(
        "/admin/helpdesk/macro/add/",
        {"name": "Good", "description": "", "actions": json.dumps([{"type": "add_tags", "value": ["VIP"]}])},
    )
    assert good.status_code == 302, good.content
    saved = Macro.objects.get()
    assert saved.actions == [{"type": "add_tags", "value": ["vip"]}]
    assert saved.created_by == admin_user


# --- in Chromium (the embedded desk of tests/test_desk_keyboard.py) ---------------------------------


@pytest.fixture(scope="module")
def desk_with_macro(desk: dict[str, Any]) -> dict[str, Any]:
    from tests.test_run_modes import manage

    steps = json.dumps(
        [{"type": "reply", "value": "Hello {{ customer.first_name }}!"}, {"type": "status", "value": "pending"}]
    )
    manage(
        desk["env"],
        "shell",
        "-c",
        "import json; from helpdesk.models import Macro; "
        f"Macro.objects.create(name='Greet and wait', actions=json.loads({steps!r}))",
    )
    return desk


@pytest.mark.slow
@browser_test
def test_choose_preview_and_apply_a_macro_in_the_browser(desk_with_macro: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    base = desk_with_macro["base"]
    page = sign_in(browser, base)
    number = row_numbers(page)[3]
    page.goto(f"{base}/desk/tickets/{number}/")
    page.fill("#composer-text", "a draft that stays")
    # when a macro is chosen and previewed: in place (htmx), the reply rendered for this customer
    page.select_option("#macro-select", label="Greet and wait")
    page.click("#macro-preview-button")
    preview = page.locator("#macro-preview")
    expect(preview).to_contain_text("Reply to the customer")
    expect(preview.locator(".macro-text")).to_have_text("Hello Customer!")
    expect(preview).to_contain_text("Status: Pending")
    assert page.input_value("#composer-text") == "a draft that stays"
    assert page.url == f"{base}/desk/tickets/{number}/"
    # when applied
    page.click("#macro-apply")
    # then the ticket shows the reply and the new status
    page.wait_for_url(f"{base}/desk/tickets/{number}/")
    expect(page.locator(".flash")).to_contain_text("Applied “Greet and wait”.")
    expect(page.locator("#ticket-meta .badge")).to_have_text("Pending")
    expect(page.locator("#timeline")).to_contain_text("Hello Customer!")
    assert page.errors == []
