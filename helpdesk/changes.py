"""The change processor: what happens after a ticket changed, in one place and one order.

Every action appends its `TicketEvent`s through `helpdesk.events` (`PendingEvents.write`),
which calls `note_changed`; once that transaction commits, the Celery task
`helpdesk.tasks.process_ticket_changes` runs `process_ticket_changes` for the ticket. Under
the ticket's row lock it takes the events after `ticket.changes_seq` and runs, in order:

1. routing rules on a new ticket: which team (helpdesk/actions/routing.py `route_new_ticket`);
2. the triggers, in their order, each at most once per change, with loop protection
   (helpdesk/actions/rules.py `run_triggers`);
3. the SLA: which policy applies, and its clocks started, paused, resumed, fulfilled, with
   their timers (helpdesk/actions/sla.py `update_ticket_sla`) — after the triggers, which may
   have changed the priority or the team. When this step itself records breaches or warnings
   (a reply, pause or close after a deadline whose timer had not run yet), the triggers run once
   more over those events only, so "SLA deadline missed" triggers wake as they do for a timer's
   breach; what that pass changed goes through the SLA step once more (no further trigger pass:
   it cannot loop);
4. the routing queue: queue or dequeue the ticket and hand it to an agent
   (helpdesk/actions/routing.py `queue_for_routing`).

Then `changes_seq` moves to the newest event, including the ones these steps appended: the
processor never wakes itself up. Steps 3 and 4 see the events the steps before them appended;
they are read again only when a step appended some (`note_changed` tells).

`ticket.status_changed_at` is kept here, and only here: the moment of the newest status change
among all the events of the change, the ones the steps appended included (a trigger that sets
pending). Every status change is a `StatusChanged` event and every event passes through here, so
this is the one place; it is set on the ticket before each step (the SLA step reads it) and saved
with `changes_seq`.

A step that fails fails the whole run: its transaction is rolled back, `changes_seq` stays, and
the exception propagates (the Celery task retries with backoff, and `sweep_ticket_changes` queues
the ticket again anyway), so a transient error (a deadlock, a serialization failure, a Redis
timeout) loses nothing. The failures are counted per ticket, change (`last_event_seq`) and step
in Django's cache; after MAX_STEP_FAILURES failures of one step that step is skipped for that
change (logged as an error naming the ticket and the step) and the others run, so a
deterministic bug cannot hold a ticket back for ever. A task that was lost is queued again by
`sweep_ticket_changes` (beat, every CHANGES_SWEEP_SECONDS), so every change is processed at
least once; processing twice finds nothing new the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from helpdesk.models import Ticket, TicketEvent, TicketEventType

logger = logging.getLogger(__name__)

# The tickets this thread is processing now: their own new events do not queue them again.
_processing: ContextVar[frozenset[int]] = ContextVar("switchboard_processing", default=frozenset())
# Of those, the ones that got new events since the processor last read them (`note_changed`).
_touched: ContextVar[set[int] | None] = ContextVar("switchboard_touched", default=None)
SWEEP_BATCH = 500

# A step that failed this many times on the same change is skipped for it.
MAX_STEP_FAILURES = 5
_FAILURES_KEY = "changes:failures:{ticket}:{seq}"
_FAILURES_TTL = 7 * 24 * 3600

# The events the SLA step records that triggers wait for ("sla_breach", "sla_warning").
SLA_MOMENTS = frozenset({TicketEventType.SLA_BREACHED, TicketEventType.SLA_WARNING})

Step = Callable[[Ticket, list[TicketEvent]], Ticket]


def note_changed(ticket_ids: Iterable[int]) -> None:
    """Queue the processor, after commit, for tickets that just got events (a ticket being
    processed is only marked: the processor reads its new events itself)."""
    from helpdesk.sideeffects import enqueue
    from helpdesk.tasks import process_ticket_changes as task

    ids = set(ticket_ids)
    busy = _processing.get()
    touched = _touched.get()
    if touched is not None:
        touched.update(ids & busy)
    for ticket_id in sorted(ids - busy):
        enqueue(task, ticket_id)


def process_ticket_changes(ticket_id: int) -> int:
    """Process a ticket's unprocessed events; returns how many there were (0: nothing to do).
    Raises what a failing step raised, with everything of this run rolled back."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().filter(pk=ticket_id).first()
        if ticket is None or ticket.changes_seq >= ticket.last_event_seq:
            return 0
        _, count = process_locked(ticket)
        return count


def process_locked(ticket: Ticket) -> tuple[Ticket, int]:
    """Process the unprocessed events of a ticket the caller has locked (`select_for_update`,
    inside its transaction): the steps, then `changes_seq` and `status_changed_at`. Returns the
    ticket as the steps left it and how many events there were. If a step raises, so does this,
    and the caller must roll back (this transaction or a savepoint around the call)."""
    token = _processing.set(_processing.get() | {ticket.pk})
    touched: set[int] = set()
    touched_token = _touched.set(touched)
    try:
        return _Run(ticket, touched).run()
    finally:
        _touched.reset(touched_token)
        _processing.reset(token)


