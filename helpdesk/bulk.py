"""Writing many rows at once without paying Django's per-row expression cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


def update_rows(objs: Sequence[Model], fields: Sequence[str]) -> None:
    """Write `fields` of each (already saved, usually row-locked) instance, in one statement.

    On PostgreSQL: `UPDATE … FROM (VALUES …)`. Django's `bulk_update` builds a CASE WHEN per
    row and field; for a batch of ingested messages that cost more Python time than the
    rest of the batch. Elsewhere (SQLite) it is `bulk_update`.
    """
    if not objs:
        return
    if len(objs) == 1:
        objs[0].save(update_fields=list(fields))
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objs, fields)
        return
    meta = model._meta
    qn = connection.ops.quote_name
    pk: Any = meta.pk
    columns: list[Any] = [meta.get_field(name) for name in fields]
    row = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
    params: list[Any] = []
    for obj in objs:
        params.append(obj.pk)
        params.extend(c.get_db_prep_save(getattr(obj, c.attname), connection) for c in columns)
    assignments = ", ".join(f"{qn(c.column)} = v.{qn(c.column)}::{c.db_type(connection)}" for c in columns)
    names = ", ".join(qn(c.column) for c in [pk, *columns])
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {assignments} "  # noqa: S608 - names come from the model
        f"FROM (VALUES {', '.join([row] * len(objs))}) AS v({names}) "
        f"WHERE {qn(meta.db_table)}.{qn(pk.column)} = v.{qn(pk.column)}::{pk.db_type(connection)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
