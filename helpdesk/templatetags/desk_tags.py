"""Template tags of the desk."""

from __future__ import annotations

from typing import Any

from django import template

from helpdesk.permissions import can_review_held_events
from helpdesk.selectors import held_event_count

register = template.Library()


@register.simple_tag(takes_context=True)
def held_count(context: dict[str, Any]) -> int:
    """How many inbound events wait for review, for those who review them (0 for everyone else).

    Only reviewers pay the query; an agent's role is already known by the time a page renders.
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not can_review_held_events(user):
        return 0
    return held_event_count()
