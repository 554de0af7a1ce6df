"""The chat widget's websocket: `/ws/widget/?inbox=<inbox public token>` (docs/chat.md).

Handshake: the inbox must be an active chat inbox (else close 4404) and the Origin header
one `channels_inbox.chat.origins.is_allowed` accepts — our own origin or one of the inbox's
websites — (else 4403; a browser always sends it). The first frame, within AUTH_SECONDS, is
`{"action": "auth", "token": <visitor token>}` (else 4401); the visitor's website must
still be allowed (else 4403). Answer: `{"type": "ready", "visitor": {…}, "ping_seconds"}`.

Client → server frames (JSON objects, at most MAX_FRAME characters, at most RATE_BURST at
once and RATE_PER_SECOND on average):
  {"action": "resume", "conversation": <id>, "last_seq": 17}
  {"action": "message", "client_msg_id": <uuid>, "conversation": <id>|null, "text", "uploads": [ids], "prechat"?}
  {"action": "typing", "conversation": <id>, "typing": true|false}
  {"action": "read", "conversation": <id>, "message_id": 42}
  {"action": "page", "url", "title"}
  {"action": "ping"}
Server → client:
  {"type": "resumed", "conversation": conv}        then the missed events, then live ones
  {"type": "event", "conversation", "seq", "kind", …}   each (conversation, seq) once per connection
  {"type": "ack", "client_msg_id", "conversation": conv, "message": msg, "duplicate"}
  {"type": "typing", "conversation", "typing", "agent", "ttl"}   an agent types a reply (never a note)
  {"type": "queue", "conversation", "position", "estimate_seconds"}   while it waits for an agent
  {"type": "pong"}
  {"type": "error", "error", "client_msg_id"?}     a bad frame; the connection stays open

What the visitor receives comes from the database through the one serializer the HTTP
fallback uses too (channels_inbox/chat/frames.py), never from the group messages: those are
the desk's and carry internal data (notes, team and assignee ids). A conversation is
resumed only when the visitor may read it (their own, or their verified customer's in this
inbox), and only then is its ticket group joined.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from channels_inbox.chat import presence
from channels_inbox.chat.origins import is_allowed
from channels_inbox.chat.tokens import BadToken
from helpdesk.realtime import ticket_group
from helpdesk.throttle import TokenBucket

if TYPE_CHECKING:
    from channels_inbox.actions.chat import VisitorAuth
    from channels_inbox.models import ChatConversation, ChatVisitor, Inbox

# Close codes (the widget falls back to HTTP on 4403/4404 only after checking with it).
CLOSE_NOT_FOUND = 4404
CLOSE_ORIGIN = 4403
CLOSE_AUTH = 4401
# Too many open sockets of this visitor (CHAT_WS_PER_VISITOR) or address (CHAT_WS_PER_IP).
CLOSE_TOO_MANY = 4429
# The auth frame must come this soon after the handshake.
AUTH_SECONDS = 10.0
# Frames a client may send at once, and on average per second after that.
RATE_BURST = 30
RATE_PER_SECOND = 3.0
# Conversations one connection may follow (each is a ticket group joined).
MAX_CONVERSATIONS = 5
# A resume replays at most this many events, the newest; the older ones are left to the HTTP
# API (`resumed` says which: truncated, history_after, history_before).
REPLAY_MAX = 100
# (ticket, seq) pairs a connection remembers having sent, to drop duplicates.
_RECENT = 1024
# A visitor's typing is passed on at most this often (the same state, same conversation).
TYPING_MIN_INTERVAL = 1.0
# An agent's typing marker lasts this long after the last one heard (the widget expires it).
AGENT_TYPING_TTL = 6
# Queue changes are answered at most this often (a burst of them, one queue frame).
QUEUE_DEBOUNCE = 0.5
# A frame from the client refreshes the visitor's presence at most this often (pings always).
TOUCH_MIN_INTERVAL = 10.0
URL_MAX = 2000
TITLE_MAX = 300
CLIENT_MSG_ID_MAX = 64

# Events that may take a conversation out of the queue (or back in).
_QUEUE_TYPES = frozenset({"assigned", "team_changed", "status_changed", "chat_ended"})

# Debounced queue answers still pending after their consumer ended (kept from collection).
_pending: set[asyncio.Task[None]] = set()


def max_frame() -> int:
    """A message frame carries CHAT_MESSAGE_MAX_CHARS characters, even every one JSON-escaped
    (`\\u0159`: a client with ensure_ascii), plus its other fields."""
    return max(16 * 1024, 6 * int(settings.CHAT_MESSAGE_MAX_CHARS) + 4096)


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value <= 2**63 - 1:
        return value
    return None


def _uuid(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str) or len(value) > 36:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _page_url(value: Any) -> str:
    """An http(s) URL the visitor reports, cut to size; anything else is ''."""
    if not isinstance(value, str):
        return ""
    value = value.strip()[:URL_MAX]
    try:
        scheme = urlsplit(value).scheme
    except ValueError:
        return ""
    return value if scheme in ("http", "https") else ""


def _page_title(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value if c >= " ")[:TITLE_MAX]


# --- the database side (sync; run through database_sync_to_async) ----------------------------


def _find_inbox(token: str) -> Inbox | None:
    from channels_inbox.models import Inbox

    if not token or len(token) > 64:
        return None
    return Inbox.objects.filter(public_token=token, kind="chat", is_active=True).first()


def _authenticate(inbox: Inbox, token: Any) -> VisitorAuth | None:
    """The visitor (and, for a hosted-page token, the one conversation it may use) of a token;
    None for a bad, foreign or expired one. The HTTP API's check."""
    from channels_inbox.actions.chat import authenticate_visitor

    try:
        return authenticate_visitor(inbox, token)
    except BadToken:
        return None


