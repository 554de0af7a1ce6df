"""The desk's websocket: live ticket pages and lists, presence, viewers and typing markers.

Client → server frames (JSON, at most MAX_FRAME characters, at most RATE_BURST at once and
RATE_PER_SECOND on average):
  {"action": "subscribe_ticket", "number": 1042, "last_seq": 17}
  {"action": "subscribe_list"}
  {"action": "hello", "idle": false}       a desk page: answer presence.self, send viewers
  {"action": "heartbeat", "idle": false}   every HEARTBEAT_SECONDS, and when idle changes
  {"action": "typing", "number": 1042, "mode": "reply" | "note" | "none"}
Server → client:
  {"type": "subscribed", "number": 1042, "seq": 19}   or   {"type": "subscribed", "list": true}
  {"type": "ticket.event", "ticket_id": …, "number": …, "seq": …, "event": …, "data": {…},
   "actor_id": …, "actor_name": …}
  {"type": "unsubscribed", "number": 1042}   the ticket went out of the user's sight
  {"type": "agent.event", "kind": …, "payload": {…}}   (publish_to_agent)
  {"type": "chat.visitor", "number": …, "typing": bool, "url": …, "title": …}   a chat visitor
   on a watched ticket types or moves to another page (from the widget's websocket)
  after hello only:
  {"type": "presence.self", "user_id": …, "presence": …, "choice": …, …timings}
  {"type": "viewer", "number": …, "viewer": "<token>", "user_id": …, "name": …,
   "presence": …, "typing": null | "reply" | "note", "left": false}
  {"type": "error", "error": "…"}   (a bad frame; the connection stays open)
After subscribe_ticket, events with seq > last_seq are replayed from the database first,
so a client that was disconnected misses nothing; each event reaches a connection once.
A ticket the user may not see is answered "no such ticket", like a missing one; viewers and
typing markers travel on the ticket's group, which only subscriptions that passed
ticket_policy join. See helpdesk/presence.py for how presence is kept.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from helpdesk import presence
from helpdesk.models import Role, Ticket, TicketEvent
from helpdesk.permissions import role_of, team_ids_of, ticket_policy
from helpdesk.realtime import ALL_TICKETS_GROUP, agent_group, ticket_group
from helpdesk.selectors import events_after
from helpdesk.throttle import TokenBucket

MAX_FRAME = 4096
# Ticket numbers and sequence numbers are stored as 64-bit integers.
_MAX_INT = 2**63 - 1
# How many (ticket, seq) pairs a connection remembers having sent, to drop duplicates.
_RECENT = 1024
# Frames a client may send at once, and on average per second after that.
RATE_BURST = 40
RATE_PER_SECOND = 5.0
# Tickets one connection may watch (each is a group joined, with viewers announced).
MAX_TICKETS = 20
# A typing marker is re-sent to the others at most this often (the same mode, same ticket).
TYPING_MIN_INTERVAL = 1.0
# A typing marker lasts this long after the last keystroke reported (the pages expire it).
TYPING_TTL = 6
# A viewer not re-announced for this long is gone (a heartbeat re-announces; pages expire it).
VIEWER_TTL = 70
TYPING_MODES = ("reply", "note", "none")

# Grace-period recomputes still pending after their consumer ended (kept from collection).
_pending: set[asyncio.Task[None]] = set()


def _non_negative_int(value: Any) -> int | None:
    """An integer 0 ≤ n < 2**63 from a JSON value (int or digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_INT:
        return value
    return None


def _remember_chat_typing(ticket_id: int, user: Any, typing: bool) -> None:
    from channels_inbox.chat.frames import agent_name, set_agent_typing

    set_agent_typing(ticket_id, agent_name(user) if typing else None, ttl=TYPING_TTL)


async def _recompute_after_grace(user_id: int) -> None:
    await asyncio.sleep(presence.GRACE_SECONDS + 0.2)
    await database_sync_to_async(presence.recompute)(user_id)


class DeskConsumer(AsyncWebsocketConsumer):
    role: str | None
    team_ids: list[int]
    groups_joined: set[str]
    # Events already sent, so one that arrives twice (replayed and live, or through both
    # the ticket's and the list's group) goes to the client once.
    sent: OrderedDict[tuple[int, int], None]
    user_id: int
    name: str
    # This connection: its presence record and its token as a viewer of tickets.
    conn_id: str
    hello: bool
    idle: bool
    presence: str
    choice: str
    # What the page was last told of its own presence (presence, choice).
    told: tuple[str, str]
    list_subscribed: bool
    # Watched tickets by id: number, may reply, typing mode and when it was last sent.
    tickets: dict[int, dict[str, Any]]
    # Viewer messages sent (a counter) and received (viewer, n): the pub/sub layer may deliver
    # one twice (channels_redis #299), and a page must see each once.
    announced: int
    heard: OrderedDict[tuple[str, int], None]
    bucket: TokenBucket
    rate_error_at: float

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.role = await database_sync_to_async(role_of)(user)
        if self.role is None:
            await self.close(code=4403)
            return
        self.team_ids = await database_sync_to_async(team_ids_of)(user)
        self.groups_joined = set()
        self.sent = OrderedDict()
        self.user_id = user.pk
        self.name = str(user.display_name)
        self.conn_id = uuid.uuid4().hex
        self.hello = False
        self.idle = False
        self.presence = "offline"
        self.choice = "online"
        self.told = ("", "")
        self.list_subscribed = False
        self.tickets = {}
        self.announced = 0
        self.heard = OrderedDict()
        self.bucket, self.rate_error_at = TokenBucket(RATE_BURST, RATE_PER_SECOND), 0.0
        await self.accept()
        await self._join(agent_group(self.user_id))
        await self._touch()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "conn_id"):
            return
        for ticket_id in list(self.tickets):
            await self._announce(ticket_id, left=True)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        await database_sync_to_async(presence.release)(self.user_id, self.conn_id)
        task = asyncio.ensure_future(_recompute_after_grace(self.user_id))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.bucket.take():
            now = time.monotonic()
            if now - self.rate_error_at >= 1:
                self.rate_error_at = now
                await self._error("too many frames; slow down")
            return
        if not text_data or len(text_data) > MAX_FRAME:
            await self._error(f"expected a text frame of at most {MAX_FRAME} characters")
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: a few thousand nested brackets
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("action"), str):
            await self._error("expected a JSON object with an action")
            return
        action = frame["action"]
        if action == "subscribe_ticket":
            await self._subscribe_ticket(frame)
        elif action == "subscribe_list":
            self.list_subscribed = True
            await self._join(ALL_TICKETS_GROUP)
            await self.send(text_data=json.dumps({"type": "subscribed", "list": True}))
        elif action in ("hello", "heartbeat"):
            await self._heartbeat(frame, hello=action == "hello")
        elif action == "typing":
            await self._typing(frame)
        else:
            await self._error(f"unknown action {action[:40]!r}")

    # --- presence -------------------------------------------------------------------------

    def _touch_sync(self) -> tuple[str, str]:
        presence.touch(self.user_id, self.conn_id, idle=self.idle)
        state = presence.recompute(self.user_id)
        presence.maybe_sweep()
        return state, presence.choice_of(self.user_id)

    async def _touch(self) -> None:
        self.presence, self.choice = await database_sync_to_async(self._touch_sync)()

    async def _heartbeat(self, frame: dict[str, Any], *, hello: bool) -> None:
        idle = frame.get("idle", False)
        if not isinstance(idle, bool):
            await self._error(f"{frame['action']} takes idle: true or false")
            return
        self.idle = idle
        await self._touch()
        if hello:
            first = not self.hello
            self.hello = True
            await self._send_self()
            if first:
                for ticket_id in self.tickets:
                    await self._announce(ticket_id, ask=True)
                return
        for ticket_id in self.tickets:
            await self._announce(ticket_id)

    async def _send_self(self) -> None:
        self.told = (self.presence, self.choice)
        await self.send(
            text_data=json.dumps(
                {
                    "type": "presence.self",
                    "user_id": self.user_id,
                    "presence": self.presence,
                    "choice": self.choice,
                    "heartbeat": presence.HEARTBEAT_SECONDS,
                    "idle_after": presence.IDLE_SECONDS,
                    "typing_ttl": TYPING_TTL,
                    "viewer_ttl": VIEWER_TTL,
                }
            )
        )

    async def presence_self(self, message: dict[str, Any]) -> None:
        """The agent's presence or choice changed (any process): follow, and re-announce."""
        changed = message.get("presence") != self.presence
        self.presence = str(message.get("presence"))
        self.choice = str(message.get("choice"))
        # The state may already be told (a change published while this page said hello).
        if self.hello and self.told != (self.presence, self.choice):
            await self._send_self()
        if changed:
            for ticket_id in self.tickets:
                await self._announce(ticket_id)

    async def agent_event(self, message: dict[str, Any]) -> None:
        frame = {"type": "agent.event", "kind": message.get("kind"), "payload": message.get("payload")}
        await self.send(text_data=json.dumps(frame))

    # --- viewers and typing ---------------------------------------------------------------

    async def _announce(self, ticket_id: int, *, ask: bool = False, left: bool = False, to: str = "") -> None:
        """Tell the ticket's other viewers this connection views it (or left); `to`: one of them."""
        watched = self.tickets.get(ticket_id)
        if watched is None:
            return
        typing = watched["typing"] if time.monotonic() - watched["typing_at"] < TYPING_TTL else None
        self.announced += 1
        message = {
            "type": "ticket.viewer",
            "ticket_id": ticket_id,
            "viewer": self.conn_id,
            "n": self.announced,
            "user_id": self.user_id,
            "name": self.name,
            "presence": self.presence,
            "typing": None if left else typing,
            "left": left,
            "ask": ask,
            "reply_to": self.channel_name if ask else "",
        }
        if to:
            await self.channel_layer.send(to, message)
        else:
            await self.channel_layer.group_send(ticket_group(ticket_id), message)

    async def ticket_viewer(self, message: dict[str, Any]) -> None:
        ticket_id = message.get("ticket_id")
        watched = self.tickets.get(ticket_id) if isinstance(ticket_id, int) else None
        if watched is None or message.get("viewer") == self.conn_id:
            return
        key = (str(message.get("viewer")), int(message.get("n") or 0))
        if key in self.heard:
            return
        self.heard[key] = None
        while len(self.heard) > _RECENT:
            self.heard.popitem(last=False)
        same_user = message.get("user_id") == self.user_id
        reply_to = message.get("reply_to")
        if message.get("ask") and not same_user and isinstance(reply_to, str) and reply_to:
            await self._announce(ticket_id, to=reply_to)  # type: ignore[arg-type]
        if same_user or not self.hello:
            return
        frame = {
            "type": "viewer",
            "number": watched["number"],
            "viewer": message.get("viewer"),
            "user_id": message.get("user_id"),
            "name": message.get("name"),
            "presence": message.get("presence"),
            "typing": message.get("typing"),
            "left": bool(message.get("left")),
        }
        await self.send(text_data=json.dumps(frame))

    async def chat_visitor(self, message: dict[str, Any]) -> None:
        """A chat visitor types, or moved to another page (channels_inbox/consumers.py): tell the
        pages watching the ticket. Only url, title and typing travel; they are the visitor's own."""
        ticket_id = message.get("ticket_id")
        watched = self.tickets.get(ticket_id) if isinstance(ticket_id, int) else None
        if watched is None:
            return
        frame = {
            "type": "chat.visitor",
            "number": watched["number"],
            "typing": bool(message.get("typing")),
            "url": str(message.get("url") or ""),
            "title": str(message.get("title") or ""),
        }
        await self.send(text_data=json.dumps(frame))

    async def _typing(self, frame: dict[str, Any]) -> None:
        number = _non_negative_int(frame.get("number"))
        mode = frame.get("mode")
        if not number or mode not in TYPING_MODES:
            await self._error("typing needs a ticket number and a mode: reply, note or none")
            return
        ticket_id = next((tid for tid, w in self.tickets.items() if w["number"] == number), None)
        if ticket_id is None:
            await self._error("typing needs a subscribed ticket")
            return
        watched = self.tickets[ticket_id]
        if mode == "reply" and not watched["can_reply"]:
            await self._error("you may not reply on this ticket")
            return
        now = time.monotonic()
        typing = None if mode == "none" else mode
        if typing == watched["typing"] and now - watched["typing_at"] < TYPING_MIN_INTERVAL:
            return
        if typing is None and watched["typing"] is None:
            return
        was_reply = watched["typing"] == "reply"
        watched["typing"], watched["typing_at"] = typing, now if typing else 0.0
        await self._announce(ticket_id)
        if watched.get("chat") and (typing == "reply" or was_reply):
            # A chat visitor on the HTTP fallback has no websocket to hear the marker: its poll reads it.
            await database_sync_to_async(_remember_chat_typing)(ticket_id, self.scope["user"], typing == "reply")

    async def _leave_ticket(self, ticket_id: int) -> None:
        watched = self.tickets.get(ticket_id)
        if watched is None:
            return
        await self._announce(ticket_id, left=True)
        del self.tickets[ticket_id]
        group = ticket_group(ticket_id)
        if group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.discard(group)
        await self.send(text_data=json.dumps({"type": "unsubscribed", "number": watched["number"]}))

    # --- ticket events --------------------------------------------------------------------

    async def _subscribe_ticket(self, frame: dict[str, Any]) -> None:
        number = _non_negative_int(frame.get("number"))
        last_seq = _non_negative_int(frame.get("last_seq") or 0)
        if not number or last_seq is None:
            await self._error("subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)")
            return
        found = await database_sync_to_async(self._visible_ticket)(number)
        if found is None:
            await self._error("no such ticket")
            return
        ticket, can_reply = found
        if ticket.pk not in self.tickets and len(self.tickets) >= MAX_TICKETS:
            await self._error(f"at most {MAX_TICKETS} tickets per connection")
            return
        # Join first, then read the backlog: an event committed in between is then in the
        # backlog and also queued live (the live copy is dropped as already sent). Reading
        # first would lose it.
        await self._join(ticket_group(ticket.pk))
        self.tickets.setdefault(
            ticket.pk,
            {
                "number": number,
                "can_reply": can_reply,
                "typing": None,
                "typing_at": 0.0,
                "chat": ticket.channel == "chat",
            },
        )
        ticket, missed = await database_sync_to_async(self._backlog)(ticket, last_seq)
        await self.send(text_data=json.dumps({"type": "subscribed", "number": number, "seq": ticket.last_event_seq}))
        for event in missed:
            self._remember(ticket.pk, event.seq)
            await self.send(
                text_data=json.dumps(
                    {
                        "type": "ticket.event",
                        "ticket_id": ticket.pk,
                        "number": ticket.number,
                        "seq": event.seq,
                        "event": event.type,
                        "data": event.data,
                        "actor_id": event.actor_id,
                        "replayed": True,
                    }
                )
            )
        await self._announce(ticket.pk, ask=True)

    def _visible_ticket(self, number: int) -> tuple[Ticket, bool] | None:
        user = self.scope["user"]
        ticket = ticket_policy.visible(user).filter(number=number).first()
        return None if ticket is None else (ticket, ticket_policy.can_reply(user, ticket))

    def _backlog(self, ticket: Ticket, last_seq: int) -> tuple[Ticket, list[TicketEvent]]:
        ticket.refresh_from_db(fields=["last_event_seq"])
        return ticket, events_after(ticket, last_seq)

    def _remember(self, ticket_id: int, seq: int) -> None:
        self.sent[(ticket_id, seq)] = None
        while len(self.sent) > _RECENT:
            self.sent.popitem(last=False)

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def _error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "error": message}))

    async def ticket_event(self, message: dict[str, Any]) -> None:
        ticket_id = message["ticket_id"]
        if not self._may_see(message):
            # The ticket left the user's sight (another team): stop watching it.
            if ticket_id in self.tickets:
                await self._leave_ticket(ticket_id)
            return
        # The agent's own group carries their assigned tickets' events for every page: only
        # a page watching the list or this ticket gets them.
        if not (self.list_subscribed or ticket_id in self.tickets):
            return
        key = (message["ticket_id"], message["seq"])
        if key in self.sent:
            return
        self._remember(*key)
        payload = {k: v for k, v in message.items() if k not in ("type", "team_id", "assignee_id")}
        await self.send(text_data=json.dumps({"type": "ticket.event", **payload}))

    def _may_see(self, message: dict[str, Any]) -> bool:
        if self.role in (Role.ADMIN, Role.SUPERVISOR):
            return True
        team_id = message.get("team_id")
        user = self.scope["user"]
        return team_id is None or team_id in self.team_ids or message.get("assignee_id") == user.pk
