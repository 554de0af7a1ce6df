"""Outbound replies: outbox, signed delivery, backoff, failure, forward-only status."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from channels_inbox.actions.delivery import do_apply_delivery_status, do_attempt_delivery, do_retry_delivery
from channels_inbox.adapters.base import DeliveryStatusUpdate
from channels_inbox.models import OutboundDelivery
from conftest import api_payload, post_signed
from helpdesk.actions.replies import NoRecipient, do_reply
from helpdesk.models import DeliveryStatus, Message, Ticket, TicketEventType, TicketStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ticket(client: Any, api_inbox: Any) -> Ticket:
    assert post_signed(client, api_inbox, api_payload()).status_code == 200
    return Ticket.objects.get()


def point_callback(inbox: Any, httpserver: HTTPServer) -> None:
    inbox.settings = {"callback_url": httpserver.url_for("/hook")}
    inbox.save(update_fields=["settings"])


def test_reply_is_delivered_as_a_signed_post(ticket: Ticket, admin_agent: Any, httpserver: HTTPServer) -> None:
    # given: the integrator's endpoint checks the signature as documented
    inbox = ticket.inbox
    point_callback(inbox, httpserver)
    received: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        body = request.get_data()
        expected = "sha256=" + hmac.new(inbox.secret("signing_secret").encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Switchboard-Signature", "")):
            return Response("bad signature", status=403)
        received.append({"body": json.loads(body), "delivery": request.headers.get("X-Switchboard-Delivery")})
        return Response(json.dumps({"id": "their-77"}), content_type="application/json")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    # when
    message = do_reply(ticket, actor=admin_agent, text="We are on it.")
    # then
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_id == "their-77"
    assert delivery.attempts == 1
    assert len(received) == 1
    body = received[0]["body"]
    assert body["recipient"] == {"identifier": "user-42"}
    assert body["message"]["text"] == "We are on it."
    assert body["ticket"]["number"] == ticket.number
    assert received[0]["delivery"] == str(delivery.pk)
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.SENT
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN
    assert ticket.first_reply_at is not None
    assert ticket.waiting_since is None
    types = list(ticket.events.order_by("seq").values_list("type", flat=True))
    assert types[-3:] == [TicketEventType.REPLY_ADDED, TicketEventType.STATUS_CHANGED, TicketEventType.DELIVERY_CHANGED]


def test_server_error_is_retried_with_backoff_then_fails_visibly(
    ticket: Ticket, admin_agent: Any, httpserver: HTTPServer, settings: Any
) -> None:
    # given: the endpoint is down
    settings.DELIVERY_MAX_ATTEMPTS = 3
    point_callback(ticket.inbox, httpserver)
    httpserver.expect_request("/hook").respond_with_data("down", status=503)
    # when: the first attempt (queued after commit) fails
    message = do_reply(ticket, actor=admin_agent, text="Hello")
    delivery = OutboundDelivery.objects.get(message=message)
    # then: queued again, due after the backoff
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.attempts == 1
    assert "503" in delivery.last_error
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert do_attempt_delivery(delivery.pk) == "not_due"
    # when: the later attempts come due and fail too
    for expected in ("retry", "failed"):
        OutboundDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert do_attempt_delivery(delivery.pk) == expected
    # then: failed, with the reason on the message and the ticket
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "503" in message.delivery_error
    failed = ticket.events.filter(type=TicketEventType.DELIVERY_CHANGED).last()
    assert failed is not None
    assert failed.data["status"] == "failed"


def test_backoff_grows_exponentially(ticket: Ticket, admin_agent: Any, httpserver: HTTPServer) -> None:
    point_callback(ticket.inbox, httpserver)
    httpserver.expect_request("/hook").respond_with_data("down", status=500)
    delivery = OutboundDelivery.objects.get(message=do_reply(ticket, actor=admin_agent, text="x"))
    delays = []
    for _ in range(3):
        start = timezone.now()
        delivery.refresh_from_db()
        assert delivery.next_attempt_at is not None
        delays.append((delivery.next_attempt_at - start).total_seconds())
        OutboundDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        do_attempt_delivery(delivery.pk)
    assert delays[0] == pytest.approx(30, abs=2)
    assert delays[1] == pytest.approx(60, abs=2)
    assert delays[2] == pytest.approx(120, abs=2)


def test_client_error_fails_at_once(ticket: Ticket, admin_agent: Any, httpserver: HTTPServer) -> None:
    point_callback(ticket.inbox, httpserver)
    httpserver.expect_request("/hook").respond_with_data("no such user", status=404)
    message = do_reply(ticket, actor=admin_agent, text="Hello")
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert "404" in delivery.last_error


def test_unreachable_endpoint_is_retried(ticket: Ticket, admin_agent: Any) -> None:
    # the fixture's callback points at 127.0.0.1:9 (nothing listens)
    delivery = OutboundDelivery.objects.get(message=do_reply(ticket, actor=admin_agent, text="Hello"))
    assert delivery.status == DeliveryStatus.QUEUED
    assert "unreachable" in delivery.last_error


def test_inbox_without_callback_fails_with_a_reason(ticket: Ticket, admin_agent: Any) -> None:
    ticket.inbox.settings = {}
    ticket.inbox.save()
    delivery = OutboundDelivery.objects.get(message=do_reply(ticket, actor=admin_agent, text="Hello"))
    assert delivery.status == DeliveryStatus.FAILED
    assert "callback_url" in delivery.last_error


def test_retry_of_a_failed_delivery(ticket: Ticket, admin_agent: Any, httpserver: HTTPServer) -> None:
    # given: a failed delivery
    point_callback(ticket.inbox, httpserver)
    httpserver.expect_oneshot_request("/hook").respond_with_data("gone", status=410)
    delivery = OutboundDelivery.objects.get(message=do_reply(ticket, actor=admin_agent, text="Hello"))
    assert delivery.status == DeliveryStatus.FAILED
    # when: the endpoint is back and the agent presses retry
    httpserver.expect_request("/hook").respond_with_json({"id": "ok-1"})
    do_retry_delivery(delivery, actor=admin_agent)
    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert Message.objects.get(pk=delivery.message_id).delivery_error == ""


def test_status_moves_only_forward(ticket: Ticket, admin_agent: Any, httpserver: HTTPServer) -> None:
    # given: a sent delivery
    point_callback(ticket.inbox, httpserver)
    httpserver.expect_request("/hook").respond_with_json({"id": "p-1"})
    delivery = OutboundDelivery.objects.get(message=do_reply(ticket, actor=admin_agent, text="Hello"))
    inbox = ticket.inbox
    # when: callbacks arrive out of order
    assert do_apply_delivery_status(inbox, DeliveryStatusUpdate("p-1", DeliveryStatus.READ))
    assert not do_apply_delivery_status(inbox, DeliveryStatusUpdate("p-1", DeliveryStatus.DELIVERED))
    assert not do_apply_delivery_status(inbox, DeliveryStatusUpdate("p-1", DeliveryStatus.SENT))
    assert not do_apply_delivery_status(inbox, DeliveryStatusUpdate("unknown", DeliveryStatus.READ))
    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READ
    assert delivery.read_at is not None
    assert Message.objects.get(pk=delivery.message_id).delivery_status == DeliveryStatus.READ


def test_reply_needs_an_address_on_the_channel(ticket: Ticket, admin_agent: Any) -> None:
    ticket.customer.identities.filter(kind="external").delete()
    with pytest.raises(NoRecipient):
        do_reply(ticket, actor=admin_agent, text="Hello")
    assert not Message.objects.filter(direction="outbound").exists()


def test_empty_reply_is_refused(ticket: Ticket, admin_agent: Any) -> None:
    with pytest.raises(ValueError, match="needs text"):
        do_reply(ticket, actor=admin_agent, text="   ")
