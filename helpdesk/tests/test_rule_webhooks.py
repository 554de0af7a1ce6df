"""Rule webhooks: the outbox row, the signed POST (checked on the receiving side), retries with
backoff, redirects not followed, private addresses refused, and the sweeper."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from werkzeug import Request, Response

from helpdesk.actions.rules import do_deliver_webhook_call, do_save_rule, do_sweep_webhook_calls
from helpdesk.models import Ticket, TicketEvent, WebhookCall
from helpdesk.runner import RuleSource, queue_webhook_call
from helpdesk.tests.conftest import ingest
from helpdesk.tests.test_rules import process

pytestmark = pytest.mark.django_db
SECRET = "whsec-0123456789abcdef"


def verify(request: Request, secret: str) -> bool:
    """What a receiver does (docs/rules.md): HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), request.get_data(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers.get("X-Switchboard-Signature", ""))


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.RULE_WEBHOOK_ALLOW_PRIVATE = True


def a_call(api_inbox: Any, url: str) -> WebhookCall:
    ticket = ingest(api_inbox)
    with transaction.atomic():
        return queue_webhook_call(
            ticket, {"url": url, "secret": SECRET}, source=RuleSource("trigger", None, "Hook", "created")
        )


def test_a_trigger_posts_a_signed_call(
    allow_private: None, admin_agent: Any, api_inbox: Any, httpserver: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given a trigger with a webhook step, and a receiver that checks the signature
    received: list[tuple[bool, dict[str, Any], dict[str, str]]] = []

    def receive(request: Request) -> Response:
        received.append((verify(request, SECRET), json.loads(request.get_data()), dict(request.headers)))
        return Response("ok", status=200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    rule = do_save_rule(
        None,
        kind="trigger",
        name="Tell the shop",
        events=["created"],
        conditions={},
        actions=[{"type": "webhook", "value": {"url": httpserver.url_for("/hook"), "secret": SECRET}}],
        actor=admin_agent,
    )
    ticket = ingest(api_inbox)
    # when the change is processed and committed (the delivery task runs eagerly after commit)
    with django_capture_on_commit_callbacks(execute=True):
        process(ticket)
    # then the receiver got one valid, signed call
    call = WebhookCall.objects.get()
    assert call.status == "sent"
    assert call.attempts == 1
    assert call.response_status == 200
    assert call.rule_id == rule.pk
    assert len(received) == 1
    valid, body, headers = received[0]
    assert valid
    assert body == {
        "event": "created",
        "rule": {"id": rule.pk, "kind": "trigger", "name": "Tell the shop"},
        "ticket": {"number": ticket.number, "priority": 2, "status": "new", "subject": ticket.subject},
    }
    assert headers["X-Switchboard-Delivery"] == str(call.pk)
    assert headers["Content-Type"] == "application/json"
    # and a second delivery run posts nothing
    assert do_deliver_webhook_call(call.pk) == "already sent"
    assert len(received) == 1


def test_a_wrong_secret_does_not_verify(allow_private: None, api_inbox: Any, httpserver: Any) -> None:
    results: list[bool] = []

    def receive(request: Request) -> Response:
        results.append(verify(request, "another-secret-entirely"))
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(receive)
    call = a_call(api_inbox, httpserver.url_for("/hook"))
    assert do_deliver_webhook_call(call.pk) == "sent"
    assert results == [False]


def test_errors_retry_with_backoff_then_fail(
    allow_private: None, api_inbox: Any, httpserver: Any, settings: Any, lost_tasks: Any, caplog: Any
) -> None:
    # given a receiver that always fails, three attempts in all
    settings.DELIVERY_MAX_ATTEMPTS = 3
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 30
    httpserver.expect_request("/hook").respond_with_data("down", status=503)
    call = a_call(api_inbox, httpserver.url_for("/hook"))
    now = timezone.now()
    caplog.set_level(logging.DEBUG)
    # when the first attempt fails / then it is due again in 30 s, queued with that countdown
    assert do_deliver_webhook_call(call.pk, now=now) == "retry"
    call.refresh_from_db()
    assert (call.status, call.attempts, call.response_status, call.last_error) == ("queued", 1, 503, "HTTP 503")
    assert call.next_attempt_at == now + timedelta(seconds=30)
    # when the second fails / then 60 s
    assert do_deliver_webhook_call(call.pk, now=now) == "retry"
    call.refresh_from_db()
    assert call.next_attempt_at == now + timedelta(seconds=60)
    # when the third fails / then it has failed for good
    assert do_deliver_webhook_call(call.pk, now=now) == "failed"
    call.refresh_from_db()
    assert (call.status, call.attempts, call.next_attempt_at) == ("failed", 3, None)
    assert do_deliver_webhook_call(call.pk) == "already failed"
    assert len(httpserver.log) == 3
    # and the secret was never logged
    assert SECRET not in caplog.text


def test_a_redirect_is_not_followed(allow_private: None, api_inbox: Any, httpserver: Any, lost_tasks: Any) -> None:
    httpserver.expect_request("/hook").respond_with_data(
        "", status=302, headers={"Location": "http://169.254.169.254/"}
    )
    call = a_call(api_inbox, httpserver.url_for("/hook"))
    assert do_deliver_webhook_call(call.pk) == "retry"
    call.refresh_from_db()
    assert call.last_error == "HTTP 302 (redirects are not followed)"
    assert len(httpserver.log) == 1


def test_a_timeout_is_an_error_to_retry(allow_private: None, api_inbox: Any, settings: Any, lost_tasks: Any) -> None:
    # given a listening socket that never answers
    settings.RULE_WEBHOOK_TIMEOUT_SECONDS = 0.2
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        call = a_call(api_inbox, f"http://127.0.0.1:{server.getsockname()[1]}/slow")
        assert do_deliver_webhook_call(call.pk) == "retry"
    call.refresh_from_db()
    assert "Timeout" in call.last_error
    assert call.response_status is None


def test_loopback_is_refused_without_the_setting(api_inbox: Any, httpserver: Any, settings: Any) -> None:
    # given a call to 127.0.0.1 (allowed when it was queued) and the setting off now
    settings.RULE_WEBHOOK_ALLOW_PRIVATE = True
    call = a_call(api_inbox, httpserver.url_for("/hook"))
    settings.RULE_WEBHOOK_ALLOW_PRIVATE = False
    # when / then it fails at once and nothing reached the server
    assert do_deliver_webhook_call(call.pk) == "refused"
    call.refresh_from_db()
    assert call.status == "failed"
    assert "private or local address" in call.last_error
    assert httpserver.log == []


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.5",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "100.100.100.200",
        "2002:7f00:1::",
        "fd00::1",
        "0.0.0.0",  # noqa: S104 — an address to refuse, not to bind
        "224.0.0.1",
        "64:ff9b::a9fe:a9fe",
    ],
)
def test_a_public_name_resolving_to_a_private_address_is_refused(
    api_inbox: Any, monkeypatch: Any, address: str
) -> None:
    # given a host name whose DNS answer is private (DNS rebinding, an internal name)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "hooks.example.com"
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    call = a_call(api_inbox, "https://hooks.example.com/in")
    # when / then
    assert do_deliver_webhook_call(call.pk) == "refused"
    assert "hooks.example.com resolves to" in WebhookCall.objects.get(pk=call.pk).last_error


