"""Password reset by email on the desk sign-in page (Django's token views, our rules)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from helpdesk.models import User

# The mail leaves after commit (a queued task): these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "Tulip-Harbour-42"
LINK = re.compile(r"^(https?://\S+/desk/password-reset/\S+/\S+/)$", re.M)


@pytest.fixture(autouse=True)
def _site(settings: Any) -> None:
    settings.SITE_URL = "https://desk.example.com"
    settings.DEFAULT_FROM_EMAIL = "Switchboard <desk@example.com>"


def request_reset(client: Client, email: str, **extra: Any) -> Any:
    return client.post("/desk/password-reset/", {"email": email}, **extra)


def the_link() -> str:
    assert len(mail.outbox) == 1
    found = LINK.findall(str(mail.outbox[0].body))
    assert len(found) == 1, mail.outbox[0].body
    return str(found[0])


def test_login_page_links_to_the_reset(client: Client) -> None:
    body = client.get("/desk/login/").content.decode()
    assert '<a href="/desk/password-reset/" id="forgot-password">' in body
    assert client.get("/desk/password-reset/").status_code == 200


def test_full_round_trip(client: Client, agent: Any) -> None:
    # when: the agent asks for a link
    resp = request_reset(client, "Agent@Example.com")
    # then: the usual answer, and one plain-text mail with an absolute link
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == "/desk/password-reset/sent/"
    assert "Check your email" in client.get(resp["Location"]).content.decode()
    sent = mail.outbox[0]
    assert (sent.to, sent.from_email, sent.subject) == (
        ["agent@example.com"],
        "Switchboard <desk@example.com>",
        "Reset your Switchboard password",
    )
    assert getattr(sent, "alternatives", []) == []
    assert "expires in 3\xa0days" in sent.body
    link = the_link()
    assert link.startswith("https://desk.example.com/desk/password-reset/")
    # when: following it (Django swaps the token into the session and redirects)
    page = client.get(link.removeprefix("https://desk.example.com"), follow=True)
    assert page.status_code == 200, page.content
    assert "Choose a new password" in page.content.decode()
    set_url = page.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    # then: changed; the old password no longer signs in, the new one does
    assert done.status_code == 302, done.content
    assert done["Location"] == "/desk/password-reset/done/"
    assert "Password changed" in client.get(done["Location"]).content.decode()
    fresh = Client()
    assert fresh.post("/desk/login/", {"username": "agent@example.com", "password": "pw-agent-123"}).status_code == 200
    signed_in = fresh.post("/desk/login/", {"username": "agent@example.com", "password": NEW_PASSWORD})
    assert signed_in.status_code == 302, signed_in.content
    assert fresh.get("/desk/").status_code == 200


def test_a_used_link_does_not_work_again(client: Client, agent: Any) -> None:
    # given: a link used once
    request_reset(client, "agent@example.com")
    path = the_link().removeprefix("https://desk.example.com")
    page = client.get(path, follow=True)
    client.post(page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    # when: used again, in another browser too
    for browser in (client, Client()):
        again = browser.get(path, follow=True)
        # then
        assert again.status_code == 200
        assert "This link does not work" in again.content.decode()
        assert "Choose a new password" not in again.content.decode()
    agent.refresh_from_db()
    assert agent.check_password(NEW_PASSWORD)


@pytest.mark.parametrize("token", ["bad-token", "cb8k1x-0123456789abcdef0123456789abcdef", "x" * 300])
def test_a_bad_token_is_refused(client: Client, agent: Any, token: str) -> None:
    uid = urlsafe_base64_encode(force_bytes(agent.pk))
    resp = client.get(f"/desk/password-reset/{uid}/{token}/")
    assert resp.status_code == 200
    assert "This link does not work" in resp.content.decode()
    # nor can one post a password to it
    posted = client.post(
        f"/desk/password-reset/{uid}/{token}/", {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert "This link does not work" in posted.content.decode()
    agent.refresh_from_db()
    assert not agent.check_password(NEW_PASSWORD)


def test_a_bad_uid_is_refused(client: Client, agent: Any) -> None:
    token = default_token_generator.make_token(agent)
    for uid in ["%%%", urlsafe_base64_encode(b"999999"), urlsafe_base64_encode(b"x")]:
        resp = client.get(f"/desk/password-reset/{uid}/{token}/", follow=True)
        assert resp.status_code == 200
        assert "This link does not work" in resp.content.decode()


def test_an_expired_link_is_refused(client: Client, agent: Any, settings: Any) -> None:
    request_reset(client, "agent@example.com")
    path = the_link().removeprefix("https://desk.example.com")
    settings.PASSWORD_RESET_TIMEOUT = -1
    resp = client.get(path, follow=True)
    assert "This link does not work" in resp.content.decode()


def _same_answer(resp: Any) -> None:
    assert resp.status_code == 302, resp.content
    assert resp["Location"] == "/desk/password-reset/sent/"


def test_an_unknown_address_gets_the_same_answer_and_no_mail(client: Client, agent: Any) -> None:
    _same_answer(request_reset(client, "nobody@example.com"))
    assert mail.outbox == []


def test_an_inactive_agent_gets_no_mail(client: Client, agent: Any) -> None:
    User.objects.filter(pk=agent.pk).update(is_active=False)
    _same_answer(request_reset(client, "agent@example.com"))
    assert mail.outbox == []


def test_an_account_that_is_not_an_agent_gets_no_mail(client: Client) -> None:
    User.objects.create_user("visitor", "visitor@example.com", "pw-visitor-123")
    _same_answer(request_reset(client, "visitor@example.com"))
    assert mail.outbox == []


def test_a_superuser_may_reset(client: Client) -> None:
    User.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    _same_answer(request_reset(client, "boss@example.com"))
    assert mail.outbox[0].to == ["boss@example.com"]


@pytest.mark.parametrize("email", ["not-an-address", "", "a" * 300 + "@example.com"])
def test_a_malformed_address_is_an_error_on_the_form(client: Client, email: str) -> None:
    resp = request_reset(client, email)
    assert resp.status_code == 200
    assert 'class="error"' in resp.content.decode()
    assert mail.outbox == []


def test_mails_per_address_are_limited_without_telling(client: Client, agent: Any, settings: Any) -> None:
    settings.PASSWORD_RESETS_PER_ADDRESS = 2
    # when: four requests for the same address, from different IPs
    answers = [request_reset(client, "agent@example.com", REMOTE_ADDR=f"10.0.0.{i}") for i in range(4)]
    # then: all get the usual answer, only two mails go out
    for resp in answers:
        _same_answer(resp)
    assert len(mail.outbox) == 2
    # another address is not affected
    User.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    _same_answer(request_reset(client, "boss@example.com", REMOTE_ADDR="10.0.0.9"))
    assert len(mail.outbox) == 3


def test_requests_per_ip_are_limited(client: Client, agent: Any, settings: Any) -> None:
    settings.PASSWORD_RESETS_PER_IP = 3
    # when: one client asks for many addresses
    answers = [request_reset(client, f"person{i}@example.com", REMOTE_ADDR="10.1.1.1") for i in range(3)]
    refused = request_reset(client, "agent@example.com", REMOTE_ADDR="10.1.1.1")
    # then: the fourth is refused with 429, whatever the address, and sends nothing
    assert [r.status_code for r in answers] == [302, 302, 302]
    assert refused.status_code == 429
    assert "Too many reset requests" in refused.content.decode()
    assert mail.outbox == []
    # another client is not affected
    _same_answer(request_reset(client, "agent@example.com", REMOTE_ADDR="10.1.1.2"))
    assert len(mail.outbox) == 1


def test_csrf_is_enforced() -> None:
    resp = Client(enforce_csrf_checks=True).post("/desk/password-reset/", {"email": "agent@example.com"})
    assert resp.status_code == 403


@pytest.mark.django_db(transaction=False)
def test_the_mail_is_queued_not_sent_while_answering(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # when: inside the request's transaction nothing is mailed yet (the answer's time must not
    # depend on whether the address has an account)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        resp = request_reset(client, "agent@example.com")
    assert resp.status_code == 302, resp.content
    assert mail.outbox == []
    assert len(callbacks) == 1
    # then: the queued task mails it
    callbacks[0]()
    assert len(mail.outbox) == 1
    assert the_link().startswith("https://desk.example.com/desk/password-reset/")


def test_an_account_deactivated_before_the_worker_runs_gets_no_mail(agent: Any) -> None:
    from helpdesk.actions.password_reset import do_send_password_reset

    User.objects.filter(pk=agent.pk).update(is_active=False)
    assert do_send_password_reset(agent.pk) is False
    assert do_send_password_reset(10**9) is False
    assert mail.outbox == []


def test_behind_the_proxy_the_limit_is_per_client_not_per_proxy(client: Client, agent: Any, settings: Any) -> None:
    # given: every request arrives from the proxy's address, the client's appended by the proxy
    settings.BEHIND_PROXY = True
    settings.PASSWORD_RESETS_PER_IP = 2

    def from_client(ip: str, spoofed: str = "") -> int:
        chain = f"{spoofed}, {ip}" if spoofed else ip
        resp = request_reset(client, "nobody@example.com", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=chain)
        return int(resp.status_code)

    # when: one client uses up its limit, even while claiming other addresses in front
    assert [from_client("203.0.113.5", spoofed=f"198.51.100.{i}") for i in range(3)] == [302, 302, 429]
    # then: another client behind the same proxy is still served
    assert from_client("203.0.113.6") == 302
