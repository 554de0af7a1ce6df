"""helpdesk/config_cache.py: per-process rows under a version kept in Django's cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from helpdesk import config_cache
from helpdesk.config_cache import VersionedCache

pytestmark = pytest.mark.django_db

KEY = "test:config-cache:version"


class Loader:
    """Counts its loads and returns the number of the load."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.calls


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_held_version_reuses_the_rows() -> None:
    load = Loader()
    rows = VersionedCache(KEY, load)
    assert rows.get() == 1
    assert rows.get() == 1
    assert load.calls == 1


def test_changed_reloads_in_this_process_and_others() -> None:
    # given: two processes' copies, both loaded
    load, other_load = Loader(), Loader()
    here, there = VersionedCache(KEY, load), VersionedCache(KEY, other_load)
    here.get(), there.get()
    # when
    here.changed()
    # then: both reload once, then hold again
    assert (here.get(), there.get()) == (2, 2)
    assert (here.get(), there.get()) == (2, 2)


def test_the_version_changes_again_after_commit(django_capture_on_commit_callbacks: Any) -> None:
    # given: a change inside a transaction, and a process that reloaded before the commit
    load = Loader()
    rows = VersionedCache(KEY, load)
    rows.get()
    with django_capture_on_commit_callbacks(execute=True):
        rows.changed()
        assert rows.get() == 2  # read the rows before the commit
        before_commit = cache.get(KEY)
    # then: the commit bumped the version once more, so it reloads
    assert cache.get(KEY) != before_commit
    assert rows.get() == 3


def test_a_lost_version_reloads_and_a_new_one_is_random() -> None:
    load = Loader()
    rows = VersionedCache(KEY, load)
    rows.get()
    first = cache.get(KEY)
    cache.delete(KEY)
    assert rows.get() == 2
    assert cache.get(KEY) not in (None, first)


def test_another_process_writing_a_version_reloads() -> None:
    load = Loader()
    rows = VersionedCache(KEY, load)
    rows.get()
    cache.set(KEY, "from-another-process", None)
    assert rows.get() == 2


def test_rows_older_than_max_age_reload(monkeypatch: Any) -> None:
    clock = Clock()
    monkeypatch.setattr(config_cache, "time", clock)
    load = Loader()
    rows = VersionedCache(KEY, load, max_age_seconds=60)
    rows.get()
    clock.now += 59
    assert rows.get() == 1
    clock.now += 2
    assert rows.get() == 2
    assert rows.get() == 2


def test_the_three_caches_default_to_a_minute() -> None:
    from helpdesk.actions import routing, rules, sla

    for versioned in (rules._cached, sla._policies_cache, routing._local):
        assert isinstance(versioned, VersionedCache)
        assert versioned.max_age_seconds == 60
    assert len({rules._cached.key, sla._policies_cache.key, routing._local.key}) == 3
