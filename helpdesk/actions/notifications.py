"""Notifications: @mentions in internal notes, assignments, and their read state and email.

A mention is `@handle` where the handle is an agent's username, the local part of their
email address (usernames are addresses here, so `@alice` names alice@example.com) or the whole
address (`@alice@example.com`, for when two agents share a local part). Case does not matter.
An `@` inside a word (`bob@example.com`) is an address, not a mention.

Only internal notes notify: a public reply goes to the customer, who would read the `@name`.
Only active staff who may view the ticket (`ticket_policy`) are notified; the author learns who
was not (`MentionReport`). Writing yourself notifies nobody.

The unread count of the top bar lives in the cache, set after every change and at sign-in, so a
page reads it without a query (`unread_count`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth.signals import user_logged_in
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from helpdesk.models import AgentProfile, Direction, Message, Notification, NotificationKind, Ticket, User
from helpdesk.permissions import role_of, ticket_policy
from helpdesk.sideeffects import after_commit

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger(__name__)

# `@handle` not preceded by a word character or `@` (so not an email address), a handle that
# does not end in a dot (sentence punctuation), optionally followed by `@domain.tld`.
MENTION_RE = re.compile(r"(?<![\w@.+-])@([\w+-](?:[\w.+-]{0,252}[\w+-])?(?:@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8})?)")
# At most this many different names are looked up per message; the rest are reported.
MAX_MENTIONS = 50
# Longest handle worth a lookup (an email address is at most 254 characters).
MAX_HANDLE = 254
# How long an unread count stays cached; every change and every sign-in sets it anew.
UNREAD_TTL = 24 * 3600


def find_mentions(text: str) -> list[str]:
    """The distinct handles `@`-mentioned in text, lower-cased, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in MENTION_RE.finditer(text):
        handle = match.group(1).lower()
        if len(handle) <= MAX_HANDLE:
            seen.setdefault(handle, None)
    return list(seen)


def handle_of(user: Any) -> str:
    """What to write after `@` to mention the user (the address's local part, or the username)."""
    name: str = user.username
    if "@" in name:
        return name.split("@", 1)[0]
    return name


def _keys_of(user: User) -> set[str]:
    keys = {user.username.lower()}
    if user.email:
        keys.add(user.email.lower())
        keys.add(user.email.lower().split("@", 1)[0])
    if "@" in user.username:
        keys.add(user.username.lower().split("@", 1)[0])
    return keys


def staff_users() -> Any:
    """Active users who are helpdesk staff, with what the ticket policy needs prefetched."""
    return (
        User.objects.filter(is_active=True)
        .filter(Q(agent__isnull=False) | Q(is_superuser=True))
        .select_related("agent")
        .prefetch_related("agent__teams")
    )


def with_policy_facts(users: Iterable[User]) -> list[User]:
    """Hand the prefetched role and teams to the ticket policy, which then asks no query per user."""
    out = []
    for user in users:
        profile = getattr(user, "agent", None)
        user._helpdesk_role = profile.role if profile is not None else None  # type: ignore[attr-defined]
        user._helpdesk_team_ids = [t.pk for t in profile.teams.all()] if profile else []  # type: ignore[attr-defined]
        out.append(user)
    return out


def resolve_handles(handles: list[str]) -> dict[str, list[User]]:
    """Each handle with the active staff users it names (one query; several: ambiguous)."""
    if not handles:
        return {}
    query = Q()
    for handle in handles:
        if "@" in handle:
            query |= Q(username__iexact=handle) | Q(email__iexact=handle)
        else:
            query |= Q(username__iexact=handle) | Q(email__istartswith=f"{handle}@")
    found: dict[str, list[User]] = {h: [] for h in handles}
    for user in with_policy_facts(staff_users().filter(query)):
        for key in _keys_of(user):
            if key in found and user not in found[key]:
                found[key].append(user)
    # A handle that is someone's exact username means them, even if it is another's local part.
    for handle, users in found.items():
        exact = [u for u in users if u.username.lower() == handle]
        if len(users) > 1 and len(exact) == 1:
            found[handle] = exact
    return found


