"""What Twilio's messaging and voice inboxes share: the request signature and the REST client.

`X-Twilio-Signature` is checked with Twilio's own `RequestValidator` (channel-specs §1.1): a
form POST is signed over the exact public URL Twilio called plus its sorted parameters; a JSON
body over the URL alone, with the body's SHA-256 in the URL's `bodySHA256`. The URL is the one
the inbox was configured with (`SITE_URL` + the path, never the Host header), so a proxy in
front changes nothing. Every repeated form key keeps every value.

The REST client is Twilio's own (`twilio.rest.Client`) on an httpx transport: one HTTP stack
for every provider, with the same timeouts, and faked in the tests at the HTTP boundary.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels_inbox.adapters.base import BadPayload, DeliveryError, SignatureError, WebhookRequest
from channels_inbox.media import http_client

SIGNATURE_HEADER = "x-twilio-signature"


def form_params(body: bytes) -> dict[str, list[str]]:
    """A form body's parameters, every value of a repeated key kept, in order."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadPayload("the form body is not UTF-8") from exc
    params: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=1000)
    except ValueError as exc:
        raise BadPayload(f"not a form body: {exc}") from exc
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


class MultiValue(dict[str, list[str]]):
    """Form parameters with every value of a repeated key, readable by twilio's validator."""

    def getlist(self, name: str) -> list[str]:
        return list(self[name])


def verify_twilio_signature(auth_token: str, request: WebhookRequest) -> None:
    """Raise SignatureError unless Twilio signed this request with `auth_token`."""
    signature = request.header(SIGNATURE_HEADER)
    if not auth_token or not signature:
        raise SignatureError("missing X-Twilio-Signature")
    validator = RequestValidator(auth_token)
    content_type = request.header("content-type").split(";")[0].strip().lower()
    if content_type == "application/json" or "bodySHA256=" in request.url:
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("the JSON body is not UTF-8") from exc
        ok = validator.validate(request.url, body, signature)
    else:
        try:
            params = form_params(request.body)
        except BadPayload as exc:
            raise SignatureError(str(exc)) from exc
        # The validator sorts the names and each name's values (what Twilio signs); it reads
        # repeated keys through `getlist`, as from Django's QueryDict.
        ok = validator.validate(request.url, MultiValue(params), signature)
    if not ok:
        raise SignatureError("X-Twilio-Signature does not match")


class HttpxTwilioClient(HttpClient):
    """twilio's HttpClient interface on httpx (channels_inbox.media.http_client)."""

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__(logger=logging.getLogger("twilio.http_client"), is_async=False)
        self.timeout = timeout

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        sent_headers = dict(headers or {})
        content = None
        if data is not None:
            content = urlencode(_pairs(data)).encode("ascii")
            sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        with http_client(timeout or self.timeout) as client:
            response = client.request(
                method.upper(),
                uri,
                params=urlencode(_pairs(params)) if params else None,
                content=content,
                headers=sent_headers,
                auth=auth,
            )
        return Response(response.status_code, response.text, dict(response.headers))


def _pairs(values: dict[str, object] | None) -> list[tuple[str, str]]:
    """twilio passes lists for repeatable fields (MediaUrl): one pair per value."""
    pairs: list[tuple[str, str]] = []
    for name, value in (values or {}).items():
        if isinstance(value, list | tuple):
            pairs += [(name, str(v)) for v in value]
        elif value is not None:
            pairs.append((name, str(value)))
    return pairs


def twilio_client(account_sid: str, *, auth_token: str = "", api_key: str = "", api_secret: str = "") -> Client:
    """The REST client: an API key (SID + secret) where configured, else the Auth Token."""
    if api_key and api_secret:
        return Client(api_key, api_secret, account_sid, http_client=HttpxTwilioClient())
    return Client(account_sid, auth_token, http_client=HttpxTwilioClient())


def twilio_error(exc: Exception, what: str) -> DeliveryError:
    """A failed Twilio call as a DeliveryError: 429, 5xx and network errors are retried; a 4xx
    (an invalid number, an opted-out recipient: code 21610) is not."""
    if isinstance(exc, TwilioRestException):
        retryable = exc.status == 429 or exc.status >= 500
        return DeliveryError(f"{what}: Twilio {exc.status} code {exc.code}: {exc.msg}", retryable=retryable)
    if isinstance(exc, httpx.HTTPError):
        return DeliveryError(f"{what}: {exc.__class__.__name__}: {exc}", retryable=True)
    return DeliveryError(f"{what}: {exc}", retryable=True)


def twiml_response(xml: Any) -> bytes:
    """A TwiML builder's document as bytes."""
    return str(xml).encode("utf-8")
