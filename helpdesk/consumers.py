"""The desk's websocket: live ticket pages and lists, with catch-up after a reconnect.

Client → server frames (JSON):
  {"action": "subscribe_ticket", "number": 1042, "last_seq": 17}
  {"action": "subscribe_list"}
Server → client:
  {"type": "subscribed", "number": 1042, "seq": 19}   or   {"type": "subscribed", "list": true}
  {"type": "ticket.event", "ticket_id": …, "number": …, "seq": …, "event": …, "data": {…}}
  {"type": "error", "error": "…"}   (a bad frame; the connection stays open)
After subscribe_ticket, events with seq > last_seq are replayed from the database first,
so a client that was disconnected misses nothing; each event reaches a connection once.
A ticket the user may not see is answered "no such ticket", like a missing one.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from helpdesk.models import Role, Ticket, TicketEvent
from helpdesk.permissions import role_of, team_ids_of, ticket_policy
from helpdesk.realtime import ALL_TICKETS_GROUP, ticket_group
from helpdesk.selectors import events_after

MAX_FRAME = 4096
# Ticket numbers and sequence numbers are stored as 64-bit integers.
_MAX_INT = 2**63 - 1
# How many (ticket, seq) pairs a connection remembers having sent, to drop duplicates.
_RECENT = 1024


def _non_negative_int(value: Any) -> int | None:
    """An integer 0 ≤ n < 2**63 from a JSON value (int or digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_INT:
        return value
    return None


class DeskConsumer(AsyncWebsocketConsumer):
    role: str | None
    team_ids: list[int]
    groups_joined: set[str]
    # Events already sent, so one that arrives twice (replayed and live, or through both
    # the ticket's and the list's group) goes to the client once.
    sent: OrderedDict[tuple[int, int], None]

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.role = await database_sync_to_async(role_of)(user)
        if self.role is None:
            await self.close(code=4403)
            return
        self.team_ids = await database_sync_to_async(team_ids_of)(user)
        self.groups_joined = set()
        self.sent = OrderedDict()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not text_data or len(text_data) > MAX_FRAME:
            await self._error(f"expected a text frame of at most {MAX_FRAME} characters")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("action"), str):
            await self._error("expected a JSON object with an action")
            return
        action = frame["action"]
        if action == "subscribe_ticket":
            await self._subscribe_ticket(frame)
        elif action == "subscribe_list":
            await self._join(ALL_TICKETS_GROUP)
            await self.send(text_data=json.dumps({"type": "subscribed", "list": True}))
        else:
            await self._error(f"unknown action {action[:40]!r}")

    async def _subscribe_ticket(self, frame: dict[str, Any]) -> None:
        number = _non_negative_int(frame.get("number"))
        last_seq = _non_negative_int(frame.get("last_seq") or 0)
        if not number or last_seq is None:
            await self._error("subscribe_ticket needs a ticket number (and optionally last_seq ≥ 0)")
            return
        ticket = await database_sync_to_async(self._visible_ticket)(number)
        if ticket is None:
            await self._error("no such ticket")
            return
        # Join first, then read the backlog: an event committed in between is then in the
        # backlog and also queued live (the live copy is dropped as already sent). Reading
        # first would lose it.
        await self._join(ticket_group(ticket.pk))
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
                        "replayed": True,
                    }
                )
            )

    def _visible_ticket(self, number: int) -> Ticket | None:
        return ticket_policy.visible(self.scope["user"]).filter(number=number).first()

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
        if not self._may_see(message):
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
