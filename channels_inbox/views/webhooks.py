"""`/webhooks/<provider>/<inbox-uuid>/`: the one door every provider knocks on."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from channels_inbox.actions.receive import do_receive_webhook
from channels_inbox.adapters.base import BadPayload, PayloadTooLarge, SignatureError, WebhookRequest
from channels_inbox.models import Inbox

logger = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt  # authenticated by the provider's signature instead
def webhook(request: HttpRequest, provider: str, inbox_uuid: str) -> JsonResponse:
    if request.method != "POST":
        response = _error(405, "POST only")
        response["Allow"] = "POST"
        return response
    try:
        public_id = uuid.UUID(inbox_uuid)
    except ValueError:
        return _error(404, "no such inbox")
    inbox = Inbox.objects.filter(uuid=public_id, kind=provider, is_active=True).first()
    if inbox is None or not inbox.adapter.accepts_webhooks:
        return _error(404, "no such inbox")
    limit = inbox.adapter.max_body_bytes or settings.WEBHOOK_MAX_BODY_BYTES
    try:
        body = _read_body(request, limit)
    except PayloadTooLarge as exc:
        return _error(413, str(exc))
    hook = WebhookRequest(
        method=request.method,
        url=settings.SITE_URL + request.get_full_path(),
        body=body,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=request.GET.dict(),
    )
    try:
        result = do_receive_webhook(inbox, hook)
    except SignatureError as exc:
        logger.info("webhook for inbox %s refused: %s", inbox.pk, exc)
        return _error(403, "invalid signature")
    except BadPayload as exc:
        return _error(400, str(exc))
    return JsonResponse({"stored": result.stored, "duplicates": result.duplicates})


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
