from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from helpdesk.actions.canned import do_delete_canned_response, do_save_canned_response
from helpdesk.actions.macros import do_delete_macro, do_save_macro
from helpdesk.macros import STEP_TYPES, InvalidMacro, validate_macro
from helpdesk.models import (
    AgentProfile,
    Attachment,
    CannedResponse,
    Macro,
    Message,
    Tag,
    Team,
    Ticket,
    TicketEvent,
    User,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """For logs: visible to admins, never edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AgentProfileInline(admin.StackedInline):
    model = AgentProfile
    can_delete = False
    filter_horizontal = ["teams"]


@admin.register(User)
class SwitchboardUserAdmin(UserAdmin):
    inlines = [AgentProfileInline]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


class DeletedThroughActionAdmin(admin.ModelAdmin):
    """Deletes one row or a selection through `delete_action` (which checks the actor's scope)."""

    delete_action: Any  # a do_delete_… action, as a staticmethod

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_action(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for row in queryset:
            self.delete_action(row, actor=request.user)


@admin.register(CannedResponse)
class CannedResponseAdmin(DeletedThroughActionAdmin):
    """Saved and deleted through the actions, which check the scope (permissions.canned_policy)."""

    list_display = ["title", "team", "owner", "updated_at"]
    list_filter = ["team"]
    search_fields = ["title", "body"]
    raw_id_fields = ["owner"]
    readonly_fields = ["created_by", "updated_at"]
    list_select_related = ["team", "owner"]
    delete_action = staticmethod(do_delete_canned_response)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = do_save_canned_response(
            obj if change else None,
            title=obj.title,
            body=obj.body,
            team=obj.team,
            owner=obj.owner,
            actor=request.user,  # type: ignore[arg-type]
        )
        obj.pk, obj.created_by_id, obj.updated_at = saved.pk, saved.created_by_id, saved.updated_at


class MacroAdminForm(forms.ModelForm):
    """The steps are checked by helpdesk/macros.py, each problem shown as one sentence."""

    class Meta:
        model = Macro
        fields = ["name", "description", "actions", "team", "owner"]
        help_texts = {
            "actions": 'A list of steps, for example [{"type": "reply", "value": "Hi {{ customer.first_name }}"},'
            ' {"type": "status", "value": "pending"}, {"type": "add_tags", "value": ["refund"]}]. Types: '
            + ", ".join(STEP_TYPES)
            + '. assignee: "me", "nobody" or an agent id; team: a team id or null.'
        }

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if "actions" in cleaned:
            try:
                _, _, cleaned["actions"] = validate_macro(
                    name=cleaned.get("name") or "-", description="", actions=cleaned["actions"]
                )
            except InvalidMacro as exc:
                self.add_error("actions", exc.errors)
        if cleaned.get("team") and cleaned.get("owner"):
            self.add_error("owner", "A macro is shared with a team or personal, not both.")
        return cleaned


@admin.register(Macro)
class MacroAdmin(DeletedThroughActionAdmin):
    """Saved and deleted through the actions, which validate the steps and check the scope
    (permissions.macro_policy)."""

    form = MacroAdminForm
    list_display = ["name", "team", "owner", "created_by", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "description"]
    raw_id_fields = ["owner"]
    readonly_fields = ["created_by", "updated_at"]
    list_select_related = ["team", "owner", "created_by"]
    delete_action = staticmethod(do_delete_macro)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = do_save_macro(
            obj if change else None,
            name=obj.name,
            description=obj.description,
            actions=obj.actions,
            team=obj.team,
            owner=obj.owner,
            actor=request.user,  # type: ignore[arg-type]
        )
        obj.pk, obj.created_by_id, obj.updated_at = saved.pk, saved.created_by_id, saved.updated_at


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = [
        "number",
        "subject",
        "status",
        "priority",
        "customer",
        "channel",
        "team",
        "assignee",
        "last_activity_at",
    ]
    list_filter = ["status", "priority", "channel", "team"]
    search_fields = ["=number", "subject"]
    raw_id_fields = ["customer", "followup_of", "assignee"]
    readonly_fields = ["number", "last_event_seq", "created_at", "updated_at"]
    list_select_related = ["customer", "team", "assignee"]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["id", "ticket", "direction", "channel", "delivery_status", "created_at"]
    list_filter = ["direction", "channel", "delivery_status"]
    list_select_related = ["ticket"]


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdmin):
    list_display = ["filename", "content_type", "size", "message"]


@admin.register(TicketEvent)
class TicketEventAdmin(ReadOnlyAdmin):
    list_display = ["ticket", "seq", "type", "actor", "created_at"]
    list_filter = ["type"]
    list_select_related = ["ticket", "actor"]
