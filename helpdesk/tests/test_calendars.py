"""Business calendars: validation and arithmetic (helpdesk/calendars.py), saving and deleting
(helpdesk/actions/calendars.py).

The arithmetic is checked against its definition by brute force: with minute-aligned instants,
minute-aligned periods and whole-minute zone offsets, "open" is constant over each UTC minute, so
walking the minutes of a range and asking the definition (local wall time in a period of that
local weekday, local date not a holiday) for each one gives exact business seconds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk.actions.calendars import do_delete_calendar, do_save_calendar
from helpdesk.calendars import (
    ALWAYS_OPEN,
    WEEKDAYS,
    InvalidCalendar,
    Schedule,
    default_calendar,
    schedule_for,
    validate_calendar,
)
from helpdesk.models import BusinessCalendar, SlaPolicy

PRAGUE = ZoneInfo("Europe/Prague")
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
WORKWEEK = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def at(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, fold: int = 0
) -> datetime:
    """A local wall-clock time, as the UTC instant it is."""
    return datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold).astimezone(UTC)


# --- the brute force ------------------------------------------------------------------------------

ZONES = ["Europe/Prague", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC", "America/Santiago"]


@cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """The instants (to the hour) where the zone's offset changes in 2026: the DST nights."""
    zone = ZoneInfo(zone_name)
    found, hour = [], datetime(2026, 1, 1, tzinfo=UTC)
    previous = hour.astimezone(zone).utcoffset()
    while hour.year == 2026:
        hour += HOUR
        offset = hour.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(hour)
        previous = offset
    return tuple(found)


def brute_open(zone: ZoneInfo, week: list[list[tuple[int, int]]], holidays: set[date], instant: datetime) -> bool:
    """The definition of business time, for one instant."""
    local = instant.astimezone(zone)
    if local.date() in holidays:
        return False
    wall = local.hour * 60 + local.minute
    return any(start <= wall < end for start, end in week[local.weekday()])


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# Period boundaries: mostly on a 15-minute grid (so they hit DST gaps, 00:00 and 24:00), some anywhere.
boundaries = st.one_of(st.integers(0, 96).map(lambda q: q * 15), st.integers(0, 1440))
day_periods = st.lists(boundaries, unique=True, max_size=6).map(
    lambda points: [(a, b) for a, b in zip(sorted(points)[::2], sorted(points)[1::2], strict=False)]
)


@st.composite
def cases(draw: Any) -> tuple[str, list[list[tuple[int, int]]], datetime, set[date], int]:
    zone_name = draw(st.sampled_from(ZONES))
    week = [draw(day_periods) for _ in range(7)]
    anchors = transitions(zone_name)
    if anchors and draw(st.booleans()):
        anchor = draw(st.sampled_from(anchors))
    else:
        anchor = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 365 * 24)))
    start = anchor + timedelta(minutes=draw(st.integers(-2 * 1440, 1440)))
    local_day = start.astimezone(ZoneInfo(zone_name)).date()
    holidays = {local_day + timedelta(days=d) for d in draw(st.lists(st.integers(-1, 4), max_size=3))}
    length = draw(st.integers(0, 3 * 1440))
    return zone_name, week, start, holidays, length


def schedule_of(zone_name: str, week: list[list[tuple[int, int]]], holidays: set[date]) -> Schedule:
    zone, hours, cleaned = validate_calendar(
        name="Brute",
        time_zone=zone_name,
        hours={key: [[hhmm(a), hhmm(b)] for a, b in week[i]] for i, key in enumerate(WEEKDAYS)},
        holidays=[{"date": day.isoformat(), "name": "Off"} for day in sorted(holidays)],
    )
    return Schedule(time_zone=zone, hours=hours, holidays=cleaned)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), data=st.data())
