"""Shared helpers of the chat backend tests (no tests here): a chat inbox, a widget client."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.chat.identity import user_hash
from channels_inbox.models import ChatConversation, ChatVisitor, Inbox

SHOP = "https://shop.example"
OTHER_SITE = "https://evil.example"


def make_chat_inbox(**values: Any) -> Inbox:
    values.setdefault("allowed_origins", SHOP)
    inbox, _ = do_create_inbox(kind="chat", name="Shop chat", values=values)
    return inbox


@pytest.fixture
def chat_inbox(db: Any) -> Inbox:
    return make_chat_inbox()


@pytest.fixture
def no_presence(monkeypatch: Any) -> dict[str, Any]:
    """Visitor presence under the test's control (connected / last seen)."""
    from channels_inbox.chat import presence

    state: dict[str, Any] = {"connected": False, "last_seen": None}
    monkeypatch.setattr(presence, "is_connected", lambda visitor_id, **kw: state["connected"])
    monkeypatch.setattr(presence, "last_seen", lambda visitor_id: state["last_seen"])
    return state


@pytest.fixture(autouse=True)
def _steady_rate_windows(monkeypatch: Any) -> None:
    """Rate-limit windows that do not roll over in the middle of a test."""
    from channels_inbox.chat import limits

    monkeypatch.setattr(limits, "_clock", lambda: 1_800_000_000.0)


@dataclass
class Widget:
    """One browser's widget: its token, talking to the HTTP API from `origin`."""

    client: Client
    inbox: Inbox
    origin: str = SHOP
    token: str = ""

    def url(self, name: str, *args: Any) -> str:
        return reverse(f"widget:{name}", args=[self.inbox.public_token, *args])

    def headers(self, token: str | None = None, origin: str | None = None) -> dict[str, Any]:
        headers: dict[str, Any] = {"HTTP_ORIGIN": origin if origin is not None else self.origin}
        token = self.token if token is None else token
        if token:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return headers

    def post(self, name: str, *args: Any, data: Any = None, raw: bytes | None = None, **kw: Any) -> Any:
        body = raw if raw is not None else json.dumps(data if data is not None else {}).encode()
        return self.client.post(self.url(name, *args), data=body, content_type="application/json", **self.headers(**kw))

    def get(self, name: str, *args: Any, query: str = "", **kw: Any) -> Any:
        return self.client.get(self.url(name, *args) + query, **self.headers(**kw))

    def start(self, **data: Any) -> dict[str, Any]:
        data.setdefault("site", self.origin)
        data.setdefault("url", f"{self.origin}/products/1")
        data.setdefault("title", "Product 1")
        if self.token:
            data.setdefault("token", self.token)
        response = self.post("session", data=data)
        assert response.status_code == 200, response.content
        body = response.json()
        self.token = body["token"]
        return body

    @property
    def visitor(self) -> ChatVisitor:
        return ChatVisitor.objects.get(public_id=uuid.UUID(hex=self.visitor_id))

    @property
    def visitor_id(self) -> str:
        from channels_inbox.chat.tokens import read_visitor_token

        return read_visitor_token(self.token, inbox_public_token=self.inbox.public_token).hex

    def send(self, text: str = "Hello", conversation: str | None = None, **data: Any) -> dict[str, Any]:
        data.setdefault("client_msg_id", str(uuid.uuid4()))
        response = self.post("messages", data={"conversation": conversation, "text": text, **data})
        assert response.status_code == 201, response.content
        return response.json()

    def events(self, conversation: str, after: int = 0) -> dict[str, Any]:
        response = self.get("events", conversation, query=f"?after={after}")
        assert response.status_code == 200, response.content
        return response.json()


def widget(inbox: Inbox, origin: str = SHOP) -> Widget:
    return Widget(client=Client(), inbox=inbox, origin=origin)


def conversation_of(body: dict[str, Any]) -> ChatConversation:
    return ChatConversation.objects.select_related("ticket").get(public_id=uuid.UUID(hex=body["conversation"]["id"]))


def signed(inbox: Inbox, user_id: str, *, issued_at: int | None = None, secret: str | None = None) -> dict[str, Any]:
    issued = int(time.time()) if issued_at is None else issued_at
    key = secret if secret is not None else inbox.secret("identity_secret")
    return {"user_id": user_id, "issued_at": issued, "user_hash": user_hash(key, user_id, issued)}
