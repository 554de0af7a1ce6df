"""Business calendars: validation of their data and the arithmetic of business time.

A calendar (models.BusinessCalendar) is a time zone, weekly opening periods in local wall time and
whole-day holidays. `Schedule` is its arithmetic, built once per calendar version
(`schedule_for`, cached per (id, updated_at)) and immutable.

The meaning of "business time" (docs/calendars.md has the worked examples): a UTC instant is
business time when its wall-clock time in the calendar's zone falls inside an opening period of
that local weekday and that local date is not a holiday. Everything follows from that one rule:

- on a fall-back night the repeated wall-clock hour happens twice, so a period 01:00–03:00 on
  Europe/Prague's 25 October 2026 is three real hours;
- wall-clock times inside a spring-forward gap never happen, so a period 02:00–03:00 on 29 March
  2026 there is no business time at all, and 01:00–04:00 is two real hours;
- a period ending at 24:00 runs to the next local midnight; one starting at 00:00 the next day
  continues it without a gap.

The arithmetic walks local days, not minutes: a day whose UTC offset is the same from well before
to well after it (nearly every day) is a couple of additions per period; on a day where the offset
changes, the instants of the change are found by bisection on `utcoffset` (to the second) and each
constant-offset stretch is intersected with the periods. Instants are integers (microseconds since
the epoch), so results are exact. Day results are cached inside the Schedule.
"""

from __future__ import annotations

import difflib
import functools
import heapq
import itertools
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, available_timezones

if TYPE_CHECKING:
    from helpdesk.models import BusinessCalendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
MAX_NAME = 100
MAX_PERIODS_PER_DAY = 10
MAX_HOLIDAYS = 500
MAX_HOLIDAY_NAME = 100