def test_arithmetic_matches_a_minute_walk(case: Any, data: Any) -> None:
    # given a random calendar and a range of minutes around a DST night (or anywhere in 2026)
    zone_name, week, start, holidays, length = case
    zone = ZoneInfo(zone_name)
    schedule = schedule_of(zone_name, week, holidays)
    minutes = [start + k * MINUTE for k in range(length)]
    is_open = [brute_open(zone, week, holidays, minute) for minute in minutes]
    open_minutes = [k for k, value in enumerate(is_open) if value]
    end = start + length * MINUTE

    # when / then: business seconds between are the open minutes walked
    assert schedule.seconds_between(start, end) == 60 * len(open_minutes)
    assert schedule.seconds_between(end, start) == 0
    # ... and additive over any cut
    cut = start + data.draw(st.integers(0, length)) * MINUTE
    assert schedule.seconds_between(start, cut) + schedule.seconds_between(cut, end) == 60 * len(open_minutes)

    # when / then: adding k business minutes ends with the k-th open minute
    if open_minutes:
        k = data.draw(st.integers(1, len(open_minutes)))
        expected = start + (open_minutes[k - 1] + 1) * MINUTE
        assert schedule.add_seconds(start, 60 * k) == expected
        assert schedule.next_open(start) == start + open_minutes[0] * MINUTE
    assert schedule.add_seconds(start, 0) == start

    # then is_open agrees wherever the brute force changes state
    for k in range(length):
        if k == 0 or is_open[k] != is_open[k - 1]:
            assert schedule.is_open(minutes[k]) is is_open[k], minutes[k]


# --- named examples -------------------------------------------------------------------------------


def prague(hours: dict[str, list[list[str]]], holidays: list[dict[str, str]] | None = None) -> Schedule:
    return Schedule(time_zone="Europe/Prague", hours=hours, holidays=holidays or [])


def test_spring_forward_night_in_prague_is_23_hours_and_the_gap_is_no_business_time() -> None:
    # given Sunday 29 March 2026 in Prague (02:00 CET jumps to 03:00 CEST)
    whole_day = prague({"sun": [["00:00", "24:00"]]})
    night = prague({"sun": [["01:00", "04:00"]]})
    gap = prague({"sun": [["02:00", "03:00"]]})
    day_start, day_end = at(PRAGUE, 2026, 3, 29), at(PRAGUE, 2026, 3, 30)

    # when / then
    assert whole_day.seconds_between(day_start, day_end) == 23 * 3600
    assert night.seconds_between(day_start, day_end) == 2 * 3600
    assert gap.seconds_between(day_start, day_end) == 0
    # an hour from 01:00 CET ends at 03:00 CEST (02:00–03:00 never happened)
    assert night.add_seconds(at(PRAGUE, 2026, 3, 29, 1), 3600) == at(PRAGUE, 2026, 3, 29, 3)
    assert night.add_seconds(day_start, 5400) == at(PRAGUE, 2026, 3, 29, 3, 30)
    # the gap-only calendar next opens the Sunday after
    assert gap.next_open(day_start) == at(PRAGUE, 2026, 4, 5, 2)
    assert not gap.is_open(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))


def test_fall_back_night_in_prague_counts_the_repeated_hour_twice() -> None:
    # given Sunday 25 October 2026 in Prague (03:00 CEST goes back to 02:00 CET)
    whole_day = prague({"sun": [["00:00", "24:00"]]})
    night = prague({"sun": [["01:00", "03:00"]]})
    day_start, day_end = at(PRAGUE, 2026, 10, 25), at(PRAGUE, 2026, 10, 26)

    # when / then: 25 hours in the day, 3 real hours in 01:00–03:00
    assert whole_day.seconds_between(day_start, day_end) == 25 * 3600
    assert night.seconds_between(day_start, day_end) == 3 * 3600
    # two hours from 01:00 CEST end at the second 02:00 (CET)
    second_two = at(PRAGUE, 2026, 10, 25, 2, fold=1)
    assert second_two == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    assert night.add_seconds(at(PRAGUE, 2026, 10, 25, 1), 2 * 3600) == second_two
    assert night.add_seconds(at(PRAGUE, 2026, 10, 25, 1), 3 * 3600) == at(PRAGUE, 2026, 10, 25, 3)
    assert night.is_open(at(PRAGUE, 2026, 10, 25, 2, 30, fold=0))
    assert night.is_open(at(PRAGUE, 2026, 10, 25, 2, 30, fold=1))


