"""Template tags of the settings screens: whether the top bar shows the Settings link."""

from __future__ import annotations

from typing import Any

from django import template

from helpdesk.permissions import settings_policy

register = template.Library()


@register.simple_tag(takes_context=True)
def can_open_settings(context: dict[str, Any]) -> bool:
    """settings_policy.can_open for the signed-in user (the role is cached on the user: no query
    on a desk page, whose view has already checked it)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    return user is not None and settings_policy.can_open(user)


@register.simple_tag(takes_context=True)
def settings_areas(context: dict[str, Any]) -> list[dict[str, object]]:
    """The settings areas the signed-in user may open, for the settings navigation."""
    from helpdesk.views.settings_index import areas_for

    return areas_for(context["request"].user)
