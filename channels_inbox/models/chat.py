from __future__ import annotations

import uuid

from django.db import models


class ChatVisitor(models.Model):
    """One browser that opened an inbox's chat widget on a customer's website.

    Anonymous at first: the browser keeps a signed token naming `public_id`
    (channels_inbox/chat/tokens.py), and the visitor is a Customer with one `chat_visitor`
    identity. A valid `identify` call ties it to a known customer (`verified_user_id`);
    details given without a valid hash (pre-chat form, unsigned identify) are kept here as
    contact details and never merge the visitor into another customer.
    """

    inbox = models.ForeignKey("channels_inbox.Inbox", on_delete=models.CASCADE, related_name="chat_visitors")
    # Named by the browser's token; also the value of the visitor's chat_visitor identity.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Set by the visitor's first message (a page view alone creates no customer) or a verified identify.
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="chat_visitors"
    )
    # The website origin the token was issued for (checked against the inbox's allowed origins).
    site_origin = models.CharField(max_length=255, blank=True)
    # Contact details the visitor gave (pre-chat form, unsigned identify): unverified.
    name = models.CharField(max_length=200, blank=True)
    email = models.CharField(max_length=320, blank=True)
    # The inbox-namespaced user id of a verified identify (empty while anonymous).
    verified_user_id = models.CharField(max_length=255, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Where the visitor is now, as the widget reports it (shown to agents).
    current_url = models.CharField(max_length=2000, blank=True)
    page_title = models.CharField(max_length=300, blank=True)
    referrer = models.CharField(max_length=2000, blank=True)
    locale = models.CharField(max_length=16, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # A verified user's other visitors (their earlier chats in other browsers).
            models.Index(
                fields=["inbox", "verified_user_id"],
                condition=~models.Q(verified_user_id=""),
                name="chatvisitor_verified_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"chat visitor {self.public_id}"


class ChatStatus(models.TextChoices):
    # Waiting in the queue for an agent.
    WAITING = "waiting", "Waiting for an agent"
    # An agent holds it.
    ACTIVE = "active", "With an agent"
    # Closed by an agent or the visitor; a new message from the visitor starts a new chat.
    ENDED = "ended", "Ended"


class ChatConversation(models.Model):
    """The live-chat side of one ticket that started in (or continues in) a chat widget.

    The ticket is the conversation; this row holds what only a chat has: the visitor, the
    queue and assignment state, the pre-chat answers, read positions and the rating.
    """

    ticket = models.OneToOneField("helpdesk.Ticket", on_delete=models.CASCADE, related_name="chat")
    # Named by the widget (never the ticket number, which could be guessed).
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    inbox = models.ForeignKey("channels_inbox.Inbox", on_delete=models.CASCADE, related_name="chat_conversations")
    visitor = models.ForeignKey(ChatVisitor, on_delete=models.CASCADE, related_name="conversations")
    status = models.CharField(max_length=10, choices=ChatStatus.choices, default=ChatStatus.WAITING)
    # The pre-chat form's answers as given ({"name": …, "email": …}).
    prechat = models.JSONField(default=dict, blank=True)
    # The page the chat started on.
    started_url = models.CharField(max_length=2000, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The newest public message the visitor has seen (read receipts shown to agents).
    visitor_read_message_id = models.BigIntegerField(default=0)
    # The newest visitor message an agent has seen (read receipts shown to the visitor).
    agent_read_message_id = models.BigIntegerField(default=0)
    # Satisfaction after the chat ended: 1–5 and a comment (also a chat_rated event).
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    rating_comment = models.TextField(blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    transcript_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The queue: an inbox's waiting chats, oldest first (position and assignment).
            models.Index(
                fields=["inbox", "queued_at", "id"],
                condition=models.Q(status="waiting"),
                name="chatconv_waiting_idx",
            ),
            # A visitor's conversations, newest first (the widget's history).
            models.Index(fields=["visitor", "-created_at"], name="chatconv_visitor_idx"),
        ]

    def __str__(self) -> str:
        return f"chat {self.public_id} (ticket {self.ticket_id}, {self.status})"


def chat_upload_path(instance: ChatUpload, filename: str) -> str:
    # Random names: the stored name never comes from the visitor.
    return f"chat-uploads/{instance.public_id.hex[:2]}/{instance.public_id.hex}"


class ChatUpload(models.Model):
    """A file a visitor uploaded for a message not sent yet.

    Stored before the upload is answered; the message that names it (by `public_id`) turns
    it into an Attachment. Uploads never named by a message are deleted after a day.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    visitor = models.ForeignKey(ChatVisitor, on_delete=models.CASCADE, related_name="uploads")
    file = models.FileField(upload_to=chat_upload_path, max_length=255)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when a message took it.
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"chat upload {self.public_id} ({self.filename})"


class ChatProactiveShown(models.Model):
    """A proactive message shown to a visitor once (so a rule never nags twice)."""

    visitor = models.ForeignKey(ChatVisitor, on_delete=models.CASCADE, related_name="proactive_shown")
    rule_key = models.CharField(max_length=64)
    shown_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["visitor", "rule_key"], name="chatproactive_visitor_rule_uniq"),
        ]

    def __str__(self) -> str:
        return f"proactive {self.rule_key} shown to {self.visitor_id}"


__all__ = ["ChatConversation", "ChatProactiveShown", "ChatStatus", "ChatUpload", "ChatVisitor"]