def test_lord_howe_half_hour_switch() -> None:
    # given Lord Howe Island, whose clocks go from 02:00 to 02:30 on Sunday 4 October 2026
    zone = ZoneInfo("Australia/Lord_Howe")
    schedule = Schedule(time_zone="Australia/Lord_Howe", hours={"sun": [["01:00", "04:00"]]})

    # when / then: the 3-hour period is 2½ real hours that night, 3 hours a week later
    assert schedule.seconds_between(at(zone, 2026, 10, 4), at(zone, 2026, 10, 5)) == 2.5 * 3600
    assert schedule.seconds_between(at(zone, 2026, 10, 11), at(zone, 2026, 10, 12)) == 3 * 3600
    assert schedule.add_seconds(at(zone, 2026, 10, 4, 1), 3600) == at(zone, 2026, 10, 4, 2, 30)


def test_friday_afternoon_plus_two_business_hours_is_monday_ten() -> None:
    # given a 9–17 Monday-to-Friday calendar and Friday 8 May 2026, 16:00
    schedule = prague(WORKWEEK)
    friday = at(PRAGUE, 2026, 5, 8, 16)

    # when
    due = schedule.add_seconds(friday, 2 * 3600)

    # then
    assert due == at(PRAGUE, 2026, 5, 11, 10)
    assert due.tzinfo is UTC
    assert schedule.seconds_between(friday, due) == 2 * 3600


def test_a_holiday_is_skipped() -> None:
    # given Christmas Day (Friday 25 December 2026) as a holiday
    schedule = prague(WORKWEEK, [{"date": "2026-12-25", "name": "Christmas Day"}])
    thursday = at(PRAGUE, 2026, 12, 24, 16)

    # when / then: Thursday's last hour, then Monday
    assert schedule.add_seconds(thursday, 2 * 3600) == at(PRAGUE, 2026, 12, 28, 10)
    assert schedule.seconds_between(thursday, at(PRAGUE, 2026, 12, 28, 10)) == 2 * 3600
    assert not schedule.is_open(at(PRAGUE, 2026, 12, 25, 10))
    assert schedule.next_open(at(PRAGUE, 2026, 12, 25, 10)) == at(PRAGUE, 2026, 12, 28, 9)


def test_a_period_ending_at_24_00_runs_into_the_next_day() -> None:
    # given Friday 20:00–24:00 and Saturday 00:00–02:00
    schedule = prague({"fri": [["20:00", "24:00"]], "sat": [["00:00", "02:00"]]})
    friday_ten = at(PRAGUE, 2026, 5, 8, 22)

    # when / then: no gap at midnight
    assert schedule.add_seconds(friday_ten, 3 * 3600) == at(PRAGUE, 2026, 5, 9, 1)
    assert schedule.is_open(at(PRAGUE, 2026, 5, 8, 23, 59, 59))
    assert schedule.is_open(at(PRAGUE, 2026, 5, 9, 0))
    assert not schedule.is_open(at(PRAGUE, 2026, 5, 9, 2))
    # and the whole stretch is six hours
    assert schedule.seconds_between(at(PRAGUE, 2026, 5, 8), at(PRAGUE, 2026, 5, 10)) == 6 * 3600
    # an end of 24:00 alone closes at midnight
    only_friday = prague({"fri": [["22:00", "24:00"]]})
    assert not only_friday.is_open(at(PRAGUE, 2026, 5, 9, 0))
    assert only_friday.add_seconds(friday_ten, 2 * 3600) == at(PRAGUE, 2026, 5, 9, 0)


