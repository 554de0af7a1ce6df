from __future__ import annotations

from django.db import models

from helpdesk.models.message import DeliveryStatus


class OutboundDelivery(models.Model):
    """One attempt-tracked sending of an outbound message through its inbox's adapter.

    Written in the same transaction as the message (an outbox): the `deliver` task works
    it, and the sweeper re-queues it if that task was lost. Status only moves forward:
    queued → sent → delivered → read, or failed.
    """

    message = models.ForeignKey("helpdesk.Message", on_delete=models.CASCADE, related_name="deliveries")
    inbox = models.ForeignKey("channels_inbox.Inbox", on_delete=models.PROTECT, related_name="deliveries")
    # Where it goes, in the adapter's terms (an address, a number, an API identifier).
    recipient = models.CharField(max_length=320, blank=True)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    # Due time of the next attempt; while a worker holds it, the end of that worker's lease.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    provider_id = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "outbound deliveries"
        indexes = [
            # The sweeper: queued deliveries whose attempt is due.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="queued"),
                name="delivery_queued_due_idx",
            ),
            # Live chat continuity: replies shown live but not read, of visitors who then left
            # (channels_inbox/adapters/chat.py sweep), per chat inbox by sending time.
            models.Index(
                fields=["inbox", "sent_at"],
                condition=models.Q(status="sent"),
                name="delivery_sent_time_idx",
            ),
            # Status callbacks find the delivery by the provider's id.
            models.Index(fields=["inbox", "provider_id"], name="delivery_provider_id_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of message {self.message_id} ({self.status})"
