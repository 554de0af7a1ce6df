from __future__ import annotations

from django.db import models


class InboundEventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    # Kept but produced no message (e.g. an auto-reply or an unsupported event).
    IGNORED = "ignored", "Ignored"
    # Held for review by a person (e.g. a sender over the rate limit); released by hand.
    HELD = "held", "Held for review"
    # Gave up after INBOUND_MAX_ATTEMPTS; the raw payload stays for inspection and replay.
    FAILED = "failed", "Failed"


class InboundEvent(models.Model):
    """One verified delivery from a provider, stored raw before we acknowledge it.

    The durable log of everything that came in. Processing (customer, ticket, message)
    reads it from here, so a lost task or a crash never loses a message; the unique
    dedupe key makes a provider's redelivery a no-op.
    """

    inbox = models.ForeignKey("channels_inbox.Inbox", on_delete=models.PROTECT, related_name="inbound_events")
    # The provider's id for the event (message id, update id…) or a hash of the payload.
    dedupe_key = models.CharField(max_length=255)
    payload = models.BinaryField()
    # The request metadata worth keeping (content type, selected headers); never secrets.
    headers = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=InboundEventStatus.choices, default=InboundEventStatus.PENDING)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # When the sweeper may hand it to a worker again (after a failure or a lost task).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # When a person released it from HELD: it is then processed without the limits that held it.
    released_at = models.DateTimeField(null=True, blank=True)
    message = models.ForeignKey(
        "helpdesk.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_events"
    )

    class Meta:
        constraints = [
            # Redelivery detection at receive time.
            models.UniqueConstraint(fields=["inbox", "dedupe_key"], name="inboundevent_inbox_dedupe_uniq"),
        ]
        indexes = [
            # The sweeper: pending events whose next attempt is due.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="inboundevent_pending_idx",
            ),
            # The held-for-review list (newest first) and the desk's count of held events.
            models.Index(fields=["id"], condition=models.Q(status="held"), name="inboundevent_held_idx"),
        ]

    def __str__(self) -> str:
        return f"inbound {self.pk} {self.dedupe_key} ({self.status})"
