"""HTML from customers is sanitized on the way in; only safe formatting survives."""

from __future__ import annotations

import nh3

# nh3's defaults: no script, style, iframes, event handlers or javascript: URLs.
# Links open in a new tab without access to this window.
_LINK_REL = "noopener noreferrer nofollow"


def sanitize_html(html: str) -> str:
    if not html:
        return ""
    return nh3.clean(html, link_rel=_LINK_REL)
