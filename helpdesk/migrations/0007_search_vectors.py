"""Desk search: stored search documents of tickets and messages, with GIN indexes."""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.db import migrations

from helpdesk.search_text import DOCUMENT_TABLES, reindex_table


def fill_search_vectors(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Rows stored before the columns existed become findable (PostgreSQL; SQLite has no columns to fill)."""
    for table, column in DOCUMENT_TABLES:
        reindex_table(schema_editor.connection, table, column)


class Migration(migrations.Migration):
    dependencies = [
        ("channels_inbox", "0004_inboundevent_held_idx"),
        ("customers", "0002_customer_name_search"),
        ("helpdesk", "0006_ticket_merged_into"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="ticket",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.RunPython(fill_search_vectors, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="message",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search_vector"], name="message_search_idx"),
        ),
        migrations.AddIndex(
            model_name="ticket",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search_vector"], name="ticket_search_idx"),
        ),
    ]