def test_adding_from_a_closed_time_starts_at_the_next_opening_and_adding_zero_is_the_start() -> None:
    # given a workweek calendar and Saturday noon
    schedule = prague(WORKWEEK)
    saturday = at(PRAGUE, 2026, 5, 9, 12)

    # when / then
    assert schedule.add_seconds(saturday, 0) == saturday
    assert schedule.add_seconds(saturday, 1) == at(PRAGUE, 2026, 5, 11, 9) + timedelta(seconds=1)
    assert schedule.next_open(saturday) == at(PRAGUE, 2026, 5, 11, 9)
    # a deadline lands on the end of a period rather than the next opening
    assert schedule.add_seconds(saturday, 8 * 3600) == at(PRAGUE, 2026, 5, 11, 17)
    # sub-second amounts are exact
    assert schedule.add_seconds(at(PRAGUE, 2026, 5, 11, 9), 0.25) == at(PRAGUE, 2026, 5, 11, 9) + timedelta(
        microseconds=250_000
    )
    with pytest.raises(ValueError, match="cannot add"):
        schedule.add_seconds(saturday, -1)


def test_thirty_business_days_land_where_expected() -> None:
    # given a workweek calendar (no holidays) and Monday 11 May 2026 09:00
    schedule = prague(WORKWEEK)

    # when: 30 business days of 8 hours
    due = schedule.add_seconds(at(PRAGUE, 2026, 5, 11, 9), 30 * 8 * 3600)

    # then: six weeks later, Friday 19 June 17:00
    assert due == at(PRAGUE, 2026, 6, 19, 17)


def test_a_calendar_without_hours_never_opens_and_says_so() -> None:
    # given a calendar with every weekday closed
    closed = prague({})
    now = at(PRAGUE, 2026, 5, 8, 12)

    # when / then
    assert not closed.has_hours
    assert not closed.is_open(now)
    assert closed.seconds_between(now, now + timedelta(days=400)) == 0
    assert closed.add_seconds(now, 0) == now
    with pytest.raises(ValueError, match="no opening hours"):
        closed.add_seconds(now, 60)
    with pytest.raises(ValueError, match="no opening hours"):
        closed.next_open(now)


def test_always_open_is_plain_time_and_needs_aware_datetimes() -> None:
    start = datetime(2026, 3, 29, 0, 30, tzinfo=PRAGUE)
    assert ALWAYS_OPEN.is_open(start)
    assert ALWAYS_OPEN.seconds_between(start, start + HOUR) == 3600
    assert ALWAYS_OPEN.add_seconds(start, 90) == (start + timedelta(seconds=90)).astimezone(UTC)
    assert ALWAYS_OPEN.next_open(start) == start
    with pytest.raises(ValueError, match="aware"):
        prague(WORKWEEK).seconds_between(datetime(2026, 5, 8, 9), datetime(2026, 5, 8, 10))


# --- validation -----------------------------------------------------------------------------------


