"""Celery tasks of the helpdesk core: thin, idempotent wrappers around the actions."""

from __future__ import annotations

from celery import shared_task

from helpdesk.actions.notifications import do_send_notification_email


@shared_task(name="helpdesk.tasks.send_notification_email")
def send_notification_email(notification_id: int) -> str:
    """Email one notification to its recipient; a second run sends nothing (`emailed_at`)."""
    return do_send_notification_email(notification_id)


@shared_task(name="helpdesk.tasks.sweep_presence")
def sweep_presence() -> int:
    """Set offline (or away) the agents whose desks stopped without saying so (a dead process).

    Open desks also run the sweep on their heartbeats; this one covers the hours when none is open.
    """
    from helpdesk.presence import maybe_sweep

    return int(maybe_sweep())


@shared_task(name="helpdesk.tasks.send_password_reset")
def send_password_reset(user_id: int) -> bool:
    """Mail one reset link (the token is made here, not carried by the broker)."""
    from helpdesk.actions.password_reset import do_send_password_reset

    return do_send_password_reset(user_id)


@shared_task(name="helpdesk.tasks.sweep_notification_emails")
def sweep_notification_emails() -> int:
    """Queue again notification emails that were due and never sent (a lost task)."""
    from helpdesk.actions.notifications import do_requeue_unsent_emails

    return do_requeue_unsent_emails()


@shared_task(name="helpdesk.tasks.route_chat")
def route_chat(conversation_id: int) -> int | None:
    """Give a new (or re-queued) chat to an available agent; the agent's id, or None (it waits).

    Queued after commit by the chat widget's backend for every new conversation; a second run
    does nothing (only waiting chats are routed)."""
    from channels_inbox.models import ChatConversation
    from helpdesk.actions.chats import do_route_chat

    conversation = ChatConversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return None
    agent = do_route_chat(conversation)
    return agent.pk if agent is not None else None


@shared_task(name="helpdesk.tasks.assign_waiting_chats")
def assign_waiting_chats(inbox_id: int | None = None) -> int:
    """Fill agents' free chat capacity from the queue, oldest chat first (also Celery beat's
    sweep: agents who came online, a task that was lost)."""
    from helpdesk.actions.chats import do_assign_waiting_chats

    return do_assign_waiting_chats(inbox_id)
