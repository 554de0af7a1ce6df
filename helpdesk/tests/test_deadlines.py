"""SLA deadlines in the workspace: list rows, the ticket page's clocks panel, live row updates.

The clocks here are SlaClock rows written directly (the display reads them; the engine that
writes them is helpdesk/actions/sla.py and has tests of its own). Times are relative to "now"
with half a minute of slack, so a second passing during a test changes no text.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from helpdesk import realtime
from helpdesk.models import SlaClock, SlaClockState, SlaMetric, SlaPolicy, Ticket, TicketStatus
from helpdesk.templatetags.sla_tags import countdown_text, deadline_html, sla_panel_of
from helpdesk.tests.conftest import logged_in, new_ticket

pytestmark = pytest.mark.django_db


def _now() -> datetime:
    return timezone.now()


def clock(ticket: Ticket, metric: str = SlaMetric.FIRST_REPLY, *, instance: int = 1, **fields: Any) -> SlaClock:
    now = _now()
    values: dict[str, Any] = {
        "state": SlaClockState.RUNNING,
        "target_seconds": 3600,
        "started_at": now - timedelta(minutes=30),
        "running_since": now - timedelta(minutes=30),
    }
    values.update(fields)
    return SlaClock.objects.create(ticket=ticket, metric=metric, instance=instance, **values)


def row_of(body: str, number: int) -> str:
    found = re.search(rf'<tr class="[^"]*" data-number="{number}">.*?</tr>', body, re.S)
    assert found, f"no row for #{number}"
    return found.group(0)


# --- the words ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "text", "overdue"),
    [
        (timedelta(seconds=20), "in <1 min", False),
        (timedelta(minutes=25, seconds=10), "in 25 min", False),
        (timedelta(hours=3, minutes=59), "in 3 h", False),
        (timedelta(days=2, hours=5), "in 2 d", False),
        (-timedelta(seconds=5), "overdue <1 min", True),
        (-timedelta(minutes=10, seconds=30), "overdue 10 min", True),
        (-timedelta(hours=26), "overdue 1 d", True),
    ],
)
def test_countdown_says_how_long_is_left_or_how_late(offset: timedelta, text: str, overdue: bool) -> None:
    # given
    now = datetime(2026, 3, 12, 13, 0, tzinfo=timezone.get_fixed_timezone(0))
    # when / then
    assert countdown_text(now + offset, now) == (text, overdue)


def test_deadline_element_carries_the_exact_time_for_the_script_and_the_title() -> None:
    # given
    now = datetime(2026, 3, 12, 13, 0, tzinfo=timezone.get_fixed_timezone(0))
    due = now - timedelta(minutes=10, seconds=30)
    # when
    html = str(deadline_html(due, now=now, metric="First reply"))
    # then
    assert html == (
        '<span class="deadline overdue" data-due="2026-03-12T12:49:30+00:00" '
        'title="First reply due 2026-03-12 12:49 UTC">overdue 10 min</span>'
    )
    assert deadline_html(None, now=now) == ""


# --- list rows ------------------------------------------------------------------------------------


def test_each_row_shows_its_next_deadline_from_the_ticket(admin_agent: Any) -> None:
    # given: no SLA, due in 25 minutes, 10 minutes overdue, and a solved ticket that still has a copy
    now = _now()
    plain = new_ticket()
    soon = new_ticket(sla_due_at=now + timedelta(minutes=25, seconds=30))
    late = new_ticket(sla_due_at=now - timedelta(minutes=10, seconds=10))
    solved = new_ticket(status=TicketStatus.SOLVED, sla_due_at=now + timedelta(minutes=5))
    # when
    body = logged_in(admin_agent).get("/desk/", {"view": "all"}).content.decode()
    # then
    assert 'class="deadline' not in row_of(body, plain.number)
    assert 'class="deadline' not in row_of(body, solved.number)
    assert re.search(
        r'<span class="deadline" data-due="[^"]+" title="Due [^"]+">in 25 min</span>', row_of(body, soon.number)
    )
    assert re.search(r'<span class="deadline overdue"[^>]*>overdue 10 min</span>', row_of(body, late.number))


def test_rows_read_the_deadline_without_a_query_per_row(admin_agent: Any) -> None:
    # given: one page with 2 tickets, then with 12, all with deadlines and clocks
    client = logged_in(admin_agent)
    now = _now()

    def make(n: int) -> None:
        for i in range(n):
            t = new_ticket(sla_due_at=now + timedelta(hours=i + 1))
            clock(t, due_at=t.sla_due_at)

    def count() -> int:
        client.get("/desk/", {"view": "all"})  # the counts get cached
        with CaptureQueriesContext(connection) as ctx:
            client.get("/desk/", {"view": "all"})
        return len(ctx.captured_queries)

    make(2)
    few = count()
    make(10)
    # when / then
    assert count() == few


# --- the ticket page ------------------------------------------------------------------------------


@pytest.fixture
def policy(db: Any) -> SlaPolicy:
    return SlaPolicy.objects.create(name="Standard", targets={})


def test_ticket_page_shows_each_live_clock_the_policy_and_the_history(admin_agent: Any, policy: SlaPolicy) -> None:
    # given: first reply met late, next reply running (due in 25 min), resolution paused and breached before
    now = _now()
    ticket = new_ticket(sla_policy=policy, sla_due_at=now + timedelta(minutes=25, seconds=30))
    clock(
        ticket,
        SlaMetric.FIRST_REPLY,
        policy=policy,
        state=SlaClockState.FULFILLED,
        running_since=None,
        breached_at=now - timedelta(hours=1),
        fulfilled_at=now - timedelta(minutes=40),
    )
    clock(ticket, SlaMetric.NEXT_REPLY, instance=2, policy=policy, due_at=ticket.sla_due_at)
    clock(
        ticket,
        SlaMetric.RESOLUTION,
        policy=policy,
        state=SlaClockState.PAUSED,
        running_since=None,
        elapsed_seconds=1200,
        breached_at=now - timedelta(minutes=5),
    )
    # when
    body = logged_in(admin_agent).get(f"/desk/tickets/{ticket.number}/").content.decode()
    # then
    section = re.search(r'<section class="sla-clocks".*?</section>', body, re.S)
    assert section, body
    html = section.group(0)
    assert '<span class="sla-policy">Standard</span>' in html
    live = re.search(r'<ul class="sla-live">.*?</ul>', html, re.S)
    assert live
    items = re.findall(r"<li.*?</li>", live.group(0), re.S)
    assert len(items) == 2
    assert "Next reply #2" in items[0]
    assert ">in 25 min</span>" in items[0]
    assert "breached" not in items[0]
    assert "Resolution" in items[1]
    assert '<span class="sla-paused">paused</span>' in items[1]
    assert '<span class="badge breached">breached</span>' in items[1]
    history = re.search(r'<details class="sla-history">.*?</details>', html, re.S)
    assert history
    assert "First reply" in history.group(0)
    assert "breached" in history.group(0)
    # and the header line has the next deadline
    meta = re.search(r'<p class="meta" id="ticket-meta".*?</p>', body, re.S)
    assert meta
    assert "next deadline" in meta.group(0)
    assert "in 25 min" in meta.group(0)


def test_ticket_page_shows_overdue_in_the_header(admin_agent: Any, policy: SlaPolicy) -> None:
    # given
    now = _now()
    ticket = new_ticket(sla_policy=policy, sla_due_at=now - timedelta(minutes=3, seconds=10))
    clock(ticket, policy=policy, due_at=ticket.sla_due_at, breached_at=ticket.sla_due_at)
    # when
    body = logged_in(admin_agent).get(f"/desk/tickets/{ticket.number}/").content.decode()
    # then
    assert re.search(r'<span class="deadline overdue"[^>]*>overdue 3 min</span>', body)


def test_ticket_without_sla_shows_no_panel_and_costs_no_query(admin_agent: Any, django_assert_num_queries: Any) -> None:
    # given
    ticket = Ticket.objects.get(pk=new_ticket().pk)
    # when / then
    with django_assert_num_queries(0):
        panel = sla_panel_of(ticket)
    assert not panel.shown
    body = logged_in(admin_agent).get(f"/desk/tickets/{ticket.number}/").content.decode()
    assert "sla-clocks" not in body
    assert 'class="deadline' not in body


def test_the_clocks_panel_is_one_query(policy: SlaPolicy, django_assert_num_queries: Any) -> None:
    # given: a ticket fetched without its policy, with live and finished clocks of that policy
    now = _now()
    t = new_ticket(sla_policy=policy, sla_due_at=now + timedelta(hours=1))
    clock(t, SlaMetric.RESOLUTION, policy=policy, due_at=now + timedelta(hours=5))
    for i in range(1, 6):
        clock(t, SlaMetric.NEXT_REPLY, instance=i, policy=policy, state=SlaClockState.FULFILLED, fulfilled_at=now)
    clock(t, SlaMetric.NEXT_REPLY, instance=6, policy=policy, due_at=now + timedelta(hours=1))
    ticket = Ticket.objects.get(pk=t.pk)
    # when
    with django_assert_num_queries(1):
        panel = sla_panel_of(ticket)
    # then: live ones by deadline, the policy's name from the clocks
    assert panel.policy_name == "Standard"
    assert [r.label for r in panel.live] == ["Next reply #6", "Resolution"]
    assert len(panel.history) == 5


def test_the_policy_name_shows_before_any_clock_in_two_queries(
    policy: SlaPolicy, django_assert_num_queries: Any
) -> None:
    # given: a policy applies but no clock has started (e.g. no target for this priority)
    ticket = Ticket.objects.get(pk=new_ticket(sla_policy=policy).pk)
    # when
    with django_assert_num_queries(2):
        panel = sla_panel_of(ticket)
    # then
    assert panel.shown
    assert panel.policy_name == "Standard"
    assert not panel.live


def test_ticket_page_query_count_does_not_grow_with_clocks(admin_agent: Any, policy: SlaPolicy) -> None:
    # given
    client = logged_in(admin_agent)
    now = _now()

    def page_queries(n: int) -> int:
        t = new_ticket(sla_policy=policy, sla_due_at=now + timedelta(hours=1))
        for i in range(1, n + 1):
            clock(t, SlaMetric.NEXT_REPLY, instance=i, policy=policy, due_at=now + timedelta(hours=i))
        client.get(f"/desk/tickets/{t.number}/")
        with CaptureQueriesContext(connection) as ctx:
            client.get(f"/desk/tickets/{t.number}/")
        return len(ctx.captured_queries)

    # when / then
    assert page_queries(1) == page_queries(8)


# --- live rows ------------------------------------------------------------------------------------


class RecordingLayer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["applied", "warning", "breached", "fulfilled"])
def test_an_sla_event_refreshes_the_lists_and_the_row_shows_the_new_deadline(
    admin_agent: Any, monkeypatch: Any, kind: str
) -> None:
    from helpdesk.events import PendingEvents, SlaApplied, SlaBreached, SlaFulfilled, SlaWarning

    # given: the list shows a ticket due in 3 hours; the change processor is not under test here
    recording = RecordingLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: recording)
    monkeypatch.setattr("helpdesk.changes.note_changed", lambda ids: None)
    client = logged_in(admin_agent)
    now = _now()
    ticket = new_ticket(sla_due_at=now + timedelta(hours=3, minutes=30))
    assert ">in 3 h</span>" in row_of(client.get("/desk/", {"view": "all"}).content.decode(), ticket.number)
    payloads = {
        "applied": SlaApplied(policy_id=None, name="Standard"),
        "warning": SlaWarning(clock_id=1, metric="first_reply", instance=1, due_at=now.isoformat()),
        "breached": SlaBreached(clock_id=1, metric="first_reply", instance=1, due_at=now.isoformat()),
        "fulfilled": SlaFulfilled(clock_id=1, metric="first_reply", instance=1, breached=False, seconds=60.0),
    }
    # when: the SLA engine moves the deadline and appends its event in one transaction
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        Ticket.objects.filter(pk=ticket.pk).update(sla_due_at=now - timedelta(minutes=10, seconds=10))
        events = PendingEvents(locked)
        events.add(payloads[kind])
        events.write(save_seq=True)
    # then: the lists' group heard of it, and the partial the list then fetches has the new deadline
    assert any(group == realtime.ALL_TICKETS_GROUP and m["number"] == ticket.number for group, m in recording.sent)
    partial = client.get("/desk/", {"view": "all", "partial": "1"}).content.decode()
    assert re.search(r'class="deadline overdue"[^>]*>overdue 10 min</span>', row_of(partial, ticket.number))


def test_static_script_is_on_every_desk_page(admin_agent: Any) -> None:
    # when
    body = logged_in(admin_agent).get("/desk/").content.decode()
    # then
    assert "desk/deadlines.js" in body
