"""Live updates over Channels: publishing ticket events to websocket groups."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

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


def publish_to_agent(user_id: int, kind: str, payload: dict[str, Any]) -> None:
    """After commit, send one agent's desk pages a message (a notification, …).

    Every desk page of the agent receives it as the frame
    `{"type": "agent.event", "kind": kind, "payload": payload}`.
    """
    message = {"type": "agent.event", "kind": kind, "payload": payload}
    _batch_for_this_transaction().add([agent_group(user_id)], message)


def publish_presence(user_id: int, *, presence: str, choice: str) -> None:
    """After commit, tell the agent's desk pages their presence (and choice) changed.

    Each of those connections updates its page's control and re-announces the agent, with
    the new presence, on the tickets it shows: the other viewers' pages update from that.
    """
    message = {"type": "presence.self", "presence": presence, "choice": choice}
    _batch_for_this_transaction().add([agent_group(user_id)], message)


def _actor_name(event: TicketEvent) -> str:
    """The acting agent's name when the event holds the user already (no query)."""
    actor = event._state.fields_cache.get("actor")
    return str(actor.display_name) if actor is not None else ""


def publish_ticket_event(ticket: Ticket, event: TicketEvent) -> None:
    """After commit, tell the ticket page and the lists that the ticket changed."""
    message = {
        "type": "ticket.event",
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "seq": event.seq,
        "event": event.type,
        "data": event.data,
        # Who did it: the page tells another agent's reply from its own.
        "actor_id": event.actor_id,
        "actor_name": _actor_name(event),
        "team_id": ticket.team_id,
        "assignee_id": ticket.assignee_id,
    }
    groups = [ticket_group(ticket.pk), ALL_TICKETS_GROUP]
    if ticket.team_id:
        groups.append(team_group(ticket.team_id))
    if ticket.assignee_id:
        groups.append(agent_group(ticket.assignee_id))
    _batch_for_this_transaction().add(groups, message)


class _PublishBatch:
    """The live messages of one transaction, sent after it commits in one hop to the layer.

    Entering the channel layer from sync code (`async_to_sync`) costs a thread and an event
    loop each time; one hop per transaction instead of one per group and event made it
    cheap enough for the ingest path.
    """

    def __init__(self) -> None:
        self.items: list[tuple[list[str], dict[str, Any]]] = []
        self.callback = self.flush

    def add(self, groups: list[str], message: dict[str, Any]) -> None:
        self.items.append((groups, message))

    def flush(self) -> None:
        items, self.items = self.items, []
        layer = get_channel_layer()
        if layer is None or not items:
            return
        try:
            async_to_sync(self._send)(layer, items)
        except Exception:
            logger.warning("could not publish %d live updates", len(items), exc_info=True)

    @staticmethod
    async def _send(layer: Any, items: list[tuple[list[str], dict[str, Any]]]) -> None:
        for groups, message in items:
            for group in groups:
                try:
                    await layer.group_send(group, message)
                except Exception:
                    logger.warning("could not publish %s to %s", message.get("event"), group, exc_info=True)


def _batch_for_this_transaction() -> _PublishBatch:
    """The batch flushed when the current transaction commits (now, outside a transaction)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return _ImmediateBatch()
    batch = getattr(connection, "_switchboard_publish_batch", None)
    # A rolled-back (savepoint of a) transaction drops its on-commit callbacks: start anew then.
    if batch is None or not any(func is batch.callback for _, func, _ in connection.run_on_commit):
        batch = _PublishBatch()
        connection._switchboard_publish_batch = batch
        after_commit(batch.callback)
    return batch


class _ImmediateBatch(_PublishBatch):
    """Outside a transaction there is nothing to wait for: publish right away."""

    def add(self, groups: list[str], message: dict[str, Any]) -> None:
        super().add(groups, message)
        self.flush()


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
