from __future__ import annotations

from django.db import models


class BusinessCalendar(models.Model):
    """One set of business hours: a time zone, weekly opening periods and holidays.

    `hours` maps a weekday (`mon` … `sun`) to its opening periods in local wall time, e.g.
    `{"mon": [["09:00", "12:00"], ["13:00", "17:30"]], …}` (end `24:00` allowed; a weekday
    left out is closed); `holidays` is a list of `{"date": "2026-12-25", "name": "…"}`, whole
    local days closed. Both are data, checked by helpdesk/calendars.py `validate_calendar` on
    every save; the same module does the arithmetic (business seconds between two instants,
    adding business seconds), correct across DST changes and midnight. The calendar with
    `is_default` serves SLA policies without one and the `within business hours` condition.
    """

    name = models.CharField(max_length=100, unique=True)
    # An IANA zone name, e.g. Europe/Prague.
    time_zone = models.CharField(max_length=64, default="UTC")
    hours = models.JSONField(default=dict, blank=True)
    holidays = models.JSONField(default=list, blank=True)
    is_default = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # At most one default calendar.
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="calendar_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name