@dataclass
class MentionReport:
    """What became of a message's mentions, for the author."""

    notified: list[User] = field(default_factory=list)
    cannot_view: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    ignored: int = 0  # handles beyond MAX_MENTIONS, not looked up

    def problems(self) -> list[str]:
        """One sentence per kind of mention that notified nobody."""
        out = []
        if self.cannot_view:
            out.append(f"Not notified (cannot see this ticket): {_names(self.cannot_view)}.")
        if self.ambiguous:
            out.append(
                f"Not notified (several agents have that name; write the full address): {_names(self.ambiguous)}."
            )
        if self.unknown:
            out.append(f"No active agent is called {_names(self.unknown)}.")
        if self.ignored:
            out.append(f"Only the first {MAX_MENTIONS} names were looked up; {self.ignored} more were ignored.")
        return out


def _names(handles: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"@{h[:60]}" for h in handles[:limit])
    return shown + (f" and {len(handles) - limit} more" if len(handles) > limit else "")


def mention_report(message: Message) -> MentionReport | None:
    """The report `do_notify_mentions` left on the message it handled (None: not handled)."""
    report: MentionReport | None = getattr(message, "_mention_report", None)
    return report


def do_notify_mentions(message: Message, *, actor: User) -> MentionReport:
    """Notify the agents an internal note mentions; call it inside the transaction that wrote it."""
    report = MentionReport()
    message._mention_report = report  # type: ignore[attr-defined]
    if message.direction != Direction.NOTE:
        return report
    handles = find_mentions(message.text)
    report.ignored = max(0, len(handles) - MAX_MENTIONS)
    resolved = resolve_handles(handles[:MAX_MENTIONS])
    ticket = message.ticket
    recipients: list[User] = []
    for handle, users in resolved.items():
        if not users:
            report.unknown.append(handle)
        elif len(users) > 1:
            report.ambiguous.append(handle)
        elif users[0].pk == actor.pk:
            continue
        elif not ticket_policy.can_view(users[0], ticket):
            report.cannot_view.append(handle)
        elif users[0] not in recipients:
            recipients.append(users[0])
    created = []
    for user in recipients:
        try:
            with transaction.atomic():
                created.append(
                    Notification.objects.create(
                        recipient=user, kind=NotificationKind.MENTION, ticket=ticket, message=message, actor=actor
                    )
                )
        except IntegrityError:
            # Already notified for this message (the constraint keeps one per agent and message).
            continue
        report.notified.append(user)
    _after_create(created, actor)
    return report


def do_notify_assignment(ticket: Ticket, *, assignee: User | None, actor: User | None) -> Notification | None:
    """Tell an agent a ticket was given to them by someone else (or by routing, actor None).

    Call it inside the transaction that assigned the ticket."""
    if assignee is None or (actor is not None and assignee.pk == actor.pk):
        return None
    if not assignee.is_active or role_of(assignee) is None:
        return None
    notification = Notification.objects.create(
        recipient=assignee, kind=NotificationKind.ASSIGNED, ticket=ticket, actor=actor
    )
    _after_create([notification], actor)
    return notification


def do_notify_rule(ticket: Ticket, *, recipients: Iterable[User], text: str) -> list[Notification]:
    """A rule's notify step: tell these agents `text` about the ticket (kind "rule", no actor)."""
    return do_notify_staff(ticket, recipients=recipients, text=text, kind=NotificationKind.RULE)


def do_notify_staff(ticket: Ticket, *, recipients: Iterable[User], text: str, kind: str) -> list[Notification]:
    """Tell these agents `text` about the ticket, with no actor: a rule's notify step (kind
    "rule") or an SLA warning or breach (kinds "sla_warning", "sla_breach").

    Only active staff who may view the ticket are notified, each once; the text is cut to the
    column's 500 characters. Call it inside the transaction of the other changes."""
    text = " ".join(text.split())[:500]
    seen: set[int] = set()
    created: list[Notification] = []
    for user in with_policy_facts(recipients):
        if user.pk in seen or not user.is_active or not ticket_policy.can_view(user, ticket):
            continue
        seen.add(user.pk)
        created.append(Notification(recipient=user, kind=kind, ticket=ticket, text=text))
    if created:
        created = Notification.objects.bulk_create(created)
    _after_create(created, None)
    return created