def _still_allowed(inbox_id: int, origin: str, token: Any) -> int | None:
    """None while the connection may go on, else its close code: the inbox was switched off
    (4404), the page's origin or the visitor's website is no longer allowed (4403), or the
    token stopped working — a hosted-page token expires with its link (4401)."""
    from channels_inbox.models import Inbox

    inbox = Inbox.objects.filter(pk=inbox_id, kind="chat", is_active=True).first()
    if inbox is None:
        return CLOSE_NOT_FOUND
    if not is_allowed(inbox, origin):
        return CLOSE_ORIGIN
    auth = _authenticate(inbox, token)
    if auth is None:
        return CLOSE_AUTH
    if auth.visitor.site_origin and not is_allowed(inbox, auth.visitor.site_origin):
        return CLOSE_ORIGIN
    return None


def client_ip(scope: dict[str, Any]) -> str:
    """The socket's client address, as `limits.client_ip` reads it for the HTTP API."""
    if getattr(settings, "BEHIND_PROXY", False):
        for name, value in scope.get("headers") or []:
            if name == b"x-forwarded-for":
                hops = [part.strip() for part in value.decode("latin-1").split(",")]
                if hops and hops[-1]:
                    return hops[-1][:64]
    client = scope.get("client")
    return str(client[0])[:64] if client else "unknown"


def _visitor_frame(visitor: ChatVisitor) -> dict[str, Any]:
    from channels_inbox.chat import frames

    return frames.visitor_frame(visitor)


def _readable(visitor: ChatVisitor, public_id: uuid.UUID, only: int | None) -> ChatConversation | None:
    """The conversation if this visitor may read it (their own, or their verified customer's
    in this inbox; with a hosted-page token only its one conversation, row id `only`);
    anything else is answered like a missing one. The HTTP API's check."""
    from channels_inbox.actions.chat import conversation_for_visitor

    return conversation_for_visitor(visitor, public_id, only_conversation_id=only)


def _conversation_frame(conversation: ChatConversation) -> dict[str, Any]:
    from channels_inbox.chat import frames

    return frames.conversation_frame(conversation)


