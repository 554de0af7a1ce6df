from __future__ import annotations

from django.db import models


class RoutingMode(models.TextChoices):
    # Nobody is assigned automatically: agents take tickets from the team's queue.
    MANUAL = "manual", "Manual"
    # The available agent with spare capacity who was assigned work longest ago.
    ROUND_ROBIN = "round_robin", "Round robin"
    # The available agent with the most spare capacity on the ticket's channel.
    LEAST_LOADED = "least_loaded", "Least loaded"


class RoutingRule(models.Model):
    """Which team a new ticket goes to: the first active rule (by `position`) whose inbox (any,
    when empty) and `conditions` (helpdesk/conditions.py) match sends it to `team`. Without a
    match the inbox's own team applies."""

    name = models.CharField(max_length=200)
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    inbox = models.ForeignKey(
        "channels_inbox.Inbox", null=True, blank=True, on_delete=models.CASCADE, related_name="routing_rules"
    )
    conditions = models.JSONField(default=dict, blank=True)
    team = models.ForeignKey("helpdesk.Team", on_delete=models.CASCADE, related_name="routing_rules")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name
