"""Fetching a provider's media (MMS, WhatsApp, Messenger, Telegram files, call recordings).

Providers hand us a URL (sometimes behind their API: Basic auth for Twilio, a Bearer token
for Meta); the file is fetched while the stored event is processed, never while the webhook
waits, and becomes an attachment like an email's. One client for all: HTTPS only (plain HTTP
only to loopback, for the tests and the demo's fake provider), no proxies from the
environment, redirects followed only to HTTPS, a size limit enforced while streaming (a
larger file is refused, not truncated), and a timeout.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from channels_inbox.adapters.base import DeliveryError

MAX_REDIRECTS = 3


class MediaTooLarge(Exception):
    """The provider's file is over CHANNEL_MEDIA_MAX_BYTES (listed, not stored)."""


class MediaUnavailable(Exception):
    """The file could not be fetched. `retryable`: a timeout or 5xx, worth trying again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Media:
    content: bytes
    content_type: str
    url: str


def http_client(timeout: float | None = None) -> httpx.Client:
    """The client every provider call uses (tests fake it at the HTTP boundary with respx)."""
    return httpx.Client(
        trust_env=False,
        follow_redirects=False,
        timeout=timeout if timeout is not None else settings.CHANNEL_HTTP_TIMEOUT_SECONDS,
    )


def _allowed(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    if parts.scheme == "http" and parts.hostname:
        try:
            return ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            return parts.hostname == "localhost"
    return False


def fetch_media(
    url: str,
    *,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int | None = None,
    client: httpx.Client | None = None,
) -> Media:
    """GET a provider's file, following up to MAX_REDIRECTS HTTPS redirects (Twilio's media
    URLs redirect to a CDN; the credentials go to the first host only)."""
    limit = max_bytes if max_bytes is not None else settings.CHANNEL_MEDIA_MAX_BYTES
    owned = client is None
    http = client or http_client()
    try:
        current, first_host = url, urlsplit(url).hostname
        for _ in range(MAX_REDIRECTS + 1):
            if not _allowed(current):
                raise MediaUnavailable(f"refused media URL {current[:200]!r}", retryable=False)
            same_host = urlsplit(current).hostname == first_host
            kwargs: dict[str, Any] = {"headers": headers if same_host else None}
            if auth is not None and same_host:
                kwargs["auth"] = auth
            try:
                with http.stream("GET", current, **kwargs) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = str(response.url.join(response.headers["location"]))
                        continue
                    if response.status_code >= 500 or response.status_code == 429:
                        raise MediaUnavailable(f"media fetch: HTTP {response.status_code}", retryable=True)
                    if response.status_code != 200:
                        raise MediaUnavailable(f"media fetch: HTTP {response.status_code}", retryable=False)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise MediaTooLarge(f"{declared} bytes, over {limit}")
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise MediaTooLarge(f"over {limit} bytes")
                        chunks.append(chunk)
                    content_type = response.headers.get("content-type", "").split(";")[0].strip()
                    return Media(b"".join(chunks), content_type, current)
            except httpx.TimeoutException as exc:
                raise MediaUnavailable(f"media fetch timed out: {exc}", retryable=True) from exc
            except httpx.HTTPError as exc:
                raise MediaUnavailable(f"media fetch failed: {exc}", retryable=True) from exc
        raise MediaUnavailable("too many redirects", retryable=False)
    finally:
        if owned:
            http.close()


def provider_error(exc: httpx.HTTPError | httpx.Response, what: str) -> DeliveryError:
    """A provider API call that failed, as a DeliveryError: timeouts, connection errors, 429
    and 5xx are retried (with the spine's backoff), other 4xx fail at once."""
    if isinstance(exc, httpx.Response):
        retryable = exc.status_code == 429 or exc.status_code >= 500
        body = exc.text[:300] if exc.content else ""
        return DeliveryError(f"{what}: HTTP {exc.status_code} {body}".strip(), retryable=retryable)
    return DeliveryError(f"{what}: {exc.__class__.__name__}: {exc}", retryable=True)
