"""Desk search: an expression GIN index on customers' names (see NameSearchDocument)."""

import django.contrib.postgres.indexes
from django.db import migrations

import customers.models.customer


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0001_initial"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="customer",
            index=django.contrib.postgres.indexes.GinIndex(
                customers.models.customer.NameSearchDocument(), name="customer_name_search_idx"
            ),
        ),
    ]
