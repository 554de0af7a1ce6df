"""The desk's websocket: live ticket pages and lists, with catch-up after a reconnect.

Client → server frames (JSON):
  {"action": "subscribe_ticket", "number": 1042, "last_seq": 17}
  {"action": "subscribe_list"}
Server → client:
  {"type": "ticket.event", "ticket_id": …, "number": …, "seq": …, "event": …, "data": {…}}
After subscribe_ticket, events with seq > last_seq are replayed from the database first,
so a client that was disconnected misses nothing.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from helpdesk.models import Role, Ticket
from helpdesk.permissions import role_of, team_ids_of, ticket_policy
from helpdesk.realtime import ALL_TICKETS_GROUP, ticket_group
from helpdesk.selectors import events_after

MAX_FRAME = 4096


class DeskConsumer(AsyncWebsocketConsumer):
    role: str | None
    team_ids: list[int]
    groups_joined: set[str]

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.role = await database_sync_to_async(role_of)(user)
        if self.role is None:
            await self.close(code=4403)
            return
        self.team_ids = await database_sync_to_async(team_ids_of)(user)
        self.groups_joined = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not text_data or len(text_data) > MAX_FRAME:
            await self._error("frame too large or not text")
            return
        try:
            frame = json.loads(text_data)
            action = frame["action"]
        except (ValueError, KeyError, TypeError):
            await self._error("expected a JSON object with an action")
            return
        if action == "subscribe_ticket":
            await self._subscribe_ticket(frame)
        elif action == "subscribe_list":
            await self._join(ALL_TICKETS_GROUP)
            await self.send(text_data=json.dumps({"type": "subscribed", "list": True}))
        else:
            await self._error(f"unknown action {action!r}")

    async def _subscribe_ticket(self, frame: dict[str, Any]) -> None:
        try:
            number = int(frame["number"])
            last_seq = int(frame.get("last_seq") or 0)
        except (KeyError, TypeError, ValueError):
            await self._error("subscribe_ticket needs a number")
            return
        ticket, missed = await database_sync_to_async(self._load)(number, last_seq)
        if ticket is None:
            await self._error("no such ticket")
            return
        await self._join(ticket_group(ticket.pk))
        await self.send(text_data=json.dumps({"type": "subscribed", "number": number, "seq": ticket.last_event_seq}))
        for event in missed:
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

    def _load(self, number: int, last_seq: int) -> tuple[Ticket | None, list[Any]]:
        user = self.scope["user"]
        ticket = ticket_policy.visible(user).filter(number=number).first()
        if ticket is None:
            return None, []
        return ticket, events_after(ticket, last_seq)

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def _error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "error": message}))

    async def ticket_event(self, message: dict[str, Any]) -> None:
        if not self._may_see(message):
            return
        payload = {k: v for k, v in message.items() if k not in ("type", "team_id", "assignee_id")}
        await self.send(text_data=json.dumps({"type": "ticket.event", **payload}))

    def _may_see(self, message: dict[str, Any]) -> bool:
        if self.role in (Role.ADMIN, Role.SUPERVISOR):
            return True
        team_id = message.get("team_id")
        user = self.scope["user"]
        return team_id is None or team_id in self.team_ids or message.get("assignee_id") == user.pk
