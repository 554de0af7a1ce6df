"""identify: verified hashes tie a visitor to a known customer and its chat history; forged,
stale, future or malformed ones change nothing; unsigned details never claim anybody."""

from __future__ import annotations

import time
from typing import Any

import pytest

from channels_inbox.actions.inboxes import do_rotate_inbox_secret
from channels_inbox.models import ChatConversation, ChatVisitor
from channels_inbox.tests.test_chat_support import (
    _steady_rate_windows,
    chat_inbox,
    conversation_of,
    signed,
    widget,
)
from customers.models import Customer, Identity, IdentityKind

__all__ = ["_steady_rate_windows", "chat_inbox"]

pytestmark = pytest.mark.django_db


def test_a_valid_hash_verifies_and_brings_the_earlier_chats(chat_inbox: Any) -> None:
    # given an anonymous visitor who chatted, on a first browser
    first = widget(chat_inbox)
    first.start()
    conv_id = first.send("question from before login")["conversation"]["id"]
    anonymous = first.visitor.customer_id
    assert anonymous is not None
    # when the site identifies it with a valid hash
    response = first.post(
        "identify", data={**signed(chat_inbox, "user-42"), "email": "Jana@Example.com", "name": "Jana"}
    )
    # then it is verified, a known customer (external id) holds its chat
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["visitor"]["verified"] is True
    assert body["token"] == first.token
    assert [c["id"] for c in body["conversations"]] == [conv_id]
    customer = Identity.objects.get(kind=IdentityKind.EXTERNAL, value=f"{chat_inbox.uuid}:user-42").customer
    assert conversation_of({"conversation": {"id": conv_id}}).ticket.customer_id == customer.pk
    assert not Customer.objects.filter(pk=anonymous).exists()
    # and the unsigned email is contact data only: on the visitor, never an identity
    assert (first.visitor.email, first.visitor.name) == ("jana@example.com", "Jana")
    assert customer.name == "Jana"
    assert not Identity.objects.filter(kind=IdentityKind.EMAIL).exists()
    # and a second browser verified as the same user sees that history too
    second = widget(chat_inbox)
    second.start()
    again = second.post("identify", data=signed(chat_inbox, "user-42"))
    assert again.status_code == 200, again.content
    assert conv_id in [c["id"] for c in again.json()["conversations"]]
    assert second.get("events", conv_id).status_code == 200


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"user_hash": "0" * 64}, "does not match"),
        ({"issued_at": int(time.time()) - 13 * 3600}, "too old"),
        ({"issued_at": int(time.time()) + 3600}, "future"),
        ({"user_hash": 12345}, "64 hex"),
        ({"user_id": ["a"]}, "user_id"),
        ({"user_id": "a\x00b"}, "user_id"),
        ({"issued_at": True}, "issued_at"),
        ({"issued_at": 1.5e9}, "issued_at"),
        ({"issued_at": "yesterday"}, "issued_at"),
    ],
)
def test_forged_stale_future_and_malformed_hashes_are_refused(
    chat_inbox: Any, change: dict[str, Any], reason: str
) -> None:
    # given an anonymous visitor and a hash made for the given issued_at (then changed)
    w = widget(chat_inbox)
    w.start()
    before = w.visitor
    issued = change.get("issued_at")
    data = signed(chat_inbox, "user-42", issued_at=issued if type(issued) is int else None)
    data.update(change)
    # when it identifies with it
    response = w.post("identify", data={**data, "email": "victim@example.com"})
    # then 403 with the reason, and nothing changed
    assert response.status_code == 403, response.content
    assert reason in response.json()["error"]
    after = w.visitor
    assert (after.verified_user_id, after.customer_id, after.email) == ("", before.customer_id, "")
    assert not Identity.objects.filter(kind=IdentityKind.EXTERNAL).exists()


def test_the_previous_secret_works_during_a_rotation(chat_inbox: Any) -> None:
    # given a hash computed with the secret before a rotation
    old = chat_inbox.secret("identity_secret")
    do_rotate_inbox_secret(chat_inbox, name="identity_secret")
    w = widget(chat_inbox)
    w.start()
    # when it is used right after the rotation, and after a second one
    during = w.post("identify", data=signed(chat_inbox, "u1", secret=old))
    do_rotate_inbox_secret(chat_inbox, name="identity_secret")
    other = widget(chat_inbox)
    other.start()
    after = other.post("identify", data=signed(chat_inbox, "u2", secret=old))
    # then it is accepted during the rotation only
    assert during.status_code == 200, during.content
    assert after.status_code == 403


def test_without_a_hash_details_stay_contact_details(chat_inbox: Any) -> None:
    # given a known customer with an email and a chat history
    victim = Identity.objects.create(
        customer=Customer.objects.create(name="Known"), kind=IdentityKind.EMAIL, value="victim@example.com"
    ).customer
    w = widget(chat_inbox)
    w.start()
    # when an unverified identify gives that email
    response = w.post("identify", data={"email": "victim@example.com", "name": "Mallory", "user_id": "victim"})
    # then the visitor only keeps it as contact details: not verified, not that customer
    assert response.status_code == 200, response.content
    visitor = w.visitor
    assert response.json()["visitor"] == {
        "id": visitor.public_id.hex,
        "name": "Mallory",
        "email": "victim@example.com",
        "verified": False,
    }
    assert visitor.customer_id != victim.pk
    assert Identity.objects.get(value="victim@example.com").customer_id == victim.pk
    # and its messages stay on its own anonymous customer
    body = w.send("hi")
    assert conversation_of(body).ticket.customer_id == w.visitor.customer_id != victim.pk
    assert response.json()["conversations"] == []


def test_a_verified_email_held_by_another_customer_is_not_taken(chat_inbox: Any) -> None:
    # given an email that belongs to another customer already
    other = Identity.objects.create(
        customer=Customer.objects.create(name="Known"), kind=IdentityKind.EMAIL, value="taken@example.com"
    ).customer
    w = widget(chat_inbox)
    w.start()
    # when a verified identify gives it
    response = w.post("identify", data={**signed(chat_inbox, "u7"), "email": "taken@example.com"})
    # then the visitor is verified, but the address stays with its owner
    assert response.status_code == 200, response.content
    assert Identity.objects.get(value="taken@example.com").customer_id == other.pk
    assert w.visitor.customer_id != other.pk
    # and the visitor's messages never name it as an identity
    conv = conversation_of(w.send("hello"))
    assert conv.ticket.customer_id == w.visitor.customer_id


def test_a_browser_verified_as_another_user_gets_a_new_visitor(chat_inbox: Any) -> None:
    # given a browser verified as user A with a chat
    w = widget(chat_inbox)
    w.start()
    w.post("identify", data=signed(chat_inbox, "user-a"))
    conv_a = w.send("A's chat")["conversation"]["id"]
    # when user B logs in on the same browser
    response = w.post("identify", data=signed(chat_inbox, "user-b"))
    # then B continues as a new visitor (new token) that does not see A's chat
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token"] != w.token
    assert body["conversations"] == []
    w.token = body["token"]
    assert w.get("events", conv_a).status_code == 404
    assert ChatVisitor.objects.filter(inbox=chat_inbox).count() == 2
    assert ChatConversation.objects.get(public_id__isnull=False).visitor.verified_user_id == "user-a"