def _replay(
    conversation: ChatConversation, after_seq: int, viewer: uuid.UUID
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The conversation's visitor-visible events after `after_seq`, serialized, oldest first:
    at most REPLAY_MAX, the newest (one bounded query, whatever the conversation's length).
    Second: what the `resumed` frame says about the rest — `{"truncated": False}`, or
    `{"truncated": True, "history_after": after_seq, "history_before": s}` when the events with
    after_seq < seq < s were left out (the widget reads them over HTTP: events?after=…)."""
    from channels_inbox.chat import frames
    from helpdesk.models import TicketEvent

    newest = list(
        TicketEvent.objects.filter(
            ticket_id=conversation.ticket_id, seq__gt=after_seq, type__in=sorted(frames.VISIBLE_EVENT_TYPES)
        ).order_by("-seq")[: REPLAY_MAX + 1]
    )
    truncated = len(newest) > REPLAY_MAX
    events = newest[:REPLAY_MAX][::-1]
    found = frames.event_frames(conversation, events, viewer=viewer)
    if not truncated:
        return found, {"truncated": False}
    return found, {"truncated": True, "history_after": after_seq, "history_before": events[0].seq}


def _status(conversation_id: int) -> str:
    from channels_inbox.models import ChatConversation

    return str(ChatConversation.objects.filter(pk=conversation_id).values_list("status", flat=True).first() or "")


def _queue_frame(conversation_id: int) -> dict[str, Any] | None:
    from channels_inbox.models import ChatConversation

    try:
        from helpdesk.chat_queue import queue_info
    except ImportError:
        return None
    conversation = ChatConversation.objects.filter(pk=conversation_id).first()
    info = queue_info(conversation) if conversation is not None else None
    if info is None:
        return None
    return {"type": "queue", "conversation": conversation.public_id.hex, **info}  # type: ignore[union-attr]


def _agent_name(user_id: Any) -> str:
    """The name visitors see for an agent (frames.agent_name: never an email)."""
    from channels_inbox.chat import frames
    from helpdesk.models import User

    user = User.objects.filter(pk=user_id).only("first_name", "last_name", "email", "username").first()
    return frames.agent_name(user) if user is not None else frames.agent_name(None)


# --- the consumer ----------------------------------------------------------------------------


class VisitorConsumer(AsyncWebsocketConsumer):
    inbox: Inbox
    visitor: ChatVisitor | None
    # A hosted-page token's one conversation (row id); None: all the visitor may read.
    only_conversation: int | None
    token: Any
    origin: str
    ip: str
    ip_counted: bool
    conn_id: str
    # Followed conversations by ticket id: {"id": conv pk, "public": hex, "status", "typing_at", "typing"}.
    conversations: dict[int, dict[str, Any]]
    sent: OrderedDict[tuple[int, int], None]
    # Agent typing: ticket id → {viewer token: expires (monotonic)}; names by user id.
    agents_typing: dict[int, dict[str, float]]
    agent_names: dict[Any, str]
    heard: OrderedDict[tuple[str, int], None]
    groups_joined: set[str]
    url: str
    title: str
    bucket: TokenBucket
    rate_error_at: float
    touched_at: float
    auth_timer: asyncio.Task[None] | None
    queue_task: asyncio.Task[None] | None

    async def connect(self) -> None:
        self.visitor = None
        self.only_conversation = None
        self.ip_counted = False
        self.auth_timer = None
        self.queue_task = None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        inbox = await database_sync_to_async(_find_inbox)((query.get("inbox") or [""])[0])
        if inbox is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        headers = dict(self.scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not is_allowed(inbox, origin):
            await self.close(code=CLOSE_ORIGIN)
            return
        self.conn_id = uuid.uuid4().hex
        self.ip = client_ip(self.scope)
        if not await database_sync_to_async(presence.claim_address)(
            self.ip, self.conn_id, limit=int(settings.CHAT_WS_PER_IP)
        ):
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.ip_counted = True
        self.inbox = inbox
        self.origin = origin
        self.conversations = {}
        self.sent = OrderedDict()
        self.agents_typing = {}
        self.agent_names = {}
        self.heard = OrderedDict()
        self.groups_joined = set()
        self.url = self.title = ""
        self.bucket, self.rate_error_at = TokenBucket(RATE_BURST, RATE_PER_SECOND), 0.0
        self.touched_at = 0.0
        await self.accept()
        self.auth_timer = asyncio.ensure_future(self._auth_deadline())

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_SECONDS)
        if self.visitor is None:
            await self.close(code=CLOSE_AUTH)

    async def disconnect(self, code: int) -> None:
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        if self.queue_task is not None:
            self.queue_task.cancel()
        if self.ip_counted:
            self.ip_counted = False
            await database_sync_to_async(presence.release_address)(self.ip, self.conn_id)
        if not hasattr(self, "groups_joined"):
            return
        if self.visitor is not None:
            for ticket_id, followed in self.conversations.items():
                if followed["typing"]:
                    await self._publish_visitor(ticket_id, typing=False)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if self.visitor is not None:
            await database_sync_to_async(presence.release)(self.visitor.public_id, self.conn_id)

    # --- frames from the widget -----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.bucket.take():
            now = time.monotonic()
            if now - self.rate_error_at >= 1:
                self.rate_error_at = now
                await self._error("too many frames; slow down")
            return
        limit = max_frame()
        frame: Any = None
        if text_data and len(text_data) <= limit:
            try:
                frame = json.loads(text_data)
            except (ValueError, RecursionError):  # RecursionError: a few thousand nested brackets
                frame = None
        action = frame.get("action") if isinstance(frame, dict) else None
        if self.visitor is None:
            # Before auth, anything but a good auth frame ends the connection.
            if action == "auth":
                await self._auth(frame)
            else:
                await self.close(code=CLOSE_AUTH)
            return
        if not text_data or len(text_data) > limit:
            await self._error(f"expected a text frame of at most {limit} characters")
            return
        if not isinstance(action, str):
            await self._error("expected a JSON object with an action")
            return
        await self._maybe_touch(force=action == "ping")
        if action == "ping":
            # Every ping re-checks what auth checked: a revoked website or an expired link ends it.
            code = await database_sync_to_async(_still_allowed)(self.inbox.pk, self.origin, self.token)
            if code is not None:
                await self.close(code=code)
                return
            await self._send({"type": "pong"})
        elif action == "resume":
            await self._resume(frame)
        elif action == "message":
            await self._message(frame)
        elif action == "typing":
            await self._typing(frame)
        elif action == "read":
            await self._read(frame)
        elif action == "page":
            await self._page(frame)
        elif action == "auth":
            await self._error("already authenticated")
        else:
            await self._error(f"unknown action {action[:40]!r}")

    async def _auth(self, frame: dict[str, Any]) -> None:
        auth = await database_sync_to_async(_authenticate)(self.inbox, frame.get("token"))
        if auth is None:
            await self.close(code=CLOSE_AUTH)
            return
        visitor = auth.visitor
        if visitor.site_origin and not is_allowed(self.inbox, visitor.site_origin):
            await self.close(code=CLOSE_ORIGIN)
            return
        if not await database_sync_to_async(presence.touch)(
            visitor.public_id, self.conn_id, limit=int(settings.CHAT_WS_PER_VISITOR)
        ):
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.visitor, self.only_conversation, self.token = visitor, auth.only_conversation_id, frame.get("token")
        self.url, self.title = visitor.current_url, visitor.page_title
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        self.touched_at = time.monotonic()
        ready = await database_sync_to_async(_visitor_frame)(visitor)
        await self._send({"type": "ready", "visitor": ready, "ping_seconds": presence.PING_SECONDS})

    async def _maybe_touch(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.visitor is None or (not force and now - self.touched_at < TOUCH_MIN_INTERVAL):
            return
        self.touched_at = now
        await database_sync_to_async(self._refresh)()

    def _refresh(self) -> None:
        assert self.visitor is not None
        presence.touch(self.visitor.public_id, self.conn_id)
        presence.refresh_address(self.ip, self.conn_id)

    def _followed(self, frame: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        public = _uuid(frame.get("conversation"))
        if public is None:
            return None
        for ticket_id, followed in self.conversations.items():
            if followed["public"] == public.hex:
                return ticket_id, followed
        return None

    async def _resume(self, frame: dict[str, Any]) -> None:
        assert self.visitor is not None
        public = _uuid(frame.get("conversation"))
        last_seq = _non_negative_int(frame.get("last_seq") or 0)
        if public is None or last_seq is None:
            await self._error("resume needs a conversation id (and optionally last_seq ≥ 0)")
            return
        conversation = await database_sync_to_async(_readable)(self.visitor, public, self.only_conversation)
        if conversation is None:
            await self._error("no such conversation")
            return
        if conversation.ticket_id not in self.conversations and len(self.conversations) >= MAX_CONVERSATIONS:
            await self._error(f"at most {MAX_CONVERSATIONS} conversations per connection")
            return
        await self._follow_and_replay(conversation, last_seq)

    async def _follow_and_replay(
        self, conversation: ChatConversation, after_seq: int, *, first: dict[str, Any] | None = None
    ) -> None:
        """Join the ticket's group first, then read the backlog: an event committed in between
        is then in the backlog and also queued live (the live copy is dropped as already sent).
        Reading first would lose it."""
        ticket_id = conversation.ticket_id
        await self._join(ticket_group(ticket_id))
        self.conversations.setdefault(
            ticket_id,
            {
                "id": conversation.pk,
                "public": conversation.public_id.hex,
                "status": "",
                "typing": False,
                "typing_at": 0.0,
            },
        )
        conv, missed, more, status = await database_sync_to_async(self._backlog)(conversation, after_seq)
        await self._send(first or {"type": "resumed", "conversation": conv, **more})
        for event in missed:
            await self._send_event(ticket_id, event)
        await self._set_status(ticket_id, status)

    def _backlog(
        self, conversation: ChatConversation, after_seq: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], str]:
        assert self.visitor is not None
        conversation.refresh_from_db()
        missed, more = _replay(conversation, after_seq, self.visitor.public_id)
        return _conversation_frame(conversation), missed, more, str(conversation.status)

    async def _send_event(self, ticket_id: int, event: dict[str, Any]) -> None:
        seq = event.get("seq")
        if not isinstance(seq, int):
            return
        key = (ticket_id, seq)
        if key in self.sent:
            return
        self._remember(key)
        await self._send({"type": "event", **event})

    def _remember(self, key: tuple[int, int]) -> None:
        self.sent[key] = None
        while len(self.sent) > _RECENT:
            self.sent.popitem(last=False)

    async def _set_status(self, ticket_id: int, status: str) -> None:
        """Follow the conversation's queue while it waits: join the inbox's queue group, say
        where it stands; leave the group when no followed conversation waits any more."""
        followed = self.conversations.get(ticket_id)
        if followed is None or not status:
            return
        was, followed["status"] = followed["status"], status
        group = f"chatqueue.{self.inbox.pk}"
        if status == "waiting":
            await self._join(group)
            if was != "waiting":
                queue = await database_sync_to_async(_queue_frame)(followed["id"])
                if queue is not None:
                    await self._send(queue)
        elif group in self.groups_joined and not any(f["status"] == "waiting" for f in self.conversations.values()):
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.discard(group)

    async def _message(self, frame: dict[str, Any]) -> None:
        assert self.visitor is not None
        client_msg_id = frame.get("client_msg_id")
        if not isinstance(client_msg_id, str) or not client_msg_id or len(client_msg_id) > CLIENT_MSG_ID_MAX:
            await self._error("message needs a client_msg_id")
            return
        try:
            conversation, ack, own_seq = await database_sync_to_async(self._receive_message)(frame, client_msg_id)
        except _Refused as exc:
            await self._error(str(exc), client_msg_id=client_msg_id)
            return
        if own_seq:
            self._remember((conversation.ticket_id, own_seq))
        reply = {"type": "ack", "client_msg_id": client_msg_id, **ack}
        # A conversation new to this connection: follow it before acking, so the agent's first
        # reply arrives live; what happened after this message (routing, an auto-reply) is replayed.
        if conversation.ticket_id not in self.conversations and len(self.conversations) < MAX_CONVERSATIONS:
            await self._follow_and_replay(conversation, own_seq, first=reply)
        else:
            await self._send(reply)
        # The message is sent: the visitor no longer types it.
        followed = self.conversations.get(conversation.ticket_id)
        if followed is not None and followed["typing"]:
            followed["typing"] = False
            await self._publish_visitor(conversation.ticket_id, typing=False)

    def _receive_message(
        self, frame: dict[str, Any], client_msg_id: str
    ) -> tuple[ChatConversation, dict[str, Any], int]:
        """Store the message through the chat action (the HTTP API's: validation, the
        per-visitor rate limit, dedupe by client_msg_id); the conversation, the ack's body, and
        the seq of the message's own event (the ack carries the message to this connection, so
        that event is not sent to it again)."""
        from channels_inbox.actions import chat as chat_actions
        from channels_inbox.chat import frames
        from helpdesk.models import TicketEvent, TicketEventType

        assert self.visitor is not None
        try:
            receipt = chat_actions.do_receive_chat_message(
                self.visitor,
                conversation=frame.get("conversation"),
                client_msg_id=client_msg_id,
                text=frame.get("text", ""),
                uploads=frame.get("uploads"),
                prechat=frame.get("prechat"),
                only_conversation_id=self.only_conversation,
                ip=self.ip,
            )
        except (
            chat_actions.ChatInputError,
            chat_actions.ChatNotFound,
            chat_actions.ChatRateLimited,
            chat_actions.ChatConflict,
        ) as exc:
            raise _Refused(str(exc)) from exc
        conversation, message = receipt.conversation, receipt.message
        if conversation is None or message is None:
            # Stored, not processed yet (the sweeper retries): the same client_msg_id again is safe.
            raise _Refused("the message is stored but not processed yet; send it again")
        seq = (
            TicketEvent.objects.filter(
                ticket_id=conversation.ticket_id, type=TicketEventType.MESSAGE_RECEIVED, message_id=message.pk
            )
            .values_list("seq", flat=True)
            .first()
        )
        body = {
            "conversation": frames.conversation_frame(conversation),
            "message": frames.message_frame(message, self.visitor.public_id),
            "duplicate": bool(receipt.duplicate),
        }
        return conversation, body, int(seq or 0)

    async def _typing(self, frame: dict[str, Any]) -> None:
        found = self._followed(frame)
        typing = frame.get("typing")
        if found is None or not isinstance(typing, bool):
            await self._error("typing needs a followed conversation and typing: true or false")
            return
        ticket_id, followed = found
        now = time.monotonic()
        if typing == followed["typing"] and (not typing or now - followed["typing_at"] < TYPING_MIN_INTERVAL):
            return
        followed["typing"], followed["typing_at"] = typing, now
        await self._publish_visitor(ticket_id, typing=typing)

    async def _publish_visitor(self, ticket_id: int, *, typing: bool) -> None:
        assert self.visitor is not None
        message = {
            "type": "chat.visitor",
            "ticket_id": ticket_id,
            "visitor": self.visitor.public_id.hex,
            "typing": typing,
            "url": self.url,
            "title": self.title,
        }
        await self.channel_layer.group_send(ticket_group(ticket_id), message)

    async def _read(self, frame: dict[str, Any]) -> None:
        found = self._followed(frame)
        message_id = _non_negative_int(frame.get("message_id"))
        if found is None or not message_id:
            await self._error("read needs a followed conversation and a message_id")
            return
        try:
            await database_sync_to_async(self._mark_read)(found[1]["id"], message_id)
        except _Refused as exc:
            await self._error(str(exc))

    def _mark_read(self, conversation_id: int, message_id: int) -> None:
        from channels_inbox.actions import chat as chat_actions
        from channels_inbox.models import ChatConversation

        conversation = ChatConversation.objects.select_related("ticket").get(pk=conversation_id)
        try:
            chat_actions.do_mark_chat_read(conversation, message_id=message_id)
        except (chat_actions.ChatInputError, chat_actions.ChatRateLimited) as exc:
            raise _Refused(str(exc)) from exc

    async def _page(self, frame: dict[str, Any]) -> None:
        """The visitor moved to another page: stored, and told to the desk by the action."""
        url, title = _page_url(frame.get("url")), _page_title(frame.get("title"))
        if (url, title) == (self.url, self.title):
            return
        try:
            await database_sync_to_async(self._save_page)(url, title)
        except _Refused as exc:
            await self._error(str(exc))
            return
        self.url, self.title = url, title

    def _save_page(self, url: str, title: str) -> None:
        from channels_inbox.actions import chat as chat_actions

        assert self.visitor is not None
        try:
            chat_actions.do_record_chat_page(self.visitor, url=url, title=title)
        except (chat_actions.ChatInputError, chat_actions.ChatRateLimited) as exc:
            raise _Refused(str(exc)) from exc

    # --- messages on the groups joined ----------------------------------------------------

    async def ticket_event(self, message: dict[str, Any]) -> None:
        from channels_inbox.chat import frames

        ticket_id, seq, kind = message.get("ticket_id"), message.get("seq"), message.get("event")
        followed = self.conversations.get(ticket_id) if isinstance(ticket_id, int) else None
        if followed is None or not isinstance(seq, int) or (ticket_id, seq) in self.sent:
            return
        assert isinstance(ticket_id, int)
        data = message.get("data")
        visible = frames.is_visible_live(str(kind), data if isinstance(data, dict) else {})
        if not visible and kind not in _QUEUE_TYPES:
            return
        # The payload is the desk's (internal data): what the visitor sees is read from the database.
        found, status = await database_sync_to_async(self._live)(followed["id"], seq, visible)
        for frame in found:
            await self._send_event(ticket_id, frame)
        self._remember((ticket_id, seq))
        await self._set_status(ticket_id, status)

    def _live(self, conversation_id: int, seq: int, visible: bool) -> tuple[list[dict[str, Any]], str]:
        from channels_inbox.chat import frames
        from channels_inbox.models import ChatConversation

        conversation = (
            ChatConversation.objects.select_related("ticket__assignee", "visitor", "inbox")
            .filter(pk=conversation_id)
            .first()
        )
        if conversation is None:
            return [], ""
        assert self.visitor is not None
        found = frames.event_frames_by_seq(conversation, [seq], viewer=self.visitor.public_id) if visible else []
        return found, str(conversation.status)

    async def ticket_viewer(self, message: dict[str, Any]) -> None:
        """A desk page's viewer marker: pass on an agent typing a reply (never a note)."""
        ticket_id = message.get("ticket_id")
        followed = self.conversations.get(ticket_id) if isinstance(ticket_id, int) else None
        if followed is None:
            return
        assert isinstance(ticket_id, int)
        viewer = str(message.get("viewer"))
        key = (viewer, int(message.get("n") or 0))
        if key in self.heard:
            return
        self.heard[key] = None
        while len(self.heard) > _RECENT:
            self.heard.popitem(last=False)
        now = time.monotonic()
        typing_now = {v: t for v, t in self.agents_typing.get(ticket_id, {}).items() if t > now}
        was_typing = bool(typing_now)
        if message.get("typing") == "reply" and not message.get("left"):
            typing_now[viewer] = now + AGENT_TYPING_TTL
            user_id = message.get("user_id")
            if user_id not in self.agent_names:
                self.agent_names[user_id] = await database_sync_to_async(_agent_name)(user_id)
            agent = self.agent_names[user_id]
            self.agents_typing[ticket_id] = typing_now
            await self._send(
                {
                    "type": "typing",
                    "conversation": followed["public"],
                    "typing": True,
                    "agent": agent,
                    "ttl": AGENT_TYPING_TTL,
                }
            )
            return
        typing_now.pop(viewer, None)
        self.agents_typing[ticket_id] = typing_now
        if was_typing and not typing_now:
            await self._send({"type": "typing", "conversation": followed["public"], "typing": False, "agent": ""})

    async def chat_visitor(self, message: dict[str, Any]) -> None:
        """Another visitor connection's typing or page (for the desk): nothing for this one."""

    async def chat_queue(self, message: dict[str, Any]) -> None:
        """The inbox's queue changed: re-send the queue frames, at most every QUEUE_DEBOUNCE."""
        if self.queue_task is None or self.queue_task.done():
            self.queue_task = asyncio.ensure_future(self._send_queue_later())
            _pending.add(self.queue_task)
            self.queue_task.add_done_callback(_pending.discard)

    async def _send_queue_later(self) -> None:
        await asyncio.sleep(QUEUE_DEBOUNCE)
        for ticket_id, followed in list(self.conversations.items()):
            if followed["status"] != "waiting":
                continue
            queue = await database_sync_to_async(_queue_frame)(followed["id"])
            if queue is not None:
                await self._send(queue)
            else:
                status = await database_sync_to_async(_status)(followed["id"])
                await self._set_status(ticket_id, status)

    # --- helpers ------------------------------------------------------------------------------

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame))

    async def _error(self, message: str, *, client_msg_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "error": message}
        if client_msg_id is not None:
            frame["client_msg_id"] = client_msg_id
        await self._send(frame)


class _Refused(Exception):
    """The chat action refused the frame; str() is what the visitor is told."""
