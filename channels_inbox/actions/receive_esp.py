"""Receiving mail from an ESP's inbound webhook: every mail of the request stored, then 2xx."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from channels_inbox.actions.receive import ReceiveResult
from channels_inbox.actions.receive_email import check_email_bytes, store_email
from channels_inbox.adapters.base import BadPayload

if TYPE_CHECKING:
    from channels_inbox.email.esp import EspMail
    from channels_inbox.models import Inbox


def do_receive_esp_mail(inbox: Inbox, mails: list[EspMail], *, esp: str) -> ReceiveResult:
    """Store each mail of one verified ESP request as an InboundEvent, all in one transaction.

    Raises BadPayload / PayloadTooLarge before anything is stored. A redelivered mail (same
    dedupe key: the ESP's event id, else the Message-ID or the content hash) is counted as
    a duplicate and not processed again. Processing is queued after the commit.
    """
    if inbox.kind != "email":
        raise BadPayload(f"inbox {inbox.slug} is a {inbox.kind} inbox, not an email inbox")
    for mail in mails:
        check_email_bytes(mail.raw)
    stored = duplicates = 0
    with transaction.atomic():
        for mail in mails:
            receipt = store_email(
                inbox, mail.raw, dedupe_key=mail.dedupe_key, source=f"esp:{esp}", extra_headers=mail.headers
            )
            if receipt.stored:
                stored += 1
            else:
                duplicates += 1
    return ReceiveResult(stored=stored, duplicates=duplicates)
