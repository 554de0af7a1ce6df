"""On PostgreSQL, ticket numbers come from a sequence (see helpdesk/numbers.py)."""

from django.db import migrations

SEQUENCE = "helpdesk_ticket_number_seq"


def create_sequence(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    Ticket = apps.get_model("helpdesk", "Ticket")
    last = Ticket.objects.order_by("-number").values_list("number", flat=True).first() or 1000
    schema_editor.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} START WITH {last + 1}")


def drop_sequence(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")


class Migration(migrations.Migration):
    dependencies = [("helpdesk", "0001_initial")]

    operations = [migrations.RunPython(create_sequence, drop_sequence)]