def notification_text(notification: Notification, actor_name: str | None = None) -> str:
    """One line saying what happened; no customer content (it goes to email and the live badge)."""
    who = actor_name if actor_name is not None else (notification.actor.display_name if notification.actor else "")
    number = notification.ticket.number
    if notification.kind == NotificationKind.MENTION:
        return f"{who or 'Someone'} mentioned you on ticket #{number}"
    if notification.kind == NotificationKind.RULE:
        return f"Ticket #{number}: {notification.text}" if notification.text else f"A rule flagged ticket #{number}"
    if notification.kind == NotificationKind.SLA_WARNING:
        return f"Ticket #{number}: {notification.text or 'an SLA deadline is near'}"
    if notification.kind == NotificationKind.SLA_BREACH:
        return f"Ticket #{number}: {notification.text or 'an SLA deadline was missed'}"
    if who:
        return f"{who} assigned ticket #{number} to you"
    return f"Ticket #{number} was assigned to you"


def _after_create(created: list[Notification], actor: User | None) -> None:
    """After commit: the badge count, the live message and (if asked for) the email of each row."""
    if not created:
        return
    from helpdesk.sideeffects import enqueue
    from helpdesk.tasks import send_notification_email

    actor_name = actor.display_name if actor is not None else None
    items = [(n.pk, n.recipient_id, n.kind, n.ticket.number, notification_text(n, actor_name)) for n in created]

    def publish() -> None:
        for pk, user_id, kind, number, text in items:
            unread = refresh_unread_count(user_id)
            _publish(
                user_id,
                "notification",
                {"id": pk, "kind": kind, "ticket_number": number, "text": text, "unread": unread},
            )

    after_commit(publish)
    wanted = set(
        AgentProfile.objects.filter(user_id__in=[n.recipient_id for n in created], notify_by_email=True).values_list(
            "user_id", flat=True
        )
    )
    for n in created:
        if n.recipient_id in wanted:
            enqueue(send_notification_email, n.pk)


def _publish(user_id: int, kind: str, payload: dict[str, Any]) -> None:
    """Through the agent's live group (helpdesk/realtime.py); a failure never breaks the write."""
    from helpdesk import realtime

    try:
        realtime.publish_to_agent(user_id, kind, payload)
    except Exception:
        logger.warning("could not publish %s to agent %s", kind, user_id, exc_info=True)


# --- read state and the unread count ---------------------------------------------------------


def _unread_key(user_id: int) -> str:
    return f"notify:unread:{user_id}"


def refresh_unread_count(user_id: int) -> int:
    """Count the agent's unread notifications (one query) and keep the number in the cache."""
    count = Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()
    cache.set(_unread_key(user_id), count, UNREAD_TTL)
    return count


def unread_count(user: Any) -> int:
    """The top bar's number: from the cache; counted only when the cache lost it."""
    if not getattr(user, "is_authenticated", False):
        return 0
    cached = cache.get(_unread_key(user.pk))
    if isinstance(cached, int):
        return cached
    return refresh_unread_count(user.pk)


@receiver(user_logged_in, dispatch_uid="helpdesk.notifications.warm_unread_count")
def _warm_unread_count(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Count at sign-in, so that the pages after it read the badge from the cache."""
    if role_of(user) is not None:
        refresh_unread_count(user.pk)


def _after_read(user_id: int) -> None:
    def publish() -> None:
        _publish(user_id, "notifications_read", {"unread": refresh_unread_count(user_id)})

    after_commit(publish)


def do_mark_notification_read(notification: Notification, *, actor: User) -> Notification:
    """Mark one of the actor's notifications read (already read: unchanged)."""
    if notification.recipient_id != actor.pk:
        raise PermissionDenied("this notification is someone else's")
    with transaction.atomic():
        changed = Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=timezone.now())
        if changed:
            notification.refresh_from_db(fields=["read_at"])
            _after_read(actor.pk)
    return notification


