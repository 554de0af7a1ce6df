from __future__ import annotations

from django.conf import settings
from django.db import models


class RuleKind(models.TextChoices):
    # Runs after ticket changes, in order (helpdesk/rules.py).
    TRIGGER = "trigger", "Trigger"
    # Runs hourly over the tickets its conditions select.
    TIME = "time", "Time rule"


class Rule(models.Model):
    """One automation: when `events` happen (triggers) or every hour (time rules), for the
    tickets its `conditions` match, run its `actions`.

    `conditions` is `{"all": [...], "any": [...]}` in the condition language
    (helpdesk/conditions.py); `actions` is a list of runner steps (helpdesk/runner.py), the
    same steps macros and SLA escalations use. `events` (triggers only) lists the change kinds
    that wake it: `created`, `updated`, `message_received`, `reply_added`, `note_added`,
    `status_changed`, `assigned`, `sla_warning`, `sla_breach` (empty = any change). Rules run
    in `position` order, each at most once per change. A time rule must hold a condition its
    own actions make false (checked on save), so it cannot fire every hour for ever.
    """

    kind = models.CharField(max_length=10, choices=RuleKind.choices)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    events = models.JSONField(default=list, blank=True)
    conditions = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_fired_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "position", "id"]
        indexes = [
            # The engine's list: the active rules of one kind, in order.
            models.Index(fields=["kind", "position", "id"], condition=models.Q(is_active=True), name="rule_active_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"


class WebhookCallStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class WebhookCall(models.Model):
    """One HTTP call a rule's `webhook` step makes: written in the rule's transaction (outbox),
    then posted by Celery with retries and backoff; the sweeper re-queues what a lost task left.

    `signature` is the HMAC-SHA256 of `body` under the step's secret, computed when queued, so
    the secret itself is never stored here.
    """

    ticket = models.ForeignKey(
        "helpdesk.Ticket", null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_calls"
    )
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_calls")
    url = models.URLField(max_length=2000)
    body = models.TextField()
    signature = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=WebhookCallStatus.choices, default=WebhookCallStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The sweeper: queued calls whose next attempt is due.
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(status="queued"), name="webhookcall_queued_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"webhook {self.pk} {self.status} {self.url}"
