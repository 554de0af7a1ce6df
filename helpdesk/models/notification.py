from __future__ import annotations

from django.conf import settings
from django.db import models


class NotificationKind(models.TextChoices):
    MENTION = "mention", "Mentioned"
    ASSIGNED = "assigned", "Assigned"
    # A rule's notify step (helpdesk/runner.py); `text` says what the rule wanted known.
    RULE = "rule", "Rule"
    SLA_WARNING = "sla_warning", "SLA deadline soon"
    SLA_BREACH = "sla_breach", "SLA deadline missed"


class Notification(models.Model):
    """One thing an agent should know about: they were @mentioned, or a ticket was assigned to them.

    Shown in the desk until read; sent by email as well when the agent asked for it
    (`AgentProfile.notify_by_email`), at most once (`emailed_at`).
    """

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=NotificationKind.choices)
    ticket = models.ForeignKey("helpdesk.Ticket", on_delete=models.CASCADE, related_name="notifications")
    # The note or reply that mentioned the agent (mentions only).
    message = models.ForeignKey(
        "helpdesk.Message", null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What a rule's notification says (rules only).
    text = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The agent's notification list, newest first (cursor on id).
            models.Index(fields=["recipient", "-id"], name="notification_recipient_idx"),
            # The unread badge: count of one agent's unread rows.
            models.Index(
                fields=["recipient"], condition=models.Q(read_at__isnull=True), name="notification_unread_idx"
            ),
        ]
        constraints = [
            # One mention notification per agent and message, however often the name appears.
            models.UniqueConstraint(
                fields=["recipient", "message"],
                condition=models.Q(kind="mention"),
                name="notification_mention_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient_id} on {self.ticket_id}"
