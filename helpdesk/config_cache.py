"""Configuration rows (business rules, SLA policies, routing rules) cached in each process.

`VersionedCache` loads its rows once per process and reuses them while a version key in
Django's cache still holds the version they were loaded under, and for at most
`max_age_seconds` (a safety net for a change written without `changed()`, e.g. in the Django
admin). So a ticket change costs no query for its configuration once warm.

- The first version is random and made with `cache.add`: a cleared or lost cache never hands
  out a version an old process-local copy was loaded under.
- `changed()` writes a new random version now (this process sees its own change at once) and
  again after commit (`helpdesk.sideeffects.after_commit`): a process that reloaded between the
  write and the commit read the old rows, and reloads once more.
- Thread safety (the threaded Celery pool): the loaded rows are one tuple, replaced whole. Two
  threads may both load after a change (one query each); none sees a half-updated entry, and a
  slow loader storing rows of an older version only costs the next caller a reload.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from django.core.cache import cache

from helpdesk.sideeffects import after_commit

T = TypeVar("T")

DEFAULT_MAX_AGE_SECONDS = 60.0


class VersionedCache(Generic[T]):
    """Rows loaded once per process and reused while a version key in Django's cache holds (and
    for at most max_age_seconds); `changed()` makes every process reload."""

    def __init__(self, key: str, load: Callable[[], T], *, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS) -> None:
        self.key = key
        self.max_age_seconds = max_age_seconds
        self._load = load
        # (version, monotonic time of loading, rows), swapped whole; None before the first load.
        self._entry: tuple[str, float, T] | None = None

    def version(self) -> str | None:
        """The version in Django's cache, made up (at random) when the cache lost it; None only
        when the cache keeps nothing (a dummy cache: then every get reloads)."""
        version = cache.get(self.key)
        if version is None:
            cache.add(self.key, uuid.uuid4().hex, None)
            version = cache.get(self.key)
        return None if version is None else str(version)

    def get(self) -> T:
        """The rows: no query while the version in the cache is the one loaded and younger than
        max_age_seconds, else one load."""
        version = self.version()
        entry = self._entry
        if (
            version is not None
            and entry is not None
            and entry[0] == version
            and time.monotonic() - entry[1] < self.max_age_seconds
        ):
            return entry[2]
        loaded_at = time.monotonic()  # before the load: rows never look younger than they are
        rows = self._load()
        if version is not None:
            self._entry = (version, loaded_at, rows)
        return rows

    def changed(self) -> None:
        """Every process reloads: a new version now, and another after commit."""
        self._bump()
        after_commit(self._bump)

    def forget(self) -> None:
        """Drop this process's copy (the next get loads)."""
        self._entry = None

    def _bump(self) -> None:
        cache.set(self.key, uuid.uuid4().hex, None)
