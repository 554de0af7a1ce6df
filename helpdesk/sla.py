"""SLA computations: targets, the pause table and the clock arithmetic (no writes).

The write path (policies, clocks, timers) is helpdesk/actions/sla.py; docs/sla.md explains the
rules. A clock (`SlaClock`) counts business or calendar seconds while it runs; `due_at` is when
its target is missed, `warn_at` when the warning goes out, `next_fire_at` the next moment a timer
must act on it. The functions below change `SlaClock` instances in memory only; the caller saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from helpdesk.models import SlaClock, SlaClockState, SlaMetric, TicketStatus

if TYPE_CHECKING:
    from helpdesk.calendars import Schedule
    from helpdesk.models import BusinessCalendar, SlaPolicy

# The metrics a policy can set a target for, in the order the settings screen shows them.
METRIC_TARGET_KEYS: tuple[str, ...] = tuple(m.value for m in SlaMetric)
# The priorities a policy sets targets per ("1" low … "4" urgent), as stored in `targets`.
PRIORITY_KEYS: tuple[str, ...] = ("1", "2", "3", "4")
# Zendesk's floor: no target shorter than this.
MIN_TARGET_SECONDS = 15
# The longest target accepted (a year of calendar time; business targets count only open hours).
MAX_TARGET_SECONDS = 366 * 24 * 3600

# Statuses in which a metric's clock does not count (it is paused and resumes when the ticket
# moves to a counting status). Solved stops every reply clock the same way (resumes on reopen);
# solved fulfils the resolution clock (a reopen resumes it, adding to its total); closed cancels
# the reply clocks and fulfils the resolution clock for good.
PAUSED_IN: dict[str, frozenset[str]] = {
    SlaMetric.FIRST_REPLY: frozenset({TicketStatus.SOLVED}),
    SlaMetric.NEXT_REPLY: frozenset({TicketStatus.SOLVED}),
    SlaMetric.PERIODIC_UPDATE: frozenset({TicketStatus.PENDING, TicketStatus.SOLVED}),
    SlaMetric.RESOLUTION: frozenset({TicketStatus.PENDING, TicketStatus.ON_HOLD}),
}

# The table docs/sla.md and the settings screen show (one row per metric).
PAUSE_TABLE: list[dict[str, str]] = [
    {
        "metric": SlaMetric.FIRST_REPLY,
        "label": "First reply",
        "starts": "the ticket is created by the customer (a ticket an agent opened with an outbound "
        "message has no first-reply clock)",
        "fulfilled_by": "the first public reply by an agent (automatic replies and rule replies never count)",
        "paused_while": "never",
        "solved": "stops counting; resumes on reopen",
        "closed": "cancelled",
    },
    {
        "metric": SlaMetric.NEXT_REPLY,
        "label": "Next reply",
        "starts": "the oldest customer message not yet answered, after an agent's reply (a new instance each cycle)",
        "fulfilled_by": "the next public reply by an agent",
        "paused_while": "never",
        "solved": "stops counting; resumes on reopen",
        "closed": "cancelled",
    },
    {
        "metric": SlaMetric.PERIODIC_UPDATE,
        "label": "Periodic update",
        "starts": "each public reply by an agent (a new instance)",
        "fulfilled_by": "the next public reply by an agent",
        "paused_while": "pending",
        "solved": "stops counting; resumes on reopen",
        "closed": "cancelled",
    },
    {
        "metric": SlaMetric.RESOLUTION,
        "label": "Resolution",
        "starts": "the ticket is created",
        "fulfilled_by": "solved (or closed)",
        "paused_while": "pending, on hold",
        "solved": "fulfilled; a reopen resumes it, adding to the time already counted",
        "closed": "fulfilled for good",
    },
]

LIVE_STATES = (SlaClockState.RUNNING, SlaClockState.PAUSED)


def metric_label(metric: str) -> str:
    return str(SlaMetric(metric).label)


def counts_in(metric: str, status: str) -> bool:
    """Whether the metric's clock counts while the ticket has this status."""
    return status != TicketStatus.CLOSED and status not in PAUSED_IN[metric]


@dataclass(frozen=True)
class Target:
    seconds: int
    business_hours: bool


