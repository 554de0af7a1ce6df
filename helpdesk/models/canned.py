from __future__ import annotations

from django.conf import settings
from django.db import models

# The longest body a canned response may have (forms, the admin and the actions hold to it).
MAX_BODY_CHARS = 20_000


class CannedResponse(models.Model):
    """One reply text agents insert into the composer, with placeholders filled per ticket.

    Shared with one team (`team`), personal to one agent (`owner`), or, with neither, for everyone.
    """

    title = models.CharField(max_length=200)
    # Plain text with `{{ customer.first_name }}`-style placeholders (helpdesk/canned.py).
    body = models.TextField(max_length=MAX_BODY_CHARS)
    team = models.ForeignKey(
        "helpdesk.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="canned_responses"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="canned_responses"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]
        constraints = [
            # A response is either a team's or one agent's (or everyone's), never both.
            models.CheckConstraint(
                condition=models.Q(team__isnull=True) | models.Q(owner__isnull=True), name="canned_team_or_owner"
            ),
        ]

    def __str__(self) -> str:
        return self.title