def do_mark_all_read(*, actor: User) -> int:
    """Mark every unread notification of the actor read; how many there were."""
    with transaction.atomic():
        changed = Notification.objects.filter(recipient=actor, read_at__isnull=True).update(read_at=timezone.now())
        if changed:
            _after_read(actor.pk)
    return changed


def do_mark_ticket_notifications_read(ticket: Ticket, *, actor: User) -> int:
    """Opening a ticket reads what it was notified for: the actor's unread notifications of it.

    Costs no query while the actor has nothing unread (the badge's cached count says so).
    """
    if unread_count(actor) == 0:
        return 0
    with transaction.atomic():
        changed = Notification.objects.filter(recipient=actor, ticket=ticket, read_at__isnull=True).update(
            read_at=timezone.now()
        )
        if changed:
            _after_read(actor.pk)
    return changed


# --- email -------------------------------------------------------------------------------------


def do_send_notification_email(notification_id: int) -> str:
    """Send the notification's email once, if its recipient wants email; what happened.

    The row is locked while sending, and `emailed_at` set, so a task that runs twice sends once."""
    from django.conf import settings
    from django.core.mail import send_mail
    from django.urls import reverse

    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("recipient__agent", "ticket", "actor")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None:
            return "missing"
        if notification.emailed_at is not None:
            return "already sent"
        recipient = notification.recipient
        profile = getattr(recipient, "agent", None)
        if not recipient.is_active or not recipient.email or profile is None or not profile.notify_by_email:
            return "not wanted"
        if notification.read_at is not None:
            return "already read"
        text = notification_text(notification)
        link = settings.SITE_URL + reverse("desk:ticket_detail", args=[notification.ticket.number])
        body = (
            f"{text}.\n\n"
            f"Open the ticket: {link}\n\n"
            f"You get these emails because email notifications are on in your preferences: "
            f"{settings.SITE_URL}{reverse('desk:preferences')}\n"
        )
        send_mail(f"[Switchboard] {text}", body, None, [recipient.email])
        notification.emailed_at = timezone.now()
        notification.save(update_fields=["emailed_at"])
    return "sent"


# A queued email that never ran (broker down, worker lost, SMTP failed) is queued again by the
# beat sweep once it is this old, for as long as it is still worth sending.
EMAIL_RETRY_AFTER = timedelta(minutes=2)
EMAIL_GIVE_UP_AFTER = timedelta(days=1)
EMAIL_SWEEP_BATCH = 500


def do_requeue_unsent_emails(*, now: datetime | None = None) -> int:
    """Queue again the emails of unread notifications that should have gone out and did not;
    how many. The send itself stays idempotent (`emailed_at`, under the row's lock)."""
    from helpdesk.sideeffects import enqueue
    from helpdesk.tasks import send_notification_email

    now = now or timezone.now()
    ids = list(
        Notification.objects.filter(
            emailed_at__isnull=True,
            read_at__isnull=True,
            created_at__lte=now - EMAIL_RETRY_AFTER,
            created_at__gte=now - EMAIL_GIVE_UP_AFTER,
            recipient__is_active=True,
            recipient__agent__notify_by_email=True,
        )
        .order_by("id")
        .values_list("pk", flat=True)[:EMAIL_SWEEP_BATCH]
    )
    for pk in ids:
        enqueue(send_notification_email, pk)
    return len(ids)


# --- preferences -------------------------------------------------------------------------------


def do_set_notify_by_email(*, enabled: bool, actor: User) -> bool:
    """The actor's own choice: mentions and assignments by email as well."""
    with transaction.atomic():
        profile = AgentProfile.objects.select_for_update().filter(user=actor).first()
        if profile is None:
            raise PermissionDenied("this account has no agent profile")
        if profile.notify_by_email != enabled:
            profile.notify_by_email = enabled
            profile.save(update_fields=["notify_by_email"])
    return enabled
