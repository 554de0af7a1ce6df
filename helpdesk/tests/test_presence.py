"""Agent presence: connection records in the cache, the effective state in the database, the
sweep of agents whose process died, the top bar's control (with and without JavaScript)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.test import Client

from helpdesk import presence, realtime
from helpdesk.actions.presence import do_set_presence, do_set_presence_choice
from helpdesk.models import AgentProfile, Presence, User
from helpdesk.tests.conftest import logged_in

NOW = 1_800_000_000.0


class RecordingLayer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


@pytest.fixture
def layer(monkeypatch: Any) -> RecordingLayer:
    recording = RecordingLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: recording)
    return recording


def stored(user: Any) -> str:
    return str(AgentProfile.objects.get(user=user).presence)


# --- the effective state ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conns", "choice", "expected"),
    [
        ({}, "online", "offline"),
        ({"a": [NOW - 1, False]}, "online", "offline"),  # expired
        ({"a": [NOW + 9, False]}, "online", "online"),
        ({"a": [NOW + 9, False]}, None, "online"),
        ({"a": [NOW + 9, True]}, "online", "away"),  # idle
        ({"a": [NOW + 9, True], "b": [NOW + 9, False]}, "online", "online"),  # one tab active
        ({"a": [NOW + 9, True], "b": [NOW - 9, False]}, "online", "away"),  # the active one died
        ({"a": [NOW + 9, False]}, "away", "away"),
        ({"a": [NOW + 9, False]}, "offline", "offline"),  # appear offline
        ({"a": [NOW + 3, False, True]}, "online", "online"),  # closing: still connected
        ({"a": [NOW + 3, True, True]}, "online", "away"),
        ({"a": [NOW + 3, False, True], "b": [NOW + 9, True]}, "online", "away"),  # the page left behind
        ({"a": [NOW + 3, True, True], "b": [NOW + 9, False]}, "online", "online"),
    ],
)
def test_effective_presence(conns: dict[str, list[Any]], choice: str | None, expected: str) -> None:
    assert presence.compute(conns, choice, NOW) == expected


def test_a_closed_connection_counts_for_the_grace_period(agent: Any) -> None:
    # given: one open desk page
    presence.touch(agent.pk, "c1", now=NOW)
    assert presence.effective(agent.pk, now=NOW) == "online"
    # when: it closes
    presence.release(agent.pk, "c1", now=NOW)
    # then: still online within the grace, offline after it
    assert presence.effective(agent.pk, now=NOW + presence.GRACE_SECONDS - 0.5) == "online"
    assert presence.effective(agent.pk, now=NOW + presence.GRACE_SECONDS + 0.5) == "offline"
    # and a page opened within the grace (a navigation) keeps the agent online
    presence.touch(agent.pk, "c2", now=NOW + 1)
    assert presence.effective(agent.pk, now=NOW + presence.GRACE_SECONDS + 0.5) == "online"


def test_the_page_left_by_a_navigation_does_not_keep_an_idle_agent_online(agent: Any) -> None:
    presence.touch(agent.pk, "old", now=NOW)
    presence.release(agent.pk, "old", now=NOW + 1)
    presence.touch(agent.pk, "new", idle=True, now=NOW + 1)
    assert presence.effective(agent.pk, now=NOW + 2) == "away"


def test_a_connection_without_heartbeats_expires(agent: Any) -> None:
    presence.touch(agent.pk, "c1", now=NOW)
    assert presence.effective(agent.pk, now=NOW + presence.CONNECTION_TTL_SECONDS - 1) == "online"
    assert presence.effective(agent.pk, now=NOW + presence.CONNECTION_TTL_SECONDS + 1) == "offline"
    # a heartbeat moves the expiry on
    presence.touch(agent.pk, "c1", now=NOW + 60)
    assert presence.effective(agent.pk, now=NOW + presence.CONNECTION_TTL_SECONDS + 1) == "online"


def test_idle_reported_by_the_page_is_away_and_activity_is_online_again(agent: Any) -> None:
    presence.touch(agent.pk, "c1", idle=True, now=NOW)
    assert presence.effective(agent.pk, now=NOW) == "away"
    presence.touch(agent.pk, "c1", idle=False, now=NOW + 1)
    assert presence.effective(agent.pk, now=NOW + 1) == "online"


def test_concurrent_pages_of_one_agent_are_all_counted(agent: Any) -> None:
    # given: 8 pages opening at the same moment (read-modify-write under the cache lock)
    def open_page(i: int) -> None:
        presence.touch(agent.pk, f"c{i}", now=NOW)

    threads = [threading.Thread(target=open_page, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # then
    assert sorted(presence.connections(agent.pk)) == sorted(f"c{i}" for i in range(8))


# --- the database follows, once per change ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_recompute_writes_the_state_once_and_publishes_it(
    agent: Any, layer: RecordingLayer, django_assert_num_queries: Any
) -> None:
    # given
    assert stored(agent) == "offline"
    now = time.time()
    presence.touch(agent.pk, "c1", now=now)
    # when
    assert presence.recompute(agent.pk, now=now) == "online"
    # then
    profile = AgentProfile.objects.get(user=agent)
    assert (profile.presence, profile.presence_changed_at is not None) == ("online", True)
    assert layer.sent == [(f"agent.{agent.pk}", {"type": "presence.self", "presence": "online", "choice": "online"})]
    # when: a heartbeat that changes nothing
    presence.touch(agent.pk, "c1", now=now + 1)
    with django_assert_num_queries(0):
        assert presence.recompute(agent.pk, now=now + 1) == "online"
    assert len(layer.sent) == 1


@pytest.mark.django_db(transaction=True)
def test_do_set_presence_only_writes_a_change(agent: Any, layer: RecordingLayer) -> None:
    assert do_set_presence(agent.pk, "away", actor=None) is True
    changed_at = AgentProfile.objects.get(user=agent).presence_changed_at
    assert do_set_presence(agent.pk, "away", actor=None) is False
    assert AgentProfile.objects.get(user=agent).presence_changed_at == changed_at
    assert [m["presence"] for _, m in layer.sent] == ["away"]
    with pytest.raises(ValueError, match="busy"):
        do_set_presence(agent.pk, "busy", actor=None)


@pytest.mark.django_db(transaction=True)
def test_sweep_sets_agents_of_a_dead_process_offline(agent: Any, admin_agent: Any, layer: RecordingLayer) -> None:
    # given: both agents online; the agent's process then dies (no release, no heartbeats)
    presence.touch(agent.pk, "dead", now=NOW)
    presence.touch(admin_agent.pk, "alive", now=NOW)
    presence.recompute(agent.pk, now=NOW)
    presence.recompute(admin_agent.pk, now=NOW)
    later = NOW + presence.CONNECTION_TTL_SECONDS + 1
    presence.touch(admin_agent.pk, "alive", now=later - 10)
    # when
    changed = presence.sweep(now=later)
    # then
    assert changed == [agent.pk]
    assert (stored(agent), stored(admin_agent)) == ("offline", "online")


@pytest.mark.django_db(transaction=True)
def test_sweep_runs_once_per_interval_across_processes(agent: Any) -> None:
    assert presence.maybe_sweep() is True
    assert presence.maybe_sweep() is False


@pytest.mark.django_db(transaction=True)
def test_sweep_without_cache_records_after_a_cache_loss(agent: Any) -> None:
    # given: the database says online, the cache knows nothing (restarted)
    do_set_presence(agent.pk, "online", actor=None)
    # when
    presence.sweep()
    # then
    assert stored(agent) == "offline"


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_sweeps_when_no_desk_is_open(agent: Any) -> None:
    # given: the database says online, nobody has a desk open to run the heartbeat sweep
    from django.conf import settings

    from helpdesk.tasks import sweep_presence

    do_set_presence(agent.pk, "online", actor=None)
    # when: beat's schedule names the task, and it runs
    assert settings.CELERY_BEAT_SCHEDULE["sweep-presence"]["task"] == sweep_presence.name
    ran = sweep_presence.delay().get()
    # then
    assert ran == 1
    assert stored(agent) == "offline"


# --- the agent's choice ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_choosing_away_and_appear_offline(agent: Any, layer: RecordingLayer) -> None:
    # given: an open desk page
    presence.touch(agent.pk, "c1")
    presence.recompute(agent.pk)
    # when
    assert do_set_presence_choice(agent, "away", actor=agent) == "away"
    # then
    profile = AgentProfile.objects.get(user=agent)
    assert (profile.presence_choice, profile.presence) == ("away", "away")
    assert presence.cached_choice(agent.pk) == "away"
    assert layer.sent[-1] == (f"agent.{agent.pk}", {"type": "presence.self", "presence": "away", "choice": "away"})
    # when
    assert do_set_presence_choice(agent, "offline", actor=agent) == "offline"
    assert stored(agent) == "offline"
    assert do_set_presence_choice(agent, "online", actor=agent) == "online"
    assert stored(agent) == "online"


@pytest.mark.django_db(transaction=True)
def test_a_choice_while_idle_still_reaches_the_other_pages(agent: Any, layer: RecordingLayer) -> None:
    presence.touch(agent.pk, "c1", idle=True)
    presence.recompute(agent.pk)
    assert stored(agent) == "away"
    do_set_presence_choice(agent, "away", actor=agent)
    assert layer.sent[-1][1] == {"type": "presence.self", "presence": "away", "choice": "away"}


@pytest.mark.django_db
@pytest.mark.parametrize("choice", ["", "busy", "ONLINE", "x" * 10_000, "<b>away</b>"])
def test_unknown_choice_is_refused(agent: Any, choice: str) -> None:
    with pytest.raises(ValueError, match="Unknown presence"):
        do_set_presence_choice(agent, choice, actor=agent)
    assert AgentProfile.objects.get(user=agent).presence_choice == "online"


@pytest.mark.django_db
def test_nobody_sets_someone_elses_presence(agent: Any, admin_agent: Any) -> None:
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        do_set_presence_choice(agent, "away", actor=admin_agent)


@pytest.mark.django_db
def test_choice_falls_back_to_the_database_when_the_cache_forgot(agent: Any) -> None:
    AgentProfile.objects.filter(user=agent).update(presence_choice="away")
    assert presence.cached_choice(agent.pk) is None
    assert presence.choice_of(agent.pk) == "away"
    assert presence.cached_choice(agent.pk) == "away"


# --- the top bar's control ------------------------------------------------------------------


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


@pytest.mark.django_db(transaction=True)
def test_presence_form_without_javascript(agent: Any) -> None:
    client = logged_in(agent)
    page = client.get("/desk/")
    body = page.content.decode()
    # the control: a labelled select in a POST form with a submit button
    assert '<form method="post" action="/desk/presence/"' in body
    assert '<label for="presence-choice" class="visually-hidden">Set your status</label>' in body
    assert '<button type="submit" class="link" id="presence-set">Set status</button>' in body
    # when
    resp = client.post("/desk/presence/", {"choice": "away", "next": "/desk/tickets/1/"})
    # then
    assert resp.status_code == 302
    assert resp["Location"] == "/desk/tickets/1/"
    assert flashed(resp) == ["Your status: Away."]
    assert AgentProfile.objects.get(user=agent).presence_choice == "away"
    # and the next page shows the choice
    assert '<option value="away" selected>Away</option>' in client.get("/desk/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_presence_form_posted_by_the_script_answers_json(agent: Any) -> None:
    presence.touch(agent.pk, "c1")
    resp = logged_in(agent).post("/desk/presence/", {"choice": "away"}, headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"presence": "away", "choice": "away"}


@pytest.mark.django_db
@pytest.mark.parametrize("choice", ["", "busy", "x" * 5000])
def test_presence_form_refuses_unknown_choices(agent: Any, choice: str) -> None:
    client = logged_in(agent)
    resp = client.post("/desk/presence/", {"choice": choice})
    assert resp.status_code == 302
    assert flashed(resp) == [f"Unknown presence {choice[:40]!r}."]
    resp = client.post("/desk/presence/", {"choice": choice}, headers={"Accept": "application/json"})
    assert resp.status_code == 400
    assert resp.json() == {"error": f"Unknown presence {choice[:40]!r}."}
    assert AgentProfile.objects.get(user=agent).presence_choice == "online"


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/desk/", "/admin/", "javascript:alert(1)"])
def test_presence_form_never_redirects_off_the_desk(agent: Any, target: str) -> None:
    resp = logged_in(agent).post("/desk/presence/", {"choice": "away", "next": target})
    assert resp["Location"] == "/desk/"


@pytest.mark.django_db
def test_presence_form_needs_post_csrf_and_an_agent(agent: Any) -> None:
    assert logged_in(agent).get("/desk/presence/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(agent)
    assert strict.post("/desk/presence/", {"choice": "away"}).status_code == 403
    assert Client().post("/desk/presence/", {"choice": "away"}).status_code == 302  # to sign in
    visitor = User.objects.create_user("visitor", "visitor@example.com", "pw-visitor-123")
    assert logged_in(visitor).post("/desk/presence/", {"choice": "away"}).status_code == 403
    assert AgentProfile.objects.get(user=agent).presence_choice == "online"


@pytest.mark.django_db
def test_top_bar_presence_costs_no_query(agent: Any, django_assert_num_queries: Any) -> None:
    from django.template import Context, Template
    from django.test import RequestFactory

    request = RequestFactory().get("/desk/")
    request.user = agent
    presence.touch(agent.pk, "c1", idle=True)
    template = Template("{% load presence_tags %}{% my_presence as me %}{{ me.presence }} {{ me.choice }}")
    with django_assert_num_queries(0):
        assert template.render(Context({"request": request})) == "away "


# --- across processes -----------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_connection_of_another_process_counts_until_it_expires(agent: Any) -> None:
    """Another process (here: a child) records a connection and dies without closing it."""
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    code = (
        "import django, os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'helpdesk.settings')\n"
        "from django.conf import settings\n"
        "django.setup()\n"
        f"settings.CACHES['default']['KEY_PREFIX'] = {prefix!r}\n"
        "from helpdesk import presence\n"
        f"presence.touch({agent.pk}, 'other-process', now={NOW})\n"
        "os._exit(0)\n"
    )
    env = dict(os.environ)
    result = subprocess.run(  # noqa: S603 (the code is this test's own)
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.dumps(sorted(presence.connections(agent.pk))) == '["other-process"]'
    assert presence.effective(agent.pk, now=NOW + 1) == Presence.ONLINE
    presence.recompute(agent.pk, now=NOW + 1)
    assert stored(agent) == "online"
    # the process is gone: after the connection TTL the sweep puts the agent offline
    assert presence.sweep(now=NOW + presence.CONNECTION_TTL_SECONDS + 1) == [agent.pk]
    assert stored(agent) == "offline"