class _Run:
    """One processor run over one ticket's change."""

    def __init__(self, ticket: Ticket, touched: set[int]) -> None:
        self.ticket = ticket
        self.ticket_id = ticket.pk
        self.start = ticket.changes_seq
        self.touched = touched
        self.failures_key = _FAILURES_KEY.format(ticket=ticket.pk, seq=ticket.last_event_seq)
        self.failures = _read_failures(self.failures_key)
        self.events = self._fetch()
        self.stored_status_at: datetime | None = ticket.status_changed_at
        self.status_at = self.stored_status_at

    def _fetch(self) -> list[TicketEvent]:
        self.touched.discard(self.ticket_id)
        return list(TicketEvent.objects.filter(ticket_id=self.ticket_id, seq__gt=self.start).order_by("seq"))

    def current(self) -> list[TicketEvent]:
        """Every event of the change; read again only if a step appended some."""
        if self.ticket_id in self.touched:
            self.events = self._fetch()
        self._note_status_time(self.events)
        return self.events

    def _note_status_time(self, events: list[TicketEvent]) -> None:
        changes = [e for e in events if e.type == TicketEventType.STATUS_CHANGED]
        if changes:
            self.status_at = changes[-1].created_at
        self.ticket.status_changed_at = self.status_at

    def step(self, name: str, step: Step, events: list[TicketEvent]) -> None:
        failed = self.failures.get(name, 0)
        if failed >= MAX_STEP_FAILURES:
            logger.error(
                "ticket %s (#%s): the %s step failed %s times on this change; it is skipped, the other steps run",
                self.ticket_id,
                self.ticket.number,
                name,
                failed,
            )
            return
        self.ticket.status_changed_at = self.status_at
        try:
            self.ticket = step(self.ticket, events)
        except Exception:
            self.failures[name] = failed + 1
            _write_failures(self.failures_key, self.failures)
            logger.exception(
                "ticket %s (#%s): the %s step failed (%s of %s); the change is rolled back and retried",
                self.ticket_id,
                self.ticket.number,
                name,
                failed + 1,
                MAX_STEP_FAILURES,
            )
            raise
        self.ticket.status_changed_at = self.status_at

    def run(self) -> tuple[Ticket, int]:
        from helpdesk.actions.routing import queue_for_routing, route_new_ticket
        from helpdesk.actions.rules import run_triggers
        from helpdesk.actions.sla import update_ticket_sla

        original = self.events
        self._note_status_time(original)
        self.step("routing rules", route_new_ticket, original)
        self.step("triggers", run_triggers, original)
        events = self.current()
        before_sla = _newest_seq(events, self.start)
        self.step("SLA", update_ticket_sla, events)
        events = self.current()
        moments = [e for e in events if e.seq > before_sla and e.type in SLA_MOMENTS]
        if moments:
            before_triggers = _newest_seq(events, self.start)
            self.step("triggers on SLA events", run_triggers, moments)
            events = self.current()
            appended = [e for e in events if e.seq > before_triggers]
            if appended:
                self.step("SLA after those triggers", update_ticket_sla, appended)
                events = self.current()
        self.step("routing queue", queue_for_routing, events)
        self.current()
        fields: dict[str, object] = {"changes_seq": F("last_event_seq")}
        if self.status_at != self.stored_status_at:
            fields["status_changed_at"] = self.status_at
        Ticket.objects.filter(pk=self.ticket_id).update(**fields)
        return self.ticket, len(original)


def _newest_seq(events: list[TicketEvent], default: int) -> int:
    return events[-1].seq if events else default


def _read_failures(key: str) -> dict[str, int]:
    try:
        value = cache.get(key)
    except Exception:
        logger.exception("could not read the change processor's failure count (%s)", key)
        return {}
    return dict(value) if isinstance(value, dict) else {}


def _write_failures(key: str, failures: dict[str, int]) -> None:
    try:
        cache.set(key, failures, _FAILURES_TTL)
    except Exception:
        logger.exception("could not count the change processor's failure (%s)", key)


def sweep_ticket_changes() -> int:
    """Queue the processor for tickets whose newest event is older than CHANGES_SWEEP_SECONDS
    and still unprocessed (index ticket_changes_pending_idx: the cost is that of the waiting
    tickets, never of all tickets). Returns how many were queued."""
    from helpdesk.tasks import process_ticket_changes as task

    cutoff = timezone.now() - timedelta(seconds=settings.CHANGES_SWEEP_SECONDS)
    newest_is_old = TicketEvent.objects.filter(
        ticket_id=OuterRef("pk"), seq=OuterRef("last_event_seq"), created_at__lt=cutoff
    )
    waiting = list(
        Ticket.objects.filter(changes_seq__lt=F("last_event_seq"))
        .filter(Exists(newest_is_old))
        .order_by("id")
        .values_list("id", flat=True)[:SWEEP_BATCH]
    )
    for ticket_id in waiting:
        try:
            task.delay(ticket_id)
        except Exception:
            logger.exception("could not queue the change processor for ticket %s", ticket_id)
            break
    return len(waiting)
