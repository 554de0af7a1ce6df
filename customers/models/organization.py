from django.db import models


class Organization(models.Model):
    """A company or group that customers belong to (matched by their email domains)."""

    name = models.CharField(max_length=200)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OrganizationDomain(models.Model):
    """One email domain of an organization: a new customer with an address there joins it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="domains")
    # Lower-cased, without "@"; unique so a domain maps to one organization.
    domain = models.CharField(max_length=253, unique=True)

    def __str__(self) -> str:
        return self.domain