_TIME = re.compile(r"^(\d{2}):(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_ONE_US = timedelta(microseconds=1)
_US = 1_000_000
_MINUTE = 60 * _US
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
# No zone's offset (LMT included: Asia/Manila was -15:56, America/Sitka +14:58) is beyond 16 hours,
# so the instants of a local date lie within 16 hours of its naive UTC reading.
_MARGIN = 16 * _HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# How far ahead add_seconds / next_open look before giving up (500 holidays on the only open
# weekday are under 10 years): a calendar that never opens again fails clearly, never loops.
MAX_DAYS_AHEAD = 366 * 12
_DAY_CACHE_SIZE = 4096


class InvalidCalendar(ValueError):
    """The calendar data is not valid; `errors` has one sentence per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = errors


# --- validation -----------------------------------------------------------------------------------


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_zone(time_zone: Any, errors: list[str]) -> str:
    if not isinstance(time_zone, str) or not time_zone.strip():
        errors.append("The time zone is required (an IANA name such as Europe/Prague).")
        return "UTC"
    zone = time_zone.strip()
    if zone not in _known_zones():
        close = difflib.get_close_matches(zone, sorted(_known_zones()), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        errors.append(f"“{zone}” is not a known time zone; use an IANA name such as Europe/Prague.{hint}")
    return zone


def _minutes(text: Any) -> int | None:
    """'HH:MM' (00:00–24:00) as minutes after midnight, or None."""
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    hh, mm = int(match.group(1)), int(match.group(2))
    if mm > 59 or hh > 24 or (hh == 24 and mm != 0):
        return None
    return hh * 60 + mm


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _check_day(key: str, raw: Any, errors: list[str]) -> list[list[str]]:
    day = WEEKDAY_NAMES[key]
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        errors.append(f'{day}: the opening periods must be a list of [start, end] pairs like ["09:00", "17:00"].')
        return []
    if len(raw) > MAX_PERIODS_PER_DAY:
        errors.append(f"{day}: at most {MAX_PERIODS_PER_DAY} opening periods a day ({len(raw)} given).")
        return []
    periods: list[tuple[int, int]] = []
    for number, period in enumerate(raw, start=1):
        if not isinstance(period, list | tuple) or len(period) != 2:
            errors.append(f'{day}: period {number} must be a pair of times like ["09:00", "17:00"].')
            continue
        start, end = _minutes(period[0]), _minutes(period[1])
        bad = [value for value, parsed in ((period[0], start), (period[1], end)) if parsed is None]
        if bad:
            for value in bad:
                errors.append(f"{day}: “{value}” is not a time; write HH:MM between 00:00 and 24:00.")
            continue
        assert start is not None
        assert end is not None
        if end < start:
            errors.append(f"{day}: {_hhmm(start)}–{_hhmm(end)} ends before it starts.")
        elif end == start:
            errors.append(f"{day}: {_hhmm(start)}–{_hhmm(end)} is empty; the end must be after the start.")
        else:
            periods.append((start, end))
    periods.sort()
    for (s1, e1), (s2, e2) in itertools.pairwise(periods):
        if s2 < e1:
            errors.append(f"{day}: {_hhmm(s1)}–{_hhmm(e1)} and {_hhmm(s2)}–{_hhmm(e2)} overlap.")
    return [[_hhmm(start), _hhmm(end)] for start, end in periods]


def _check_hours(hours: Any, errors: list[str]) -> dict[str, list[list[str]]]:
    if hours is None:
        return {}
    if not isinstance(hours, dict):
        errors.append(
            "The hours must be an object mapping weekdays (mon … sun) to opening periods, "
            'e.g. {"mon": [["09:00", "17:00"]]}.'
        )
        return {}
    for key in hours:
        if key not in WEEKDAY_NAMES:
            errors.append(f"“{key}” is not a weekday; use mon, tue, wed, thu, fri, sat or sun.")
    normalized: dict[str, list[list[str]]] = {}
    for key in WEEKDAYS:
        if key in hours:
            periods = _check_day(key, hours[key], errors)
            if periods:
                normalized[key] = periods
    return normalized


def _check_holidays(holidays: Any, errors: list[str]) -> list[dict[str, str]]:
    if holidays is None:
        return []
    if not isinstance(holidays, list | tuple):
        errors.append('The holidays must be a list of {"date": "YYYY-MM-DD", "name": "…"} objects.')
        return []
    if len(holidays) > MAX_HOLIDAYS:
        errors.append(f"At most {MAX_HOLIDAYS} holidays ({len(holidays)} given).")
    seen: dict[str, int] = {}
    normalized: list[dict[str, str]] = []
    for number, item in enumerate(holidays, start=1):
        if not isinstance(item, dict):
            errors.append(f"Holiday {number} must be an object with a date and a name.")
            continue
        for field in item:
            if field not in ("date", "name"):
                errors.append(f"Holiday {number}: unknown field “{field}”; a holiday has a date and a name.")
        raw_date, name = item.get("date"), item.get("name", "")
        day: date | None = None
        if isinstance(raw_date, str) and _DATE.match(raw_date.strip()):
            try:
                day = date.fromisoformat(raw_date.strip())
            except ValueError:
                day = None
        if day is None:
            shown = raw_date if isinstance(raw_date, str) else repr(raw_date)
            errors.append(f"Holiday {number}: “{shown}” is not a date; write YYYY-MM-DD, e.g. 2026-12-25.")
        if name is None:
            name = ""
        if not isinstance(name, str):
            errors.append(f"Holiday {number}: the name must be text.")
            name = ""
        name = name.strip()
        if len(name) > MAX_HOLIDAY_NAME:
            errors.append(f"Holiday {number}: the name is longer than {MAX_HOLIDAY_NAME} characters.")
        if day is None:
            continue
        iso = day.isoformat()
        if iso in seen:
            errors.append(f"Holiday {number}: {iso} is already listed (holiday {seen[iso]}).")
            continue
        seen[iso] = number
        normalized.append({"date": iso, "name": name})
    normalized.sort(key=lambda holiday: holiday["date"])
    return normalized


def check_name(name: Any) -> tuple[str, list[str]]:
    """The stripped name and what is wrong with it (uniqueness is the save action's check)."""
    if not isinstance(name, str):
        return "", ["The name must be text."]
    name = name.strip()
    if not name:
        return name, ["The calendar needs a name."]
    if len(name) > MAX_NAME:
        return name, [f"The name is longer than {MAX_NAME} characters ({len(name)})."]
    return name, []


def validate_calendar(
    *, name: str, time_zone: str, hours: Any, holidays: Any
) -> tuple[str, dict[str, list[list[str]]], list[dict[str, str]]]:
    """Check a calendar's data; return it normalized as (time_zone, hours, holidays).

    Raises InvalidCalendar listing every problem. Normalized: hours keep only the weekdays with
    periods (mon … sun order), each day's periods sorted; holidays sorted by date, names stripped.
    A calendar with no opening hours at all is allowed (it never opens: `add_seconds` raises and
    an SLA business-hours target in it is never reached). The name is checked here (1–100
    characters) but its uniqueness is checked by `do_save_calendar`; the name is not returned
    (`check_name` gives it stripped).
    """
    errors: list[str] = []
    errors.extend(check_name(name)[1])
    zone = _check_zone(time_zone, errors)
    normalized_hours = _check_hours(hours, errors)
    normalized_holidays = _check_holidays(holidays, errors)
    if errors:
        raise InvalidCalendar(errors)
    return zone, normalized_hours, normalized_holidays


# --- arithmetic -----------------------------------------------------------------------------------


def _to_us(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("business-time arithmetic needs aware datetimes")
    return (at - _EPOCH) // _ONE_US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _local_midnight(ordinal: int) -> int:
    """The naive local midnight of a date, read as if it were UTC, in epoch microseconds."""
    return (ordinal - _EPOCH_ORDINAL) * _DAY


class Schedule:
    """The business-time arithmetic of one calendar version (see the module docstring for the
    meaning of business time). Immutable; safe to share between threads.

    All methods take aware datetimes (any zone) and return UTC datetimes.
    """

    __slots__ = (
        "_always",
        "_day_cache",
        "_holidays",
        "_lock",
        "_probe_cache",
        "_week",
        "_zone",
        "has_hours",
        "holidays",
        "hours",
        "time_zone",
    )

    def __init__(
        self, *, time_zone: str = "UTC", hours: dict[str, list[list[str]]] | None = None, holidays: Any = ()
    ) -> None:
        """From validated data (validate_calendar's output, or what the model stores)."""
        self.time_zone = time_zone
        self._zone = ZoneInfo(time_zone)
        self.hours = {key: [list(p) for p in periods] for key, periods in (hours or {}).items()}
        self.holidays = tuple(dict(h) for h in holidays)
        week: list[tuple[tuple[int, int], ...]] = []
        for key in WEEKDAYS:
            periods = []
            for start, end in self.hours.get(key, []):
                s, e = _minutes(start), _minutes(end)
                if s is None or e is None or s >= e:
                    raise InvalidCalendar([f"{WEEKDAY_NAMES[key]}: {start}–{end} is not a valid period."])
                periods.append((s * _MINUTE, e * _MINUTE))
            week.append(tuple(sorted(periods)))
        self._week = tuple(week)
        self._holidays = frozenset(date.fromisoformat(h["date"]).toordinal() for h in self.holidays)
        self.has_hours = any(self._week)
        self._always = not self._holidays and all(periods == ((0, _DAY),) for periods in self._week)
        self._day_cache: dict[int, tuple[tuple[int, int], ...]] = {}
        self._probe_cache: dict[int, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Schedule({self.time_zone!r}, {len(self.hours)} open weekdays, {len(self.holidays)} holidays)"

    @property
    def weekly_seconds(self) -> float:
        """Business seconds in an ordinary week (no holiday, no DST change)."""
        return sum(e - s for periods in self._week for s, e in periods) / _US

    # --- public API -----------------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        if self._always:
            return True
        local = at.astimezone(self._zone)
        if local.toordinal() in self._holidays:
            return False
        wall = ((local.hour * 60 + local.minute) * 60 + local.second) * _US + local.microsecond
        return any(s <= wall < e for s, e in self._week[local.weekday()])

    def seconds_between(self, start: datetime, end: datetime) -> float:
        """Business seconds in [start, end); 0 if end <= start."""
        s, e = _to_us(start), _to_us(end)
        if e <= s or not self.has_hours:
            return 0.0
        if self._always:
            return (e - s) / _US
        total = 0
        for a, b in self._intervals(s, stop=e):
            if a >= e:
                break
            total += min(b, e) - max(a, s)
        return total / _US

    def add_seconds(self, start: datetime, seconds: float) -> datetime:
        """The earliest instant t with seconds_between(start, t) == seconds.

        Adding 0 returns `start` (in UTC) even when the calendar is closed then; adding more from a
        closed time starts counting at the next opening, so the result is never a closed instant's
        "start of closure" but the moment the last needed business second ends (which may be the
        end of an opening period). Raises ValueError for a negative amount, for a calendar without
        any opening hours, and when the target is not reached within MAX_DAYS_AHEAD days.
        """
        if seconds < 0 or seconds != seconds:
            raise ValueError(f"cannot add {seconds!r} business seconds")
        u = _to_us(start)
        need = round(seconds * _US)
        if need == 0:
            return _from_us(u)
        if self._always:
            return _from_us(u + need)
        if not self.has_hours:
            raise ValueError("the calendar has no opening hours, so business time never passes")
        for a, b in self._intervals(u):
            a = max(a, u)
            if need <= b - a:
                return _from_us(a + need)
            need -= b - a
        raise ValueError(f"the calendar does not open long enough within {MAX_DAYS_AHEAD} days")

    def next_open(self, at: datetime) -> datetime:
        """`at` (in UTC) when open, else the start of the next opening period.

        Raises ValueError for a calendar without opening hours or one that does not open within
        MAX_DAYS_AHEAD days.
        """
        u = _to_us(at)
        if self._always:
            return _from_us(u)
        if not self.has_hours:
            raise ValueError("the calendar has no opening hours")
        for a, _b in self._intervals(u):
            return _from_us(max(a, u))
        raise ValueError(f"the calendar does not open within {MAX_DAYS_AHEAD} days")

    # --- internals ------------------------------------------------------------------------------

    def _intervals(self, after: int, *, stop: int | None = None) -> Iterator[tuple[int, int]]:
        """The open UTC intervals [a, b) ending after `after`, in UTC order, until `stop` (or
        MAX_DAYS_AHEAD days). Local days are walked in order; since (rarely) a fall-back across
        midnight puts some instants of a date before those of the previous date, each day's
        intervals go through a heap and leave it only when no later date can start earlier."""
        ordinal = _EPOCH_ORDINAL + (after - _MARGIN) // _DAY  # earlier dates end before `after`
        last = ordinal + MAX_DAYS_AHEAD
        pending: list[tuple[int, int]] = []
        while ordinal <= last:
            day = self._day(ordinal)
            ordinal += 1
            if day:
                if not pending and len(day) == 1:
                    pending = list(day)
                else:
                    for interval in day:
                        heapq.heappush(pending, interval)
            bound = _local_midnight(ordinal) - _MARGIN  # no instant of a later date is earlier
            while pending and pending[0][0] < bound:
                interval = heapq.heappop(pending)
                if interval[1] > after:
                    yield interval
            if stop is not None and bound >= stop:
                break
        while pending:
            interval = heapq.heappop(pending)
            if interval[1] > after:
                yield interval

    def _day(self, ordinal: int) -> tuple[tuple[int, int], ...]:
        """The open UTC intervals of one local date, sorted."""
        periods = self._week[(ordinal - 1) % 7]
        if not periods or ordinal in self._holidays:
            return ()
        cached = self._day_cache.get(ordinal)
        if cached is not None:
            return cached
        midnight = _local_midnight(ordinal)
        # Probes 16 h before this midnight and the next three: between them lie all instants of
        # this date; the same offset at all four means none changes near it (two changes within
        # one day is something no zone has done).
        probes = [midnight - _MARGIN + k * _DAY for k in range(4)]
        offsets = [self._probe(ordinal + k) for k in range(4)]
        if offsets.count(offsets[0]) == 4:
            o = offsets[0]
            day = tuple((midnight + s - o, midnight + e - o) for s, e in periods)
        else:
            stretches: list[tuple[int, int, int]] = []
            for k in range(3):
                stretches.extend(self._stretches(probes[k], probes[k + 1], offsets[k], offsets[k + 1]))
            found = []
            for a, b, o in stretches:
                local_a, local_b = a + o, b + o
                for s, e in periods:
                    x, y = max(local_a, midnight + s), min(local_b, midnight + e)
                    if x < y:
                        found.append((x - o, y - o))
            day = tuple(sorted(found))
        with self._lock:
            if len(self._day_cache) >= _DAY_CACHE_SIZE:
                self._day_cache.clear()
            self._day_cache[ordinal] = day
        return day

    def _offset(self, us: int) -> int:
        offset = _from_us(us).astimezone(self._zone).utcoffset()
        assert offset is not None
        return offset // _ONE_US

    def _probe(self, ordinal: int) -> int:
        """The UTC offset 16 h before the naive UTC reading of a date's midnight."""
        offset = self._probe_cache.get(ordinal)
        if offset is None:
            offset = self._offset(_local_midnight(ordinal) - _MARGIN)
            with self._lock:
                if len(self._probe_cache) >= _DAY_CACHE_SIZE:
                    self._probe_cache.clear()
                self._probe_cache[ordinal] = offset
        return offset

    def _stretches(self, a: int, b: int, offset_a: int, offset_b: int) -> list[tuple[int, int, int]]:
        """[a, b) cut into constant-offset stretches (start, end, offset), the changes found by
        bisection on the offset to the second (zone changes happen on whole seconds)."""
        result = []
        while offset_a != offset_b:
            lo, hi = a, b  # offset(lo) == offset_a, offset(hi) != offset_a
            while hi - lo > _US:
                mid = lo + (hi - lo) // (2 * _US) * _US
                if self._offset(mid) == offset_a:
                    lo = mid
                else:
                    hi = mid
            result.append((a, hi, offset_a))
            a, offset_a = hi, self._offset(hi)
        result.append((a, b, offset_a))
        return result


ALWAYS_OPEN = Schedule(time_zone="UTC", hours={key: [["00:00", "24:00"]] for key in WEEKDAYS})

_schedules: dict[tuple[int, datetime | None], Schedule] = {}
_schedules_lock = threading.Lock()


def schedule_for(calendar: BusinessCalendar | None) -> Schedule:
    """The calendar's Schedule (None: ALWAYS_OPEN), cached in-process per (id, updated_at): a save
    changes updated_at, so every process builds the new version the first time it sees the row."""
    if calendar is None:
        return ALWAYS_OPEN
    if calendar.pk is None:
        return Schedule(time_zone=calendar.time_zone, hours=calendar.hours, holidays=calendar.holidays)
    key = (calendar.pk, calendar.updated_at)
    schedule = _schedules.get(key)
    if schedule is None:
        schedule = Schedule(time_zone=calendar.time_zone, hours=calendar.hours, holidays=calendar.holidays)
        with _schedules_lock:
            if len(_schedules) >= 256:
                _schedules.clear()
            _schedules[key] = schedule
    return schedule


def default_calendar() -> BusinessCalendar | None:
    """The calendar marked is_default, or None (then business hours are every hour)."""
    from helpdesk.models import BusinessCalendar

    return BusinessCalendar.objects.filter(is_default=True).first()
