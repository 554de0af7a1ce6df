from django.contrib import admin

from customers.models import Customer, Identity, Organization, OrganizationDomain


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "organization", "language", "last_seen_at"]
    search_fields = ["name", "identities__value"]
    inlines = [IdentityInline]
    list_select_related = ["organization"]


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ["kind", "value", "customer", "verified"]
    list_filter = ["kind", "verified"]
    search_fields = ["value"]
    raw_id_fields = ["customer"]


class DomainInline(admin.TabularInline):
    model = OrganizationDomain
    extra = 1


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name"]
    inlines = [DomainInline]
