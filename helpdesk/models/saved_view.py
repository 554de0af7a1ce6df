from __future__ import annotations

from django.conf import settings
from django.db import models


class SavedView(models.Model):
    """One named set of ticket filters and a sort: an agent's own (owner), or shared with a team (team).

    `filters` holds the list's query-string values (helpdesk/selectors.py `FILTER_PARAMS`),
    checked by `parse_ticket_filters` when saved and again when used.
    """

    class Sort(models.TextChoices):
        ACTIVITY = "activity", "Last activity"
        WAITING = "waiting", "Waiting since"
        PRIORITY = "priority", "Priority"
        DEADLINE = "deadline", "Deadline"

    name = models.CharField(max_length=80)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="saved_views"
    )
    team = models.ForeignKey(
        "helpdesk.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="saved_views"
    )
    filters = models.JSONField(default=dict, blank=True)
    sort = models.CharField(max_length=10, choices=Sort.choices, default=Sort.ACTIVITY)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Personal or shared, never both nor neither.
            models.CheckConstraint(
                condition=models.Q(owner__isnull=False, team__isnull=True)
                | models.Q(owner__isnull=True, team__isnull=False),
                name="savedview_owner_xor_team",
            ),
        ]
        indexes = [
            # The view bar: an agent's own views (the teams' ones come by team_id, the FK's index).
            models.Index(fields=["owner", "name"], name="savedview_owner_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_shared(self) -> bool:
        return self.team_id is not None
