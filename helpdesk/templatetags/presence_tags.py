"""The agent's own presence for the top bar, from the cache only (no query on any page)."""

from __future__ import annotations

import time
from typing import Any

from django import template

from helpdesk import presence

register = template.Library()

LABELS = {"online": "Online", "away": "Away", "offline": "Offline"}


@register.simple_tag(takes_context=True)
def my_presence(context: dict[str, Any]) -> dict[str, str]:
    """{"presence", "label", "choice"}: choice is "" while the cache does not know it yet (the
    page's websocket tells it as soon as it opens)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    user_id = getattr(user, "pk", None)
    if user_id is None:
        return {"presence": "offline", "label": LABELS["offline"], "choice": ""}
    choice = presence.cached_choice(user_id)
    state = presence.compute(presence.connections(user_id), choice, time.time())
    return {"presence": state, "label": LABELS[state], "choice": choice or ""}
