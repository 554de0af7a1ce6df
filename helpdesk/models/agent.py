from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower

from helpdesk.models.routing import RoutingMode


class User(AbstractUser):
    """A staff account (agent, supervisor, admin). Customers are not users."""

    class Meta:
        constraints = [
            # Sign-in by email: one account per address (blank allowed for service accounts).
            models.UniqueConstraint(Lower("email"), condition=~models.Q(email=""), name="user_email_ci_uniq"),
        ]

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.email or self.username


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    SUPERVISOR = "supervisor", "Supervisor"
    AGENT = "agent", "Agent"
    # May read tickets of their teams and write internal notes, never public replies.
    LIGHT_AGENT = "light_agent", "Light agent"


class Presence(models.TextChoices):
    ONLINE = "online", "Online"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


class Team(models.Model):
    """A group of agents that work one queue of tickets (e.g. "Billing", "Tier 2").

    `routing` says how its queue is handed out (helpdesk/assignment.py): by hand, round robin or
    to the least loaded agent, among agents who are online (away: email-like channels only),
    have spare capacity on the ticket's channel and, for `skills_timeout_minutes` after a
    ticket is queued, speak its customer's language. With `reassign_offline`, an agent going
    offline returns their new and open tickets of this team to the queue.
    """

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    routing = models.CharField(max_length=20, default=RoutingMode.MANUAL, choices=RoutingMode.choices)
    reassign_offline = models.BooleanField(default=False)
    # How long a queued ticket waits for an agent with its language before anyone may take it
    # (null: the language is never required; 0: it never waits).
    skills_timeout_minutes = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentProfile(models.Model):
    """What a staff user is in the helpdesk: role, teams, languages and presence."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="agent")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AGENT)
    teams = models.ManyToManyField(Team, blank=True, related_name="agents")
    # Languages the agent answers in (BCP 47 codes), used by routing by skill.
    languages = models.JSONField(default=list, blank=True)
    # The presence others see: offline without an open desk, away when idle or chosen so.
    presence = models.CharField(max_length=10, choices=Presence.choices, default=Presence.OFFLINE)
    presence_changed_at = models.DateTimeField(null=True, blank=True)
    # What the agent chose by hand (online or away; offline hides them while connected).
    presence_choice = models.CharField(max_length=10, choices=Presence.choices, default=Presence.ONLINE)
    # Mentions and assignments are also sent by email when set.
    notify_by_email = models.BooleanField(default=False)
    # Live chat: whether new chats may be assigned to the agent, and how many at once.
    chat_available = models.BooleanField(default=False)
    chat_capacity = models.PositiveSmallIntegerField(default=3)
    # Round robin among available agents: the one assigned a chat longest ago goes first.
    last_chat_assigned_at = models.DateTimeField(null=True, blank=True)
    # Tickets routing may give the agent at once, per channel kind (`{"email": 10, "sms": 5}`;
    # `"*"` for the kinds not named); missing: ROUTING_DEFAULT_CAPACITY. Live chat keeps its
    # own `chat_capacity`.
    capacity = models.JSONField(default=dict, blank=True)
    # Round robin of tickets: the agent given one longest ago goes first.
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"
