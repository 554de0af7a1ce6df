from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from helpdesk.search_text import SearchDocument


class Direction(models.TextChoices):
    INBOUND = "inbound", "From the customer"
    OUTBOUND = "outbound", "Reply to the customer"
    NOTE = "note", "Internal note"


class DeliveryStatus(models.TextChoices):
    """Outbound delivery states; they only move forward (see DELIVERY_RANK)."""

    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"


# A status callback may move a delivery to a higher rank only (callbacks arrive out of order).
# Failed ranks above sent: a provider (or a bounce) may report a sent message undeliverable;
# below delivered: a message reported delivered or read did arrive after all.
DELIVERY_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.FAILED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}


class Message(models.Model):
    """One message on a ticket: from the customer, a reply to them, or an internal note."""

    ticket = models.ForeignKey("helpdesk.Ticket", on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=10, choices=Direction.choices)
    author_customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    author_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    # The inbox the message came in on or goes out through; null for internal notes.
    inbox = models.ForeignKey(
        "channels_inbox.Inbox", null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    channel = models.CharField(max_length=20, blank=True)
    text = models.TextField(blank=True)
    # Sanitized on the way in; safe to render.
    html = models.TextField(blank=True)
    # The provider's id of the message (Message-ID, SMS sid, API external_id…).
    external_id = models.CharField(max_length=255, blank=True)
    # For outbound messages: the most advanced state of its deliveries.
    delivery_status = models.CharField(max_length=10, choices=DeliveryStatus.choices, blank=True)
    delivery_error = models.TextField(blank=True)
    # Channel details worth keeping (headers, provider fields, unsupported content).
    metadata = models.JSONField(default=dict, blank=True)
    # When the customer sent it, as the provider reports; created_at is when we stored it.
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The text as the search finds it (helpdesk/search_text.py), computed in the INSERT that
    # stores the message; NULL on SQLite, which searches `text` itself.
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # The ticket timeline, in order.
            models.Index(fields=["ticket", "created_at", "id"], name="message_ticket_time_idx"),
            # A messaging channel's customer-service window (channels_inbox/window.py): the
            # customer's latest message to an inbox.
            models.Index(
                fields=["inbox", "author_customer", "-created_at"],
                condition=models.Q(direction="inbound"),
                name="message_window_idx",
            ),
            # Desk search: messages containing the query's words (PostgreSQL only, see migrations).
            GinIndex(fields=["search_vector"], name="message_search_idx"),
        ]
        constraints = [
            # Dedupe and reply threading: a provider's message id is stored once per inbox.
            models.UniqueConstraint(
                fields=["inbox", "external_id"],
                condition=~models.Q(external_id=""),
                name="message_inbox_external_id_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} message {self.pk} on ticket {self.ticket_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every save that writes the text writes its search document with it (bulk_create,
        # which skips save(), sets it itself: helpdesk/actions/ingest.py).
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "text" in update_fields:
            self.search_vector = SearchDocument(self.text)
            if update_fields is not None:
                kwargs["update_fields"] = [*update_fields, "search_vector"]
        super().save(*args, **kwargs)


def attachment_path(instance: Attachment, filename: str) -> str:
    # Content-addressed directories; the stored name never comes from the sender.
    return f"attachments/{instance.sha256[:2]}/{instance.sha256}"


class Attachment(models.Model):
    """One file that came with or was sent with a message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=255)
    # Safe display name (no path, no control characters); never used on disk.
    filename = models.CharField(max_length=255)
    # Sniffed from the bytes, not taken from the sender.
    content_type = models.CharField(max_length=127)
    declared_content_type = models.CharField(max_length=127, blank=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    # An email part's Content-ID (without <>): the message's HTML refers to it as cid:….
    content_id = models.CharField(max_length=255, blank=True)
    # Shown within the message (an inline image) rather than listed as a file.
    inline = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.filename


class MessageReply(models.Model):
    """One id a message says it answers (its In-Reply-To and References), kept searchable.

    Threading looks backwards (a new message's ids among stored messages) and, through
    this table, forwards: a message processed after a reply to it (workers racing, a
    retried original, an ESP's late redelivery) finds the reply's ticket instead of
    opening a second one.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="replied_ids")
    inbox = models.ForeignKey("channels_inbox.Inbox", on_delete=models.CASCADE, related_name="+")
    replied_id = models.CharField(max_length=255)

    class Meta:
        indexes = [
            # "Stored messages of this inbox that answer these ids" when a message would open a ticket.
            models.Index(fields=["inbox", "replied_id"], name="messagereply_inbox_id_idx"),
        ]

    def __str__(self) -> str:
        return f"message {self.message_id} answers {self.replied_id}"
