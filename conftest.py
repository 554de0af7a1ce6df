"""Fixtures shared by every test: fresh media storage, eager Celery, signed webhook posts."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from helpdesk.celery import app as celery_app

# Fixtures that start a server of their own in the embedded mode (SQLite, in-process Celery,
# no Redis: tests/test_run_modes.py embedded_env), whatever the suite's own database: the tests
# using them run the same in both modes. They get the marker `own_server`, so CI can run them
# once (.ci/run: in the PostgreSQL + Redis pass, not again in the embedded one).
OWN_SERVER_FIXTURES = frozenset({"desk", "desk_with_macro", "canned_desk", "embedded_server"})


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    on_postgres = settings.DB_VENDOR == "postgresql"
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    skip_redis = pytest.mark.skip(reason="needs Redis (set REDIS_URL)")
    own_server = pytest.mark.own_server
    for item in items:
        if OWN_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(own_server)
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(skip_redis)


@pytest.fixture(autouse=True)
def _media_root(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _fresh_cache(settings: Any) -> None:
    """Each test sees a cache of its own (a key prefix of its own), so nothing cached (the desk's
    view counts, per user id) outlives it. Never `cache.clear()`: on Redis that flushes the
    database the Celery broker shares, and with it the tasks of a test running beside this one."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    """Tasks run inline when queued (after commit); tests with real workers switch this off."""
    from celery import _state

    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False
    # Eager tasks run in many threads at once (concurrency tests) race on Celery's process-wide
    # "inside a task" flag and may leave it set: a later test's result.get() would then refuse.
    _state._set_task_join_will_block(False)  # type: ignore[attr-defined]  # private, not in the stubs


@pytest.fixture
def api_inbox(db: Any) -> Any:
    from channels_inbox.actions.inboxes import do_create_inbox

    inbox, _ = do_create_inbox(kind="api", name="Shop API", values={"callback_url": "http://127.0.0.1:9/hook"})
    return inbox


@pytest.fixture
def agent(db: Any) -> Any:
    from helpdesk.actions.agents import do_create_agent

    return do_create_agent(email="agent@example.com", name="Ada Agent", password="pw-agent-123", teams=["Support"])


@pytest.fixture
def admin_agent(db: Any) -> Any:
    from helpdesk.actions.agents import do_create_agent

    return do_create_agent(email="admin@example.com", name="Alan Admin", password="pw-admin-123", role="admin")


def api_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "external_id": "msg-1",
        "sender": {"identifier": "user-42", "name": "Jana Nováková", "email": "Jana@Example.com"},
        "text": "My order #881 has not arrived.",
    }
    payload.update(overrides)
    return payload


def post_signed(
    client: Client, inbox: Any, payload: Any, *, secret: str | None = None, raw: bytes | None = None
) -> Any:
    """POST to the API channel's webhook exactly as an integrator would, signed."""
    from channels_inbox.adapters.api import sign

    body = raw if raw is not None else json.dumps(payload).encode()
    signature = sign(secret or inbox.secret("signing_secret"), body)
    return client.post(
        f"/webhooks/api/{inbox.uuid}/",
        data=body,
        content_type="application/json",
        headers={"X-Switchboard-Signature": signature},
    )


@pytest.fixture
def lost_tasks(monkeypatch: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """Every task queued from here on is dropped, as if the broker lost it; returns their list."""
    from celery.app.task import Task

    dropped: list[tuple[str, tuple[Any, ...]]] = []

    def drop(self: Task, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        dropped.append((self.name, tuple(args or ())))

    monkeypatch.setattr(Task, "apply_async", drop)
    return dropped


@pytest.fixture(scope="module")
def browser(desk: dict[str, Any]) -> Iterator[Any]:
    """Debian's Chromium, one per test module, started after that module's own `desk` (the
    embedded server the module's browser tests run against)."""
    from playwright.sync_api import sync_playwright

    from tests.chromium import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
