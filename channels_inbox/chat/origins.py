"""Which websites may embed an inbox's widget, checked on every request and handshake.

An inbox's `settings["allowed_origins"]` lists origins (`https://shop.example`,
`http://127.0.0.1:8123`). The widget's own origin (SITE_URL: the iframe, the hosted chat
page) is always allowed. The frame page answers with `Content-Security-Policy:
frame-ancestors` of the allowed origins, so a browser on any other site does not show it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings

if TYPE_CHECKING:
    from channels_inbox.models import Inbox


class OriginRefused(Exception):
    """The request comes from a website the inbox does not allow (→ 403)."""


def normalize_origin(value: str) -> str:
    """`scheme://host[:port]` in lower case, default ports dropped; '' if not an http(s) origin."""
    if not isinstance(value, str) or len(value) > 255:
        return ""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    try:
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def own_origin() -> str:
    return normalize_origin(settings.SITE_URL)


def allowed_origins(inbox: Inbox) -> list[str]:
    """The websites that may embed this inbox's widget (normalized; without our own)."""
    values = inbox.settings.get("allowed_origins") or []
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    found = [normalize_origin(v) for v in values if isinstance(v, str)]
    return sorted({v for v in found if v})


def is_allowed(inbox: Inbox, origin: str) -> bool:
    origin = normalize_origin(origin)
    return bool(origin) and (origin == own_origin() or origin in allowed_origins(inbox))


def check_origin(inbox: Inbox, origin_header: str | None, *, site_origin: str = "") -> None:
    """Refuse a request whose Origin (when the browser sent one) or whose visitor's website
    (the site its token was issued for) is not allowed for the inbox now."""
    if origin_header and not is_allowed(inbox, origin_header):
        raise OriginRefused(f"origin {normalize_origin(origin_header) or 'invalid'} is not allowed for this inbox")
    if site_origin and not is_allowed(inbox, site_origin):
        raise OriginRefused(f"website {site_origin} is no longer allowed for this inbox")


def frame_ancestors(inbox: Inbox) -> str:
    """The CSP frame-ancestors source list for the inbox's widget frame."""
    return " ".join(["'self'", *allowed_origins(inbox)])
