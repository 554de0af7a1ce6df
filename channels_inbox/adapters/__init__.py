"""The registry of channel adapters, by inbox kind."""

from __future__ import annotations

from channels_inbox.adapters.base import ChannelAdapter

_REGISTRY: dict[str, ChannelAdapter] = {}


def register(adapter_cls: type[ChannelAdapter]) -> type[ChannelAdapter]:
    _REGISTRY[adapter_cls.kind] = adapter_cls()
    return adapter_cls


def unregister(kind: str) -> None:
    """Remove an adapter (tests that register one of their own take it away again)."""
    _REGISTRY.pop(kind, None)


def get_adapter(kind: str) -> ChannelAdapter:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise LookupError(f"no channel adapter for kind {kind!r}") from None


def adapter_kinds() -> list[str]:
    return sorted(_REGISTRY)


from channels_inbox.adapters import (  # noqa: E402,F401  (registers the built-in adapters)
    api,
    chat,
    email,
    meta,
    telegram,
    twilio,
    twilio_voice,
    web_form,
)
