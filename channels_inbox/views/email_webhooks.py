"""`/webhooks/email/<esp>/<inbox-uuid>/`: an ESP's inbound mail webhook for an email inbox.

Verified and parsed by django-anymail's views with the inbox's credentials
(channels_inbox/email/esp.py), stored durably, then acknowledged. See docs/email.md.
"""

from __future__ import annotations

import logging
import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from channels_inbox.actions.receive_esp import do_receive_esp_mail
from channels_inbox.adapters.base import BadPayload, PayloadTooLarge, SignatureError
from channels_inbox.email.esp import ESP_NAMES, AuthChallenge, EspUnavailable, body_limit, read_esp_request
from channels_inbox.models import Inbox
from channels_inbox.views.webhooks import _read_body

logger = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt  # authenticated by basic auth (and Mailgun's signature) instead
def email_webhook(request: HttpRequest, esp: str, inbox_uuid: str) -> HttpResponse:
    if request.method not in ("POST", "HEAD"):
        response = _error(405, "POST only")
        response["Allow"] = "POST, HEAD"
        return response
    if esp not in ESP_NAMES:
        return _error(404, "no such ESP")
    try:
        public_id = uuid.UUID(inbox_uuid)
    except ValueError:
        return _error(404, "no such inbox")
    inbox = Inbox.objects.filter(uuid=public_id, kind="email", is_active=True).first()
    if inbox is None:
        return _error(404, "no such inbox")
    if request.method == "HEAD":
        # Some ESPs check the URL answers when it is configured.
        return HttpResponse()
    try:
        body = _read_body(request, body_limit())
    except PayloadTooLarge as exc:
        return _error(413, str(exc))
    try:
        parsed = read_esp_request(inbox, esp, request, body)
        result = do_receive_esp_mail(inbox, parsed.mails, esp=esp)
    except AuthChallenge:
        response = _error(401, "basic auth required")
        response["WWW-Authenticate"] = 'Basic realm="Switchboard inbound email"'
        return response
    except SignatureError as exc:
        logger.info("%s webhook for inbox %s refused: %s", esp, inbox.pk, exc)
        return _error(403, "invalid credentials or signature")
    except PayloadTooLarge as exc:
        return _error(413, str(exc))
    except BadPayload as exc:
        logger.info("%s webhook for inbox %s: unreadable body: %s", esp, inbox.pk, exc)
        return _error(400, str(exc))
    except EspUnavailable as exc:
        logger.warning("%s webhook for inbox %s not taken yet (the ESP will retry): %s", esp, inbox.pk, exc)
        response = _error(503, str(exc))
        response["Retry-After"] = "600"
        return response
    data: dict[str, object] = {"stored": result.stored, "duplicates": result.duplicates}
    if parsed.subscriptions:
        for subscription in parsed.subscriptions:
            # Not confirmed by us (no arbitrary outbound requests): the admin opens the URL.
            logger.warning(
                "Amazon SNS asks to confirm the subscription of topic %s to email inbox %s (%s):"
                " open this SubscribeURL to confirm it: %s",
                subscription["topic_arn"],
                inbox.slug,
                inbox.pk,
                subscription["subscribe_url"],
            )
        data["subscription_confirmation"] = parsed.subscriptions
    return JsonResponse(data)
