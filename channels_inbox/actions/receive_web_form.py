"""Receiving a help center form submission: stored durable through the spine, processed after commit.

The view (knowledge_base/views.py) has checked everything a customer can get wrong (CSRF,
honeypot, timing token, rate limit, lengths, files); this stores what is left as one
InboundEvent keyed by the form's nonce, so a double submit or a browser retry of the same
rendered form finds the stored event and creates no second ticket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from channels_inbox.actions.receive import insert_inbound_event
from channels_inbox.adapters.base import BadPayload
from channels_inbox.adapters.web_form import dedupe_key, web_form_payload
from channels_inbox.models import Inbox


@dataclass
class WebFormSubmission:
    nonce: str
    name: str
    email: str
    subject: str
    message: str
    # (filename, content type, content)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class WebFormReceipt:
    event_id: int
    stored: bool


def do_receive_web_form(inbox: Inbox, submission: WebFormSubmission) -> WebFormReceipt:
    """Store a submission as an InboundEvent (once per nonce); queue its processing after commit."""
    from channels_inbox.tasks import process_inbound
    from helpdesk.sideeffects import enqueue

    if inbox.kind != "web_form":
        raise BadPayload(f"inbox {inbox.slug} is a {inbox.kind} inbox, not a web form")
    if not submission.nonce:
        raise BadPayload("a web form submission needs its form's nonce")
    now = timezone.now()
    payload = web_form_payload(
        nonce=submission.nonce,
        name=submission.name,
        email=submission.email,
        subject=submission.subject,
        message=submission.message,
        attachments=submission.attachments,
        submitted_at=now.isoformat(),
    )
    with transaction.atomic():
        event_id, created = insert_inbound_event(
            inbox,
            dedupe_key=dedupe_key(submission.nonce),
            payload=payload,
            headers={"content-type": "application/json"},
            due=now,
        )
        if created:
            enqueue(process_inbound, event_id)
    return WebFormReceipt(event_id=event_id, stored=created)
