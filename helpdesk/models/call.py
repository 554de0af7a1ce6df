"""Phone calls: received through a voice inbox (Twilio Voice) or logged by an agent by hand.

A call always belongs to a ticket (an incoming call opens or joins one, like any message) and
to the customer on its timeline. The call's own row keeps what a message cannot: its status
as it moves (ringing → answered or missed, voicemail), its duration, the recording and who
logged it. Its entry on the ticket's timeline is `message` (a customer message for a
voicemail, an internal note for a call logged by hand) plus the CallLogged event.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class CallDirection(models.TextChoices):
    INBOUND = "inbound", "Incoming"
    OUTBOUND = "outbound", "Outgoing"


class CallStatus(models.TextChoices):
    RINGING = "ringing", "Ringing"
    IN_PROGRESS = "in_progress", "In progress"
    ANSWERED = "answered", "Answered"
    MISSED = "missed", "Missed"
    VOICEMAIL = "voicemail", "Voicemail"
    FAILED = "failed", "Failed"


# A provider's status callbacks arrive out of order: a call's status only moves up this rank
# (ringing < in progress < missed/answered/failed < voicemail — a voicemail is a missed call
# that left a message, and its recording may arrive before or after the call's final status).
CALL_STATUS_RANK = {
    CallStatus.RINGING: 0,
    CallStatus.IN_PROGRESS: 1,
    CallStatus.FAILED: 2,
    CallStatus.MISSED: 2,
    CallStatus.ANSWERED: 3,
    CallStatus.VOICEMAIL: 4,
}


class Call(models.Model):
    ticket = models.ForeignKey("helpdesk.Ticket", on_delete=models.CASCADE, related_name="calls")
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    # The voice inbox it came through; None for a call an agent logged by hand.
    inbox = models.ForeignKey(
        "channels_inbox.Inbox", null=True, blank=True, on_delete=models.PROTECT, related_name="calls"
    )
    direction = models.CharField(max_length=10, choices=CallDirection.choices)
    status = models.CharField(max_length=12, choices=CallStatus.choices, default=CallStatus.RINGING)
    # E.164 where known; as the provider or the agent wrote it otherwise.
    from_number = models.CharField(max_length=40, blank=True)
    to_number = models.CharField(max_length=40, blank=True)
    # The provider's call id (Twilio CallSid): unique per inbox, the dedupe key of its callbacks.
    provider_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    recording = models.ForeignKey(
        "helpdesk.Attachment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recording_duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    transcription = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    # The agent who logged it by hand (None: reported by the provider).
    logged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Its entry on the ticket's timeline (voicemail message or call note), once there is one.
    message = models.ForeignKey(
        "helpdesk.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            # The customer's timeline: their calls, newest first.
            models.Index(fields=["customer", "-started_at"], name="call_customer_time_idx"),
            models.Index(fields=["ticket", "started_at"], name="call_ticket_time_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["inbox", "provider_id"],
                condition=~models.Q(provider_id=""),
                name="call_inbox_provider_id_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} call {self.pk} ({self.status}) on ticket {self.ticket_id}"
