"""Canned responses: placeholders, who may use and manage which, the composer's picker with and without JavaScript."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.canned import do_delete_canned_response, do_save_canned_response
from helpdesk.canned import MAX_BODY_CHARS, MAX_RENDERED_CHARS, placeholder_values, render_canned
from helpdesk.models import CannedResponse, Team, Ticket
from helpdesk.permissions import canned_policy
from helpdesk.tests.conftest import logged_in, new_ticket
from helpdesk.views.desk import MAX_TEXT_CHARS
from tests.chromium import CHROMIUM, CHROMIUM_FLAGS, browser_test
from tests.factories import CustomerFactory, IdentityFactory
from tests.test_run_modes import embedded_env, manage, serving, signed_post, wait_until

ALL = (
    "{{ customer.first_name }}|{{ customer.name }}|{{ customer.email }}|{{ agent.name }}|"
    "{{ agent.first_name }}|{{ ticket.number }}|{{ ticket.subject }}"
)


def canned(title: str = "Thanks", body: str = "Hi {{ customer.first_name }}", **scope: Any) -> CannedResponse:
    return CannedResponse.objects.create(title=title, body=body, **scope)


@pytest.fixture
def zoe_ticket(db: Any) -> Ticket:
    customer = CustomerFactory(name="Zoë van Dijk")
    IdentityFactory(customer=customer, value="zoe@example.com")
    return new_ticket(customer=customer, subject="Where is my parcel?", number=4242)


def picker_titles(resp: Any) -> list[str]:
    found = re.search(r'<select name="canned" id="canned-select">(.*?)</select>', resp.content.decode(), flags=re.S)
    return re.findall(r'<option value="\d+">([^<]*)</option>', found.group(1)) if found else []


def textarea(resp: Any) -> str:
    found = re.search(r'<textarea name="text" id="composer-text"[^>]*>\n(.*?)</textarea>', resp.content.decode(), re.S)
    assert found, resp.content
    return found.group(1)


# --- placeholders -----------------------------------------------------------------------------------


def test_every_placeholder_is_filled(agent: Any, zoe_ticket: Ticket) -> None:
    # given
    values = placeholder_values(zoe_ticket, agent)
    # when
    text = render_canned(ALL, values)
    # then
    assert text == "Zoë|Zoë van Dijk|zoe@example.com|Ada Agent|Ada|4242|Where is my parcel?"


def test_identities_given_by_the_page_fill_the_email_without_a_query(
    agent: Any, zoe_ticket: Ticket, django_assert_num_queries: Any
) -> None:
    # given
    identities = list(zoe_ticket.customer.identities.all())
    # when / then
    with django_assert_num_queries(0):
        values = placeholder_values(zoe_ticket, agent, identities)
    assert values["customer.email"] == "zoe@example.com"


def test_spacing_inside_the_braces_does_not_matter(agent: Any, zoe_ticket: Ticket) -> None:
    # when
    text = render_canned("{{customer.first_name}}, {{   ticket.number\t}}", placeholder_values(zoe_ticket, agent))
    # then
    assert text == "Zoë, 4242"


@pytest.mark.parametrize(
    "body",
    [
        "{{ customer.__class__ }}",
        "{{ customer.__class__.__mro__ }}",
        "{{ ticket.customer }}",
        "{{ agent.password }}",
        "{{ customer.first_name|upper }}",
        "{{ settings.SECRET_KEY }}",
        "{% load static %}{% debug %}",
        "{{ customer }}",
        "{{ ticket.number.real }}",
        "{ customer.name }",
        "{{ customer.name }",
        "{{{{}}}}",
        "}}{{",
        "{{ CUSTOMER.NAME }}",
    ],
)
def test_unknown_and_hostile_placeholders_stay_as_written(agent: Any, zoe_ticket: Ticket, body: str) -> None:
    # when
    text = render_canned(body, placeholder_values(zoe_ticket, agent))
    # then
    assert text == body


def test_braces_around_a_placeholder_are_kept(agent: Any, zoe_ticket: Ticket) -> None:
    # when
    text = render_canned("{ {{ ticket.number }} } {{{ ticket.number }}}", placeholder_values(zoe_ticket, agent))
    # then
    assert text == "{ 4242 } {4242}"


def test_values_are_not_scanned_again_nor_escaped(agent: Any, db: Any) -> None:
    # given: a customer whose name is itself a placeholder and markup
    customer = CustomerFactory(name="{{ agent.name }} <b>&</b>")
    t = new_ticket(customer=customer, subject="{{ customer.email }}")
    # when
    text = render_canned("{{ customer.name }} / {{ ticket.subject }}", placeholder_values(t, agent))
    # then: plain text, taken literally
    assert text == "{{ agent.name }} <b>&</b> / {{ customer.email }}"


def test_missing_values_are_empty_and_the_agent_falls_back_to_the_email(db: Any) -> None:
    # given: a customer without name or email, an agent without a name
    nameless = do_create_agent(email="noname@example.com", password="pw-noname-123")
    t = new_ticket(customer=CustomerFactory(name=""), subject="")
    # when
    text = render_canned(ALL, placeholder_values(t, nameless))
    # then
    assert text == f"|||noname@example.com|noname@example.com|{t.number}|"


def test_a_very_long_body_renders_at_most_the_composers_limit(agent: Any, zoe_ticket: Ticket) -> None:
    # given: the longest body, every placeholder the longest value
    customer = zoe_ticket.customer
    customer.name = "N" * 200
    body = ("{{customer.name}}" * (MAX_BODY_CHARS // 17 + 1))[:MAX_BODY_CHARS]
    # when
    text = render_canned(body, placeholder_values(zoe_ticket, agent))
    # then
    assert MAX_RENDERED_CHARS == MAX_TEXT_CHARS
    assert len(text) == MAX_RENDERED_CHARS
    assert set(text) == {"N"}


def test_a_long_body_of_braces_renders_quickly(agent: Any, zoe_ticket: Ticket) -> None:
    # given: braces and near-placeholders that a careless regex would backtrack over
    body = ("{{ " + "a" * 39 + "." * 3) * 500 + "{{" * 5_000
    # when
    text = render_canned(body, placeholder_values(zoe_ticket, agent))
    # then
    assert text == body


# --- visibility -------------------------------------------------------------------------------------


@pytest.fixture
def scoped(agent: Any, billing_agent: Any, support_team: Team, billing_team: Team) -> dict[str, CannedResponse]:
    """One response per scope; the agent is in Support, not in Billing."""
    return {
        "everyone": canned("Everyone's", "For all, {{ customer.first_name }}"),
        "support": canned("Support's", "Support here", team=support_team),
        "billing": canned("Billing's", "Billing here", team=billing_team),
        "mine": canned("Mine", "Mine, {{ agent.first_name }}", owner=agent),
        "theirs": canned("Bea's", "Bea's own", owner=billing_agent),
    }


def test_the_picker_lists_personal_team_and_everyones_in_title_order(
    agent: Any, scoped: dict[str, CannedResponse], zoe_ticket: Ticket
) -> None:
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{zoe_ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    assert picker_titles(resp) == [escape("Everyone's"), "Mine", escape("Support's")]
    assert '<label for="canned-select">Insert canned response</label>' in resp.content.decode()
    assert "desk/canned.js" in resp.content.decode()


def test_without_canned_responses_there_is_no_picker(agent: Any, zoe_ticket: Ticket) -> None:
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{zoe_ticket.number}/")
    # then: the composer as it always was
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert "canned-select" not in body
    assert "desk/canned.js" not in body
    assert 'id="composer-text"' in body
    assert textarea(resp) == ""


@pytest.mark.parametrize(("key", "found"), [("everyone", True), ("support", True), ("mine", True)])
def test_the_endpoint_answers_the_usable_ones_rendered(
    agent: Any, scoped: dict[str, CannedResponse], zoe_ticket: Ticket, key: str, found: bool
) -> None:
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{zoe_ticket.number}/canned/{scoped[key].pk}/")
    # then
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"] == "application/json"
    assert "no-store" in resp["Cache-Control"]
    expected = {"everyone": "For all, Zoë", "support": "Support here", "mine": "Mine, Ada"}[key]
    assert json.loads(resp.content) == {"text": expected}


@pytest.mark.parametrize("key", ["billing", "theirs"])
def test_another_teams_or_agents_response_is_not_found(
    agent: Any, scoped: dict[str, CannedResponse], zoe_ticket: Ticket, key: str
) -> None:
    # given
    client = logged_in(agent)
    # when
    as_json = client.get(f"/desk/tickets/{zoe_ticket.number}/canned/{scoped[key].pk}/")
    prefill = client.get(f"/desk/tickets/{zoe_ticket.number}/?canned={scoped[key].pk}")
    # then
    assert as_json.status_code == 404, as_json.content
    assert prefill.status_code == 404, prefill.content


def test_the_billing_agent_sees_billings_not_supports(
    billing_agent: Any, scoped: dict[str, CannedResponse], zoe_ticket: Ticket
) -> None:
    # when
    resp = logged_in(billing_agent).get(f"/desk/tickets/{zoe_ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    assert picker_titles(resp) == [escape("Bea's"), escape("Billing's"), escape("Everyone's")]


def test_a_ticket_the_agent_may_not_see_is_not_found(
    agent: Any, billing_team: Team, scoped: dict[str, CannedResponse]
) -> None:
    # given: a Billing ticket; the agent is in Support
    t = new_ticket(team=billing_team)
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{t.number}/canned/{scoped['everyone'].pk}/")
    # then
    assert resp.status_code == 404, resp.content


@pytest.mark.parametrize(
    "suffix", ["canned/0/", "canned/99999999/", "canned/abc/", "canned/-1/", f"canned/{'9' * 40}/", "canned/1/x/"]
)
def test_hostile_endpoint_urls_are_not_found(agent: Any, zoe_ticket: Ticket, suffix: str) -> None:
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{zoe_ticket.number}/{suffix}")
    # then
    assert resp.status_code == 404, resp.content


def test_the_endpoint_is_get_only_and_for_staff(agent: Any, client: Any, scoped: dict[str, CannedResponse]) -> None:
    # given
    t = new_ticket()
    url = f"/desk/tickets/{t.number}/canned/{scoped['everyone'].pk}/"
    # when / then
    assert logged_in(agent).post(url).status_code == 405
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/desk/login/")


def test_a_light_agent_may_insert_canned_text_into_notes(
    light_agent: Any, scoped: dict[str, CannedResponse], zoe_ticket: Ticket
) -> None:
    # when
    resp = logged_in(light_agent).get(f"/desk/tickets/{zoe_ticket.number}/canned/{scoped['support'].pk}/")
    # then
    assert resp.status_code == 200, resp.content
    assert json.loads(resp.content) == {"text": "Support here"}


# --- without JavaScript: ?canned=<id> prefills the composer --------------------------------------------


def test_the_picker_form_prefills_the_composer(
    agent: Any, scoped: dict[str, CannedResponse], zoe_ticket: Ticket
) -> None:
    # given: the picker is a plain GET form back to the ticket page
    client = logged_in(agent)
    page = client.get(f"/desk/tickets/{zoe_ticket.number}/").content.decode()
    assert f'<form method="get" action="/desk/tickets/{zoe_ticket.number}/" class="canned-picker"' in page
    # when
    resp = client.get(f"/desk/tickets/{zoe_ticket.number}/", {"canned": scoped["everyone"].pk})
    # then
    assert resp.status_code == 200, resp.content
    assert textarea(resp) == "For all, Zoë"


def test_the_prefill_is_escaped_and_keeps_a_leading_newline(agent: Any, zoe_ticket: Ticket) -> None:
    # given
    c = canned("Markup", "\n</textarea><script>alert(1)</script> {{ ticket.number }}")
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{zoe_ticket.number}/?canned={c.pk}")
    # then
    assert resp.status_code == 200, resp.content
    assert "<script>alert(1)" not in resp.content.decode()
    assert textarea(resp) == escape("\n</textarea><script>alert(1)</script> 4242")


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "9" * 40, "١", "0", "99999999"])
def test_a_hostile_prefill_id_is_not_found(agent: Any, zoe_ticket: Ticket, value: str) -> None:
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{zoe_ticket.number}/", {"canned": value})
    # then
    assert resp.status_code == 404, resp.content


def test_an_empty_prefill_choice_is_the_plain_page(
    agent: Any, scoped: dict[str, CannedResponse], zoe_ticket: Ticket
) -> None:
    # when: "Choose…" submitted
    resp = logged_in(agent).get(f"/desk/tickets/{zoe_ticket.number}/?canned=")
    # then
    assert resp.status_code == 200, resp.content
    assert textarea(resp) == ""


# --- query count ----------------------------------------------------------------------------------------


def test_ticket_page_query_count_does_not_grow_with_canned_responses(
    agent: Any, support_team: Team, zoe_ticket: Ticket
) -> None:
    client = logged_in(agent)
    url = f"/desk/tickets/{zoe_ticket.number}/"

    def page_queries() -> tuple[int, Any]:
        with CaptureQueriesContext(connection) as queries:
            resp = client.get(url)
        assert resp.status_code == 200, resp.content
        return len(queries), resp

    # given: none, then one
    without, _ = page_queries()
    canned("One", "one")
    with_one, _ = page_queries()
    # given: many more, in every scope
    for i in range(30):
        canned(f"Everyone {i}", "x")
        canned(f"Team {i}", "x", team=support_team)
        canned(f"Mine {i}", "x", owner=agent)
    # when
    with_many, resp = page_queries()
    # then: one query for the picker, whatever it lists
    assert without == with_one == with_many
    assert len(picker_titles(resp)) == 91


# --- managing ---------------------------------------------------------------------------------------------


@pytest.fixture
def supervisor(db: Any) -> Any:
    return do_create_agent(email="sue@example.com", name="Sue Super", password="pw-sue-12345", role="supervisor")


def test_an_agent_manages_their_personal_ones(agent: Any) -> None:
    # when
    created = do_save_canned_response(None, title=" Mine ", body="Hi", owner=agent, actor=agent)
    changed = do_save_canned_response(created, title="Mine 2", body="Hello", owner=agent, actor=agent)
    # then
    assert (changed.pk, changed.title, changed.body, changed.created_by) == (created.pk, "Mine 2", "Hello", agent)
    assert CannedResponse.objects.get().title == "Mine 2"
    # when
    do_delete_canned_response(changed, actor=agent)
    # then
    assert not CannedResponse.objects.exists()


@pytest.mark.parametrize("scope", ["everyone", "team", "someone_else"])
def test_an_agent_may_not_manage_shared_or_others_ones(
    agent: Any, billing_agent: Any, support_team: Team, scope: str
) -> None:
    # given
    kwargs: dict[str, Any] = {"everyone": {}, "team": {"team": support_team}, "someone_else": {"owner": billing_agent}}[
        scope
    ]
    existing = canned("Existing", "x", **kwargs)
    # when / then: neither create, nor change, nor delete
    with pytest.raises(PermissionDenied):
        do_save_canned_response(None, title="New", body="x", actor=agent, **kwargs)
    with pytest.raises(PermissionDenied):
        do_save_canned_response(existing, title="Changed", body="x", actor=agent, **kwargs)
    with pytest.raises(PermissionDenied):
        do_delete_canned_response(existing, actor=agent)
    assert list(CannedResponse.objects.values_list("title", flat=True)) == ["Existing"]


def test_an_agent_may_not_take_a_shared_one_personal(agent: Any, support_team: Team) -> None:
    # given
    shared = canned("Shared", "x", team=support_team)
    # when / then: the old scope is checked too
    with pytest.raises(PermissionDenied):
        do_save_canned_response(shared, title="Now mine", body="x", owner=agent, actor=agent)
    shared.refresh_from_db()
    assert (shared.title, shared.team_id, shared.owner_id) == ("Shared", support_team.pk, None)


def test_a_supervisor_manages_shared_ones_not_others_personal(supervisor: Any, agent: Any, support_team: Team) -> None:
    # when
    team_one = do_save_canned_response(None, title="Team", body="x", team=support_team, actor=supervisor)
    everyone = do_save_canned_response(None, title="All", body="x", actor=supervisor)
    do_delete_canned_response(everyone, actor=supervisor)
    # then
    assert list(CannedResponse.objects.values_list("title", flat=True)) == ["Team"]
    assert team_one.created_by == supervisor
    with pytest.raises(PermissionDenied):
        do_save_canned_response(None, title="Ada's", body="x", owner=agent, actor=supervisor)


def test_an_admin_manages_every_one(admin_agent: Any, agent: Any) -> None:
    # given
    personal = canned("Ada's", "x", owner=agent)
    # when
    do_save_canned_response(personal, title="Ada's, fixed", body="y", owner=agent, actor=admin_agent)
    # then
    personal.refresh_from_db()
    assert (personal.title, personal.body) == ("Ada's, fixed", "y")
    assert canned_policy.can_manage(admin_agent, team_id=None, owner_id=None)


def test_a_user_without_agent_profile_manages_nothing(db: Any) -> None:
    from helpdesk.models import User

    visitor = User.objects.create_user("visitor", "visitor@example.com", "pw-visitor-123")
    with pytest.raises(PermissionDenied):
        do_save_canned_response(None, title="Mine", body="x", owner=visitor, actor=visitor)
    assert not canned_policy.usable(visitor).exists()


@pytest.mark.parametrize(
    ("title", "body", "error"),
    [
        ("", "x", "needs a title"),
        ("   \x00", "x", "needs a title"),
        ("t" * 201, "x", "title is too long"),
        ("Title", "  \n", "needs a text"),
        ("Title", "x" * (MAX_BODY_CHARS + 1), "text is too long"),
    ],
)
def test_invalid_input_is_refused(agent: Any, title: str, body: str, error: str) -> None:
    # when / then
    with pytest.raises(ValueError, match=error):
        do_save_canned_response(None, title=title, body=body, owner=agent, actor=agent)
    assert not CannedResponse.objects.exists()


def test_nul_characters_are_dropped(agent: Any) -> None:
    # when
    saved = do_save_canned_response(None, title="A\x00B", body="x\x00y", owner=agent, actor=agent)
    # then
    assert (saved.title, saved.body) == ("AB", "xy")


def test_team_and_owner_together_are_refused(admin_agent: Any, agent: Any, support_team: Team) -> None:
    # when / then: by the action
    with pytest.raises(ValueError, match="not both"):
        do_save_canned_response(None, title="Both", body="x", team=support_team, owner=agent, actor=admin_agent)
    # and by the database
    with pytest.raises(IntegrityError), transaction.atomic():
        canned("Both", "x", team=support_team, owner=agent)


def test_the_admin_saves_and_deletes_through_the_actions(admin_agent: Any, support_team: Team) -> None:
    # given
    client = logged_in(admin_agent)
    # when
    resp = client.post(
        "/admin/helpdesk/cannedresponse/add/",
        {"title": "Refund", "body": "Hi {{ customer.first_name }}", "team": support_team.pk},
    )
    # then
    assert resp.status_code == 302, resp.content
    saved = CannedResponse.objects.get()
    assert (saved.title, saved.team, saved.created_by) == ("Refund", support_team, admin_agent)
    assert client.get("/admin/helpdesk/cannedresponse/").status_code == 200
    # when
    resp = client.post(f"/admin/helpdesk/cannedresponse/{saved.pk}/delete/", {"post": "yes"})
    # then
    assert resp.status_code == 302, resp.content
    assert not CannedResponse.objects.exists()


# --- in Chromium ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def canned_desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("canned-desk")
    env = embedded_env(data)
    env["WHITENOISE_USE_FINDERS"] = "1"
    manage(env, "migrate", "--noinput")
    inbox = json.loads(manage(env, "inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    manage(env, "agent", "create", "ada@example.com", "--name", "Ada Agent", "--password", "pw-ada-12345")
    manage(
        env,
        "shell",
        "-c",
        "from helpdesk.models import CannedResponse; "
        "CannedResponse.objects.create(title='Greeting', "
        "body='Hello {{ customer.first_name }}, this is {{ agent.name }}.')",
    )
    with serving(env) as (base, _, _):
        payload = {
            "external_id": "canned-1",
            "sender": {"identifier": "zoe", "name": "Zoë van Dijk"},
            "subject": "Parcel",
            "text": "Where is my parcel?",
        }
        resp = signed_post(base, inbox, payload)
        assert resp.status_code == 200, resp.text
        db = data / "switchboard.sqlite3"

        def number() -> int | None:
            with sqlite3.connect(db, timeout=10) as conn:
                row = conn.execute("SELECT number FROM helpdesk_ticket").fetchone()
                return int(row[0]) if row else None

        yield {"base": base, "number": wait_until(number, 60, "the ticket")}


@pytest.mark.slow
@browser_test
def test_choosing_a_canned_response_inserts_it_at_the_cursor(canned_desk: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base = canned_desk["base"]
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = chromium.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/desk/login/")
            page.fill("input[name=username]", "ada@example.com")
            page.fill("input[name=password]", "pw-ada-12345")
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/desk/")
            page.goto(f"{base}/desk/tickets/{canned_desk['number']}/")
            # given: a draft with the cursor between its two halves
            page.fill("#composer-text", "Dear.  Regards")
            page.evaluate("() => document.getElementById('composer-text').setSelectionRange(6, 6)")
            assert page.is_hidden("#canned-insert")
            # when
            page.select_option("#canned-select", label="Greeting")
            # then: the text, filled in, at the cursor; the picker back at its prompt; the page not reloaded
            page.wait_for_function(
                "() => document.getElementById('composer-text').value.includes('Zoë')", timeout=10_000
            )
            assert page.input_value("#composer-text") == "Dear. Hello Zoë, this is Ada Agent. Regards"
            assert page.evaluate("() => document.activeElement.id") == "composer-text"
            assert page.evaluate("() => document.getElementById('composer-text').selectionStart") == len(
                "Dear. Hello Zoë, this is Ada Agent."
            )
            assert page.input_value("#canned-select") == ""
            assert page.url == f"{base}/desk/tickets/{canned_desk['number']}/"
            assert errors == []
        finally:
            chromium.close()


def test_the_admin_refuses_an_oversized_body_as_a_form_error(admin_agent: Any) -> None:
    # when
    resp = logged_in(admin_agent).post(
        "/admin/helpdesk/cannedresponse/add/", {"title": "Huge", "body": "x" * (MAX_BODY_CHARS + 1)}
    )
    # then
    assert resp.status_code == 200, resp.content
    assert b"Ensure this value has at most 20000 characters" in resp.content
    assert not CannedResponse.objects.exists()