def fake_resolver(monkeypatch: Any, answers: dict[str, list[str]]) -> list[str]:
    """socket.getaddrinfo answering `answers[host]` in turn (the last one again once used up);
    other hosts (address literals) resolve for real. The names asked, in order."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(name)
        queue = answers[name]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return asked


def test_the_request_goes_to_the_checked_address_with_the_original_host(
    allow_private: None, api_inbox: Any, httpserver: Any, monkeypatch: Any
) -> None:
    # given a name that resolves to the (loopback) receiver
    hosts: list[str] = []

    def receive(request: Request) -> Response:
        hosts.append(request.headers["Host"])
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    asked = fake_resolver(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    call = a_call(api_inbox, f"http://hooks.example.test:{httpserver.port}/hook")
    # when
    assert do_deliver_webhook_call(call.pk) == "sent"
    # then the receiver saw the name it is known by, and the name was resolved once
    assert hosts == [f"hooks.example.test:{httpserver.port}"]
    assert asked == ["hooks.example.test"]


def test_a_second_dns_answer_cannot_redirect_the_request(api_inbox: Any, httpserver: Any, monkeypatch: Any) -> None:
    # given a name whose first answer is public and every later one loopback (DNS rebinding),
    # and the public address standing for the receiver at the socket level
    public = "93.184.216.34"
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    asked = fake_resolver(monkeypatch, {"hooks.example.com": [public, "127.0.0.1"]})
    real_connect = socket.create_connection
    connected: list[Any] = []

    def connect(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        connected.append(tuple(address))
        if tuple(address) != (public, 80):
            raise ConnectionRefusedError(f"the test only lets {public}:80 through, not {address}")
        return real_connect(("127.0.0.1", httpserver.port), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    call = a_call(api_inbox, "http://hooks.example.com/hook")
    # when
    result = do_deliver_webhook_call(call.pk)
    # then the connection went to the address that was checked, asked for once
    assert result == "sent", WebhookCall.objects.get(pk=call.pk).last_error
    assert connected == [(public, 80)]
    assert asked == ["hooks.example.com"]
    assert [request.headers["Host"] for request, _ in httpserver.log] == ["hooks.example.com"]


def test_https_keeps_the_host_name_for_sni_and_ignores_the_environment(
    api_inbox: Any, monkeypatch: Any, lost_tasks: Any
) -> None:
    # given a public name, proxy variables in the environment, and httpx's transport faked
    import httpx

    from helpdesk.actions.rules import webhook_client

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    fake_resolver(monkeypatch, {"hooks.example.com": ["93.184.216.34", "127.0.0.1"]})
    seen: list[httpx.Request] = []

    def handle(transport: Any, request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    call = a_call(api_inbox, "https://hooks.example.com/in?x=1")
    # when
    assert do_deliver_webhook_call(call.pk) == "sent"
    # then the URL names the checked address; Host and SNI the name (the certificate is checked
    # against it)
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34/in?x=1"
    assert request.headers["Host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    with webhook_client(1.0) as client:
        assert client.trust_env is False
        assert client.follow_redirects is False


def test_every_address_of_the_name_is_checked(api_inbox: Any, monkeypatch: Any) -> None:
    # given a name with a public and a private answer in one response
    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("100.100.100.200", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    call = a_call(api_inbox, "https://hooks.example.com/in")
    # when / then
    assert do_deliver_webhook_call(call.pk) == "refused"
    assert "100.100.100.200" in WebhookCall.objects.get(pk=call.pk).last_error


@pytest.mark.parametrize(
    "url",
    [
        "https://" + "a" * 64 + ".example/in",  # getaddrinfo and httpx raise UnicodeError (a ValueError)
        "https://hooks..example/in",
    ],
)
def test_a_host_that_cannot_be_resolved_counts_as_failed_attempts(
    api_inbox: Any, settings: Any, lost_tasks: Any, url: str
) -> None:
    # given a call queued before its host was checked on save, three attempts in all
    settings.DELIVERY_MAX_ATTEMPTS = 3
    ticket = ingest(api_inbox)
    call = WebhookCall.objects.create(ticket=ticket, url=url, body="{}", next_attempt_at=timezone.now())
    now = timezone.now()
    # when it is delivered / then each run is an attempt with backoff, and it fails in the end
    assert do_deliver_webhook_call(call.pk, now=now) == "retry"
    call.refresh_from_db()
    assert (call.status, call.attempts) == ("queued", 1)
    assert call.next_attempt_at is not None
    assert call.next_attempt_at > now
    assert "host name" in call.last_error
    assert do_deliver_webhook_call(call.pk, now=now) == "retry"
    assert do_deliver_webhook_call(call.pk, now=now) == "failed"
    call.refresh_from_db()
    assert (call.status, call.attempts, call.next_attempt_at) == ("failed", 3, None)
    # and the sweeper no longer picks it up
    assert do_sweep_webhook_calls(now=now + timedelta(days=1)) == 0


def test_any_exception_while_sending_is_a_failed_attempt(
    api_inbox: Any, monkeypatch: Any, settings: Any, lost_tasks: Any
) -> None:
    # given a resolver that raises something no one expected
    settings.DELIVERY_MAX_ATTEMPTS = 2

    def explode(*args: Any, **kwargs: Any) -> list[Any]:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(socket, "getaddrinfo", explode)
    call = a_call(api_inbox, "https://hooks.example.com/in")
    # when / then the attempts are counted and saved, then it fails
    assert do_deliver_webhook_call(call.pk) == "retry"
    call.refresh_from_db()
    assert (call.attempts, call.last_error) == (1, "RuntimeError: resolver exploded")
    assert do_deliver_webhook_call(call.pk) == "failed"
    assert WebhookCall.objects.get(pk=call.pk).attempts == 2


def test_the_sweeper_requeues_overdue_calls(api_inbox: Any, lost_tasks: Any) -> None:
    # given a call whose task was lost two minutes ago, and one just queued
    old = a_call(api_inbox, "https://hooks.example.com/old")
    WebhookCall.objects.filter(pk=old.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=2))
    a_call(api_inbox, "https://hooks.example.com/new")
    sent = WebhookCall.objects.create(url="https://x.example/", body="{}", status="sent", next_attempt_at=None)
    lost_tasks.clear()
    # when / then only the overdue one is queued again
    assert do_sweep_webhook_calls() == 1
    assert lost_tasks == [("helpdesk.tasks.deliver_webhook_call", (old.pk,))]
    assert sent.pk not in [args[0] for _, args in lost_tasks]


def test_a_missing_call_is_nothing(db: Any) -> None:
    assert do_deliver_webhook_call(987_654) == "missing"


def test_a_rolled_back_change_leaves_no_call(api_inbox: Any, lost_tasks: Any) -> None:
    ticket = ingest(api_inbox)

    def change_that_fails() -> None:
        with transaction.atomic():
            queue_webhook_call(
                ticket, {"url": "https://x.example/", "secret": SECRET}, source=RuleSource("trigger", None, "H")
            )
            raise RuntimeError

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert not WebhookCall.objects.exists()
    assert lost_tasks == []
    assert Ticket.objects.get(pk=ticket.pk).last_event_seq == TicketEvent.objects.filter(ticket=ticket).count()
