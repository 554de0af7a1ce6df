"""The chat widget's websocket (see docs/chat.md for the frames)."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer


class VisitorConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close(code=4404)
