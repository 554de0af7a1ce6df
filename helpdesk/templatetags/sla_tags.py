"""SLA deadlines on desk pages: the countdown of list rows and the ticket page's clocks panel.

A row's countdown reads `ticket.sla_due_at` only (no query); the ticket page's panel reads the
ticket's clocks in one query (`sla_panel`). The text is rendered here and then kept current in
the browser by static/desk/deadlines.js, which reads the `data-due` attribute every 30 s and
writes the same words (`countdown_text` and its JavaScript twin must agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django import template
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from helpdesk.models import SlaClock, SlaClockState, SlaMetric, SlaPolicy
from helpdesk.models.ticket import UNSOLVED_STATUSES

register = template.Library()

# Clocks the ticket page shows at most: the live ones first, then the newest of the others.
PANEL_CLOCKS_MAX = 30
_LIVE = (SlaClockState.RUNNING, SlaClockState.PAUSED)


def _span(seconds: float) -> str:
    """A duration in the largest whole unit: "25 min", "3 h", "2 d" ("<1 min" under a minute)."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "<1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h"
    return f"{hours // 24} d"


def countdown_text(due: datetime, now: datetime) -> tuple[str, bool]:
    """What a deadline says at `now`: ("in 25 min", False) or ("overdue 10 min", True)."""
    left = (due - now).total_seconds()
    if left >= 0:
        return f"in {_span(left)}", False
    return f"overdue {_span(-left)}", True


def local_time(when: datetime) -> str:
    """The exact time in the desk's time zone, e.g. "2026-03-12 14:05 CET"."""
    return timezone.localtime(when).strftime("%Y-%m-%d %H:%M %Z")


def deadline_html(due: datetime | None, *, now: datetime | None = None, metric: str = "") -> SafeString | str:
    """The countdown element of a deadline ("" without one)."""
    if due is None:
        return ""
    text, overdue = countdown_text(due, now or timezone.now())
    what = f"{metric} due" if metric else "Due"
    title = f"{what} {local_time(due)}"
    return format_html(
        '<span class="deadline{}" data-due="{}" title="{}">{}</span>',
        " overdue" if overdue else "",
        due.isoformat(),
        title,
        text,
    )


@register.simple_tag
def deadline(due: datetime | None, metric: str = "") -> SafeString | str:
    """`{% deadline ticket.sla_due_at %}`: "in 25 min", "overdue 10 min" (red), nothing without SLA."""
    return deadline_html(due, metric=metric)


@register.simple_tag
def ticket_deadline(ticket: Any) -> SafeString | str:
    """`{% ticket_deadline t %}`: the ticket's next deadline (`sla_due_at`, no query) while unsolved."""
    if ticket.sla_due_at is None or ticket.status not in UNSOLVED_STATUSES:
        return ""
    return deadline_html(ticket.sla_due_at)


@dataclass
class ClockRow:
    clock: SlaClock
    label: str
    breached: bool

    @property
    def paused(self) -> bool:
        return self.clock.state == SlaClockState.PAUSED


@dataclass
class SlaPanel:
    """The ticket page's SLA section: the policy, the live clocks, the finished ones."""

    policy_name: str
    live: list[ClockRow] = field(default_factory=list)
    history: list[ClockRow] = field(default_factory=list)

    @property
    def shown(self) -> bool:
        return bool(self.policy_name or self.live or self.history)


def _label(clock: SlaClock) -> str:
    label = str(SlaMetric(clock.metric).label) if clock.metric in SlaMetric.values else clock.metric
    if clock.metric in (SlaMetric.NEXT_REPLY, SlaMetric.PERIODIC_UPDATE) and clock.instance > 1:
        label += f" #{clock.instance}"
    return label


def sla_panel_of(ticket: Any) -> SlaPanel:
    """The ticket's clocks in one query (live ones first, by deadline); the policy's name comes
    from those clocks, or from the ticket when it holds the policy already; else one more query.

    A ticket no policy applies to (and without a deadline) shows nothing and costs nothing, also
    when it kept finished clocks of a policy removed from it.
    """
    if ticket.pk is None or (ticket.sla_policy_id is None and ticket.sla_due_at is None):
        # No SLA applies: no query (a ticket page without SLA costs what it did before).
        return SlaPanel(policy_name="")
    clocks = list(
        SlaClock.objects.filter(ticket_id=ticket.pk)
        .exclude(state=SlaClockState.CANCELLED, breached_at__isnull=True)
        .select_related("policy")
        .annotate(live=Case(When(state__in=_LIVE, then=Value(0)), default=Value(1), output_field=IntegerField()))
        .order_by("live", "-id")[:PANEL_CLOCKS_MAX]
    )
    panel = SlaPanel(policy_name="")
    for clock in clocks:
        row = ClockRow(clock=clock, label=_label(clock), breached=clock.breached_at is not None)
        (panel.live if clock.state in _LIVE else panel.history).append(row)
    # Running ones by deadline, then the paused ones.
    panel.live.sort(key=lambda r: (r.clock.due_at is None, r.clock.due_at or r.clock.started_at, r.clock.pk))
    policy_id = ticket.sla_policy_id
    if policy_id is not None:
        cached = ticket._state.fields_cache.get("sla_policy")
        if cached is not None:
            panel.policy_name = cached.name
        else:
            named = next((c.policy.name for c in clocks if c.policy_id == policy_id and c.policy), None)
            if named is None:
                named = SlaPolicy.objects.filter(pk=policy_id).values_list("name", flat=True).first()
            panel.policy_name = named or ""
    return panel


@register.simple_tag
def sla_panel(ticket: Any) -> SlaPanel:
    """`{% sla_panel ticket as sla %}`: see `sla_panel_of`."""
    return sla_panel_of(ticket)
