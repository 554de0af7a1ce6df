from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from channels_inbox.actions.review import do_discard_held_events, do_release_held_events
from channels_inbox.models import InboundEvent, Inbox, OutboundDelivery
from helpdesk.admin import ReadOnlyAdmin
from helpdesk.permissions import can_review_held_events


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
    actions = ["release_held", "discard_held"]

    def has_review_permission(self, request: HttpRequest) -> bool:
        return can_review_held_events(request.user)

    @admin.action(description="Release selected held events (process them now)", permissions=["review"])
    def release_held(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        count = do_release_held_events(selected, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Released {count} held event(s); {len(selected) - count} were not held.")

    @admin.action(description="Discard selected held events (keep them as ignored)", permissions=["review"])
    def discard_held(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        count = do_discard_held_events(selected, actor=request.user)  # type: ignore[arg-type]
        level = messages.SUCCESS if count else messages.WARNING
        self.message_user(request, f"Discarded {count} held event(s); {len(selected) - count} were not held.", level)

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
