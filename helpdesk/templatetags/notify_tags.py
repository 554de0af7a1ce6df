"""Template tags of notifications: the top bar's unread count and @mentions in note text."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from helpdesk.actions.notifications import MENTION_RE, unread_count

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notifications(context: dict[str, Any]) -> int:
    """The signed-in agent's unread notifications, read from the cache (no query when warm)."""
    request = context.get("request")
    return unread_count(getattr(request, "user", None))


@register.filter(is_safe=True, needs_autoescape=False)
def with_mentions(text: str) -> SafeString:
    """The text escaped, line breaks as <br>, and each @mention wrapped in <span class="mention">."""
    text = str(text or "")
    parts: list[str] = []
    last = 0
    for match in MENTION_RE.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(f'<span class="mention">{escape(match.group(0))}</span>')
        last = match.end()
    parts.append(escape(text[last:]))
    html = "".join(parts).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")
    return mark_safe(html)  # noqa: S308 - every piece of the text is escaped above
