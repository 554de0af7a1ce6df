"""`/webhooks/<provider>/<inbox-uuid>/`: the one door every provider knocks on."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from channels_inbox.actions.receive import do_receive_webhook
from channels_inbox.adapters.base import BadPayload, PayloadTooLarge, SignatureError, WebhookReply, WebhookRequest
from channels_inbox.models import Inbox

logger = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt  # authenticated by the provider's signature instead
def webhook(request: HttpRequest, provider: str, inbox_uuid: str) -> HttpResponse:
    if request.method not in ("POST", "GET"):
        return _not_allowed()
    try:
        public_id = uuid.UUID(inbox_uuid)
    except ValueError:
        return _error(404, "no such inbox")
    inbox = Inbox.objects.filter(uuid=public_id, kind=provider, is_active=True).first()
    if inbox is None or not inbox.adapter.accepts_webhooks:
        return _error(404, "no such inbox")
    if request.method == "GET":
        # A provider checking the URL (Meta's verify handshake); nothing is stored.
        answer = inbox.adapter.handshake(inbox, _hook(request, b""))
        return _reply(answer) if answer is not None else _not_allowed()
    limit = inbox.adapter.max_body_bytes or settings.WEBHOOK_MAX_BODY_BYTES
    try:
        body = _read_body(request, limit)
    except PayloadTooLarge as exc:
        return _error(413, str(exc))
    hook = _hook(request, body)
    try:
        result = do_receive_webhook(inbox, hook)
    except SignatureError as exc:
        logger.info("webhook for inbox %s refused: %s", inbox.pk, exc)
        return _error(403, "invalid signature")
    except BadPayload as exc:
        return _error(400, str(exc))
    answer = inbox.adapter.webhook_reply(inbox, hook, result.stored, result.duplicates)
    if answer is not None:
        return _reply(answer)
    return JsonResponse({"stored": result.stored, "duplicates": result.duplicates})


def _hook(request: HttpRequest, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method or "POST",
        # The public URL the provider called (Twilio signs it): SITE_URL, never the Host header.
        url=settings.SITE_URL + request.get_full_path(),
        body=body,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=request.GET.dict(),
    )


def _reply(answer: WebhookReply) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)


def _not_allowed() -> JsonResponse:
    response = _error(405, "POST only")
    response["Allow"] = "POST"
    return response


def _read_body(request: HttpRequest, limit: int) -> bytes:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    body = request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    return body
