from __future__ import annotations

from django.db import models


class MailboxState(models.Model):
    """Where polling of one IMAP folder of an email inbox stands: exactly-once by (UIDVALIDITY, UID).

    `last_uid` moves in the same transaction that stores the fetched messages, so a crash
    between fetch and store fetches them again and the unique dedupe key drops the copies.
    `lease_until` is the per-mailbox lock: a poller claims it with one conditional UPDATE,
    so two workers never poll the same folder at once.
    """

    inbox = models.ForeignKey("channels_inbox.Inbox", on_delete=models.CASCADE, related_name="mailboxes")
    folder = models.CharField(max_length=255, default="INBOX")
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    last_uid = models.BigIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    # Failed connections in a row; the next poll waits base × 2^failures (capped).
    failures = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            # One state per folder of an inbox; the poller finds it by these two.
            models.UniqueConstraint(fields=["inbox", "folder"], name="mailboxstate_inbox_folder_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.inbox_id}:{self.folder} uidvalidity={self.uidvalidity} last_uid={self.last_uid}"
