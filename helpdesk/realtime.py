"""Live updates over Channels: publishing ticket events to websocket groups."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from helpdesk.sideeffects import after_commit

if TYPE_CHECKING:
    from helpdesk.models import Ticket, TicketEvent

logger = logging.getLogger(__name__)


def ticket_group(ticket_id: int) -> str:
    return f"ticket.{ticket_id}"


def team_group(team_id: int) -> str:
    return f"team.{team_id}"


def agent_group(user_id: int) -> str:
    return f"agent.{user_id}"


ALL_TICKETS_GROUP = "desk.all"


def publish_ticket_event(ticket: Ticket, event: TicketEvent) -> None:
    """After commit, tell the ticket page and the lists that the ticket changed."""
    message = {
        "type": "ticket.event",
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "seq": event.seq,
        "event": event.type,
        "data": event.data,
        "team_id": ticket.team_id,
        "assignee_id": ticket.assignee_id,
    }
    groups = [ticket_group(ticket.pk), ALL_TICKETS_GROUP]
    if ticket.team_id:
        groups.append(team_group(ticket.team_id))
    if ticket.assignee_id:
        groups.append(agent_group(ticket.assignee_id))

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for group in groups:
            try:
                async_to_sync(layer.group_send)(group, message)
            except Exception:
                logger.warning("could not publish %s to %s", event.type, group, exc_info=True)

    after_commit(send)


class EmbeddedChannelLayer(InMemoryChannelLayer):
    """The in-memory layer, safe to publish to from Celery threads of the same process.

    The base layer's queues belong to the server's event loop; a publish from a worker
    thread (its own loop) is handed over to that loop instead of touching them directly.
    """

    _server_loop: asyncio.AbstractEventLoop | None = None

    async def receive(self, channel: str) -> Any:
        self._server_loop = asyncio.get_running_loop()
        return await super().receive(channel)

    async def _on_server_loop(self, coro: Any) -> Any:
        loop = self._server_loop
        if loop is not None and loop.is_running() and loop is not asyncio.get_running_loop():
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
        return await coro

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._on_server_loop(super().send(channel, message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._on_server_loop(super().group_send(group, message))
