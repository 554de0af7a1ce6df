from __future__ import annotations

from django.db import models


class SlaMetric(models.TextChoices):
    FIRST_REPLY = "first_reply", "First reply"
    NEXT_REPLY = "next_reply", "Next reply"
    PERIODIC_UPDATE = "periodic_update", "Periodic update"
    RESOLUTION = "resolution", "Resolution"


class SlaPolicy(models.Model):
    """One promise of how fast tickets are answered, for the tickets its conditions match.

    Policies are ordered (`position`, then id); the first active one whose `conditions` match a
    ticket applies to it (helpdesk/sla.py). `targets` maps a priority (`"1"` low … `"4"`
    urgent) to its targets per metric, e.g. `{"4": {"first_reply": {"minutes": 30,
    "business_hours": false}, "resolution": {"minutes": 480, "business_hours": true}}}`; a
    priority or metric left out has no target. Business-hours targets count in `calendar` (or
    the default calendar; without either, every hour counts). `warn_before_minutes` > 0 warns
    that long before each deadline. `escalations` is a list of `{"on": "warning"|"breach",
    "metric": "<metric>"|"any", "actions": [steps]}`, the steps run by the action runner
    (helpdesk/runner.py) when a clock of this policy warns or breaches.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=500, blank=True)
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    conditions = models.JSONField(default=dict, blank=True)
    calendar = models.ForeignKey(
        "helpdesk.BusinessCalendar", null=True, blank=True, on_delete=models.PROTECT, related_name="sla_policies"
    )
    targets = models.JSONField(default=dict, blank=True)
    warn_before_minutes = models.PositiveIntegerField(default=0)
    escalations = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "SLA policies"
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class SlaClockState(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    FULFILLED = "fulfilled", "Fulfilled"
    CANCELLED = "cancelled", "Cancelled"


class SlaClock(models.Model):
    """One SLA target being timed on one ticket: a metric's `instance` (first reply is 1; each
    next-reply or periodic-update cycle is the next number).

    While running, `due_at` is when the target is missed: `running_since` plus what is left of
    `target_seconds` after `elapsed_seconds` (counted in business seconds when
    `business_hours`), computed by helpdesk/sla.py. Pausing adds the running stretch to
    `elapsed_seconds` and clears `due_at`. `breached_at` is set once, when the deadline passes
    while running, and never cleared: a later fulfilment leaves the breach on record.
    `next_fire_at` is the next moment a timer must act on this clock (the warning, else the
    breach), null when nothing is left to fire; the Celery timer and the sweeper both look
    only at it.
    """

    ticket = models.ForeignKey("helpdesk.Ticket", on_delete=models.CASCADE, related_name="sla_clocks")
    policy = models.ForeignKey(SlaPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="clocks")
    metric = models.CharField(max_length=20, choices=SlaMetric.choices)
    instance = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=10, choices=SlaClockState.choices, default=SlaClockState.RUNNING)
    business_hours = models.BooleanField(default=False)
    calendar = models.ForeignKey(
        "helpdesk.BusinessCalendar", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_seconds = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    # Counted (business or calendar) seconds before the current running stretch.
    elapsed_seconds = models.FloatField(default=0)
    running_since = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    warn_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    next_fire_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One row per metric instance of a ticket.
            models.UniqueConstraint(fields=["ticket", "metric", "instance"], name="slaclock_ticket_metric_uniq"),
        ]
        indexes = [
            # The timers: clocks whose next warning or breach is due, earliest first. Partial, so
            # the sweeper's cost is that of the clocks falling due, never of all open tickets.
            models.Index(
                fields=["next_fire_at"], condition=models.Q(next_fire_at__isnull=False), name="slaclock_fire_idx"
            ),
            # A ticket's live clocks (recomputed on each change of the ticket).
            models.Index(
                fields=["ticket", "metric"],
                condition=models.Q(state__in=["running", "paused"]),
                name="slaclock_ticket_live_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric}#{self.instance} on ticket {self.ticket_id} ({self.state})"
