from customers.models.audit import CustomerChange, CustomerMerge
from customers.models.customer import Customer
from customers.models.identity import Identity, IdentityKind
from customers.models.organization import Organization, OrganizationDomain

__all__ = [
    "Customer",
    "CustomerChange",
    "CustomerMerge",
    "Identity",
    "IdentityKind",
    "Organization",
    "OrganizationDomain",
]
