"""Ticket numbers: short, increasing, never reused."""

from __future__ import annotations

from django.db import connection

from helpdesk.models import Ticket

SEQUENCE = "helpdesk_ticket_number_seq"


def next_ticket_numbers(count: int) -> list[int]:
    """`count` new numbers, increasing, in one statement."""
    if count <= 0:
        return []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT nextval('{SEQUENCE}') FROM generate_series(1, %s)", [count])  # noqa: S608 - a constant
            return sorted(int(row[0]) for row in cursor.fetchall())
    first = next_ticket_number()
    return list(range(first, first + count))


def next_ticket_number() -> int:
    if connection.vendor == "postgresql":
        # A sequence: no lock between concurrent ticket creations (gaps are fine).
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT nextval('{SEQUENCE}')")
            return int(cursor.fetchone()[0])
    # SQLite: writers are serialized by the IMMEDIATE transaction this runs in.
    last = Ticket.objects.order_by("-number").values_list("number", flat=True).first()
    return (last or 1000) + 1