def target_for(policy: SlaPolicy | None, priority: int, metric: str) -> Target | None:
    """The policy's target of one metric for one priority (None: no target)."""
    if policy is None:
        return None
    per_metric = (policy.targets or {}).get(str(int(priority))) or {}
    spec = per_metric.get(metric)
    if not spec:
        return None
    return Target(seconds=target_seconds(spec), business_hours=bool(spec.get("business_hours")))


def target_seconds(spec: dict[str, Any]) -> int:
    return round(float(spec["minutes"]) * 60)


class TargetErrors(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def validate_targets(data: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Normalized targets, or TargetErrors with one sentence per problem.

    Shape: `{"<priority 1-4>": {"<metric>": {"minutes": number, "business_hours": bool}}}`."""
    errors: list[str] = []
    if data in (None, ""):
        return {}
    if not isinstance(data, dict):
        raise TargetErrors(["Targets must map a priority (1 low … 4 urgent) to its targets per metric."])
    names = {"1": "low", "2": "normal", "3": "high", "4": "urgent"}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for raw_priority, metrics in data.items():
        priority = str(raw_priority)
        if priority not in PRIORITY_KEYS:
            errors.append(f"“{raw_priority}” is not a priority; use 1 (low), 2 (normal), 3 (high) or 4 (urgent).")
            continue
        if not isinstance(metrics, dict):
            errors.append(f"The targets of {names[priority]} priority must map a metric to its target.")
            continue
        row: dict[str, dict[str, Any]] = {}
        for metric, spec in metrics.items():
            if metric not in METRIC_TARGET_KEYS:
                errors.append(f"“{metric}” is not an SLA metric; use one of {', '.join(METRIC_TARGET_KEYS)}.")
                continue
            where = f"The {metric_label(metric).lower()} target of {names[priority]} priority"
            if spec in (None, "", {}):
                continue  # an empty cell: no target
            if isinstance(spec, int | float) and not isinstance(spec, bool):
                spec = {"minutes": spec}
            if not isinstance(spec, dict) or "minutes" not in spec:
                errors.append(f"{where} needs a number of minutes.")
                continue
            minutes = spec["minutes"]
            if isinstance(minutes, bool) or not isinstance(minutes, int | float | str):
                errors.append(f"{where} must be a number of minutes.")
                continue
            try:
                value = float(minutes)
            except ValueError:
                errors.append(f"{where} must be a number of minutes, not “{minutes}”.")
                continue
            if not math.isfinite(value) or value * 60 < MIN_TARGET_SECONDS - 1e-9:
                errors.append(f"{where} is shorter than the minimum of {MIN_TARGET_SECONDS} seconds (0.25 minutes).")
                continue
            if value * 60 > MAX_TARGET_SECONDS:
                errors.append(f"{where} is longer than a year.")
                continue
            business = spec.get("business_hours", False)
            if not isinstance(business, bool):
                errors.append(f"{where}: business_hours must be true or false.")
                continue
            row[metric] = {"minutes": int(value) if value == int(value) else value, "business_hours": business}
        if row:
            out[priority] = row
    if errors:
        raise TargetErrors(errors)
    return out


def schedule_of(business_hours: bool, calendar: BusinessCalendar | None) -> Schedule:
    """The schedule a clock counts in: its calendar's for business-hours targets (without a
    calendar every hour counts), else calendar time."""
    from helpdesk.calendars import ALWAYS_OPEN, schedule_for

    if business_hours and calendar is not None:
        return schedule_for(calendar)
    return ALWAYS_OPEN


def clock_schedule(clock: SlaClock) -> Schedule:
    return schedule_of(clock.business_hours, clock.calendar)


# --- clock arithmetic (in memory) -----------------------------------------------------------


def counted_until(clock: SlaClock, at: datetime) -> float:
    """Seconds counted by the clock up to `at` (business or calendar, as its target is)."""
    if clock.state != SlaClockState.RUNNING or clock.running_since is None:
        return clock.elapsed_seconds
    return clock.elapsed_seconds + clock_schedule(clock).seconds_between(clock.running_since, at)


def refresh(clock: SlaClock, *, warn_before_minutes: int) -> None:
    """Recompute due_at, warn_at and next_fire_at of a clock from its counted time and target."""
    if clock.state != SlaClockState.RUNNING or clock.running_since is None:
        clock.due_at = None if clock.state == SlaClockState.PAUSED else clock.due_at
        clock.warn_at = None if clock.state == SlaClockState.PAUSED else clock.warn_at
        clock.next_fire_at = None
        return
    left = max(0.0, clock.target_seconds - clock.elapsed_seconds)
    try:
        clock.due_at = clock_schedule(clock).add_seconds(clock.running_since, left)
    except ValueError:
        # A calendar with no opening hours at all: the target can never be reached, so the
        # clock has no deadline (it never breaches) rather than failing the change.
        clock.due_at = clock.warn_at = clock.next_fire_at = None
        return
    clock.warn_at = clock.due_at - timedelta(minutes=warn_before_minutes) if warn_before_minutes > 0 else None
    clock.next_fire_at = next_fire(clock)


def next_fire(clock: SlaClock) -> datetime | None:
    """The warning if it has not gone out, else the breach if not recorded, else nothing."""
    if clock.state != SlaClockState.RUNNING or clock.breached_at is not None:
        return None
    if clock.warn_at is not None and clock.warned_at is None and clock.due_at is not None:
        return min(clock.warn_at, clock.due_at)
    return clock.due_at


def pause(clock: SlaClock, at: datetime) -> None:
    if clock.state != SlaClockState.RUNNING:
        return
    clock.elapsed_seconds = counted_until(clock, at)
    clock.running_since = None
    clock.state = SlaClockState.PAUSED
    refresh(clock, warn_before_minutes=0)


def resume(clock: SlaClock, at: datetime, *, warn_before_minutes: int) -> None:
    if clock.state not in (SlaClockState.PAUSED, SlaClockState.FULFILLED):
        return
    clock.state = SlaClockState.RUNNING
    clock.running_since = at
    clock.fulfilled_at = None
    refresh(clock, warn_before_minutes=warn_before_minutes)


def stop(clock: SlaClock, at: datetime, state: str) -> None:
    """Fulfil or cancel: the counted time is kept, nothing is left to fire."""
    clock.elapsed_seconds = counted_until(clock, at)
    clock.running_since = None
    clock.state = state
    clock.next_fire_at = None
    if state == SlaClockState.FULFILLED:
        clock.fulfilled_at = at


def target_differs(clock: SlaClock, target: Target, calendar: BusinessCalendar | None) -> bool:
    """Whether `retarget` would change the clock (its target, unit or calendar)."""
    calendar = calendar if target.business_hours else None
    return not (
        clock.target_seconds == target.seconds
        and clock.business_hours == target.business_hours
        and clock.calendar_id == (calendar.pk if calendar else None)
    )


def retarget(clock: SlaClock, target: Target, calendar: BusinessCalendar | None, *, at: datetime) -> bool:
    """A new target for a live clock (priority or policy changed): the counted time is kept, in
    the new unit when the target switches between business and calendar time. True if changed.
    The caller records a deadline the clock missed before `at` first (its `due_at` moves here)."""
    if not target_differs(clock, target, calendar):
        return False
    calendar = calendar if target.business_hours else None
    if clock.business_hours != target.business_hours or clock.calendar_id != (calendar.pk if calendar else None):
        # Count the time so far again in the new unit, from the clock's start; the paused
        # stretches are not known here, so only the running stretch is recounted exactly.
        running = clock.state == SlaClockState.RUNNING and clock.running_since is not None
        if running:
            clock.elapsed_seconds = counted_until(clock, at)
            clock.running_since = at
        clock.business_hours = target.business_hours
        clock.calendar = calendar
    clock.target_seconds = target.seconds
    return True


def overdue(clock: SlaClock, at: datetime) -> bool:
    """The clock ran past its deadline at `at` without its breach being recorded yet."""
    return (
        clock.state == SlaClockState.RUNNING
        and clock.breached_at is None
        and clock.due_at is not None
        and clock.due_at <= at
    )


def deadline_preview(target: Target, calendar: BusinessCalendar | None, start: datetime | None) -> datetime | None:
    """When a clock started at `start` with this target would be due (the policy preview)."""
    if start is None:
        return None
    try:
        return schedule_of(target.business_hours, calendar).add_seconds(start, target.seconds)
    except ValueError:
        return None  # a calendar without opening hours: never due


def earliest_due(clocks: list[SlaClock]) -> datetime | None:
    """`ticket.sla_due_at`: the earliest deadline of the running clocks, breached ones included."""
    dues = [c.due_at for c in clocks if c.state == SlaClockState.RUNNING and c.due_at is not None]
    return min(dues) if dues else None
