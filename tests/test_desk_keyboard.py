"""The desk's keyboard shortcuts, its htmx enhancements and its working without JavaScript.

The partial answers (the side panel after an in-place edit, the list's next rows) are tested with
Django's client; the keys, the dialog, the in-place loading and the no-JavaScript desk in real
Chromium against the embedded server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from customers.models import Customer, Identity, IdentityKind
from helpdesk.actions.agents import do_create_agent
from helpdesk.models import Ticket, TicketEvent, TicketStatus
from helpdesk.selectors import PAGE_SIZE
from tests.chromium import browser_test
from tests.factories import CustomerFactory, TicketFactory
from tests.test_run_modes import ROOT, embedded_env, manage, serving, signed_post, wait_until

HTMX = ROOT / "static" / "vendor" / "htmx.min.js"
HX = {"HX-Request": "true"}


def ticket(**fields: Any) -> Ticket:
    return cast(Ticket, TicketFactory(**fields))


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def assignee_select(resp: Any) -> str:
    found = re.search(r'<select name="assignee".*?</select>', resp.content.decode(), flags=re.S)
    assert found, resp.content
    return found.group(0)


# --- the side panel, posted with htmx -------------------------------------------------------------


@pytest.mark.django_db
def test_status_posted_with_htmx_answers_the_panel_and_the_header_line(agent: Any) -> None:
    # given
    t = ticket(status=TicketStatus.OPEN)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{t.number}/status/", {"status": "pending"}, headers=HX)
    # then: the panel, not a page, with the new status chosen and said
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert "<html" not in body
    assert body.count('id="ticket-side"') == 1
    assert re.search(r'<option value="pending"\s+selected>', body)
    assert '<p class="panel-message success" role="status">Status: Pending.</p>' in body
    # and the header line out of band, with the new badge
    meta = body.split('id="ticket-meta"', 1)[1]
    assert meta.startswith(' hx-swap-oob="true">')
    assert '<span class="badge pending">Pending</span>' in meta
    # and the seq of the event it wrote, for the page's websocket layer
    t.refresh_from_db()
    assert t.status == TicketStatus.PENDING
    assert json.loads(resp["HX-Trigger"]) == {"desk:seq": t.last_event_seq}
    assert TicketEvent.objects.filter(ticket=t).latest("seq").seq == t.last_event_seq


@pytest.mark.django_db
def test_assignment_posted_with_htmx_selects_the_new_assignee(agent: Any, admin_agent: Any) -> None:
    # given
    t = ticket()
    client = logged_in(agent)
    # when
    assigned = client.post(f"/desk/tickets/{t.number}/assign/", {"assignee": str(admin_agent.pk)}, headers=HX)
    # then
    assert assigned.status_code == 200, assigned.content
    assert re.search(rf'<option value="{admin_agent.pk}"\s+selected>', assignee_select(assigned))
    assert "Assigned to Alan Admin." in assigned.content.decode()
    # when unassigned again
    unassigned = client.post(f"/desk/tickets/{t.number}/assign/", {"assignee": ""}, headers=HX)
    # then
    assert unassigned.status_code == 200, unassigned.content
    assert "Unassigned." in unassigned.content.decode()
    assert "selected" not in assignee_select(unassigned)
    t.refresh_from_db()
    assert t.assignee is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "field", "value", "error"),
    [
        ("status", "status", "x" * 10_000, f"Unknown status {'x' * 40!r}."),
        ("status", "status", "<script>alert(1)</script>", "Unknown status '<script>alert(1)</script>'."),
        ("status", "status", "", "Unknown status ''."),
        ("assign", "assignee", "9" * 5_000, f"No such agent: {'9' * 40!r}."),
        ("assign", "assignee", "١", "No such agent: '١'."),
        ("assign", "assignee", "<b>1</b>", "No such agent: '<b>1</b>'."),
    ],
)
def test_hostile_input_posted_with_htmx_is_an_error_in_the_panel(
    agent: Any, path: str, field: str, value: str, error: str
) -> None:
    # given
    t = ticket(status=TicketStatus.OPEN)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{t.number}/{path}/", {field: value}, headers=HX)
    # then: the panel comes back with the error read out, escaped, and nothing changed
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert f'<p class="panel-message error" role="alert">{escape(error)}</p>' in body
    assert "<script>alert" not in body
    assert "<b>1</b>" not in body
    assert not TicketEvent.objects.filter(ticket=t).exists()


@pytest.mark.django_db
def test_unchanged_status_posted_with_htmx_names_no_event(agent: Any) -> None:
    # given
    t = ticket(status=TicketStatus.OPEN)
    # when the status it already has is saved
    resp = logged_in(agent).post(f"/desk/tickets/{t.number}/status/", {"status": "open"}, headers=HX)
    # then the panel comes back, but no event was written for the page to skip
    assert resp.status_code == 200, resp.content
    assert "HX-Trigger" not in resp
    assert not TicketEvent.objects.filter(ticket=t).exists()


@pytest.mark.django_db
def test_closed_ticket_posted_with_htmx_explains_and_stays_closed(agent: Any) -> None:
    # given
    t = ticket(status=TicketStatus.CLOSED)
    # when
    resp = logged_in(agent).post(f"/desk/tickets/{t.number}/status/", {"status": "open"}, headers=HX)
    # then
    assert resp.status_code == 200, resp.content
    assert "a closed ticket stays closed" in resp.content.decode()
    t.refresh_from_db()
    assert t.status == TicketStatus.CLOSED


@pytest.mark.django_db
def test_edit_that_takes_the_ticket_out_of_sight_sends_htmx_to_the_list(agent: Any) -> None:
    # given: a ticket of another team, seen by the agent only because it is theirs
    do_create_agent(email="bill@example.com", teams=["Billing"])
    from helpdesk.models import Team

    t = ticket(team=Team.objects.get(slug="billing"), assignee=agent)
    client = logged_in(agent)
    assert client.get(f"/desk/tickets/{t.number}/").status_code == 200
    # when they unassign it
    resp = client.post(f"/desk/tickets/{t.number}/assign/", {"assignee": ""}, headers=HX)
    # then htmx is told to go to the list, where the reason is shown
    assert resp.status_code == 204, resp.content
    assert resp["HX-Redirect"] == "/desk/"
    listing = client.get("/desk/")
    assert f"Ticket #{t.number} is no longer in your views." in listing.content.decode()


@pytest.mark.django_db
def test_htmx_posts_keep_the_permission_policy(agent: Any) -> None:
    # given
    light = do_create_agent(email="light@example.com", role="light_agent", teams=["Support"])
    from helpdesk.models import Team

    do_create_agent(email="bill@example.com", teams=["Billing"])
    visible = ticket(status=TicketStatus.OPEN)
    hidden = ticket(status=TicketStatus.OPEN, team=Team.objects.get(slug="billing"))
    # when / then: a light agent may not edit; a ticket out of sight does not exist
    assert (
        logged_in(light).post(f"/desk/tickets/{visible.number}/status/", {"status": "pending"}, headers=HX).status_code
        == 403
    )
    assert (
        logged_in(agent).post(f"/desk/tickets/{hidden.number}/status/", {"status": "pending"}, headers=HX).status_code
        == 404
    )
    assert (
        Client().post(f"/desk/tickets/{visible.number}/status/", {"status": "pending"}, headers=HX).status_code == 302
    )
    assert not TicketEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["false", "1", "", "TRUE" * 1000])
def test_only_a_real_htmx_request_gets_the_panel(agent: Any, header: str) -> None:
    # given
    t = ticket(status=TicketStatus.OPEN)
    # when
    resp = logged_in(agent).post(
        f"/desk/tickets/{t.number}/status/", {"status": "pending"}, headers={"HX-Request": header}
    )
    # then: a plain form post, answered as before
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == f"/desk/tickets/{t.number}/"


@pytest.mark.django_db
def test_panel_query_count_does_not_grow_with_identities_ccs_or_agents(agent: Any) -> None:
    def panel_queries(t: Ticket) -> int:
        client = logged_in(agent)
        with CaptureQueriesContext(connection) as queries:
            resp = client.post(f"/desk/tickets/{t.number}/status/", {"status": "pending"}, headers=HX)
        assert resp.status_code == 200, resp.content
        return len(queries)

    # given one small ticket, and one whose customer has many identities among many agents
    small = panel_queries(ticket(status=TicketStatus.OPEN))
    customer = cast(Customer, CustomerFactory())
    for n in range(6):
        Identity.objects.create(customer=customer, kind=IdentityKind.EXTERNAL, value=f"ext:{n}", raw_value=f"{n}")
    for n in range(6):
        do_create_agent(email=f"more{n}@example.com", teams=["Support"])
    # when / then
    assert panel_queries(ticket(status=TicketStatus.OPEN, customer=customer)) == small


# --- pages: the list's next rows, the controls the keys reach -----------------------------------


@pytest.mark.django_db
def test_next_rows_come_with_their_own_next_page_link(agent: Any) -> None:
    # given one page and a few more
    for _ in range(PAGE_SIZE + 3):
        ticket(status=TicketStatus.OPEN)
    client = logged_in(agent)
    # when the full page is shown
    first = client.get("/desk/", {"view": "all"})
    # then its last row loads the next page: a link without JavaScript, the rows only with htmx
    assert first.status_code == 200, first.content
    cursor = first.context["page"].next_cursor
    link = re.search(r'<tr class="more" id="more-row">.*?</tr>', first.content.decode(), flags=re.S)
    assert link, first.content
    assert f'href="?view=all&amp;cursor={cursor}"' in link.group(0)
    assert f'hx-get="?view=all&amp;cursor={cursor}&amp;partial=1"' in link.group(0)
    assert 'hx-target="closest tr" hx-swap="outerHTML"' in link.group(0)
    # when htmx asks for the next rows
    rest = client.get("/desk/", {"view": "all", "cursor": cursor, "partial": "1"}, headers=HX)
    # then they are rows only, the last page's, with no further link
    assert rest.status_code == 200, rest.content
    assert "<html" not in rest.content.decode()
    assert rest.content.decode().count("data-number=") == 3
    assert "more-row" not in rest.content.decode()


@pytest.mark.django_db
def test_pages_carry_the_skip_link_scripts_dialog_and_labelled_controls(agent: Any) -> None:
    # given
    t = ticket(status=TicketStatus.OPEN)
    client = logged_in(agent)
    # when
    listing = client.get("/desk/").content.decode()
    page = client.get(f"/desk/tickets/{t.number}/").content.decode()
    # then
    for body in (listing, page):
        assert '<a class="skip-link" href="#content">Skip to content</a>' in body
        assert '<main id="content" tabindex="-1">' in body
        assert "/static/vendor/htmx.min" in body
        assert "/static/desk/keys" in body
        assert '<dialog id="shortcuts-dialog"' in body
    for control in ("status-select", "assignee-select", "composer-text"):
        assert f'<label for="{control}"' in page
    assert 'id="mode-reply"' in page
    assert 'id="mode-note"' in page


@pytest.mark.django_db
def test_sign_in_page_has_no_shortcuts_dialog(client: Client) -> None:
    # when
    resp = client.get("/desk/login/")
    # then
    assert resp.status_code == 200, resp.content
    assert b"shortcuts-dialog" not in resp.content
    assert b"Skip to content" in resp.content


# --- in Chromium ------------------------------------------------------------------------------------

TICKETS = PAGE_SIZE + 5


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not HTMX.is_file():
        pytest.fail(f"{HTMX.relative_to(ROOT)} is missing: `make install` copies it from node_modules")
    data = tmp_path_factory.mktemp("keys-desk")
    env = embedded_env(data)
    # Static files from the source folders (no collectstatic into the checkout's staticfiles/).
    env["WHITENOISE_USE_FINDERS"] = "1"
    manage(env, "migrate", "--noinput")
    inbox = json.loads(manage(env, "inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    manage(
        env,
        "agent",
        "create",
        "ada@example.com",
        "--name",
        "Ada Agent",
        "--role",
        "admin",
        "--password",
        "pw-ada-12345",
    )
    manage(env, "agent", "create", "bo@example.com", "--name", "Bo Agent", "--password", "pw-bo-12345")
    with serving(env) as (base, _, _):
        for n in range(TICKETS):
            payload = {
                "external_id": f"kb-{n}",
                "sender": {"identifier": f"customer-{n}", "name": f"Customer {n}"},
                "subject": f"Keyboard ticket {n:02d}",
                "text": f"Question number {n}.",
            }
            resp = signed_post(base, inbox, payload)
            assert resp.status_code == 200, resp.text
        db = data / "switchboard.sqlite3"

        def all_in() -> bool:
            import sqlite3

            with sqlite3.connect(db, timeout=10) as conn:
                return int(conn.execute("SELECT count(*) FROM helpdesk_ticket").fetchone()[0]) == TICKETS

        wait_until(all_in, 60, f"{TICKETS} tickets")
        yield {"base": base, "env": env}


def sign_in(browser: Any, base: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{base}/desk/login/")
    page.fill("input[name=username]", "ada@example.com")
    page.fill("input[name=password]", "pw-ada-12345")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/desk/")
    return page


def row_numbers(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#ticket-rows tr[data-number]", "rows => rows.map(r => r.dataset.number)"))


def selected_numbers(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all("#ticket-rows tr[aria-selected=true]", "rows => rows.map(r => r.dataset.number)")
    )


def focused_row(page: Any) -> str | None:
    return page.evaluate("() => { const r = document.activeElement.closest('tr'); return r && r.dataset.number }")


@pytest.mark.slow
@browser_test
def test_j_and_k_move_the_selection_and_enter_opens_it(desk: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser, desk["base"])
    page.goto(f"{desk['base']}/desk/?view=all")
    numbers = row_numbers(page)
    assert len(numbers) == PAGE_SIZE
    # when j, j, k
    page.keyboard.press("j")
    assert selected_numbers(page) == [numbers[0]]
    page.keyboard.press("j")
    assert selected_numbers(page) == [numbers[1]]
    page.keyboard.press("k")
    # then the first row is selected, focused (its subject link) and shown with the focus ring
    assert selected_numbers(page) == [numbers[0]]
    assert focused_row(page) == numbers[0]
    first = page.locator(f"#ticket-rows tr[data-number='{numbers[0]}']")
    expect(first).to_have_class(re.compile(r"\bselected\b"))
    assert first.evaluate("r => getComputedStyle(r).outlineStyle") == "solid"
    # and held modifiers do nothing
    page.keyboard.press("Control+j")
    page.keyboard.press("Alt+j")
    assert selected_numbers(page) == [numbers[0]]
    # when the selection moves on and Enter is pressed
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    # then that ticket opens
    page.wait_for_url(f"{desk['base']}/desk/tickets/{numbers[1]}/")
    assert page.locator("[data-ticket]").get_attribute("data-ticket") == numbers[1]
    assert page.errors == []


@pytest.mark.slow
@browser_test
def test_ticket_keys_reach_the_composer_and_the_side_panel(desk: dict[str, Any], browser: Any) -> None:
    page = sign_in(browser, desk["base"])
    number = row_numbers(page)[0]
    page.goto(f"{desk['base']}/desk/tickets/{number}/")
    active = "() => document.activeElement.id"
    # when n: the composer, in note mode
    page.keyboard.press("n")
    assert page.evaluate(active) == "composer-text"
    assert page.is_checked("#mode-note")
    assert page.get_attribute("#composer", "data-mode") == "note"
    # when typing there, every key is text: j and r and ? are typed, nothing moves
    page.keyboard.type("jkr?/ans")
    assert page.input_value("#composer-text") == "jkr?/ans"
    assert page.is_checked("#mode-note")
    assert not page.evaluate("() => document.getElementById('shortcuts-dialog').open")
    assert page.url == f"{desk['base']}/desk/tickets/{number}/"
    # when Escape leaves the field and r is pressed: reply mode
    page.keyboard.press("Escape")
    assert page.evaluate(active) != "composer-text"
    page.keyboard.press("r")
    assert page.evaluate(active) == "composer-text"
    assert page.is_checked("#mode-reply")
    assert page.get_attribute("#composer", "data-mode") == "reply"
    assert page.input_value("#composer-text") == "jkr?/ans"
    # when a and s, from outside the field
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    assert page.evaluate(active) == "assignee-select"
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    assert page.evaluate(active) == "status-select"
    # and / focuses the search box where the top bar has one, and does nothing where it has not
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    has_search = page.evaluate("() => Boolean(document.getElementById('desk-search'))")
    assert page.evaluate(active) == ("desk-search" if has_search else "")
    assert page.errors == []


@pytest.mark.slow
@browser_test
def test_question_mark_opens_the_shortcuts_and_escape_closes_them(desk: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser, desk["base"])
    page.keyboard.press("j")
    selected = focused_row(page)
    assert selected
    dialog = page.locator("#shortcuts-dialog")
    # when ?
    page.keyboard.press("?")
    # then the dialog is open and modal, listing the keys
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", name="Keyboard shortcuts")).to_be_visible()
    for key in ("j", "k", "Enter", "r", "n", "a", "s", "/", "?", "Esc"):
        expect(dialog.locator("kbd", has_text=re.compile(rf"^{re.escape(key)}$")).first).to_be_visible()
    # and j does not reach the list behind it
    page.keyboard.press("j")
    assert selected_numbers(page) == [selected]
    # when Escape
    page.keyboard.press("Escape")
    # then it is closed and the focus is back where it was
    expect(dialog).to_be_hidden()
    assert focused_row(page) == selected
    # and the top bar's button opens it too
    page.get_by_role("button", name="Shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    assert page.errors == []


@pytest.mark.slow
@browser_test
def test_next_page_loads_in_place_and_j_continues_into_it(desk: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser, desk["base"])
    page.goto(f"{desk['base']}/desk/?view=all")
    url = page.url
    first_page = row_numbers(page)
    assert len(first_page) == PAGE_SIZE
    # when the last row is selected (k from nothing) and j goes past it
    page.keyboard.press("k")
    assert selected_numbers(page) == [first_page[-1]]
    page.keyboard.press("j")
    # then htmx brings the next rows into this page, and the first of them is selected
    expect(page.locator("#ticket-rows tr[data-number]")).to_have_count(TICKETS)
    expect(page.locator("#more-row")).to_have_count(0)
    assert page.url == url
    numbers = row_numbers(page)
    assert numbers[:PAGE_SIZE] == first_page
    assert len(set(numbers)) == TICKETS
    assert selected_numbers(page) == [numbers[PAGE_SIZE]]
    assert focused_row(page) == numbers[PAGE_SIZE]
    # when the page is loaded afresh and the link is clicked with the mouse
    page.goto(url)
    page.get_by_role("link", name="Older tickets →").click()
    expect(page.locator("#ticket-rows tr[data-number]")).to_have_count(TICKETS)
    assert page.url == url
    assert page.errors == []


@pytest.mark.slow
@browser_test
def test_side_panel_saves_in_place_and_keeps_the_draft(desk: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser, desk["base"])
    number = row_numbers(page)[-1]
    page.goto(f"{desk['base']}/desk/tickets/{number}/")
    # given a draft in the composer
    page.fill("#composer-text", "A draft that must survive")
    # when the status and the assignee are saved
    page.select_option("#status-select", "pending")
    page.click("#status-save")
    expect(page.locator("#ticket-meta .badge")).to_have_text("Pending")
    expect(page.locator("#ticket-side").get_by_role("status")).to_have_text("Status: Pending.")
    page.select_option("#assignee-select", label="Bo Agent")
    page.click("#assign-save")
    expect(page.locator("#ticket-side").get_by_role("status")).to_have_text("Assigned to Bo Agent.")
    # then the page was not reloaded: the draft is still there, the timeline shows both changes,
    # and the page's own changes are not announced as new activity
    assert page.input_value("#composer-text") == "A draft that must survive"
    expect(page.locator("#timeline")).to_contain_text("→ pending")
    expect(page.locator("#timeline")).to_contain_text("Assignee changed by Ada Agent")
    expect(page.locator(".live-notice")).to_be_hidden()
    # and focus stays on the button that was pressed
    assert page.evaluate("() => document.activeElement.id") == "assign-save"
    # and a reload shows the same
    page.reload()
    expect(page.locator("#ticket-meta .badge")).to_have_text("Pending")
    assert page.locator("#assignee-select option:checked").inner_text() == "Bo Agent"
    assert page.errors == []


@pytest.mark.slow
@browser_test
def test_desk_works_without_javascript(desk: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser, desk["base"], java_script_enabled=False)
    # the keyboard button needs JavaScript, so it stays hidden
    expect(page.locator("#shortcuts-button")).to_be_hidden()
    # when the list's next page is followed as a link
    page.goto(f"{desk['base']}/desk/?view=all")
    first_page = row_numbers(page)
    page.get_by_role("link", name="Older tickets →").click()
    # then it is a page of its own with the rest
    page.wait_for_url(re.compile(r"cursor="))
    rest = row_numbers(page)
    assert len(rest) == TICKETS - PAGE_SIZE
    assert not set(rest) & set(first_page)
    # when a ticket's status is saved and a note written, as plain forms
    number = rest[0]
    page.goto(f"{desk['base']}/desk/tickets/{number}/")
    page.select_option("#status-select", "on_hold")
    page.click("#status-save")
    page.wait_for_url(f"{desk['base']}/desk/tickets/{number}/")
    expect(page.locator("#ticket-meta .badge")).to_have_text("On hold")
    page.check("#mode-note")
    page.fill("#composer-text", "Written without JavaScript")
    page.click(".composer button[type=submit]")
    # then each post landed and the page shows it
    expect(page.locator(".msg.note")).to_contain_text("Written without JavaScript")
    expect(page.locator("#timeline")).to_contain_text("→ on_hold")


@pytest.mark.slow
@browser_test
def test_skip_link_and_every_control_labelled(desk: dict[str, Any], browser: Any) -> None:
    page = sign_in(browser, desk["base"])
    number = row_numbers(page)[0]
    unlabelled = """() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(el => el.type !== 'hidden' && !el.closest('dialog:not([open])'))
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
        .map(el => el.outerHTML.slice(0, 80))"""
    for url in ("/desk/", f"/desk/tickets/{number}/"):
        page.goto(f"{desk['base']}{url}")
        # every control has a name
        assert page.evaluate(unlabelled) == []
        # the first Tab reaches the skip link, shown, and following it lands on the content
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
        box = page.locator(".skip-link").bounding_box()
        assert box
        assert box["y"] >= 0
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "content"
    assert page.errors == []
