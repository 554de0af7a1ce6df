"""The ticket page's customer panel: other tickets, profile edits, merging duplicates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import Customer, CustomerChange, CustomerMerge, Identity, IdentityKind
from helpdesk.models import Team, Ticket
from helpdesk.tests.conftest import logged_in, new_ticket
from tests.factories import CustomerFactory, IdentityFactory, InboxFactory

pytestmark = pytest.mark.django_db


def make_customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


def panel(resp: Any) -> str:
    body: str = resp.content.decode()
    start = body.index('id="customer-panel"')
    return body[start : body.index("</section>", start)]


@pytest.fixture
def customer() -> Customer:
    customer: Customer = make_customer(name="Ana Lima")
    IdentityFactory(customer=customer, kind=IdentityKind.EMAIL, value="ana@example.com")
    return customer


def _others(customer: Customer, count: int, **fields: Any) -> list[Ticket]:
    now = timezone.now()
    return [
        new_ticket(customer=customer, subject=f"other {i}", last_activity_at=now - timedelta(minutes=i), **fields)
        for i in range(count)
    ]


# --- other tickets ---------------------------------------------------------------------------


def test_panel_lists_the_customers_other_tickets_on_every_channel(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer, subject="this one")
    email = new_ticket(
        customer=customer,
        subject="Invoice copy",
        channel="email",
        inbox=InboxFactory(kind="email", name="Billing mail"),
    )
    chat = new_ticket(customer=customer, subject="Chat about sizes", channel="whatsapp", status="solved")
    new_ticket(subject="someone else's")
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    html = panel(resp)
    assert f"#{email.number}" in html
    assert "Invoice copy" in html
    assert "Billing mail" in html
    assert "email" in html
    assert f"#{chat.number}" in html
    assert "whatsapp" in html
    assert "Solved" in html
    assert "Other tickets (2)" in html
    assert f"#{ticket.number}<" not in html
    assert "someone else" not in html


def test_panel_hides_tickets_the_agent_may_not_see(agent: Any, billing_team: Team, customer: Customer) -> None:
    # given: agent is in Support; one of the customer's tickets is Billing's
    ticket = new_ticket(customer=customer)
    hidden = new_ticket(customer=customer, team=billing_team, subject="Secret billing matter")
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    html = panel(resp)
    assert f"#{hidden.number}" not in html
    assert "Secret billing" not in html
    assert "No other tickets" in html


def test_panel_shows_the_newest_ten_and_counts_the_rest(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    others = _others(customer, 12)
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    html = panel(resp)
    assert html.count('class="other-ticket"') == 10
    assert f"#{others[0].number}<" in html
    assert f"#{others[9].number}<" in html
    assert f"#{others[10].number}<" not in html
    assert "and 2 more" in html
    assert f"?customer={customer.pk}" in html
    assert "Other tickets (12)" in html


def test_ticket_page_query_count_is_the_same_with_2_or_12_other_tickets(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    client = logged_in(agent)
    _others(customer, 2, channel="email")
    # when
    with CaptureQueriesContext(connection) as few:
        resp = client.get(f"/desk/tickets/{ticket.number}/")
    assert resp.status_code == 200, resp.content
    _others(customer, 10, channel="whatsapp")
    with CaptureQueriesContext(connection) as many:
        resp = client.get(f"/desk/tickets/{ticket.number}/")
    # then
    assert resp.status_code == 200, resp.content
    assert panel(resp).count('class="other-ticket"') == 10
    assert len(few.captured_queries) == len(many.captured_queries)


# --- profile ---------------------------------------------------------------------------------


def _edit(client: Client, customer: Customer, ticket: Ticket, **extra: Any) -> Any:
    data = {"ticket": str(ticket.number), "name": customer.name, "language": "", "time_zone": "", **extra}
    return client.post(f"/desk/customers/{customer.pk}/edit/", data)


def test_agent_edits_name_language_time_zone_and_attributes(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    client = logged_in(agent)
    # when
    resp = _edit(
        client,
        customer,
        ticket,
        name="Ana M. Lima",
        language="pt-BR",
        time_zone="America/Sao_Paulo",
        attributes="1",
        attr_key=["plan", "", "vip"],
        attr_value=["pro", "", "yes"],
    )
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == f"/desk/tickets/{ticket.number}/"
    assert flashed(resp) == ["Customer saved."]
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.name, fresh.language, fresh.time_zone) == ("Ana M. Lima", "pt-BR", "America/Sao_Paulo")
    assert fresh.attributes == {"plan": "pro", "vip": "yes"}
    assert CustomerChange.objects.get().actor == agent
    page = panel(client.get(f"/desk/tickets/{ticket.number}/"))
    assert 'value="plan"' in page
    assert 'value="pro"' in page


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"attr_key": ["Bad Key"], "attr_value": ["v"]}, "Attribute key 'Bad Key' is not valid"),
        ({"attr_key": ["note"], "attr_value": ["v" * 1001]}, "Attribute 'note' is too long (1001 characters"),
        ({"attr_key": [f"k{i}" for i in range(51)], "attr_value": ["v"] * 51}, "Too many attributes (51; at most 50)"),
        ({"attr_key": ["k"] * 300, "attr_value": ["v"] * 300}, "Too many attributes (300; at most 50)"),
        ({"attr_key": ["note"], "attr_value": ["a\x00b"]}, "Attribute 'note' contains a NUL character."),
        ({"attr_key": ["a", "a"], "attr_value": ["1", "2"]}, "Attribute 'a' is given twice."),
        ({"attr_key": ["a", "b"], "attr_value": ["1"]}, "Each attribute needs a key and a value."),
        ({"attr_key": ["", ""], "attr_value": ["", "orphan"]}, "Attribute key '' is not valid"),
        ({"time_zone": "Nowhere/Land"}, "Unknown time zone 'Nowhere/Land'"),
        ({"name": "x" * 100_000}, "Name is too long (100000 characters; at most 200)."),
    ],
)
def test_bad_profile_input_is_refused_with_a_clear_message(
    agent: Any, customer: Customer, fields: dict[str, Any], message: str
) -> None:
    # given
    ticket = new_ticket(customer=customer)
    # when
    resp = _edit(logged_in(agent), customer, ticket, attributes="1", **fields)
    # then
    assert resp.status_code == 302, resp.content
    assert any(m.startswith(message) for m in flashed(resp)), flashed(resp)
    assert not CustomerChange.objects.exists()


def test_a_post_with_thousands_of_fields_is_a_bad_request(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    # when: beyond Django's DATA_UPLOAD_MAX_NUMBER_FIELDS
    resp = _edit(logged_in(agent), customer, ticket, attributes="1", attr_key=["k"] * 600, attr_value=["v"] * 600)
    # then
    assert resp.status_code == 400, resp.content
    assert not CustomerChange.objects.exists()


def test_light_agent_sees_the_panel_but_may_not_edit(light_agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    client = logged_in(light_agent)
    # when
    page = client.get(f"/desk/tickets/{ticket.number}/")
    edit = _edit(client, customer, ticket, name="Hacked")
    merge = client.post(f"/desk/customers/{customer.pk}/merge/", {"duplicate": "#1", "confirm": "1"})
    # then
    assert page.status_code == 200, page.content
    assert "/desk/customers/" not in panel(page)
    assert edit.status_code == 403, edit.content
    assert merge.status_code == 403, merge.content
    assert Customer.objects.get(pk=customer.pk).name == "Ana Lima"


def test_agent_of_another_team_gets_404(billing_agent: Any, support_team: Team, customer: Customer) -> None:
    # given: the customer's only ticket is Support's; billing_agent is not in Support
    new_ticket(customer=customer, team=support_team)
    client = logged_in(billing_agent)
    # when
    edit = client.post(f"/desk/customers/{customer.pk}/edit/", {"name": "Hacked"})
    merge = client.post(f"/desk/customers/{customer.pk}/merge/", {"duplicate": "x@example.com"})
    # then
    assert edit.status_code == 404, edit.content
    assert merge.status_code == 404, merge.content
    assert Customer.objects.get(pk=customer.pk).name == "Ana Lima"


def test_admin_edits_any_customer_even_without_tickets(admin_agent: Any) -> None:
    # given
    lonely = make_customer(name="Lonely")
    # when
    resp = logged_in(admin_agent).post(f"/desk/customers/{lonely.pk}/edit/", {"name": "Found"})
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == "/desk/"
    assert Customer.objects.get(pk=lonely.pk).name == "Found"


@pytest.mark.parametrize("path", ["edit", "merge"])
@pytest.mark.parametrize("customer_id", ["0", "999999", "9" * 18, "9" * 40])
def test_unknown_and_huge_customer_ids_are_404(admin_agent: Any, path: str, customer_id: str) -> None:
    # when
    resp = logged_in(admin_agent).post(f"/desk/customers/{customer_id}/{path}/", {"name": "x", "duplicate": "#1"})
    # then
    assert resp.status_code == 404, resp.content


def test_get_is_not_allowed_and_anonymous_is_sent_to_login(agent: Any, customer: Customer) -> None:
    # given
    new_ticket(customer=customer)
    # when
    get = logged_in(agent).get(f"/desk/customers/{customer.pk}/edit/")
    anonymous = Client().post(f"/desk/customers/{customer.pk}/edit/", {"name": "x"})
    # then
    assert get.status_code == 405, get.content
    assert anonymous.status_code == 302
    assert "/login/" in anonymous["Location"]


@pytest.mark.parametrize("path", ["edit", "merge"])
def test_posts_without_a_csrf_token_are_refused(agent: Any, customer: Customer, path: str) -> None:
    # given
    new_ticket(customer=customer)
    other = make_customer()
    new_ticket(customer=other)
    client = logged_in(agent, enforce_csrf_checks=True)
    # when
    resp = client.post(
        f"/desk/customers/{customer.pk}/{path}/", {"name": "x", "duplicate": f"#{other.pk}", "confirm": "1"}
    )
    # then
    assert resp.status_code == 403, resp.content
    assert Customer.objects.filter(pk=other.pk).exists()
    assert Customer.objects.get(pk=customer.pk).name == "Ana Lima"


def test_the_panel_forms_carry_a_csrf_token(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    # when
    html = panel(logged_in(agent).get(f"/desk/tickets/{ticket.number}/"))
    # then
    assert html.count('name="csrfmiddlewaretoken"') == 2
    assert f'action="/desk/customers/{customer.pk}/edit/"' in html
    assert f'action="/desk/customers/{customer.pk}/merge/"' in html


# --- merge -----------------------------------------------------------------------------------


def test_merge_asks_for_confirmation_showing_both_customers(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    duplicate = make_customer(name="A. Lima")
    IdentityFactory(customer=duplicate, kind=IdentityKind.PHONE, value="+14155550100")
    _others(duplicate, 3)
    # when
    resp = logged_in(agent).post(
        f"/desk/customers/{customer.pk}/merge/", {"duplicate": "+1 415 555 0100", "ticket": str(ticket.number)}
    )
    # then
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    assert "Merge A. Lima into Ana Lima?" in body
    assert "+14155550100" in body
    assert "ana@example.com" in body
    assert '<td class="ticket-count">3</td><td class="ticket-count">1</td>' in body
    assert 'name="confirm" value="1"' in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert Customer.objects.filter(pk=duplicate.pk).exists()


def test_confirmed_merge_moves_the_duplicate_and_is_audited(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    duplicate = make_customer(name="A. Lima")
    IdentityFactory(customer=duplicate, kind=IdentityKind.EMAIL, value="ana@home.example")
    moved = _others(duplicate, 2)
    client = logged_in(agent)
    # when
    resp = client.post(
        f"/desk/customers/{customer.pk}/merge/",
        {"duplicate": "ANA@home.example ", "ticket": str(ticket.number), "confirm": "1"},
    )
    # then
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == f"/desk/tickets/{ticket.number}/"
    assert flashed(resp) == ["A. Lima was merged into Ana Lima (1 identity, 2 tickets)."]
    assert not Customer.objects.filter(pk=duplicate.pk).exists()
    assert Identity.objects.get(value="ana@home.example").customer_id == customer.pk
    assert set(Ticket.objects.filter(pk__in=[t.pk for t in moved]).values_list("customer_id", flat=True)) == {
        customer.pk
    }
    record = CustomerMerge.objects.get()
    assert (record.source_id, record.into_id, record.actor_id) == (duplicate.pk, customer.pk, agent.pk)
    page = panel(client.get(f"/desk/tickets/{ticket.number}/"))
    assert "Other tickets (2)" in page


def test_merge_by_customer_id(agent: Any, customer: Customer) -> None:
    # given
    ticket = new_ticket(customer=customer)
    duplicate = make_customer()
    new_ticket(customer=duplicate)
    # when
    resp = logged_in(agent).post(
        f"/desk/customers/{customer.pk}/merge/",
        {"duplicate": f"#{duplicate.pk}", "ticket": ticket.number, "confirm": "1"},
    )
    # then
    assert resp.status_code == 302, resp.content
    assert not Customer.objects.filter(pk=duplicate.pk).exists()


@pytest.mark.parametrize(
    ("duplicate", "message"),
    [
        ("", "Name the duplicate by its email address, phone number or customer id."),
        ("nobody@example.com", "No customer you may edit has that address or id."),
        ("#999999999", "No customer you may edit has that address or id."),
        ("#" + "9" * 40, "No customer you may edit has that address or id."),
        ("9" * 40, "Not an email address, phone number or customer id"),
        ("not an address", "Not an email address, phone number or customer id: 'not an address'."),
        ("x" * 10_000, "That is too long for an address or id (at most 320 characters)."),
        ("a\x00@example.com", "No customer you may edit has that address or id."),
        ("ana@example.com", "That is this customer: a customer cannot be merged into itself."),
    ],
)
def test_merge_refuses_what_names_nobody_or_itself(
    agent: Any, customer: Customer, duplicate: str, message: str
) -> None:
    # given
    ticket = new_ticket(customer=customer)
    # when
    resp = logged_in(agent).post(
        f"/desk/customers/{customer.pk}/merge/", {"duplicate": duplicate, "ticket": str(ticket.number), "confirm": "1"}
    )
    # then
    assert resp.status_code == 302, resp.content
    assert any(m.startswith(message) for m in flashed(resp)), flashed(resp)
    assert not CustomerMerge.objects.exists()


def test_merge_of_a_customer_the_agent_may_not_see_is_refused_like_an_unknown_one(
    agent: Any, billing_team: Team, customer: Customer
) -> None:
    # given: the duplicate's only ticket is Billing's; agent is in Support
    ticket = new_ticket(customer=customer)
    hidden = make_customer()
    IdentityFactory(customer=hidden, kind=IdentityKind.EMAIL, value="hidden@example.com")
    new_ticket(customer=hidden, team=billing_team)
    # when
    resp = logged_in(agent).post(
        f"/desk/customers/{customer.pk}/merge/",
        {"duplicate": "hidden@example.com", "ticket": str(ticket.number), "confirm": "1"},
    )
    # then
    assert flashed(resp) == ["No customer you may edit has that address or id."]
    assert Customer.objects.filter(pk=hidden.pk).exists()


def test_a_bad_ticket_number_in_the_form_goes_back_to_the_list(agent: Any, customer: Customer) -> None:
    # given
    new_ticket(customer=customer)
    duplicate = make_customer()
    new_ticket(customer=duplicate)
    client = logged_in(agent)
    # when
    confirm = client.post(f"/desk/customers/{customer.pk}/merge/", {"duplicate": f"#{duplicate.pk}", "ticket": "<x>"})
    edit = client.post(f"/desk/customers/{customer.pk}/edit/", {"name": "Ana", "ticket": "9" * 30})
    # then
    assert confirm.status_code == 200, confirm.content
    assert b'href="/desk/">Cancel' in confirm.content
    assert edit.status_code == 302
    assert edit["Location"] == "/desk/"
