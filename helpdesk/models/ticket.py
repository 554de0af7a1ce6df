from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from helpdesk.search_text import SearchDocument


class TicketStatus(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    PENDING = "pending", "Pending"
    ON_HOLD = "on_hold", "On hold"
    SOLVED = "solved", "Solved"
    CLOSED = "closed", "Closed"


# Statuses in which a ticket still needs work from the helpdesk.
UNSOLVED_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.ON_HOLD)


# The open queue: tickets waiting for a first or next answer (the list's default view).
OPEN_QUEUE = models.Q(status__in=["new", "open"])


class Priority(models.IntegerChoices):
    LOW = 1, "Low"
    NORMAL = 2, "Normal"
    HIGH = 3, "High"
    URGENT = 4, "Urgent"


class Tag(models.Model):
    """A label that agents and rules put on tickets."""

    name = models.CharField(max_length=64, unique=True)

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    """One conversation with one customer about one request, across every channel it uses."""

    # The number people say and type ("#1042"); not the primary key, so it can be shown.
    number = models.BigIntegerField(unique=True)
    subject = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=10, choices=TicketStatus.choices, default=TicketStatus.NEW)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="tickets")
    # The inbox (configured channel) the conversation started in; replies default to it.
    inbox = models.ForeignKey("channels_inbox.Inbox", on_delete=models.PROTECT, related_name="tickets")
    channel = models.CharField(max_length=20, help_text="Kind of the origin inbox, e.g. email or api.")
    team = models.ForeignKey("helpdesk.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_tickets"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="tickets")
    custom_fields = models.JSONField(default=dict, blank=True)
    followup_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="followups")
    # Set when the ticket was merged into another: mail naming this ticket's number goes there.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_tickets"
    )
    # The adapter's conversation key (e.g. an API thread_key); messages with it join this ticket.
    thread_key = models.CharField(max_length=255, blank=True)

    first_reply_at = models.DateTimeField(null=True, blank=True)
    solved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_customer_message_at = models.DateTimeField(null=True, blank=True)
    last_agent_message_at = models.DateTimeField(null=True, blank=True)
    # Since when the customer has been waiting for an answer; null when the ball is theirs.
    waiting_since = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField()
    # The sequence number of the newest TicketEvent of this ticket.
    last_event_seq = models.PositiveIntegerField(default=0)
    # The newest event the change processor (helpdesk/changes.py: rules, SLA, routing) has
    # handled; behind last_event_seq means a change still waits for it.
    changes_seq = models.PositiveIntegerField(default=0)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # The SLA policy that applies (helpdesk/sla.py) and the earliest deadline of its running
    # clocks (the SlaClock rows are the source of truth; this copy serves lists and views).
    sla_policy = models.ForeignKey(
        "helpdesk.SlaPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    sla_due_at = models.DateTimeField(null=True, blank=True)
    # The policy was applied by hand or by a rule's step: policy selection leaves it in place.
    sla_pinned = models.BooleanField(default=False)
    # Since when the ticket has waited in its team's routing queue for an agent; null when it
    # is not queued (assigned, manual team, solved…). helpdesk/assignment.py.
    queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The subject as the search finds it (helpdesk/search_text.py); NULL on SQLite.
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        indexes = [
            # Desk search: tickets whose subject has the query's words (PostgreSQL only).
            GinIndex(fields=["search_vector"], name="ticket_search_idx"),
            # "All open" and status views sorted by last activity; cursor (last_activity_at, id).
            models.Index(fields=["status", "-last_activity_at", "-id"], name="ticket_status_activity_idx"),
            # "Mine": an agent's tickets by status, newest activity first.
            models.Index(fields=["assignee", "status", "-last_activity_at"], name="ticket_assignee_idx"),
            # "My teams": a team's queue by status.
            models.Index(fields=["team", "status", "-last_activity_at"], name="ticket_team_idx"),
            # "Unassigned": the queue of tickets nobody holds, oldest waiting first.
            models.Index(
                fields=["status", "waiting_since"],
                condition=models.Q(assignee__isnull=True),
                name="ticket_unassigned_idx",
            ),
            # The open queue ("All open", "Unassigned", channel views: status new or open) in each
            # sort. Partial, so one ordered scan serves both statuses; an index led by status would
            # have to sort every open ticket.
            # Last activity; cursor (last_activity_at, id).
            models.Index(fields=["-last_activity_at", "-id"], condition=OPEN_QUEUE, name="ticket_open_activity_idx"),
            # Waiting since, oldest first (NULLs last, as btree ascending stores them on PostgreSQL);
            # cursor (waiting_since, id).
            models.Index(fields=["waiting_since", "id"], condition=OPEN_QUEUE, name="ticket_open_waiting_idx"),
            # Priority, highest first, then last activity; cursor (priority, last_activity_at, id).
            models.Index(
                fields=["-priority", "-last_activity_at", "-id"], condition=OPEN_QUEUE, name="ticket_open_priority_idx"
            ),
            # A channel view ("Email", "API") by last activity.
            models.Index(
                fields=["channel", "-last_activity_at", "-id"], condition=OPEN_QUEUE, name="ticket_channel_activity_idx"
            ),
            # "Due soon" and the deadline sort: unsolved tickets by their next SLA deadline.
            models.Index(
                fields=["sla_due_at", "id"],
                condition=models.Q(sla_due_at__isnull=False, status__in=["new", "open", "pending", "on_hold"]),
                name="ticket_sla_due_idx",
            ),
            # The routing queue of a team: highest priority first, then the earliest deadline,
            # then the longest waiting.
            models.Index(
                fields=["team", "-priority", "sla_due_at", "queued_at", "id"],
                condition=models.Q(queued_at__isnull=False),
                name="ticket_routing_queue_idx",
            ),
            # The change sweeper: tickets with events the change processor has not handled yet.
            models.Index(
                fields=["id"],
                condition=models.Q(changes_seq__lt=models.F("last_event_seq")),
                name="ticket_changes_pending_idx",
            ),
            # Threading: the customer's latest ticket in an inbox; the customer's ticket list.
            models.Index(fields=["customer", "inbox", "-created_at"], name="ticket_customer_inbox_idx"),
            # Threading by the adapter's key within an inbox.
            models.Index(
                fields=["inbox", "thread_key"], condition=~models.Q(thread_key=""), name="ticket_thread_key_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.subject}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A save that writes the subject writes its search document (bulk_create sets it itself).
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "subject" in update_fields:
            self.search_vector = SearchDocument(self.subject)
            if update_fields is not None:
                kwargs["update_fields"] = [*update_fields, "search_vector"]
        super().save(*args, **kwargs)

    @property
    def is_closed(self) -> bool:
        return self.status == TicketStatus.CLOSED


class TicketCC(models.Model):
    """One person copied on a ticket: they may write to it and receive its public replies.

    Filled from the Cc of inbound email (each person a customer with identities of their
    own); the ticket's own customer is never a CC of it.
    """

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="ccs")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="cc_tickets")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "ticket CC"
        constraints = [
            # Serves "the CCs of these tickets" (threading, replies) and keeps one row per person.
            models.UniqueConstraint(fields=["ticket", "customer"], name="ticketcc_ticket_customer_uniq"),
        ]

    def __str__(self) -> str:
        return f"CC {self.customer_id} on ticket {self.ticket_id}"
