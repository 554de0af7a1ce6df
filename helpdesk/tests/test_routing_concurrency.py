"""Routing under concurrency on PostgreSQL: workers assigning from the same queue at once never
put an agent over capacity and never assign one ticket twice (helpdesk/actions/routing.py:
the ticket row locked with SKIP LOCKED, then the candidates' profile rows in id order, then the
load counted)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from helpdesk.actions.routing import do_assign_queued_tickets
from helpdesk.models import RoutingMode, Ticket, TicketEvent, TicketEventType, TicketStatus, User
from helpdesk.tests.test_routing import NOW, agent, team, ticket

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def at_once(workers: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `workers` threads released together; each thread its own connection."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 — reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung (deadlock?)"
    assert not errors, errors
    return results


def load(user: User, channel: str = "email") -> int:
    return Ticket.objects.filter(assignee=user, status__in=["new", "open"], channel=channel).count()


def routing_assignments() -> Counter[int]:
    return Counter(
        TicketEvent.objects.filter(type=TicketEventType.ASSIGNED, data__via="routing").values_list(
            "ticket_id", flat=True
        )
    )


def test_workers_assigning_one_queue_at_once_respect_capacity(lost_tasks: Any) -> None:
    # given: three agents with room for 3 email tickets each, one of them already holding one;
    # 40 queued tickets
    rr = team("Support", RoutingMode.LEAST_LOADED)
    agents = [agent(f"c{i}", capacity={"email": 3}) for i in range(3)]
    ticket(rr, queued_at=None, status=TicketStatus.OPEN, assignee=agents[0])
    queued = [ticket(rr, queued_at=NOW + timedelta(seconds=i)) for i in range(40)]
    # when: six workers run the assignment at the same moment, three rounds each
    results = at_once(6, lambda i: sum(do_assign_queued_tickets(rr.pk) for _ in range(3)))
    # then: exactly the free room was filled, nobody is over capacity, no ticket twice
    assert sum(results) == 8
    assert [load(a) for a in agents] == [3, 3, 3]
    twice = [pk for pk, n in routing_assignments().items() if n > 1]
    assert twice == []
    assert Ticket.objects.filter(pk__in=[t.pk for t in queued], assignee__isnull=False).count() == 8
    assert (
        Ticket.objects.filter(pk__in=[t.pk for t in queued], assignee__isnull=True, queued_at__isnull=False).count()
        == 32
    )


def test_two_teams_sharing_agents_assign_at_once_without_deadlock_or_overflow(lost_tasks: Any) -> None:
    # given: two round-robin teams whose agents overlap (profile locks of both runs intersect)
    alpha, beta = team("Alpha"), team("Beta")
    shared = [agent(f"s{i}", teams=["Alpha", "Beta"], capacity={"*": 2}) for i in range(3)]
    only_alpha = agent("a0", teams=["Alpha"], capacity={"*": 2})
    only_beta = agent("b0", teams=["Beta"], capacity={"*": 2})
    for i in range(15):
        ticket(alpha, queued_at=NOW + timedelta(seconds=i))
        ticket(beta, queued_at=NOW + timedelta(seconds=i), channel="api")
    # when: workers for both teams and for "every team" at once
    plan = [alpha.pk, beta.pk, None, alpha.pk, beta.pk, None]
    results = at_once(len(plan), lambda i: sum(do_assign_queued_tickets(plan[i]) for _ in range(2)))
    # then: each agent has at most 2 per channel kind; shared agents may hold 2 email + 2 api
    for user in [*shared, only_alpha]:
        assert load(user, "email") <= 2
    for user in [*shared, only_beta]:
        assert load(user, "api") <= 2
    # all room used: alpha (email) 4 agents × 2, beta (api) 4 agents × 2
    assert sum(results) == 16
    assert all(n == 1 for n in routing_assignments().values())


def test_a_manual_assignment_racing_routing_never_gives_one_ticket_twice(lost_tasks: Any) -> None:
    # given: one queued ticket; an agent takes it by hand while workers route it
    from helpdesk.actions.tickets import do_assign_ticket

    rr = team("Support")
    agent("r0")
    taker = agent("taker", teams=["Other"])
    waiting = ticket(rr)

    def work(i: int) -> int:
        if i == 0:
            do_assign_ticket(Ticket.objects.get(pk=waiting.pk), assignee=taker, actor=None)
            return 0
        return do_assign_queued_tickets(rr.pk)

    # when
    results = at_once(4, work)
    # then: one owner, and routing assigned it at most once (before the hand, or not at all)
    final = Ticket.objects.get(pk=waiting.pk)
    assert final.assignee_id == taker.pk  # the hand comes last or routing found it taken
    assert sum(results) <= 1
    assert routing_assignments()[waiting.pk] <= 1
