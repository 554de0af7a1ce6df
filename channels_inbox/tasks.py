"""Celery tasks: thin, idempotent wrappers around the actions."""

from __future__ import annotations

from celery import shared_task

from channels_inbox.actions.delivery import do_attempt_delivery
from channels_inbox.actions.mailbox import do_poll_due_mailboxes, do_poll_mailbox
from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.sweep import do_sweep


@shared_task(name="channels_inbox.tasks.process_inbound")
def process_inbound(event_id: int) -> str:
    return do_process_inbound_event(event_id)


@shared_task(name="channels_inbox.tasks.deliver")
def deliver(delivery_id: int) -> str:
    return do_attempt_delivery(delivery_id)


@shared_task(name="channels_inbox.tasks.sweep")
def sweep() -> dict[str, int]:
    result = do_sweep()
    return {"inbound": result.inbound, "deliveries": result.deliveries}


@shared_task(name="channels_inbox.tasks.poll_mailbox")
def poll_mailbox(inbox_id: int) -> dict[str, object]:
    from channels_inbox.email.imap import has_imap
    from channels_inbox.models import Inbox

    inbox = Inbox.objects.filter(pk=inbox_id, is_active=True).first()
    if inbox is None or not has_imap(inbox):
        return {"status": "missing", "stored": 0}
    result = do_poll_mailbox(inbox)
    return {"status": result.status, "stored": result.stored}


@shared_task(name="channels_inbox.tasks.poll_mailboxes")
def poll_mailboxes() -> dict[str, int]:
    return {"queued": len(do_poll_due_mailboxes().queued)}


@shared_task(name="channels_inbox.tasks.send_chat_transcript")
def send_chat_transcript(conversation_id: int, email: str) -> bool:
    from channels_inbox.actions.chat import do_send_chat_transcript

    return do_send_chat_transcript(conversation_id, email)


@shared_task(name="channels_inbox.tasks.remove_stale_chat_uploads")
def remove_stale_chat_uploads() -> int:
    from channels_inbox.actions.chat import do_remove_stale_chat_uploads

    return do_remove_stale_chat_uploads()


@shared_task(name="channels_inbox.tasks.sweep_chat_continuity")
def sweep_chat_continuity() -> int:
    """Email chat replies shown live but never read, once their visitor has left (beat)."""
    from channels_inbox.adapters.chat import do_sweep_chat_continuity

    return do_sweep_chat_continuity()
