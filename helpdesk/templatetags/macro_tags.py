"""Template tags of the ticket page's macro picker (templates/desk/_macros.html)."""

from __future__ import annotations

from typing import Any

from django import template

from helpdesk.permissions import macro_policy

register = template.Library()


@register.simple_tag(takes_context=True)
def usable_macros(context: Any) -> list[Any]:
    """The macros the agent may use (one query), unless the view gave them already."""
    if "macros" in context:
        return list(context["macros"])
    return list(macro_policy.usable(context["request"].user).only("pk", "name"))