def errors_of(**overrides: Any) -> list[str]:
    fields: dict[str, Any] = {"name": "Office", "time_zone": "Europe/Prague", "hours": WORKWEEK, "holidays": []}
    fields.update(overrides)
    with pytest.raises(InvalidCalendar) as caught:
        validate_calendar(**fields)
    return caught.value.errors


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"name": "  "}, "The calendar needs a name."),
        ({"name": "x" * 101}, "The name is longer than 100 characters (101)."),
        (
            {"time_zone": "Europe/Prag"},
            "“Europe/Prag” is not a known time zone; use an IANA name such as",
        ),
        (
            {"time_zone": "Mars/Olympus"},
            "“Mars/Olympus” is not a known time zone; use an IANA name",
        ),
        ({"time_zone": ""}, "The time zone is required (an IANA name such as Europe/Prague)."),
        (
            {"hours": [["09:00", "17:00"]]},
            "The hours must be an object mapping weekdays (mon … sun)",
        ),
        ({"hours": {"tues": []}}, "“tues” is not a weekday; use mon, tue, wed, thu, fri, sat or sun."),
        ({"hours": {"tue": [["17:00", "09:00"]]}}, "Tuesday: 17:00–09:00 ends before it starts."),
        ({"hours": {"tue": [["09:00", "09:00"]]}}, "Tuesday: 09:00–09:00 is empty; the end must be after the start."),
        (
            {"hours": {"wed": [["9:00", "17:00"]]}},
            "Wednesday: “9:00” is not a time; write HH:MM between 00:00",
        ),
        ({"hours": {"wed": [["09:00", "24:30"]]}}, "Wednesday: “24:30” is not a time; write HH:MM"),
        ({"hours": {"wed": [["09:60", "10:00"]]}}, "Wednesday: “09:60” is not a time"),
        ({"hours": {"thu": [["09:00"]]}}, 'Thursday: period 1 must be a pair of times like ["09:00", "17:00"].'),
        ({"hours": {"thu": "09:00-17:00"}}, "Thursday: the opening periods must be a list of [start, end] pairs"),
        (
            {"hours": {"fri": [["13:00", "17:00"], ["09:00", "13:30"]]}},
            "Friday: 09:00–13:30 and 13:00–17:00 overlap.",
        ),
        (
            {"hours": {"sat": [[hhmm(m), hhmm(m + 10)] for m in range(0, 220, 20)]}},
            "Saturday: at most 10 opening periods a day (11 given).",
        ),
        (
            {"holidays": {"2026-12-25": "Christmas"}},
            'The holidays must be a list of {"date": "YYYY-MM-DD"',
        ),
        ({"holidays": ["2026-12-25"]}, "Holiday 1 must be an object with a date and a name."),
        (
            {"holidays": [{"date": "2026-02-30", "name": "No"}]},
            "Holiday 1: “2026-02-30” is not a date; write",
        ),
        ({"holidays": [{"date": "25.12.2026", "name": "No"}]}, "Holiday 1: “25.12.2026” is not a date"),
        ({"holidays": [{"date": "2026-12-25", "name": "X", "paid": True}]}, "Holiday 1: unknown field “paid”"),
        (
            {"holidays": [{"date": "2026-12-25", "name": "n" * 101}]},
            "Holiday 1: the name is longer than 100",
        ),
        (
            {"holidays": [{"date": "2026-12-25", "name": "A"}, {"date": "2026-12-25", "name": "B"}]},
            "Holiday 2: 2026-12-25 is already listed (holiday 1).",
        ),
        (
            {"holidays": [{"date": (date(2026, 1, 1) + timedelta(days=d)).isoformat()} for d in range(501)]},
            "At most 500 holidays (501 given).",
        ),
    ],
)
def test_validation_says_what_is_wrong(overrides: dict[str, Any], error: str) -> None:
    errors = errors_of(**overrides)
    assert any(message.startswith(error) for message in errors), errors


def test_validation_lists_every_problem_and_suggests_a_zone() -> None:
    errors = errors_of(
        name="", time_zone="Europe/Prage", hours={"mon": [["17:00", "09:00"]], "tue": [["x", "y"]]}, holidays=[1]
    )
    assert errors == [
        "The calendar needs a name.",
        "“Europe/Prage” is not a known time zone; use an IANA name such as Europe/Prague. Did you mean Europe/Prague?",
        "Monday: 17:00–09:00 ends before it starts.",
        "Tuesday: “x” is not a time; write HH:MM between 00:00 and 24:00.",
        "Tuesday: “y” is not a time; write HH:MM between 00:00 and 24:00.",
        "Holiday 1 must be an object with a date and a name.",
    ]


def test_validation_normalizes() -> None:
    # given periods out of order, an empty day and unsorted holidays
    zone, hours, holidays = validate_calendar(
        name=" Office ",
        time_zone="Europe/Prague",
        hours={"tue": [["13:00", "17:30"], ["09:00", "12:00"]], "mon": [], "sun": [["20:00", "24:00"]]},
        holidays=[{"date": "2026-12-26", "name": " St Stephen "}, {"date": "2026-12-25"}],
    )
    assert zone == "Europe/Prague"
    assert hours == {"tue": [["09:00", "12:00"], ["13:00", "17:30"]], "sun": [["20:00", "24:00"]]}
    assert list(hours) == ["tue", "sun"]
    assert holidays == [{"date": "2026-12-25", "name": ""}, {"date": "2026-12-26", "name": "St Stephen"}]
    # a calendar with no hours at all is allowed (it never opens)
    assert validate_calendar(name="Closed", time_zone="UTC", hours={}, holidays=None) == ("UTC", {}, [])


# --- saving and deleting --------------------------------------------------------------------------


