from typing import Any

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Func, Value
from django.db.models.functions import Coalesce


class NameSearchDocument(Func):
    """A customer's name as the desk search finds it: `to_tsvector('simple', name)`.

    The index below and the search's query (helpdesk/search.py) render this same expression,
    so PostgreSQL answers from the index. On SQLite (which has no full-text type) it is the
    name itself: the index is then a plain one, and the embedded search uses LIKE.
    """

    output_field = SearchVectorField()

    def __init__(self, field: str = "name") -> None:
        super().__init__(Coalesce(F(field), Value("")))

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        sql, params = compiler.compile(self.source_expressions[0])
        return f"to_tsvector('simple'::regconfig, {sql})", list(params)

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return sql, list(params)


class Customer(models.Model):
    """One person who contacts the company, whatever channels they use (see Identity)."""

    name = models.CharField(max_length=200, blank=True)
    language = models.CharField(max_length=16, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    organization = models.ForeignKey(
        "customers.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="customers"
    )
    # Custom attributes are data, never columns (ARCHITECTURE.md rule 6).
    attributes = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # Customer lists sorted by recent activity.
            models.Index(fields=["-last_seen_at"], name="customer_last_seen_idx"),
            # Desk search by name (helpdesk/search.py), PostgreSQL only; kept by the database on
            # every write, so no write path has to remember it.
            GinIndex(NameSearchDocument(), name="customer_name_search_idx"),
        ]

    def __str__(self) -> str:
        return self.name or f"Customer {self.pk}"

    @property
    def display_name(self) -> str:
        return self.name or f"Customer #{self.pk}"
