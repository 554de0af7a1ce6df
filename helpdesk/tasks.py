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


# --- the change processor, SLA timers, rules and routing (helpdesk/changes.py) ---------------


@shared_task(
    name="helpdesk.tasks.process_ticket_changes",
    autoretry_for=(Exception,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=12,
)
def process_ticket_changes(ticket_id: int) -> int:
    """Run routing, the triggers and the SLA clocks over a ticket's new events (queued after the
    commit that appended them); a second run finds nothing new and does nothing. A failing step
    rolls the run back and raises: the task is retried with backoff (2 s, 4 s, … up to 5 min);
    after 5 failures of one step on the same change that step is skipped (helpdesk/changes.py),
    and the change sweeper queues the ticket again whatever happens here."""
    from helpdesk.changes import process_ticket_changes as process

    return process(ticket_id)


@shared_task(name="helpdesk.tasks.sweep_ticket_changes")
def sweep_ticket_changes() -> int:
    """Queue the processor again for tickets whose changes waited too long (a lost task)."""
    from helpdesk.changes import sweep_ticket_changes as sweep

    return sweep()


@shared_task(name="helpdesk.tasks.fire_sla_clock")
def fire_sla_clock(clock_id: int) -> str:
    """Warn or breach one SLA clock whose moment has come (queued with that moment as its eta);
    early, late, twice or for a clock that moved on, it does only what is due by then."""
    from helpdesk.actions.sla import do_fire_sla_clock

    return do_fire_sla_clock(clock_id)


@shared_task(name="helpdesk.tasks.schedule_sla_timers")
def schedule_sla_timers() -> int:
    """Queue timer tasks for the clocks due within SLA_SCHEDULE_AHEAD_SECONDS."""
    from helpdesk.actions.sla import do_schedule_sla_timers

    return do_schedule_sla_timers()


@shared_task(name="helpdesk.tasks.sweep_sla_clocks")
def sweep_sla_clocks() -> int:
    """Fire every clock already past its moment (what a lost or late timer left)."""
    from helpdesk.actions.sla import do_sweep_sla_clocks

    return do_sweep_sla_clocks()


@shared_task(name="helpdesk.tasks.run_time_rules")
def run_time_rules() -> int:
    """Run the time rules over the tickets they select (hourly)."""
    from helpdesk.actions.rules import do_run_time_rules

    return do_run_time_rules()


@shared_task(name="helpdesk.tasks.deliver_webhook_call")
def deliver_webhook_call(call_id: int) -> str:
    """POST one queued rule webhook call; retried with backoff by its own row."""
    from helpdesk.actions.rules import do_deliver_webhook_call

    return do_deliver_webhook_call(call_id)


@shared_task(name="helpdesk.tasks.sweep_webhook_calls")
def sweep_webhook_calls() -> int:
    """Queue again the webhook calls whose next attempt is due and whose task was lost."""
    from helpdesk.actions.rules import do_sweep_webhook_calls

    return do_sweep_webhook_calls()


@shared_task(name="helpdesk.tasks.assign_queued_tickets")
def assign_queued_tickets(team_id: int | None = None) -> int:
    """Hand a team's (or every team's) queued tickets to available agents with spare capacity,
    highest priority and earliest deadline first."""
    from helpdesk.actions.routing import do_assign_queued_tickets

    return do_assign_queued_tickets(team_id)


@shared_task(name="helpdesk.tasks.agent_went_offline")
def agent_went_offline(user_id: int) -> int:
    """Return an agent's routed tickets to their teams' queues when the agent went offline (teams
    with reassign_offline); a second run finds nothing left to return."""
    from helpdesk.actions.routing import do_agent_went_offline
    from helpdesk.models import User

    user = User.objects.filter(pk=user_id).first()
    return do_agent_went_offline(user) if user is not None else 0
