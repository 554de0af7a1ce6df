"""Priority, team and tags: the actions (helpdesk/actions/ticket_fields.py) and the desk's forms for them."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.db import transaction

from helpdesk import realtime
from helpdesk.actions.ticket_fields import (
    MAX_TAG_CHARS,
    MAX_TAGS_PER_EDIT,
    InvalidTag,
    do_change_priority,
    do_change_team,
    do_set_tags,
    normalize_tag,
)
from helpdesk.models import Priority, Tag, Team, Ticket, TicketEvent, TicketEventType
from helpdesk.tests.conftest import ingest, logged_in, new_ticket

pytestmark = pytest.mark.django_db

EDIT_URLS = ("priority", "team", "tags", "merge", "followup")


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


def events_of(ticket: Ticket) -> list[tuple[int, str, dict[str, Any]]]:
    return [(e.seq, e.type, e.data) for e in ticket.events.order_by("seq")]


def tag_names(ticket: Ticket) -> list[str]:
    return sorted(ticket.tags.values_list("name", flat=True))


class RecordingLayer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


@pytest.fixture
def layer(monkeypatch: Any) -> RecordingLayer:
    recording = RecordingLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: recording)
    return recording


# --- priority -------------------------------------------------------------------------------


def test_change_priority_appends_an_event_and_is_a_no_op_when_unchanged(agent: Any) -> None:
    # given
    ticket = new_ticket(priority=Priority.NORMAL)
    # when
    do_change_priority(ticket, priority=Priority.URGENT, actor=agent)
    do_change_priority(ticket, priority=Priority.URGENT, actor=agent)
    # then
    ticket.refresh_from_db()
    assert ticket.priority == Priority.URGENT
    assert events_of(ticket) == [(1, TicketEventType.PRIORITY_CHANGED, {"old": 2, "new": 4})]
    assert ticket.last_event_seq == 1
    assert ticket.events.get().actor == agent


@pytest.mark.parametrize("priority", [0, 5, -1, 10**12])
def test_unknown_priority_is_refused(agent: Any, priority: int) -> None:
    # given
    ticket = new_ticket()
    # when / then
    with pytest.raises(ValueError, match="is not a valid Priority"):
        do_change_priority(ticket, priority=priority, actor=agent)
    assert not TicketEvent.objects.exists()


# --- team -----------------------------------------------------------------------------------


def test_change_team_appends_events_and_is_a_no_op_when_unchanged(agent: Any, support_team: Team) -> None:
    # given
    ticket = new_ticket(team=None)
    # when
    do_change_team(ticket, team=support_team, actor=agent)
    do_change_team(ticket, team=support_team, actor=agent)
    do_change_team(ticket, team=None, actor=agent)
    # then
    ticket.refresh_from_db()
    assert ticket.team is None
    assert events_of(ticket) == [
        (1, TicketEventType.TEAM_CHANGED, {"old_team_id": None, "new_team_id": support_team.pk}),
        (2, TicketEventType.TEAM_CHANGED, {"old_team_id": support_team.pk, "new_team_id": None}),
    ]


# --- tags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [(" VIP ", "vip"), ("Refund Requested", "refund requested"), ("Zákazník", "zákazník"), ("紧急", "紧急")],
)
def test_tag_names_are_trimmed_and_lower_cased(raw: str, stored: str) -> None:
    assert normalize_tag(raw) == stored


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "x" * (MAX_TAG_CHARS + 1),
        "a,b",
        "bad\x00tag",
        "two\nlines",
        "tab\there",
        "bell\x07",
        "rtl\u202eoverride",
        "zero\u200bwidth",
        "\ufeffbom",
    ],
)
def test_unstorable_tag_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidTag):
        normalize_tag(raw)


def test_a_tag_of_the_longest_length_is_kept() -> None:
    assert normalize_tag("y" * MAX_TAG_CHARS) == "y" * MAX_TAG_CHARS


def test_set_tags_creates_tags_on_demand_and_records_what_changed(agent: Any) -> None:
    # given
    ticket = new_ticket()
    Tag.objects.create(name="billing")
    # when
    do_set_tags(ticket, add=["VIP", "billing", " vip "], actor=agent)
    do_set_tags(ticket, add=["urgent"], remove=["VIP", "never-there"], actor=agent)
    # then
    assert tag_names(ticket) == ["billing", "urgent"]
    assert sorted(Tag.objects.values_list("name", flat=True)) == ["billing", "urgent", "vip"]
    assert events_of(ticket) == [
        (1, TicketEventType.TAGS_CHANGED, {"added": ["billing", "vip"], "removed": []}),
        (2, TicketEventType.TAGS_CHANGED, {"added": ["urgent"], "removed": ["vip"]}),
    ]


def test_set_tags_that_changes_nothing_writes_nothing(agent: Any) -> None:
    # given
    ticket = new_ticket()
    do_set_tags(ticket, add=["vip"], actor=agent)
    # when
    do_set_tags(ticket, add=["VIP"], remove=["absent"], actor=agent)
    do_set_tags(ticket, actor=agent)
    # then
    assert ticket.events.count() == 1
    assert not Tag.objects.filter(name="absent").exists()


def test_set_tags_refuses_bad_names_and_changes_nothing(agent: Any) -> None:
    # given
    ticket = new_ticket()
    # when / then
    with pytest.raises(InvalidTag):
        do_set_tags(ticket, add=["fine", "not,fine"], actor=agent)
    with pytest.raises(InvalidTag):
        do_set_tags(ticket, add=["same"], remove=["SAME"], actor=agent)
    with pytest.raises(InvalidTag):
        do_set_tags(ticket, add=[f"t{i}" for i in range(MAX_TAGS_PER_EDIT + 1)], actor=agent)
    assert not Tag.objects.exists()
    assert not TicketEvent.objects.exists()


# --- permissions, sequence numbers, live updates --------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda t, a: do_change_priority(t, priority=Priority.HIGH, actor=a),
        lambda t, a: do_change_team(t, team=None, actor=a),
        lambda t, a: do_set_tags(t, add=["x"], actor=a),
    ],
)
def test_light_agents_and_outsiders_may_not_edit(
    light_agent: Any, agent: Any, billing_team: Team, support_team: Team, edit: Any
) -> None:
    # given
    own = new_ticket(team=support_team)
    hidden = new_ticket(team=billing_team)
    # when / then
    with pytest.raises(PermissionDenied):
        edit(own, light_agent)
    with pytest.raises(PermissionDenied):
        edit(hidden, agent)
    assert not TicketEvent.objects.exists()
    assert not Tag.objects.exists()


def test_edits_number_their_events_without_gaps_after_ingest(agent: Any, api_inbox: Any, support_team: Team) -> None:
    # given: a ticket with the events of its first message
    ticket = ingest(api_inbox)
    before = ticket.events.count()
    # when
    do_change_priority(ticket, priority=Priority.HIGH, actor=agent)
    do_set_tags(ticket, add=["a"], actor=agent)
    do_change_team(ticket, team=support_team, actor=agent)
    do_set_tags(ticket, remove=["a"], actor=agent)
    # then
    ticket.refresh_from_db()
    seqs = list(ticket.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, before + 5))
    assert ticket.last_event_seq == before + 4


@pytest.mark.django_db(transaction=True)
def test_edits_are_published_after_commit(agent: Any, support_team: Team, layer: RecordingLayer) -> None:
    # given
    ticket = new_ticket(team=support_team)
    # when
    with transaction.atomic():
        do_set_tags(ticket, add=["vip"], actor=agent)
        assert layer.sent == []
    do_change_priority(ticket, priority=Priority.LOW, actor=agent)
    # then
    to_ticket = [(m["event"], m["seq"], m["data"]) for g, m in layer.sent if g == f"ticket.{ticket.pk}"]
    assert to_ticket == [
        ("tags_changed", 1, {"added": ["vip"], "removed": []}),
        ("priority_changed", 2, {"old": 2, "new": 1}),
    ]
    assert {g for g, _ in layer.sent} == {f"ticket.{ticket.pk}", "desk.all", f"team.{support_team.pk}"}


# --- the forms on the ticket page -----------------------------------------------------------


def test_ticket_page_shows_tags_as_removable_chips_and_the_edit_forms(agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    do_set_tags(ticket, add=["vip", "<b>bold</b>"], actor=agent)
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert body.count('class="chip"') == 2
    assert 'name="remove" value="vip"' in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in body
    assert "<b>bold</b>" not in body
    for action in EDIT_URLS:
        assert f'action="/desk/tickets/{ticket.number}/{action}/"' in body
    assert 'name="csrfmiddlewaretoken"' in body


def test_light_agent_sees_the_tags_but_no_edit_forms(light_agent: Any, agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    do_set_tags(ticket, add=["vip"], actor=agent)
    # when
    resp = logged_in(light_agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert 'class="chip">vip' in body
    for action in EDIT_URLS:
        assert f"/{action}/" not in body


def test_priority_form_changes_the_priority(agent: Any) -> None:
    # given
    ticket = new_ticket()
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/priority/", {"priority": "3"})
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == f"/desk/tickets/{ticket.number}/"
    ticket.refresh_from_db()
    assert ticket.priority == Priority.HIGH


@pytest.mark.parametrize("priority", ["", "abc", "0", "5", "-1", "2.0", "١", "99999999999999999999999", "x" * 10_000])
def test_unknown_priority_is_a_clear_error(agent: Any, priority: str) -> None:
    # given
    ticket = new_ticket()
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/priority/", {"priority": priority}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"Unknown priority {priority[:40]!r}."]
    assert not TicketEvent.objects.exists()


def test_team_form_moves_the_ticket_and_takes_it_out_of_any_team(agent: Any, support_team: Team) -> None:
    # given
    ticket = new_ticket(team=None)
    client = logged_in(agent)
    # when
    first = client.post(f"/desk/tickets/{ticket.number}/team/", {"team": str(support_team.pk)})
    ticket.refresh_from_db()
    moved_to = ticket.team
    second = client.post(f"/desk/tickets/{ticket.number}/team/", {"team": ""})
    # then
    assert (first.status_code, second.status_code) == (302, 302)
    assert moved_to == support_team
    ticket.refresh_from_db()
    assert ticket.team is None


def test_moving_a_ticket_out_of_sight_lands_on_the_list(agent: Any, billing_team: Team) -> None:
    # given
    ticket = new_ticket(team=None)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/team/", {"team": str(billing_team.pk)}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert resp.redirect_chain[-1][0] == "/desk/"
    assert flashed(resp) == [f"#{ticket.number} moved to Billing."]


@pytest.mark.parametrize("team", ["abc", "0", "-1", "1.5", "99999999999999999999999", "9999", "x" * 10_000])
def test_unknown_team_is_a_clear_error(agent: Any, team: str) -> None:
    # given
    ticket = new_ticket()
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/team/", {"team": team}, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [f"No such team: {team[:40]!r}."]
    assert not TicketEvent.objects.exists()


def test_tag_forms_add_and_remove(agent: Any) -> None:
    # given
    ticket = new_ticket()
    client = logged_in(agent)
    # when
    added = client.post(f"/desk/tickets/{ticket.number}/tags/", {"add": "  Needs Callback "})
    also = client.post(f"/desk/tickets/{ticket.number}/tags/", {"add": "vip"})
    removed = client.post(f"/desk/tickets/{ticket.number}/tags/", {"remove": "needs callback"})
    # then
    assert (added.status_code, also.status_code, removed.status_code) == (302, 302, 302)
    assert tag_names(ticket) == ["vip"]
    assert [e[2] for e in events_of(ticket)] == [
        {"added": ["needs callback"], "removed": []},
        {"added": ["vip"], "removed": []},
        {"added": [], "removed": ["needs callback"]},
    ]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"add": "x" * 65}, "A tag has at most 64 characters (this one has 65)."),
        ({"add": "x" * 100_000}, "A tag has at most 64 characters (this one has 100000)."),
        ({"add": "one,two"}, "A tag name cannot contain a comma; add one tag at a time."),
        ({"add": "nul\x00"}, "A tag name cannot contain control or invisible characters."),
        ({"add": "line\r\nbreak"}, "A tag name cannot contain control or invisible characters."),
        ({"add": "\u202egnp.exe"}, "A tag name cannot contain control or invisible characters."),
        ({"add": "   "}, "A tag needs a name."),
        ({}, "A tag needs a name."),
        ({"add": [f"t{i}" for i in range(200)]}, f"At most {MAX_TAGS_PER_EDIT} tags at a time."),
    ],
)
def test_unstorable_tags_are_a_clear_error(agent: Any, data: dict[str, Any], error: str) -> None:
    # given
    ticket = new_ticket()
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{ticket.number}/tags/", data, follow=True)
    # then
    assert resp.status_code == 200, resp.content
    assert flashed(resp) == [error]
    assert not Tag.objects.exists()
    assert not TicketEvent.objects.exists()


def test_timeline_shows_field_changes_readably(agent: Any, api_inbox: Any, support_team: Team) -> None:
    # given
    ticket = ingest(api_inbox)
    do_change_priority(ticket, priority=Priority.URGENT, actor=agent)
    do_change_team(ticket, team=support_team, actor=agent)
    do_set_tags(ticket, add=["vip"], actor=agent)
    do_set_tags(ticket, add=["refund"], remove=["vip"], actor=agent)
    do_change_team(ticket, team=None, actor=agent)
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/timeline/")
    # then
    assert resp.status_code == 200, resp.content
    body = " ".join(resp.content.decode().split())
    assert "Priority changed by Ada Agent: Normal → Urgent" in body
    assert "Team changed by Ada Agent: no team → Support" in body
    assert "Team changed by Ada Agent: Support → no team" in body
    assert 'Tags changed by Ada Agent: <span class="tag-added">+vip</span>' in body
    assert '<span class="tag-added">+refund</span> <span class="tag-removed">−vip</span>' in body


# --- hostile: who may post at all -----------------------------------------------------------


def _posts(number: int, other: int) -> dict[str, dict[str, str]]:
    return {
        "priority": {"priority": "4"},
        "team": {"team": ""},
        "tags": {"add": "hacked"},
        "merge": {"into": str(other), "confirm": "1"},
        "followup": {"previous": str(other)},
    }


def _unchanged(ticket: Ticket, other: Ticket) -> None:
    ticket.refresh_from_db()
    other.refresh_from_db()
    assert not TicketEvent.objects.exists()
    assert not Tag.objects.exists()
    assert (ticket.merged_into_id, ticket.followup_of_id, ticket.priority) == (None, None, Priority.NORMAL)


def test_light_agent_gets_403_on_every_edit(light_agent: Any, support_team: Team) -> None:
    # given
    ticket = new_ticket(team=support_team)
    other = new_ticket(team=support_team)
    client = logged_in(light_agent)
    # when / then
    for action, data in _posts(ticket.number, other.number).items():
        resp = client.post(f"/desk/tickets/{ticket.number}/{action}/", data)
        assert resp.status_code == 403, (action, resp.status_code)
    _unchanged(ticket, other)


def test_edits_of_an_invisible_ticket_are_404(agent: Any, billing_team: Team) -> None:
    # given
    hidden = new_ticket(team=billing_team)
    other = new_ticket(team=None)
    client = logged_in(agent)
    # when / then
    for action, data in _posts(hidden.number, other.number).items():
        resp = client.post(f"/desk/tickets/{hidden.number}/{action}/", data)
        assert resp.status_code == 404, (action, resp.status_code)
    _unchanged(hidden, other)


def test_every_edit_needs_the_csrf_token(agent: Any) -> None:
    # given
    ticket = new_ticket(team=None)
    other = new_ticket(team=None)
    client = logged_in(agent, enforce_csrf_checks=True)
    # when / then
    for action, data in _posts(ticket.number, other.number).items():
        resp = client.post(f"/desk/tickets/{ticket.number}/{action}/", data)
        assert resp.status_code == 403, (action, resp.status_code)
    _unchanged(ticket, other)


def test_every_edit_refuses_get(agent: Any) -> None:
    # given
    ticket = new_ticket()
    client = logged_in(agent)
    # when / then
    for action in EDIT_URLS:
        assert client.get(f"/desk/tickets/{ticket.number}/{action}/", {"priority": "4"}).status_code == 405


def test_anonymous_edits_go_to_the_login_page(client: Any) -> None:
    # given
    ticket = new_ticket()
    # when / then
    for action in EDIT_URLS:
        resp = client.post(f"/desk/tickets/{ticket.number}/{action}/", {"priority": "4"})
        assert resp.status_code == 302
        assert resp["Location"].startswith("/desk/login/")
