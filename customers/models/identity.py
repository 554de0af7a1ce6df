from django.db import models


class IdentityKind(models.TextChoices):
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone (E.164)"
    WHATSAPP = "whatsapp", "WhatsApp"
    MESSENGER = "messenger", "Messenger"
    INSTAGRAM = "instagram", "Instagram"
    TELEGRAM = "telegram", "Telegram"
    CHAT_VISITOR = "chat_visitor", "Chat visitor"
    EXTERNAL = "external", "External id"


class Identity(models.Model):
    """One address at which a customer can be reached or recognized (an email, a phone...).

    `value` is normalized (customers/normalize.py): emails lower-cased and trimmed, phone
    numbers in E.164. A (kind, value) pair belongs to exactly one customer.
    """

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=20, choices=IdentityKind.choices)
    value = models.CharField(max_length=320)
    # As the channel sent it, before normalization (kept for display and audits).
    raw_value = models.CharField(max_length=320, blank=True)
    verified = models.BooleanField(default=False)
    # The customer texted STOP (or another opt-out keyword) to this number: nothing more is
    # sent to it by SMS until they text START. Set and cleared by the SMS channel.
    opted_out_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            # Serves identity resolution on every inbound message: (kind, value) → customer.
            models.UniqueConstraint(fields=["kind", "value"], name="identity_kind_value_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    @property
    def display_value(self) -> str:
        """The value as people know it: an external id without its inbox namespace."""
        if self.kind == IdentityKind.EXTERNAL:
            return self.value.partition(":")[2] or self.value
        return self.value
