from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.db import models


def _public_token() -> str:
    return secrets.token_urlsafe(18)


class Inbox(models.Model):
    """One configured channel: e.g. the support@ mailbox, a WhatsApp number, an API source.

    `secrets` hold signing keys and passwords: they are written once (shown at creation),
    never rendered again by the admin or the API, and never logged (see __repr__).
    """

    kind = models.CharField(max_length=20, help_text="Adapter kind, e.g. api or email.")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    # Public id used in webhook URLs; never the primary key, so inboxes cannot be enumerated.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Public token for embeds (the chat widget's data-inbox); not a secret.
    public_token = models.CharField(max_length=32, unique=True, default=_public_token, editable=False)
    settings = models.JSONField(default=dict, blank=True)
    secrets = models.JSONField(default=dict, blank=True)
    # New tickets from this inbox go to this team (routing rules may change it later).
    team = models.ForeignKey("helpdesk.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="inboxes")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "inboxes"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def __repr__(self) -> str:
        return f"<Inbox {self.pk} {self.kind} {self.slug!r}>"

    def secret(self, name: str) -> str:
        value: Any = self.secrets.get(name, "")
        return str(value)

    @property
    def adapter(self) -> Any:
        from channels_inbox.adapters import get_adapter

        return get_adapter(self.kind)
