from __future__ import annotations

from django.conf import settings
from django.db import models


class Macro(models.Model):
    """One named set of changes an agent applies to a ticket in one action.

    `actions` is data: a list of `{"type": …, "value": …}` steps (reply text, note text,
    status, priority, team, assignee, tags to add or remove), validated by
    helpdesk/macros.py on every save and applied in one transaction through the ticket
    actions. Shared with one team (`team`), personal to one agent (`owner`), or, with
    neither, for everyone — the same scopes as canned responses.
    """

    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    actions = models.JSONField(default=list)
    team = models.ForeignKey("helpdesk.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="macros")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="macros"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(team__isnull=True) | models.Q(owner__isnull=True), name="macro_team_or_owner"
            ),
        ]

    def __str__(self) -> str:
        return self.name
