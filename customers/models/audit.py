from django.conf import settings
from django.db import models


class CustomerChange(models.Model):
    """One edit of a customer's profile by an agent: the fields changed, before and after.

    Written by customers/actions/profile.py and never edited. `customer` keeps its id even
    after that customer is merged away (no database constraint, nothing cascades).
    """

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.DO_NOTHING, db_constraint=False, related_name="changes"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # {"field": {"old": ..., "new": ...}}; for attributes, only the keys that changed.
    changes = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # A customer's history, newest first.
            models.Index(fields=["customer", "-created_at"], name="customerchange_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"change of customer {self.customer_id}"


class CustomerMerge(models.Model):
    """One customer merged into another (customers/actions/merge.py); the source row is gone.

    Never edited. `into` keeps its id even if that customer is later merged on in turn
    (its own merge row then has it as `source_id`), so a chain of merges can be followed.
    """

    source_id = models.BigIntegerField()
    source_name = models.CharField(max_length=200, blank=True)
    # [{"kind": ..., "value": ...}] of the identities that moved to `into`.
    identities = models.JSONField(default=list)
    tickets_moved = models.PositiveIntegerField(default=0)
    into = models.ForeignKey(
        "customers.Customer", on_delete=models.DO_NOTHING, db_constraint=False, related_name="merged_from"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # "Which customer did #N go into?" when following an old link to a merged-away customer.
            models.Index(fields=["source_id"], name="customermerge_source_idx"),
        ]

    def __str__(self) -> str:
        return f"customer {self.source_id} merged into {self.into_id}"
