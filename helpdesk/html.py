"""HTML from customers is sanitized on the way in; only safe formatting survives."""

from __future__ import annotations

from typing import Any

import nh3

# nh3's defaults: no script, style, iframes, event handlers or javascript: URLs.
# Links open in a new tab without access to this window.
_LINK_REL = "noopener noreferrer nofollow"
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}


def sanitize_html(html: str) -> str:
    if not html:
        return ""
    # cid: names an attachment of the same message (an inline image in email); the desk
    # rewrites it to the attachment's URL when it shows the message.
    return nh3.clean(without_nul(html), link_rel=_LINK_REL, url_schemes=_URL_SCHEMES)


def without_nul(text: str) -> str:
    """Text without NUL characters, which PostgreSQL cannot store (SQLite can: be equal)."""
    return text.replace("\x00", "")


def json_without_nul(value: Any) -> Any:
    """A JSON-able value with NUL characters removed from every string in it."""
    if isinstance(value, str):
        return without_nul(value)
    if isinstance(value, dict):
        return {without_nul(str(k)): json_without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_without_nul(v) for v in value]
    return value