def save(actor: Any, calendar: BusinessCalendar | None = None, **fields: Any) -> BusinessCalendar:
    values: dict[str, Any] = {
        "name": "Prague office",
        "time_zone": "Europe/Prague",
        "hours": WORKWEEK,
        "holidays": [{"date": "2026-12-25", "name": "Christmas Day"}],
        "is_default": False,
    }
    values.update(fields)
    return do_save_calendar(calendar, actor=actor, **values)


@pytest.mark.django_db
def test_admin_saves_a_calendar_and_its_schedule_follows_each_version(admin_agent: Any) -> None:
    # given a saved calendar
    calendar = save(admin_agent, name="  Prague office ", hours={"mon": [["13:00", "17:00"], ["09:00", "12:00"]]})
    calendar.refresh_from_db()
    assert calendar.name == "Prague office"
    assert calendar.hours == {"mon": [["09:00", "12:00"], ["13:00", "17:00"]]}
    first, first_version = schedule_for(calendar), calendar.updated_at
    assert schedule_for(BusinessCalendar.objects.get(pk=calendar.pk)) is first  # cached per version

    # when it is changed
    updated = save(admin_agent, calendar, hours=WORKWEEK, time_zone="America/New_York")

    # then the row and the schedule are the new version
    assert updated.pk == calendar.pk
    fresh = BusinessCalendar.objects.get(pk=calendar.pk)
    assert fresh.time_zone == "America/New_York"
    assert fresh.updated_at > first_version
    second = schedule_for(fresh)
    assert second is not first
    assert second.time_zone == "America/New_York"
    assert schedule_for(None) is ALWAYS_OPEN


@pytest.mark.django_db
def test_making_a_calendar_default_takes_it_from_the_previous_one(admin_agent: Any) -> None:
    # given a default calendar
    assert default_calendar() is None
    first = save(admin_agent, name="Prague", is_default=True)
    assert default_calendar() == first

    # when another becomes the default
    second = save(admin_agent, name="New York", time_zone="America/New_York", is_default=True)

    # then only it is
    assert default_calendar() == second
    assert list(BusinessCalendar.objects.filter(is_default=True)) == [second]
    first.refresh_from_db()
    assert not first.is_default
    # saving the default again keeps it the default
    save(admin_agent, second, name="New York", time_zone="America/New_York", is_default=True)
    assert default_calendar() == second


@pytest.mark.django_db
def test_saving_refuses_non_admins_taken_names_and_bad_data(admin_agent: Any, agent: Any) -> None:
    # given an existing calendar
    existing = save(admin_agent, name="Prague office")

    # when / then
    with pytest.raises(PermissionDenied):
        save(agent, name="Mine")
    with pytest.raises(InvalidCalendar) as caught:
        save(admin_agent, name="prague OFFICE", hours={"mon": [["17:00", "09:00"]]})
    assert caught.value.errors == [
        "A calendar named “prague OFFICE” already exists.",
        "Monday: 17:00–09:00 ends before it starts.",
    ]
    # renaming a calendar to its own name is fine
    assert save(admin_agent, existing, name="Prague Office").name == "Prague Office"
    assert BusinessCalendar.objects.count() == 1


@pytest.mark.django_db
def test_deleting_a_calendar_in_use_names_the_policies(admin_agent: Any, agent: Any) -> None:
    # given a calendar two SLA policies use, and one unused
    used = save(admin_agent, name="Prague office")
    unused = save(admin_agent, name="Spare")
    SlaPolicy.objects.create(name="VIP", calendar=used, position=1)
    SlaPolicy.objects.create(name="Standard", calendar=used, position=0)

    # when / then
    with pytest.raises(PermissionDenied):
        do_delete_calendar(unused, actor=agent)
    with pytest.raises(ValueError, match="is used by SLA policies") as caught:
        do_delete_calendar(used, actor=admin_agent)
    assert (
        str(caught.value)
        == "“Prague office” is used by SLA policies “Standard”, “VIP”; give them another calendar first."
    )
    do_delete_calendar(unused, actor=admin_agent)
    assert list(BusinessCalendar.objects.all()) == [used]
