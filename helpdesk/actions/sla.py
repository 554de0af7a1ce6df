"""SLA: policies (save, delete, move), the clocks of a ticket, and their timers.

docs/sla.md is the user's page; helpdesk/sla.py holds the pure arithmetic and the pause table.

- `update_ticket_sla` is step 3 of the change processor (helpdesk/changes.py): after the
  triggers, under the ticket's row lock, it chooses the policy (first active match, unless one was
  pinned with `apply_policy`), then walks the change's events to start, pause, resume, fulfil and
  cancel the ticket's clocks, re-targets the live clocks, saves `ticket.sla_due_at` and, after
  commit, queues a timer for every clock whose next moment falls within
  SLA_SCHEDULE_AHEAD_SECONDS.
- `do_fire_sla_clock` is that timer (Celery, with the moment as eta): it first processes the
  ticket's changes not processed yet (a reply just before the deadline), then records the warning
  or the breach once, notifies and runs the policy's escalation steps (helpdesk/runner.py).
- A clock that stops, pauses or takes a new target after a deadline no timer recorded yet gets
  its breach recorded first (`_Book.settle`, at that deadline); the change processor then runs the
  triggers over those breaches (helpdesk/changes.py).
- `do_schedule_sla_timers` (beat) queues the timers of the clocks coming into the window;
  `do_sweep_sla_clocks` (beat, every SLA_SWEEP_SECONDS) fires what is already due, so a lost task
  (a killed worker, a Redis restart) costs at most one sweep interval. It reads only the clocks
  due (partial index slaclock_fire_idx): its cost grows with the clocks falling due, never with
  the open tickets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from helpdesk import sla
from helpdesk.config_cache import VersionedCache
from helpdesk.events import PendingEvents, SlaApplied, SlaBreached, SlaFulfilled, SlaWarning
from helpdesk.models import (
    Notification,
    NotificationKind,
    SlaClock,
    SlaClockState,
    SlaMetric,
    SlaPolicy,
    Ticket,
    TicketEvent,
    TicketEventType,
    TicketStatus,
)
from helpdesk.permissions import require_settings_admin
from helpdesk.sideeffects import after_commit

if TYPE_CHECKING:
    from helpdesk.models import BusinessCalendar, User

logger = logging.getLogger(__name__)

# Set while tickets' past is being replayed (the demo's seeded history, an import): the
# targets that past missed are recorded as breaches, but nobody is notified and no escalation
# runs for them — they are history, not work to act on now.
_replaying_history: ContextVar[bool] = ContextVar("sla_replaying_history", default=False)


@contextmanager
def replaying_history() -> Iterator[None]:
    """Process tickets' recorded past: breaches are kept, their notifications and escalations
    are not run (seed_demo; importers of other helpdesks' tickets)."""
    token = _replaying_history.set(True)
    try:
        yield
    finally:
        _replaying_history.reset(token)


METRIC_TARGET_KEYS = sla.METRIC_TARGET_KEYS
PAUSE_TABLE = sla.PAUSE_TABLE

# The policy list (with each policy's calendar) is cached per process under a version kept in
# Django's cache (helpdesk/config_cache.py), so a ticket change costs no query for it; every save,
# delete and move (and calendar edit) bumps the version now and again after commit.
_VERSION_KEY = "sla:policies:version"

ESCALATION_ON = ("warning", "breach")
MAX_WARN_BEFORE_MINUTES = 7 * 24 * 60


class InvalidPolicy(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# --- the policy list ------------------------------------------------------------------------


def _load_active_policies() -> list[SlaPolicy]:
    return list(SlaPolicy.objects.filter(is_active=True).select_related("calendar").order_by("position", "id"))


_policies_cache: VersionedCache[list[SlaPolicy]] = VersionedCache(_VERSION_KEY, _load_active_policies)


def policies_changed() -> None:
    """Bump the policy list's version now and again once the transaction commits: this process
    sees its own change at once, and a process that reloaded the list before the commit (the old
    rows, under the first new number) reloads it after. Calendar edits call it too: the cached
    policies carry their calendar."""
    _policies_cache.changed()


def active_policies() -> list[SlaPolicy]:
    """The active policies in order (cached per process; no query while nothing changed)."""
    return _policies_cache.get()


def policy_for(ticket: Ticket) -> SlaPolicy | None:
    """The first active policy whose conditions match the ticket."""
    from helpdesk.conditions import matches

    for policy in active_policies():
        if matches(policy.conditions or {}, ticket):
            return policy
    return None


# --- policies: save, delete, move -----------------------------------------------------------


def _validate_escalations(data: Any, warn_before_minutes: int, errors: list[str]) -> list[dict[str, Any]]:
    from helpdesk.runner import InvalidActions, validate_actions

    if data in (None, ""):
        return []
    if not isinstance(data, list):
        errors.append("Escalations must be a list of {on, metric, actions}.")
        return []
    out: list[dict[str, Any]] = []
    for n, item in enumerate(data, start=1):
        where = f"Escalation {n}"
        if not isinstance(item, dict):
            errors.append(f"{where} must say when (on), for which metric, and what to do (actions).")
            continue
        on = item.get("on")
        metric = item.get("metric", "any") or "any"
        if on not in ESCALATION_ON:
            errors.append(f"{where}: “on” must be “warning” or “breach”, not “{on}”.")
            continue
        if on == "warning" and warn_before_minutes <= 0:
            errors.append(f"{where} runs on a warning, but the policy sends no warning (set “warn before”).")
        if metric != "any" and metric not in sla.METRIC_TARGET_KEYS:
            errors.append(
                f"{where}: “{metric}” is not an SLA metric; use any or one of {', '.join(sla.METRIC_TARGET_KEYS)}."
            )
            continue
        try:
            steps = validate_actions(item.get("actions"), context="sla")
        except InvalidActions as exc:
            errors.extend(f"{where}: {e}" for e in exc.errors)
            continue
        if not steps:
            errors.append(f"{where} has no actions.")
            continue
        out.append({"on": on, "metric": metric, "actions": steps})
    return out


def do_save_sla_policy(
    policy: SlaPolicy | None,
    *,
    name: str,
    description: str,
    conditions: Any,
    calendar: BusinessCalendar | None,
    targets: Any,
    warn_before_minutes: int,
    escalations: Any,
    is_active: bool,
    actor: User,
) -> SlaPolicy:
    """Create (policy None, placed last) or edit a policy; InvalidPolicy says what is wrong.

    Clocks already running keep their counted time and take the new targets at their ticket's
    next change (as Zendesk does)."""
    from helpdesk.conditions import InvalidConditions, validate_conditions

    require_settings_admin(actor)
    errors: list[str] = []
    name = (name or "").strip()
    description = (description or "").strip()
    if not name:
        errors.append("The policy needs a name.")
    elif len(name) > 100:
        errors.append("The name is longer than 100 characters.")
    elif SlaPolicy.objects.filter(name__iexact=name).exclude(pk__in=[policy.pk] if policy else []).exists():
        errors.append(f"Another policy is already called “{name}”.")
    if len(description) > 500:
        errors.append("The description is longer than 500 characters.")
    try:
        normalized_conditions = validate_conditions(conditions or {}, for_query=True)
    except InvalidConditions as exc:
        errors.extend(exc.errors)
        normalized_conditions = {}
    try:
        normalized_targets = sla.validate_targets(targets)
        if not normalized_targets:
            errors.append("Set at least one target (a priority and a metric with its minutes).")
    except sla.TargetErrors as exc:
        errors.extend(exc.errors)
        normalized_targets = {}
    if isinstance(warn_before_minutes, bool) or not isinstance(warn_before_minutes, int):
        try:
            warn_before_minutes = int(str(warn_before_minutes).strip() or 0)
        except ValueError:
            errors.append("“Warn before” must be a whole number of minutes.")
            warn_before_minutes = 0
    if warn_before_minutes < 0:
        errors.append("“Warn before” cannot be negative.")
        warn_before_minutes = 0
    elif warn_before_minutes > MAX_WARN_BEFORE_MINUTES:
        errors.append("“Warn before” is longer than a week.")
    normalized_escalations = _validate_escalations(escalations, warn_before_minutes, errors)
    if errors:
        raise InvalidPolicy(errors)
    with transaction.atomic():
        if policy is None:
            top = SlaPolicy.objects.aggregate(top=Max("position"))["top"]
            policy = SlaPolicy(position=0 if top is None else top + 1)
        policy.name = name
        policy.description = description
        policy.conditions = normalized_conditions
        policy.calendar = calendar
        policy.targets = normalized_targets
        policy.warn_before_minutes = warn_before_minutes
        policy.escalations = normalized_escalations
        policy.is_active = bool(is_active)
        policy.save()
        policies_changed()
    return policy


def do_delete_sla_policy(policy: SlaPolicy, *, actor: User) -> None:
    """Delete a policy: its live clocks are cancelled and its tickets lose it, a pin on it
    included (`sla_pinned` cleared): they choose a policy again at their next change.

    The tickets are locked first, in id order, then their clocks are written: the order of the
    change processor and the timers (ticket, then clock), so no deadlock with them."""
    require_settings_admin(actor)
    with transaction.atomic():
        live = set(
            SlaClock.objects.filter(policy=policy, state__in=sla.LIVE_STATES).values_list("ticket_id", flat=True)
        )
        touched = live | set(SlaClock.objects.filter(policy=policy).values_list("ticket_id", flat=True))
        touched |= set(Ticket.objects.filter(sla_policy=policy).values_list("pk", flat=True))
        if touched:
            list(Ticket.objects.select_for_update().filter(pk__in=touched).order_by("pk").values_list("pk", flat=True))
        SlaClock.objects.filter(policy=policy, state__in=sla.LIVE_STATES).update(
            state=SlaClockState.CANCELLED, next_fire_at=None, running_since=None, updated_at=timezone.now()
        )
        Ticket.objects.filter(pk__in=live).update(sla_due_at=None)
        Ticket.objects.filter(sla_policy=policy).update(sla_policy=None, sla_pinned=False, sla_due_at=None)
        policy.delete()
        _renumber(list(SlaPolicy.objects.order_by("position", "id")))
        policies_changed()


def do_move_sla_policy(policy: SlaPolicy, *, position: int, actor: User) -> None:
    """Move a policy to `position` (0 first); the others are renumbered 0..n."""
    require_settings_admin(actor)
    with transaction.atomic():
        others = [p for p in SlaPolicy.objects.select_for_update().order_by("position", "id") if p.pk != policy.pk]
        position = max(0, min(int(position), len(others)))
        others.insert(position, policy)
        _renumber(others)
        policies_changed()


def _renumber(policies: list[SlaPolicy]) -> None:
    changed = []
    for n, p in enumerate(policies):
        if p.position != n:
            p.position = n
            changed.append(p)
    if changed:
        SlaPolicy.objects.bulk_update(changed, ["position"])


def preview_policy(
    *, conditions: Any, targets: Any, calendar: BusinessCalendar | None, ticket: Ticket
) -> dict[str, Any]:
    """What a policy (as edited, unsaved) would do to a ticket: whether it matches, each
    condition's result, and the deadlines its targets would give the ticket's priority if the
    clocks started now from the ticket's state."""
    from helpdesk.conditions import InvalidConditions, explain, matches, validate_conditions

    try:
        normalized = validate_conditions(conditions or {}, for_query=True)
        targets = sla.validate_targets(targets)
    except (InvalidConditions, sla.TargetErrors) as exc:
        raise InvalidPolicy(list(exc.errors)) from exc
    probe = SlaPolicy(name="preview", conditions=normalized, targets=targets, calendar=calendar)
    cal = calendar or _default_calendar()
    unsolved = ticket.status in (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.ON_HOLD)
    starts: dict[str, datetime | None] = {
        SlaMetric.FIRST_REPLY: ticket.created_at if ticket.first_reply_at is None and unsolved else None,
        SlaMetric.NEXT_REPLY: ticket.waiting_since if ticket.first_reply_at and unsolved else None,
        SlaMetric.PERIODIC_UPDATE: ticket.last_agent_message_at if unsolved else None,
        SlaMetric.RESOLUTION: ticket.created_at if unsolved else None,
    }
    deadlines = []
    for metric in sla.METRIC_TARGET_KEYS:
        target = sla.target_for(probe, ticket.priority, metric)
        if target is None:
            continue
        due = sla.deadline_preview(target, cal, starts[metric])
        deadlines.append((sla.metric_label(metric), due, "business" if target.business_hours else "calendar"))
    return {
        "matches": matches(normalized, ticket),
        "conditions": explain(normalized, ticket),
        "deadlines": deadlines,
    }


def _default_calendar() -> BusinessCalendar | None:
    from helpdesk.calendars import default_calendar

    return default_calendar()


# --- a ticket's policy and clocks (change-processor step 3) ---------------------------------


def apply_policy(ticket: Ticket, policy: SlaPolicy | None, *, actor: User | None = None) -> Ticket:
    """Pin a policy on the ticket (the runner's sla_policy step): the automatic selection no
    longer replaces it. None pins "no policy" (the ticket's clocks are cancelled). The clocks
    follow in `update_ticket_sla` (this change's step 3, or the processor run that the SlaApplied
    event queues). Inside the caller's transaction, with the ticket locked."""
    pinned = True
    if ticket.sla_policy_id == (policy.pk if policy else None) and _is_pinned(ticket):
        return ticket
    old = ticket.sla_policy_id
    ticket.sla_policy = policy
    ticket.sla_pinned = pinned
    ticket.save(update_fields=["sla_policy", "sla_pinned", "updated_at"])
    events = PendingEvents(ticket)
    _add_applied(events, policy, old, pinned=pinned, actor=actor)
    events.write(save_seq=True)
    return ticket


def _add_applied(
    events: PendingEvents, policy: SlaPolicy | None, old: int | None, *, pinned: bool, actor: User | None = None
) -> TicketEvent:
    payload = SlaApplied(
        policy_id=policy.pk if policy else None, name=policy.name if policy else "", old_policy_id=old, pinned=pinned
    )
    return events.add(payload, actor=actor)


def _is_pinned(ticket: Ticket) -> bool:
    return ticket.sla_pinned


def update_ticket_sla(ticket: Ticket, events: list[TicketEvent], *, now: datetime | None = None) -> Ticket:
    """Change-processor step 3: the ticket's policy, then its clocks, for the change's events."""
    policies = active_policies()
    if not policies and ticket.sla_policy_id is None:
        return ticket  # nothing configured, nothing applied: no query at all
    now = now or timezone.now()
    book = _Book(ticket, now)
    book.choose_policy(events, policies)
    if (
        book.policy is None
        and book.old_policy_id is None
        and not any(e.type == TicketEventType.SLA_APPLIED for e in events)
    ):
        return book.finish()  # no policy before or after: no clocks to look at
    book.load()
    book.walk(events)
    book.retarget(events)
    return book.finish()


class _Book:
    """The clocks of one ticket while one change is applied to them (in memory, then saved)."""

    def __init__(self, ticket: Ticket, now: datetime) -> None:
        self.ticket = ticket
        self.now = now
        self.policy: SlaPolicy | None = None
        self.old_policy_id = ticket.sla_policy_id
        self.policy_changed = False
        self.clocks: list[SlaClock] = []
        self.originals: dict[int, tuple[Any, ...]] = {}
        # ("breach"|"fulfil", clock, the deadline missed) in order
        self.log: list[tuple[str, SlaClock, datetime | None]] = []
        self.events = PendingEvents(ticket)
        self._replied_before: bool | None = None
        self._created_by_customer: bool | None = None
        self._default: tuple[BusinessCalendar | None] | None = None

    # policy -------------------------------------------------------------------------------
    def choose_policy(self, events: list[TicketEvent], policies: list[SlaPolicy]) -> None:
        by_id = {p.pk: p for p in policies}
        current = self.ticket.sla_policy_id
        if _is_pinned(self.ticket):
            policy = None
            if current is not None:
                policy = by_id.get(current) or SlaPolicy.objects.filter(pk=current).select_related("calendar").first()
        else:
            policy = policy_for(self.ticket) if policies else None
        self.policy = policy
        new_id = policy.pk if policy else None
        if new_id != current:
            self.policy_changed = True
            self.ticket.sla_policy = policy
            self.ticket.save(update_fields=["sla_policy"])
            _add_applied(self.events, policy, current, pinned=False)

    # clocks -------------------------------------------------------------------------------
    def load(self) -> None:
        self.clocks = list(SlaClock.objects.filter(ticket_id=self.ticket.pk).select_related("calendar"))
        self.originals = {c.pk: self._snapshot(c) for c in self.clocks}

    @staticmethod
    def _snapshot(c: SlaClock) -> tuple[Any, ...]:
        return (
            c.policy_id,
            c.state,
            c.business_hours,
            c.calendar_id,
            c.target_seconds,
            c.elapsed_seconds,
            c.running_since,
            c.due_at,
            c.warn_at,
            c.warned_at,
            c.breached_at,
            c.fulfilled_at,
            c.next_fire_at,
        )

    @property
    def warn_before(self) -> int:
        return self.policy.warn_before_minutes if self.policy else 0

    def live(self, metric: str | None = None) -> list[SlaClock]:
        return [c for c in self.clocks if c.state in sla.LIVE_STATES and (metric is None or c.metric == metric)]

    def latest(self, metric: str) -> SlaClock | None:
        mine = [c for c in self.clocks if c.metric == metric]
        return max(mine, key=lambda c: c.instance) if mine else None

    def has(self, metric: str, states: tuple[str, ...]) -> bool:
        return any(c.metric == metric and c.state in states for c in self.clocks)

    def calendar_for(self, target: sla.Target) -> BusinessCalendar | None:
        if not target.business_hours or self.policy is None:
            return None
        if self.policy.calendar is not None:
            return self.policy.calendar
        if self._default is None:
            self._default = (_default_calendar(),)
        return self._default[0]

    def start(self, metric: str, at: datetime, status: str, *, elapsed: float = 0.0) -> SlaClock | None:
        target = sla.target_for(self.policy, self.ticket.priority, metric)
        if target is None or status == TicketStatus.CLOSED:
            return None
        latest = self.latest(metric)
        clock = SlaClock(
            ticket=self.ticket,
            policy=self.policy,
            metric=metric,
            instance=(latest.instance + 1) if latest else 1,
            state=SlaClockState.RUNNING,
            business_hours=target.business_hours,
            calendar=self.calendar_for(target),
            target_seconds=target.seconds,
            started_at=at,
            elapsed_seconds=elapsed,
            running_since=at,
        )
        if not sla.counts_in(metric, status):
            clock.state = SlaClockState.PAUSED
            clock.running_since = None
        sla.refresh(clock, warn_before_minutes=self.warn_before)
        self.clocks.append(clock)
        return clock

    def settle(self, clock: SlaClock, at: datetime) -> None:
        """Before a clock stops counting at `at` or takes a new target: a deadline it passed
        unrecorded is a breach, recorded at that deadline (the event names it)."""
        if sla.overdue(clock, at):
            clock.breached_at = clock.due_at
            clock.next_fire_at = None
            self.log.append(("breach", clock, clock.due_at))

    def fulfil(self, clock: SlaClock, at: datetime) -> None:
        self.settle(clock, at)
        sla.stop(clock, at, SlaClockState.FULFILLED)
        self.log.append(("fulfil", clock, None))

    def cancel(self, clock: SlaClock, at: datetime) -> None:
        self.settle(clock, at)
        sla.stop(clock, at, SlaClockState.CANCELLED)

    def pause(self, clock: SlaClock, at: datetime) -> None:
        self.settle(clock, at)
        sla.pause(clock, at)

    # events -------------------------------------------------------------------------------
    def walk(self, events: list[TicketEvent]) -> None:
        if self.policy is None:
            for clock in self.live():
                self.cancel(clock, self.now)
            return
        status = next(
            (e.data.get("old") for e in events if e.type == TicketEventType.STATUS_CHANGED), self.ticket.status
        )
        for event in events:
            at = event.created_at
            if event.type == TicketEventType.CREATED:
                if event.actor_id is None:
                    self._created_by_customer = True
                    if not self.has(SlaMetric.FIRST_REPLY, (*sla.LIVE_STATES, SlaClockState.FULFILLED)):
                        self.start(SlaMetric.FIRST_REPLY, at, status)
                else:
                    self._created_by_customer = False
                if not self.has(SlaMetric.RESOLUTION, (*sla.LIVE_STATES, SlaClockState.FULFILLED)):
                    self.start(SlaMetric.RESOLUTION, at, status)
            elif event.type == TicketEventType.MESSAGE_RECEIVED:
                if not self.live(SlaMetric.NEXT_REPLY) and self.replied_before(event, events):
                    self.start(SlaMetric.NEXT_REPLY, at, status)
            elif event.type == TicketEventType.REPLY_ADDED and event.actor_id is not None:
                self._replied_before = True
                for metric in (SlaMetric.FIRST_REPLY, SlaMetric.NEXT_REPLY, SlaMetric.PERIODIC_UPDATE):
                    for clock in self.live(metric):
                        self.fulfil(clock, at)
                self.start(SlaMetric.PERIODIC_UPDATE, at, status)
            elif event.type == TicketEventType.STATUS_CHANGED:
                status = str(event.data.get("new"))
                self.status_changed(status, at)

    def status_changed(self, status: str, at: datetime) -> None:
        resolution = self.latest(SlaMetric.RESOLUTION)
        reopened = status not in (TicketStatus.SOLVED, TicketStatus.CLOSED)
        if reopened and resolution is not None and resolution.state == SlaClockState.FULFILLED:
            # A reopen: the resolution clock resumes, adding to the time already counted.
            resolution.state = SlaClockState.PAUSED
            resolution.fulfilled_at = None
        for clock in self.live():
            if status == TicketStatus.CLOSED:
                if clock.metric == SlaMetric.RESOLUTION:
                    self.fulfil(clock, at)
                else:
                    self.cancel(clock, at)
            elif status == TicketStatus.SOLVED and clock.metric == SlaMetric.RESOLUTION:
                self.fulfil(clock, at)
            elif sla.counts_in(clock.metric, status):
                sla.resume(clock, at, warn_before_minutes=self.warn_before)
            else:
                self.pause(clock, at)

    def replied_before(self, message_event: TicketEvent, events: list[TicketEvent]) -> bool:
        """Whether an agent had replied publicly before this customer message."""
        if self._replied_before is not None:
            return self._replied_before
        replies = [e for e in events if e.type == TicketEventType.REPLY_ADDED and e.actor_id is not None]
        if not replies:
            self._replied_before = self.ticket.first_reply_at is not None
        elif replies[0].seq < message_event.seq:
            self._replied_before = True
        else:
            self._replied_before = TicketEvent.objects.filter(
                ticket_id=self.ticket.pk,
                type=TicketEventType.REPLY_ADDED,
                actor__isnull=False,
                seq__lt=message_event.seq,
            ).exists()
        return self._replied_before

    # targets ------------------------------------------------------------------------------
    def retarget(self, events: list[TicketEvent]) -> None:
        """Live clocks take the targets of the current policy and priority (counted time kept);
        a metric that lost its target is cancelled; one that gained a target while the ticket
        waits on it starts from the ticket's state."""
        if self.policy is None:
            return
        changed_at = _change_time(events, self.now)
        for clock in self.live():
            # The time counts until the change (the priority change's own moment, not when it
            # is processed), and a deadline already missed by then is recorded before it moves.
            at = max(changed_at, clock.running_since) if clock.running_since else changed_at
            target = sla.target_for(self.policy, self.ticket.priority, clock.metric)
            if target is None:
                self.cancel(clock, at)
                continue
            if clock.policy_id != self.policy.pk:
                clock.policy = self.policy
            calendar = self.calendar_for(target)
            if sla.target_differs(clock, target, calendar):
                self.settle(clock, at)
            sla.retarget(clock, target, calendar, at=at)
            if clock.state == SlaClockState.RUNNING:
                sla.refresh(clock, warn_before_minutes=self.warn_before)
        newest_clock = max((c.updated_at for c in self.clocks if c.pk and c.updated_at), default=None)
        needs_seed = (
            self.policy_changed
            or not self.clocks
            or any(e.type in (TicketEventType.SLA_APPLIED, TicketEventType.PRIORITY_CHANGED) for e in events)
            or (newest_clock is not None and self.policy.updated_at > newest_clock)
        )
        if needs_seed:
            self.seed()

    def seed(self) -> None:
        t = self.ticket
        status = t.status
        if status in (TicketStatus.SOLVED, TicketStatus.CLOSED):
            return
        since = t.status_changed_at or self.now

        def begin(metric: str, start: datetime | None) -> None:
            if start is None or sla.target_for(self.policy, t.priority, metric) is None:
                return
            # Not counting now: count from the start until the ticket entered this status.
            elapsed = 0.0
            if not sla.counts_in(metric, status):
                target = sla.target_for(self.policy, t.priority, metric)
                assert target is not None
                schedule = sla.schedule_of(target.business_hours, self.calendar_for(target))
                elapsed = schedule.seconds_between(start, max(start, since))
            self.start(metric, start, status, elapsed=elapsed)

        kept = (*sla.LIVE_STATES, SlaClockState.FULFILLED)
        if (
            t.first_reply_at is None
            and not self.has(SlaMetric.FIRST_REPLY, kept)
            and sla.target_for(self.policy, t.priority, SlaMetric.FIRST_REPLY) is not None
            and self.created_by_customer()
        ):
            begin(SlaMetric.FIRST_REPLY, t.created_at)
        if t.first_reply_at is not None and t.waiting_since is not None and not self.live(SlaMetric.NEXT_REPLY):
            begin(SlaMetric.NEXT_REPLY, t.waiting_since)
        if t.last_agent_message_at is not None and not self.live(SlaMetric.PERIODIC_UPDATE):
            begin(SlaMetric.PERIODIC_UPDATE, t.last_agent_message_at)
        if not self.has(SlaMetric.RESOLUTION, kept):
            begin(SlaMetric.RESOLUTION, t.created_at)

    def created_by_customer(self) -> bool:
        if self._created_by_customer is None:
            actor = (
                TicketEvent.objects.filter(ticket_id=self.ticket.pk, type=TicketEventType.CREATED)
                .values_list("actor_id", flat=True)
                .first()
            )
            self._created_by_customer = actor is None
        return self._created_by_customer

    # save ---------------------------------------------------------------------------------
    def finish(self) -> Ticket:
        new = [c for c in self.clocks if c.pk is None]
        changed = [c for c in self.clocks if c.pk is not None and self._snapshot(c) != self.originals.get(c.pk)]
        if new:
            SlaClock.objects.bulk_create(new)
        if changed:
            stamp = timezone.now()
            for c in changed:
                c.updated_at = stamp
            SlaClock.objects.bulk_update(changed, _CLOCK_FIELDS)
        breaches = []
        for kind, clock, missed in self.log:
            if kind == "breach":
                breaches.append(clock)
                self.events.add(_breached(clock, due_at=missed))
            else:
                self.events.add(
                    SlaFulfilled(
                        clock_id=clock.pk,
                        metric=clock.metric,
                        instance=clock.instance,
                        breached=clock.breached_at is not None,
                        seconds=round(clock.elapsed_seconds, 3),
                    )
                )
        self.events.write(save_seq=True)
        due = sla.earliest_due(self.clocks)
        if due != self.ticket.sla_due_at:
            self.ticket.sla_due_at = due
            self.ticket.save(update_fields=["sla_due_at"])
        ticket = self.ticket
        for clock in breaches:
            ticket = _after_moment(ticket, clock, "breach")
        for clock in self.clocks:
            _schedule(clock, self.now)
        return ticket


def _change_time(events: list[TicketEvent], default: datetime) -> datetime:
    """When the change that re-targets happened: its newest priority or policy change, else its
    newest event (a policy edit reaches the ticket with that change), else `default` (now)."""
    retargeting = [
        e for e in events if e.type in (TicketEventType.PRIORITY_CHANGED, TicketEventType.SLA_APPLIED) and e.created_at
    ]
    if retargeting:
        return max(e.created_at for e in retargeting)
    stamped = [e.created_at for e in events if e.created_at]
    return min(max(stamped), default) if stamped else default


_CLOCK_FIELDS = [
    "policy",
    "state",
    "business_hours",
    "calendar",
    "target_seconds",
    "elapsed_seconds",
    "running_since",
    "due_at",
    "warn_at",
    "warned_at",
    "breached_at",
    "fulfilled_at",
    "next_fire_at",
    "updated_at",
]


def _iso(at: datetime | None) -> str:
    return at.isoformat() if at else ""


def _breached(clock: SlaClock, *, due_at: datetime | None = None) -> SlaBreached:
    missed = due_at or clock.due_at
    return SlaBreached(clock_id=clock.pk, metric=clock.metric, instance=clock.instance, due_at=_iso(missed))


# --- timers ---------------------------------------------------------------------------------


def _timer_key(clock_id: int, fire_at: datetime) -> str:
    return f"sla:timer:{clock_id}:{int(fire_at.timestamp() * 1000)}"


def _schedule(clock: SlaClock, now: datetime) -> None:
    """After commit, queue the clock's timer if its next moment falls within the window (once
    per clock and moment: the beat scheduler skips what is already queued)."""
    fire_at = clock.next_fire_at
    if fire_at is None or clock.pk is None:
        return
    if fire_at > now + timedelta(seconds=settings.SLA_SCHEDULE_AHEAD_SECONDS):
        return
    clock_id = clock.pk
    moment = fire_at
    after_commit(lambda: _queue_timer(clock_id, moment, timezone.now()))


def _queue_timer(clock_id: int, fire_at: datetime, now: datetime) -> bool:
    from helpdesk.tasks import fire_sla_clock

    key = _timer_key(clock_id, fire_at)
    ttl = max(60, int((fire_at - now).total_seconds() + 2 * settings.SLA_SCHEDULE_AHEAD_SECONDS))
    if not cache.add(key, 1, ttl):
        return False
    try:
        fire_sla_clock.apply_async(args=(clock_id,), eta=fire_at)
    except Exception:
        cache.delete(key)
        logger.exception("could not queue the SLA timer of clock %s; the sweeper will fire it", clock_id)
        return False
    return True


def do_schedule_sla_timers(*, now: datetime | None = None) -> int:
    """Beat, every SLA_SCHEDULE_AHEAD_SECONDS / 2: queue a timer (eta = its moment) for each
    clock whose next moment comes within the window and has none queued. Returns how many."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.SLA_SCHEDULE_AHEAD_SECONDS)
    coming = (
        SlaClock.objects.filter(next_fire_at__gt=now, next_fire_at__lte=horizon)
        .order_by("next_fire_at")
        .values_list("id", "next_fire_at")
    )
    queued = 0
    for clock_id, fire_at in coming.iterator(chunk_size=2000):
        if fire_at is not None:
            queued += _queue_timer(clock_id, fire_at, now)
    return queued


def do_sweep_sla_clocks(*, now: datetime | None = None) -> int:
    """Beat, every SLA_SWEEP_SECONDS: fire the clocks whose moment has passed (a lost or late
    timer), earliest first, at most SLA_SWEEP_BATCH. Returns how many warned or breached."""
    now = now or timezone.now()
    due = list(
        SlaClock.objects.filter(next_fire_at__lte=now)
        .order_by("next_fire_at")
        .values_list("id", flat=True)[: settings.SLA_SWEEP_BATCH]
    )
    fired = 0
    for clock_id in due:
        try:
            fired += do_fire_sla_clock(clock_id, now=now) in ("warned", "breached")
        except Exception:
            logger.exception("the SLA clock %s could not be fired; the next sweep tries again", clock_id)
    return fired


def do_fire_sla_clock(clock_id: int, *, now: datetime | None = None) -> str:
    """Record a clock's warning or breach when its moment has come; idempotent.

    The ticket's unprocessed changes are processed first, under the same lock (the change
    processor, helpdesk/changes.py): a reply committed before the deadline whose processing has
    not run yet fulfils the clock instead of letting it breach.

    Returns "warned", "breached", "early" (its moment is still ahead: a timer queued for an
    older deadline), "busy" (the ticket or clock is locked by another transaction, or its
    unprocessed changes failed: the sweeper fires it on its next run), "nothing" (stopped, or
    nothing left to fire) or "gone"."""
    ticket_id = SlaClock.objects.filter(pk=clock_id).values_list("ticket_id", flat=True).first()
    if ticket_id is None:
        return "gone"
    with transaction.atomic():
        # The ticket first, as every ticket action and the change processor lock it: no deadlock.
        ticket = Ticket.objects.select_for_update(skip_locked=True).filter(pk=ticket_id).first()
        if ticket is None:
            return "busy"
        if ticket.changes_seq < ticket.last_event_seq:
            # A change not processed yet (its task waits in the queue, or was lost) may have
            # stopped this clock before its moment, a reply at 29:58 of 30 minutes: process it
            # first, here, under the same lock, then look at the clock as it left it.
            from helpdesk.changes import process_locked

            try:
                with transaction.atomic():
                    process_locked(ticket)
            except Exception:
                logger.exception("ticket %s: its changes could not be processed before the SLA timer", ticket_id)
                return "busy"
            ticket = Ticket.objects.get(pk=ticket_id)
        clock = (
            SlaClock.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("calendar", "policy")
            .filter(pk=clock_id)
            .first()
        )
        if clock is None:
            return "busy" if SlaClock.objects.filter(pk=clock_id).exists() else "gone"
        now = now or timezone.now()
        if clock.state != SlaClockState.RUNNING or clock.next_fire_at is None:
            return "nothing"
        if clock.next_fire_at > now:
            return "early"
        events = PendingEvents(ticket)
        if clock.breached_at is None and clock.due_at is not None and clock.due_at <= now:
            # The warning is skipped when its moment passed with the deadline (a late timer).
            kind = "breach"
            clock.breached_at = now
            events.add(_breached(clock))
        else:
            kind = "warning"
            clock.warned_at = now
            events.add(
                SlaWarning(clock_id=clock.pk, metric=clock.metric, instance=clock.instance, due_at=_iso(clock.due_at))
            )
        clock.next_fire_at = sla.next_fire(clock)
        clock.save(update_fields=["warned_at", "breached_at", "next_fire_at", "updated_at"])
        events.write(save_seq=True)
        _after_moment(ticket, clock, kind)
        _schedule(clock, now)
    return "breached" if kind == "breach" else "warned"


def _after_moment(ticket: Ticket, clock: SlaClock, kind: str) -> Ticket:
    """Notify (the assignee, else the team's agents) and run the policy's escalation steps
    (neither while replaying history: `replaying_history`)."""
    if _replaying_history.get():
        return ticket
    _notify(ticket, clock, kind)
    policy = clock.policy
    if policy is None:
        return ticket
    steps = [
        e for e in (policy.escalations or []) if e.get("on") == kind and e.get("metric", "any") in ("any", clock.metric)
    ]
    if not steps:
        return ticket
    from helpdesk.runner import RuleSource, run_actions

    source = RuleSource("sla", policy.pk, policy.name)
    for escalation in steps:
        try:
            with transaction.atomic():
                ticket = run_actions(ticket, escalation["actions"], source=source)
        except Exception:
            logger.exception("escalation of SLA policy %s failed on ticket %s", policy.pk, ticket.pk)
            ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    return ticket


def _notify(ticket: Ticket, clock: SlaClock, kind: str) -> list[Notification]:
    """The assignee, else the agents of the ticket's team (active staff who may see it)."""
    from helpdesk.actions.notifications import do_notify_staff, staff_users

    if ticket.assignee_id is not None:
        users = staff_users().filter(pk=ticket.assignee_id)
    elif ticket.team_id is not None:
        users = staff_users().filter(agent__teams=ticket.team_id)
    else:
        return []
    recipients = list(users.order_by("pk").distinct())
    if not recipients:
        return []
    label = sla.metric_label(clock.metric).lower()
    due = clock.due_at.strftime("%Y-%m-%d %H:%M UTC") if clock.due_at else ""
    if kind == "warning":
        notification_kind = NotificationKind.SLA_WARNING
        text = f"the {label} deadline is near ({due})"
    else:
        notification_kind = NotificationKind.SLA_BREACH
        text = f"the {label} deadline was missed ({due})"
    return do_notify_staff(ticket, recipients=recipients, text=text, kind=notification_kind)
