from django.db import models


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
        ]

    def __str__(self) -> str:
        return self.name or f"Customer {self.pk}"

    @property
    def display_name(self) -> str:
        return self.name or f"Customer #{self.pk}"
