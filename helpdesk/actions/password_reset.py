"""The password reset mail of a desk account, written and sent by a worker.

The request only queues it: answering a reset request for a known address must take as
long as for an unknown one, or the time of the answer tells which addresses have accounts.
The worker makes the token itself, so no token passes through the broker.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMessage
from django.template import loader
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.timesince import timeuntil

from helpdesk.models import User

logger = logging.getLogger(__name__)

SUBJECT_TEMPLATE = "desk/password_reset_subject.txt"
BODY_TEMPLATE = "desk/password_reset_email.txt"


def _in_words(seconds: int) -> str:
    """`3 days` for 259200: how long a reset link stays valid."""
    now = timezone.now()
    return timeuntil(now + timedelta(seconds=seconds), now)


def do_send_password_reset(user_id: int) -> bool:
    """Mail the reset link to an active account with a usable password; False when there is none."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.has_usable_password() or not user.email:
        return False
    context = {
        "email": user.email,
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "user": user,
        "token": default_token_generator.make_token(user),
        "site_url": settings.SITE_URL,
        "expires_in": _in_words(settings.PASSWORD_RESET_TIMEOUT),
    }
    subject = "".join(loader.render_to_string(SUBJECT_TEMPLATE, context).splitlines())
    body = loader.render_to_string(BODY_TEMPLATE, context)
    EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email]).send()
    logger.info("password reset mail sent to user %s", user.pk)
    return True
