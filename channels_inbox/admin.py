from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery
from helpdesk.admin import ReadOnlyAdmin


class InboxForm(forms.ModelForm):
    class Meta:
        model = Inbox
        # Secrets are never rendered back; set them with `manage.py inbox create/rotate-secret`.
        fields = ["kind", "name", "slug", "settings", "team", "is_active"]


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    form = InboxForm
    list_display = ["name", "kind", "slug", "uuid", "team", "is_active"]
    list_filter = ["kind", "is_active"]
    readonly_fields = ["uuid", "public_token", "secret_names"]

    @admin.display(description="secrets (names only)")
    def secret_names(self, obj: Inbox) -> str:
        return ", ".join(sorted(obj.secrets)) or "—"


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "inbox", "dedupe_key", "status", "attempts", "received_at", "processed_at"]
    list_filter = ["status", "inbox"]
    search_fields = ["dedupe_key"]
    exclude = ["payload"]
    readonly_fields = ["payload_preview"]

    @admin.display(description="payload (first 4 KB)")
    def payload_preview(self, obj: InboundEvent) -> str:
        return bytes(obj.payload[:4096]).decode("utf-8", errors="replace")

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("inbox")


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "message", "inbox", "status", "attempts", "next_attempt_at", "last_error"]
    list_filter = ["status", "inbox"]
    list_select_related = ["inbox", "message"]
