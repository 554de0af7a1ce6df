"""The settings screens (/desk/settings/…, helpdesk/views/settings_*.py): who may open them, list
pages and their query counts, create / edit / delete / reorder through the actions, validation
messages next to the field with the input kept, hostile input, and the "test against ticket"
previews (which write nothing)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from helpdesk.actions.agents import do_create_agent
from helpdesk.models import (
    BusinessCalendar,
    CannedResponse,
    Macro,
    Priority,
    Role,
    RoutingMode,
    RoutingRule,
    Rule,
    RuleKind,
    SlaPolicy,
    Team,
    Ticket,
    TicketEvent,
)
from helpdesk.tests.conftest import logged_in, new_ticket

pytestmark = pytest.mark.django_db

ADMIN_PAGES = [
    "/desk/settings/calendars/",
    "/desk/settings/calendars/new/",
    "/desk/settings/sla/",
    "/desk/settings/sla/new/",
    "/desk/settings/routing/",
    "/desk/settings/routing/rules/new/",
    "/desk/settings/triggers/",
    "/desk/settings/triggers/new/",
    "/desk/settings/time-rules/",
    "/desk/settings/time-rules/new/",
]
STAFF_PAGES = [
    "/desk/settings/",
    "/desk/settings/macros/",
    "/desk/settings/macros/new/",
    "/desk/settings/canned/",
    "/desk/settings/canned/new/",
]
WEEKDAY_HOURS = {f"hours-{d}-start": "09:00" for d in ("mon", "tue", "wed", "thu", "fri")} | {
    f"hours-{d}-end": "17:00" for d in ("mon", "tue", "wed", "thu", "fri")
}


@pytest.fixture
def admin(admin_agent: Any) -> Client:
    return logged_in(admin_agent)


def text_of(resp: Any) -> str:
    return resp.content.decode()


def field_errors(resp: Any) -> list[str]:
    """The messages shown next to fields (p.field-error), unescaped enough to compare."""
    found = re.findall(r'<p class="field-error"[^>]*>(.*?)</p>', text_of(resp), re.S)
    return [f.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&") for f in found]


def flash(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


def save_calendar(client: Client, **fields: Any) -> Any:
    data = {"name": "Office", "time_zone": "Europe/Prague", **WEEKDAY_HOURS, **fields}
    return client.post("/desk/settings/calendars/new/", data)


def trigger_post(**fields: Any) -> dict[str, Any]:
    """A trigger form: on message received, subject contains refund → add tag refund."""
    data: dict[str, Any] = {
        "action": "save",
        "name": "Tag refunds",
        "description": "",
        "is_active": "on",
        "events": ["message_received"],
        "all-field": ["subject", ""],
        "all-op": ["contains", "is"],
        "all-value": ["refund", ""],
        "any-field": [""],
        "any-op": [""],
        "any-value": [""],
        "act-type": ["add_tags", ""],
        "act-value": ["refund", ""],
        "act-value2": ["", ""],
    }
    data.update(fields)
    return data


# --- who may open what -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ADMIN_PAGES + STAFF_PAGES)
def test_every_screen_renders_for_an_admin(admin: Client, url: str) -> None:
    # when
    resp = admin.get(url)
    # then
    assert resp.status_code == 200, resp.content
    assert 'href="/desk/settings/"' in text_of(resp)


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_screens_are_refused_to_an_agent(agent: Any, url: str) -> None:
    # given
    client = logged_in(agent)
    # when
    got, posted = client.get(url), client.post(url, {"name": "x"})
    # then: refused (a list page takes no POST at all)
    assert got.status_code == 403
    assert posted.status_code == (403 if url.endswith("/new/") else 405)


@pytest.mark.parametrize("url", ADMIN_PAGES + STAFF_PAGES)
def test_settings_need_a_signed_in_staff_member(url: str) -> None:
    # when
    resp = Client().get(url)
    # then: to the login page
    assert resp.status_code == 302
    assert "/desk/login/" in resp["Location"]


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_agents_open_macros_and_canned_responses(agent: Any, url: str) -> None:
    # when
    resp = logged_in(agent).get(url)
    # then
    assert resp.status_code == 200, resp.content


def test_the_index_and_the_top_bar_show_only_what_the_user_may_open(agent: Any, admin: Client) -> None:
    # when
    mine = text_of(logged_in(agent).get("/desk/settings/"))
    theirs = text_of(admin.get("/desk/settings/"))
    on_the_desk = text_of(logged_in(agent).get("/desk/"))
    # then
    assert "/desk/settings/macros/" in mine
    assert "/desk/settings/sla/" not in mine
    assert "/desk/settings/sla/" in theirs
    assert "/desk/settings/time-rules/" in theirs
    assert 'class="settings-link"' in on_the_desk


def test_posts_need_the_csrf_token(admin_agent: Any) -> None:
    # given
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_agent)
    # when
    resp = client.post("/desk/settings/calendars/new/", {"name": "Office", "time_zone": "UTC"})
    # then
    assert resp.status_code == 403
    assert not BusinessCalendar.objects.exists()


# --- list pages: a fixed number of queries ---------------------------------------------------------


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(url)
    assert resp.status_code == 200, resp.content
    return len(ctx)


@pytest.mark.parametrize(
    ("url", "make"),
    [
        ("/desk/settings/calendars/", lambda i, team: BusinessCalendar.objects.create(name=f"C{i}", hours={})),
        ("/desk/settings/sla/", lambda i, team: SlaPolicy.objects.create(name=f"P{i}", position=i)),
        (
            "/desk/settings/triggers/",
            lambda i, team: Rule.objects.create(kind="trigger", name=f"R{i}", position=i, actions=[]),
        ),
        (
            "/desk/settings/time-rules/",
            lambda i, team: Rule.objects.create(kind="time", name=f"T{i}", position=i, actions=[]),
        ),
        ("/desk/settings/routing/", lambda i, team: RoutingRule.objects.create(name=f"RR{i}", position=i, team=team)),
        ("/desk/settings/macros/", lambda i, team: Macro.objects.create(name=f"M{i}", actions=[], team=team)),
        ("/desk/settings/canned/", lambda i, team: CannedResponse.objects.create(title=f"C{i}", body="x", team=team)),
    ],
)
def test_list_pages_make_the_same_queries_for_one_row_and_for_many(
    admin: Client, support_team: Team, url: str, make: Any
) -> None:
    # given: one row, the page loaded once (warm caches)
    make(0, support_team)
    admin.get(url)
    one = _queries(admin, url)
    # when: more rows (and, for routing, more teams and agents)
    for i in range(1, 8):
        make(i, support_team)
    for i in range(3):
        do_create_agent(email=f"extra{i}@example.com", name=f"Extra {i}", password="pw-extra-123", teams=[f"T{i}"])
    many = _queries(admin, url)
    # then
    assert many == one
    assert one <= 12


# --- calendars -------------------------------------------------------------------------------------


def test_a_calendar_is_created_with_periods_and_holidays(admin: Client) -> None:
    # when
    resp = save_calendar(
        admin,
        **{
            "hours-mon-start": ["08:00", "13:00", ""],
            "hours-mon-end": ["12:00", "17:30", ""],
            "holiday-date": ["2026-12-25", ""],
            "holiday-name": ["Christmas Day", ""],
            "is_default": "on",
        },
    )
    # then
    assert resp.status_code == 302, resp.content
    calendar = BusinessCalendar.objects.get()
    assert calendar.time_zone == "Europe/Prague"
    assert calendar.hours["mon"] == [["08:00", "12:00"], ["13:00", "17:30"]]
    assert calendar.hours["fri"] == [["09:00", "17:00"]]
    assert "sat" not in calendar.hours
    assert calendar.holidays == [{"date": "2026-12-25", "name": "Christmas Day"}]
    assert calendar.is_default


def test_a_calendar_is_edited_and_its_form_shows_what_it_holds(admin: Client) -> None:
    # given
    save_calendar(admin)
    calendar = BusinessCalendar.objects.get()
    # when
    page = text_of(admin.get(f"/desk/settings/calendars/{calendar.pk}/"))
    resp = admin.post(
        f"/desk/settings/calendars/{calendar.pk}/",
        {"name": "Office hours", "time_zone": "America/New_York", "hours-sat-start": "10:00", "hours-sat-end": "14:00"},
    )
    # then
    assert 'value="09:00"' in page
    assert "<option selected>Europe/Prague</option>" in page
    assert resp.status_code == 302, resp.content
    calendar.refresh_from_db()
    assert (calendar.name, calendar.time_zone, calendar.hours) == (
        "Office hours",
        "America/New_York",
        {"sat": [["10:00", "14:00"]]},
    )


def test_a_bad_calendar_says_what_is_wrong_next_to_the_field_and_keeps_the_input(admin: Client) -> None:
    # when
    resp = save_calendar(admin, time_zone="Mars/Olympus", **{"hours-tue-start": "25:00", "hours-tue-end": "26:00"})
    # then
    assert resp.status_code == 400
    assert not BusinessCalendar.objects.exists()
    page = text_of(resp)
    errors = field_errors(resp)
    assert any("Mars/Olympus" in e for e in errors), errors
    assert any("25:00" in e or "Tuesday" in e for e in errors), errors
    assert 'value="25:00"' in page
    assert "Mars/Olympus" in page
    assert "nothing was saved" in page


def test_a_calendar_is_deleted_after_confirmation_but_not_while_a_policy_uses_it(admin: Client) -> None:
    # given
    save_calendar(admin)
    used = BusinessCalendar.objects.get()
    free = BusinessCalendar.objects.create(name="Spare", hours={})
    SlaPolicy.objects.create(name="Gold", calendar=used)
    # when
    confirm = admin.get(f"/desk/settings/calendars/{free.pk}/delete/")
    deleted = admin.post(f"/desk/settings/calendars/{free.pk}/delete/")
    refused = admin.post(f"/desk/settings/calendars/{used.pk}/delete/")
    # then
    assert confirm.status_code == 200
    assert "Delete calendar “Spare”?" in text_of(confirm)
    assert deleted.status_code == 302
    assert refused.status_code == 302
    assert list(BusinessCalendar.objects.values_list("name", flat=True)) == ["Office"]
    assert any("Gold" in m for m in flash(refused))


# --- SLA policies ----------------------------------------------------------------------------------


def sla_post(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "action": "save",
        "name": "Urgent email",
        "description": "",
        "is_active": "on",
        "all-field": ["priority"],
        "all-op": ["is"],
        "all-value": ["4"],
        "calendar": "",
        "t-4-first_reply-minutes": "30",
        "t-4-resolution-minutes": "480",
        "t-4-resolution-bh": "on",
        "warn_before_minutes": "10",
    }
    data.update(fields)
    return data


def test_an_sla_policy_is_created_from_the_targets_grid(admin: Client) -> None:
    # when
    resp = admin.post("/desk/settings/sla/new/", sla_post())
    # then
    assert resp.status_code == 302, resp.content
    policy = SlaPolicy.objects.get()
    assert policy.targets == {
        "4": {
            "first_reply": {"minutes": 30, "business_hours": False},
            "resolution": {"minutes": 480, "business_hours": True},
        }
    }
    assert policy.warn_before_minutes == 10
    assert policy.conditions["all"][0]["field"] == "priority"
    # and the form shows it back
    page = text_of(admin.get(f"/desk/settings/sla/{policy.pk}/"))
    assert 'name="t-4-first_reply-minutes" id="t-4-first_reply" value="30"' in page


def test_a_bad_target_is_shown_in_its_cell_and_the_grid_keeps_the_input(admin: Client) -> None:
    # when
    resp = admin.post("/desk/settings/sla/new/", sla_post(**{"t-3-next_reply-minutes": "soon", "name": ""}))
    # then
    assert resp.status_code == 400
    assert not SlaPolicy.objects.exists()
    page = text_of(resp)
    assert re.search(r'id="t-3-next_reply-error">[^<]*soon', page), page
    assert 'value="soon"' in page
    assert any("name" in e.lower() for e in field_errors(resp))


def test_sla_policies_move_up_and_down_and_are_deleted(admin: Client) -> None:
    # given
    for name in ("A", "B", "C"):
        admin.post("/desk/settings/sla/new/", sla_post(name=name))
    a, b, c = SlaPolicy.objects.order_by("position", "id")
    # when
    admin.post(f"/desk/settings/sla/{c.pk}/move/", {"direction": "up"})
    admin.post(f"/desk/settings/sla/{a.pk}/move/", {"direction": "up"})  # already first: stays
    # then
    assert list(SlaPolicy.objects.order_by("position", "id").values_list("name", flat=True)) == ["A", "C", "B"]
    # when
    admin.post(f"/desk/settings/sla/{a.pk}/move/", {"direction": "down"})
    resp = admin.post(f"/desk/settings/sla/{b.pk}/delete/")
    # then
    assert resp.status_code == 302
    assert list(SlaPolicy.objects.order_by("position", "id").values_list("name", flat=True)) == ["C", "A"]


def test_the_sla_preview_shows_conditions_and_deadlines_and_writes_nothing(admin: Client) -> None:
    # given
    ticket = new_ticket(priority=Priority.URGENT)
    before = (SlaPolicy.objects.count(), TicketEvent.objects.count(), ticket.sla_policy_id)
    # when
    resp = admin.post("/desk/settings/sla/new/", sla_post(action="preview", preview_ticket=f"#{ticket.number}"))
    # then
    assert resp.status_code == 200, resp.content
    page = text_of(resp)
    assert "<strong>matches</strong>" in page
    assert "✓ true" in page
    assert "First reply" in page
    assert "<time datetime=" in page
    assert (SlaPolicy.objects.count(), TicketEvent.objects.count(), Ticket.objects.get().sla_policy_id) == before
    assert 'value="Urgent email"' in page  # the form as it was


def test_a_preview_against_a_ticket_nobody_may_see_is_a_404(admin: Client) -> None:
    # when
    resp = admin.post("/desk/settings/sla/new/", sla_post(action="preview", preview_ticket="987654"))
    bad = admin.post("/desk/settings/sla/new/", sla_post(action="preview", preview_ticket="latest"))
    # then
    assert resp.status_code == 404
    assert bad.status_code == 200
    assert any("ticket number" in e for e in field_errors(bad))


# --- triggers and time rules -----------------------------------------------------------------------


def test_a_trigger_is_created_from_condition_and_action_rows(admin: Client) -> None:
    # when
    resp = admin.post("/desk/settings/triggers/new/", trigger_post())
    # then
    assert resp.status_code == 302, resp.content
    rule = Rule.objects.get()
    assert rule.kind == RuleKind.TRIGGER
    assert rule.events == ["message_received"]
    assert rule.conditions["all"] == [{"field": "subject", "op": "contains", "value": "refund"}]
    assert rule.actions == [{"type": "add_tags", "value": ["refund"]}]
    # and its form shows the rows back
    page = text_of(admin.get(f"/desk/settings/triggers/{rule.pk}/"))
    assert '<option value="subject" selected>' in page
    assert 'value="refund"' in page


def test_a_trigger_is_edited_reordered_and_deleted(admin: Client) -> None:
    # given
    for name in ("First", "Second"):
        admin.post("/desk/settings/triggers/new/", trigger_post(name=name))
    first, second = Rule.objects.order_by("position", "id")
    # when
    edited = admin.post(f"/desk/settings/triggers/{first.pk}/", trigger_post(name="First, renamed", is_active=""))
    admin.post(f"/desk/settings/triggers/{second.pk}/move/", {"direction": "up"})
    # then
    assert edited.status_code == 302, edited.content
    first.refresh_from_db()
    assert (first.name, first.is_active) == ("First, renamed", False)
    assert list(Rule.objects.order_by("position", "id").values_list("name", flat=True)) == ["Second", "First, renamed"]
    # when
    confirm = admin.get(f"/desk/settings/triggers/{first.pk}/delete/")
    admin.post(f"/desk/settings/triggers/{first.pk}/delete/")
    # then
    assert "Delete trigger “First, renamed”?" in text_of(confirm)
    assert list(Rule.objects.values_list("name", flat=True)) == ["Second"]


def test_a_bad_trigger_shows_every_error_and_keeps_the_input(admin: Client) -> None:
    # when
    resp = admin.post(
        "/desk/settings/triggers/new/",
        trigger_post(
            name="",
            **{"all-field": ["bogus_field"], "all-op": ["is"], "all-value": ["x"]},
            **{"act-type": ["priority"], "act-value": ["9"], "act-value2": [""]},
        ),
    )
    # then
    assert resp.status_code == 400
    assert not Rule.objects.exists()
    page = text_of(resp)
    errors = field_errors(resp)
    assert len(errors) >= 3, errors
    assert any("name" in e.lower() for e in errors)
    assert any("bogus_field" in e for e in errors)
    assert any("9" in e for e in errors)
    assert '<option value="bogus_field" selected>bogus_field (unknown)</option>' in page
    assert re.search(r'id="conditions-error"', page)
    assert re.search(r'id="actions-error"', page)


def test_a_time_rule_its_actions_cannot_make_false_is_refused_with_the_reason(admin: Client) -> None:
    # when: "status is pending for 24 h → add a note" would fire every hour for ever
    resp = admin.post(
        "/desk/settings/time-rules/new/",
        trigger_post(
            name="Nag",
            events=[],
            **{"all-field": ["status", "updated"], "all-op": ["is", "greater_than"], "all-value": ["pending", "24"]},
            **{"act-type": ["note"], "act-value": ["Still waiting"], "act-value2": [""]},
        ),
    )
    # then
    assert resp.status_code == 400
    assert not Rule.objects.exists()
    assert "nothing was saved" in text_of(resp)
    # when: closing the ticket makes "status is pending" false
    saved = admin.post(
        "/desk/settings/time-rules/new/",
        trigger_post(
            name="Close stale",
            events=[],
            **{"all-field": ["status", "updated"], "all-op": ["is", "greater_than"], "all-value": ["pending", "24"]},
            **{"act-type": ["status"], "act-value": ["closed"], "act-value2": [""]},
        ),
    )
    # then
    assert saved.status_code == 302, saved.content
    assert Rule.objects.get().kind == RuleKind.TIME


def test_the_trigger_preview_shows_each_condition_and_the_changes_and_writes_nothing(admin: Client) -> None:
    # given
    ticket = new_ticket(subject="Refund please", priority=Priority.NORMAL)
    events = TicketEvent.objects.count()
    # when
    resp = admin.post(
        "/desk/settings/triggers/new/",
        trigger_post(
            action="preview",
            preview_ticket=str(ticket.number),
            events=[],
            **{"all-field": ["subject", "priority"], "all-op": ["contains", "is"], "all-value": ["refund", "4"]},
            **{"act-type": ["priority"], "act-value": ["4"], "act-value2": [""]},
        ),
    )
    # then
    assert resp.status_code == 200, resp.content
    page = text_of(resp)
    assert "✓ true" in page
    assert "✗ false" in page
    assert "<strong>does not match</strong>" in page
    assert "What would change if it matched" in page
    assert not Rule.objects.exists()
    assert TicketEvent.objects.count() == events
    ticket.refresh_from_db()
    assert ticket.priority == Priority.NORMAL


def test_a_webhook_secret_is_never_shown_and_kept_when_left_empty(admin: Client) -> None:
    # given
    secret = "s" * 32
    webhook = {"act-type": ["webhook"], "act-value": ["https://hooks.example.com/x"], "act-value2": [secret]}
    admin.post("/desk/settings/triggers/new/", trigger_post(**webhook))
    rule = Rule.objects.get()
    # when
    page = text_of(admin.get(f"/desk/settings/triggers/{rule.pk}/"))
    resp = admin.post(f"/desk/settings/triggers/{rule.pk}/", trigger_post(**{**webhook, "act-value2": [""]}))
    # then
    assert secret not in page
    assert "(unchanged)" in page
    assert resp.status_code == 302, resp.content
    rule.refresh_from_db()
    assert rule.actions[0]["value"]["secret"] == secret


# --- routing ---------------------------------------------------------------------------------------


def test_a_routing_rule_is_created_moved_previewed_and_deleted(
    admin: Client, support_team: Team, billing_team: Team, api_inbox: Any
) -> None:
    # given
    form = {
        "action": "save",
        "name": "Billing words",
        "inbox": str(api_inbox.pk),
        "team": str(billing_team.pk),
        "is_active": "on",
        "all-field": ["subject"],
        "all-op": ["contains"],
        "all-value": ["invoice"],
    }
    # when
    created = admin.post("/desk/settings/routing/rules/new/", form)
    admin.post("/desk/settings/routing/rules/new/", {**form, "name": "Second", "team": str(support_team.pk)})
    first, second = RoutingRule.objects.order_by("position", "id")
    admin.post(f"/desk/settings/routing/rules/{second.pk}/move/", {"direction": "up"})
    # then
    assert created.status_code == 302, created.content
    assert (first.inbox_id, first.team_id) == (api_inbox.pk, billing_team.pk)
    assert list(RoutingRule.objects.order_by("position", "id").values_list("name", flat=True)) == [
        "Second",
        "Billing words",
    ]
    # when: the preview on a ticket of that inbox about an invoice
    ticket = new_ticket(subject="Invoice 42", inbox=api_inbox, team=support_team)
    preview = admin.post(
        f"/desk/settings/routing/rules/{first.pk}/", {**form, "action": "preview", "preview_ticket": ticket.number}
    )
    # then
    page = text_of(preview)
    assert preview.status_code == 200, preview.content
    assert "<strong>matches</strong>" in page
    assert "Team: Support → Billing" in page
    assert Ticket.objects.get(pk=ticket.pk).team_id == support_team.pk
    # when
    admin.post(f"/desk/settings/routing/rules/{first.pk}/delete/")
    # then
    assert list(RoutingRule.objects.values_list("name", flat=True)) == ["Second"]


def test_a_routing_rule_without_a_team_says_so(admin: Client) -> None:
    # when
    resp = admin.post("/desk/settings/routing/rules/new/", {"action": "save", "name": "Nowhere", "team": ""})
    # then
    assert resp.status_code == 400
    assert "Choose the team the tickets go to." in field_errors(resp)
    assert not RoutingRule.objects.exists()


def test_a_teams_routing_is_set_and_a_bad_timeout_is_refused(admin: Client, support_team: Team) -> None:
    # when
    bad = admin.post(
        f"/desk/settings/routing/teams/{support_team.pk}/", {"routing": "round_robin", "skills_timeout_minutes": "ten"}
    )
    good = admin.post(
        f"/desk/settings/routing/teams/{support_team.pk}/",
        {"routing": "least_loaded", "reassign_offline": "on", "skills_timeout_minutes": "15"},
    )
    # then
    assert bad.status_code == 400
    assert any("'ten'" in e for e in field_errors(bad))
    assert 'value="ten"' in text_of(bad)
    assert good.status_code == 302, good.content
    support_team.refresh_from_db()
    assert (support_team.routing, support_team.reassign_offline, support_team.skills_timeout_minutes) == (
        RoutingMode.LEAST_LOADED,
        True,
        15,
    )


def test_an_agents_capacity_chats_and_languages_are_set(admin: Client, agent: Any) -> None:
    # given
    url = f"/desk/settings/routing/agents/{agent.pk}/"
    # when
    page = admin.get(url)
    bad = admin.post(url, {"cap-email": "lots", "chat_capacity": "3", "languages": "en"})
    good = admin.post(url, {"cap-email": "5", "cap-*": "2", "chat_capacity": "4", "languages": "en, cs"})
    # then
    assert page.status_code == 200
    assert bad.status_code == 400
    assert any("'lots'" in e for e in field_errors(bad))
    assert good.status_code == 302, good.content
    agent.agent.refresh_from_db()
    assert agent.agent.capacity == {"email": 5, "*": 2}
    assert agent.agent.chat_capacity == 4
    assert agent.agent.languages == ["en", "cs"]


# --- macros and canned responses -------------------------------------------------------------------


def macro_post(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Refund",
        "description": "",
        "scope": "me",
        "act-type": ["note", "priority", "add_tags", ""],
        "act-value": ["Refund {{ ticket.number }}", "3", "refund, billing", ""],
        "act-value2": ["", "", "", ""],
    }
    data.update(fields)
    return data


def test_an_agent_makes_a_personal_macro_but_not_a_shared_one(agent: Any) -> None:
    # given
    client = logged_in(agent)
    # when
    mine = client.post("/desk/settings/macros/new/", macro_post())
    shared = client.post("/desk/settings/macros/new/", macro_post(name="For all", scope="all"))
    # then
    assert mine.status_code == 302, mine.content
    macro = Macro.objects.get()
    assert (macro.owner_id, macro.team_id) == (agent.pk, None)
    assert macro.actions == [
        {"type": "note", "value": "Refund {{ ticket.number }}"},
        {"type": "priority", "value": 3},
        {"type": "add_tags", "value": ["refund", "billing"]},
    ]
    assert shared.status_code == 400
    assert any("may not share" in e for e in field_errors(shared))
    assert Macro.objects.count() == 1


def test_an_admin_edits_and_deletes_a_shared_macro_and_an_agent_may_not(
    admin: Client, agent: Any, support_team: Team
) -> None:
    # given
    admin.post("/desk/settings/macros/new/", macro_post(scope=f"team:{support_team.pk}"))
    macro = Macro.objects.get()
    # when
    edited = admin.post(f"/desk/settings/macros/{macro.pk}/", macro_post(name="Refund v2", scope="all"))
    as_agent = logged_in(agent).post(f"/desk/settings/macros/{macro.pk}/", macro_post(name="Mine now"))
    # then
    assert edited.status_code == 302, edited.content
    macro.refresh_from_db()
    assert (macro.name, macro.team_id, macro.owner_id) == ("Refund v2", None, None)
    assert as_agent.status_code == 403
    # when
    admin.post(f"/desk/settings/macros/{macro.pk}/delete/")
    # then
    assert not Macro.objects.exists()


def test_bad_macro_steps_are_listed_and_kept(admin: Client) -> None:
    # when
    resp = admin.post(
        "/desk/settings/macros/new/",
        macro_post(**{"act-type": ["status", "status"], "act-value": ["bogus", "open"], "act-value2": ["", ""]}),
    )
    # then
    assert resp.status_code == 400
    errors = field_errors(resp)
    assert any("'bogus' is not a status" in e for e in errors), errors
    assert any("one status step at most" in e for e in errors), errors
    assert '<option value="bogus" selected>bogus</option>' in text_of(resp)


def test_canned_responses_are_created_edited_and_deleted(agent: Any) -> None:
    # given
    client = logged_in(agent)
    # when
    empty = client.post("/desk/settings/canned/new/", {"title": "  ", "body": "Hello", "scope": "me"})
    no_scope = client.post("/desk/settings/canned/new/", {"title": "Hello", "body": "Hi {{ customer.first_name }}"})
    created = client.post("/desk/settings/canned/new/", {"title": "Hello", "body": "Hi", "scope": "me"})
    canned = CannedResponse.objects.get()
    edited = client.post(f"/desk/settings/canned/{canned.pk}/", {"title": "Hi", "body": "Hello", "scope": "me"})
    # then
    assert empty.status_code == 400
    assert "A canned response needs a title." in field_errors(empty)
    assert no_scope.status_code == 400
    assert any("scope" in e for e in field_errors(no_scope))
    assert created.status_code == 302
    assert edited.status_code == 302
    canned.refresh_from_db()
    assert (canned.title, canned.body, canned.owner_id) == ("Hi", "Hello", agent.pk)
    # when
    client.post(f"/desk/settings/canned/{canned.pk}/delete/")
    # then
    assert not CannedResponse.objects.exists()


def test_another_agents_personal_canned_response_looks_absent(agent: Any, billing_agent: Any) -> None:
    # given
    theirs = CannedResponse.objects.create(title="Mine", body="x", owner=billing_agent)
    # when
    resp = logged_in(agent).get(f"/desk/settings/canned/{theirs.pk}/")
    listed = text_of(logged_in(agent).get("/desk/settings/canned/"))
    # then
    assert resp.status_code == 404
    assert "Mine" not in listed


# --- hostile input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/desk/settings/calendars/999999/",
        "/desk/settings/sla/999999999999999999/",
        "/desk/settings/triggers/123456789012345678/",
        "/desk/settings/time-rules/1/delete/",
        "/desk/settings/routing/rules/5/",
        "/desk/settings/routing/teams/424242/",
        "/desk/settings/routing/agents/424242/",
        "/desk/settings/macros/999/",
        "/desk/settings/canned/999/",
    ],
)
def test_unknown_ids_are_404s(admin: Client, url: str) -> None:
    # when
    resp = admin.get(url)
    # then
    assert resp.status_code == 404


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/desk/settings/calendars/new/", {"name": "x" * 100_000, "time_zone": "\x00" * 50}),
        ("/desk/settings/calendars/new/", {"name": "Big", "time_zone": "UTC", "hours-mon-start": ["09:00"] * 500}),
        ("/desk/settings/calendars/new/", {"name": "Hol", "time_zone": "UTC", "holiday-date": ["not a date", "2026"]}),
        ("/desk/settings/sla/new/", {"name": "S", "calendar": "abc", "warn_before_minutes": "-5"}),
        ("/desk/settings/sla/new/", {"name": "S", "t-4-first_reply-minutes": "1e400", "esc-0-on": "whenever"}),
        ("/desk/settings/sla/new/", {"name": "S", "t-4-first_reply-minutes": "٣", "calendar": "٣"}),
        ("/desk/settings/triggers/new/", {"name": "T", "events": ["nope"] * 200, "all-field": ["subject"] * 200}),
        ("/desk/settings/triggers/new/", {"name": "T", "all-field": ["priority"], "all-op": ["??"], "all-value": []}),
        ("/desk/settings/triggers/new/", {"name": "T", "act-type": ["notify"], "act-value": ["1,x,99999999"]}),
        ("/desk/settings/time-rules/new/", {"name": "T", "act-type": ["webhook"], "act-value": ["ftp://x"]}),
        ("/desk/settings/routing/rules/new/", {"name": "R", "team": "1" * 30, "inbox": "-1"}),
        ("/desk/settings/macros/new/", {"name": "M", "scope": "team:abc", "act-type": ["team"], "act-value": ["x"]}),
        ("/desk/settings/macros/new/", {"name": "M", "scope": "owner:99999", "act-type": ["assignee"]}),
        ("/desk/settings/canned/new/", {"title": "C", "body": "b" * 30_000, "scope": "all"}),
    ],
)
def test_hostile_input_gets_a_clear_error_never_a_500(admin: Client, url: str, data: dict[str, Any]) -> None:
    # when
    resp = admin.post(url, data)
    # then
    assert resp.status_code == 400, resp.content
    assert "nothing was saved" in text_of(resp)
    assert field_errors(resp)


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/desk/settings/sla/new/", {"action": "preview", "preview_ticket": "9" * 40}),
        ("/desk/settings/triggers/new/", {"action": "preview", "preview_ticket": "#-3"}),
        ("/desk/settings/routing/rules/new/", {"action": "preview", "preview_ticket": ""}),
    ],
)
def test_a_preview_with_a_bad_ticket_number_says_so(admin: Client, url: str, data: dict[str, Any]) -> None:
    # when
    resp = admin.post(url, data)
    # then
    assert resp.status_code == 200, resp.content
    assert any("ticket number" in e for e in field_errors(resp)) or field_errors(resp)


def test_moving_with_an_unknown_direction_changes_nothing(admin: Client) -> None:
    # given
    a = SlaPolicy.objects.create(name="A", position=0)
    SlaPolicy.objects.create(name="B", position=1)
    # when
    resp = admin.post(f"/desk/settings/sla/{a.pk}/move/", {"direction": "sideways"})
    got = admin.get(f"/desk/settings/sla/{a.pk}/move/")
    # then
    assert resp.status_code == 302
    assert got.status_code == 405
    assert list(SlaPolicy.objects.order_by("position", "id").values_list("name", flat=True)) == ["A", "B"]


def test_a_supervisor_manages_shared_canned_responses_but_not_calendars(db: Any, support_team: Team) -> None:
    # given
    boss = do_create_agent(email="sup@example.com", name="Sue Super", password="pw-sup-1234", role=Role.SUPERVISOR)
    client = logged_in(boss)
    # when
    canned = client.post(
        "/desk/settings/canned/new/", {"title": "Team hello", "body": "Hi", "scope": f"team:{support_team.pk}"}
    )
    calendars = client.get("/desk/settings/calendars/")
    # then
    assert canned.status_code == 302, canned.content
    assert CannedResponse.objects.get().team_id == support_team.pk
    assert calendars.status_code == 403


def test_an_sla_escalation_is_saved_and_shown_again(admin: Client, support_team: Team) -> None:
    # when: on breach of the first reply target, set the team and notify it
    resp = admin.post(
        "/desk/settings/sla/new/",
        sla_post(
            **{
                "esc-0-on": "breach",
                "esc-0-metric": "first_reply",
                "esc-0-type": ["team", "notify", ""],
                "esc-0-value": [str(support_team.pk), "team", ""],
                "esc-0-value2": ["", "First reply missed", ""],
            }
        ),
    )
    # then
    assert resp.status_code == 302, resp.content
    policy = SlaPolicy.objects.get()
    assert policy.escalations == [
        {
            "on": "breach",
            "metric": "first_reply",
            "actions": [
                {"type": "team", "value": support_team.pk},
                {"type": "notify", "value": {"to": "team", "text": "First reply missed"}},
            ],
        }
    ]
    page = text_of(admin.get(f"/desk/settings/sla/{policy.pk}/"))
    assert '<option value="breach" selected>' in page
    assert 'value="First reply missed"' in page
    assert 'name="esc-1-on"' in page  # a blank block for one more


def test_a_bad_escalation_step_is_shown_with_the_escalations(admin: Client) -> None:
    # when
    resp = admin.post(
        "/desk/settings/sla/new/",
        sla_post(**{"esc-0-on": "breach", "esc-0-type": ["priority"], "esc-0-value": ["99"], "esc-0-value2": [""]}),
    )
    # then
    assert resp.status_code == 400
    assert re.search(r'id="escalations-error"', text_of(resp)), field_errors(resp)
    assert not SlaPolicy.objects.exists()


def test_the_routing_page_lists_rules_teams_and_agents(admin: Client, agent: Any, support_team: Team) -> None:
    # given
    RoutingRule.objects.create(name="VIP", team=support_team)
    # when
    page = text_of(admin.get("/desk/settings/routing/"))
    # then
    assert "VIP" in page
    assert f'href="/desk/settings/routing/teams/{support_team.pk}/"' in page
    assert f'href="/desk/settings/routing/agents/{agent.pk}/"' in page


def test_the_time_rule_preview_refuses_a_rule_that_would_fire_for_ever(admin: Client) -> None:
    # given
    ticket = new_ticket()
    # when
    resp = admin.post(
        "/desk/settings/time-rules/new/",
        trigger_post(
            action="preview",
            preview_ticket=str(ticket.number),
            events=[],
            **{"all-field": ["status", "updated"], "all-op": ["is", "greater_than"], "all-value": ["open", "0"]},
            **{"act-type": ["note"], "act-value": ["Ping"], "act-value2": [""]},
        ),
    )
    # then: the preview runs, and says why it could not be saved
    assert resp.status_code == 200, resp.content
    page = text_of(resp)
    assert 'class="preview-result"' in page
    assert '<p class="error">' in page
    assert not Rule.objects.exists()


def test_a_custom_field_condition_names_its_key(admin: Client) -> None:
    # when
    resp = admin.post(
        "/desk/settings/triggers/new/",
        trigger_post(**{"all-field": ["custom_field.<key>"], "all-key": ["order_id"], "all-op": ["present"]}),
    )
    # then
    assert resp.status_code == 302, resp.content
    rule = Rule.objects.get()
    assert rule.conditions["all"][0]["field"] == "custom_field.order_id"
    page = text_of(admin.get(f"/desk/settings/triggers/{rule.pk}/"))
    assert 'value="order_id"' in page
