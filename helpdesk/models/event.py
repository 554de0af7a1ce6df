from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class TicketEventType(models.TextChoices):
    CREATED = "created", "Ticket created"
    MESSAGE_RECEIVED = "message_received", "Message received"
    REPLY_ADDED = "reply_added", "Reply added"
    NOTE_ADDED = "note_added", "Note added"
    STATUS_CHANGED = "status_changed", "Status changed"
    PRIORITY_CHANGED = "priority_changed", "Priority changed"
    ASSIGNED = "assigned", "Assignee changed"
    TEAM_CHANGED = "team_changed", "Team changed"
    TAGS_CHANGED = "tags_changed", "Tags changed"
    FOLLOWUP_CREATED = "followup_created", "Follow-up created"
    DELIVERY_CHANGED = "delivery_changed", "Delivery state changed"
    AUTO_REPLY_SENT = "auto_reply_sent", "Automatic reply sent"
    MERGED = "merged", "Merged into another ticket"
    MERGED_FROM = "merged_from", "Another ticket merged in"
    CHAT_ENDED = "chat_ended", "Chat ended"
    CHAT_RATED = "chat_rated", "Chat rated"
    CHAT_SEEN = "chat_seen", "Chat messages seen by an agent"
    CUSTOM_FIELD_CHANGED = "custom_field_changed", "Custom field changed"
    RULE_FIRED = "rule_fired", "Rule applied"
    SLA_APPLIED = "sla_applied", "SLA policy applied"
    SLA_WARNING = "sla_warning", "SLA deadline soon"
    SLA_BREACHED = "sla_breached", "SLA deadline missed"
    SLA_FULFILLED = "sla_fulfilled", "SLA target met"
    CALL_LOGGED = "call_logged", "Call logged"
    CALL_UPDATED = "call_updated", "Call updated"
    MESSAGE_EDITED = "message_edited", "Message edited by its sender"
    MESSAGE_REACTED = "message_reacted", "Reaction to a message"


class TicketEvent(models.Model):
    """One change to a ticket, appended in order and never edited or deleted.

    The single source for SLA clocks, reports, rules, webhooks, audit and live updates.
    `seq` numbers the events of one ticket 1, 2, 3… so a client can detect a gap.
    """

    ticket = models.ForeignKey("helpdesk.Ticket", on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=32, choices=TicketEventType.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.ForeignKey(
        "helpdesk.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket", "seq"]
        constraints = [
            # Serves "events of a ticket after seq N" (catch-up) and guards the numbering.
            models.UniqueConstraint(fields=["ticket", "seq"], name="ticketevent_ticket_seq_uniq"),
        ]
        indexes = [
            # Reports and rules scan events by type over time.
            models.Index(fields=["type", "created_at"], name="ticketevent_type_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq} on ticket {self.ticket_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("ticket events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ticket events are append-only")
