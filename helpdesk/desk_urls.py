from django.contrib.auth import views as auth_views
from django.urls import path

from helpdesk.views import bulk, canned, customers, desk, lists, macros, notifications, search, ticket_fields
from helpdesk.views import password_reset as reset
from helpdesk.views.presence import set_presence

urlpatterns = [
    path("", lists.ticket_list, name="ticket_list"),
    path("views/save/", lists.save_view, name="save_view"),
    path("presence/", set_presence, name="presence"),
    path("bulk/", bulk.bulk_edit, name="bulk_edit"),
    path("bulk/agents/", bulk.bulk_agents, name="bulk_agents"),
    path("views/<int:view_id>/delete/", lists.delete_view, name="delete_view"),
    path("login/", auth_views.LoginView.as_view(template_name="desk/login.html"), name="login"),
    path("password-reset/", reset.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", reset.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/done/", reset.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("password-reset/<uidb64>/<token>/", reset.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tickets/<int:number>/", desk.ticket_detail, name="ticket_detail"),
    path("tickets/<int:number>/timeline/", desk.ticket_timeline_fragment, name="ticket_timeline"),
    path("tickets/<int:number>/reply/", desk.ticket_reply, name="ticket_reply"),
    path("tickets/<int:number>/status/", desk.ticket_status, name="ticket_status"),
    path("tickets/<int:number>/assign/", desk.ticket_assign, name="ticket_assign"),
    path("tickets/<int:number>/priority/", ticket_fields.ticket_priority, name="ticket_priority"),
    path("tickets/<int:number>/team/", ticket_fields.ticket_team, name="ticket_team"),
    path("tickets/<int:number>/tags/", ticket_fields.ticket_tags, name="ticket_tags"),
    path("tickets/<int:number>/merge/", ticket_fields.ticket_merge, name="ticket_merge"),
    path("tickets/<int:number>/followup/", ticket_fields.ticket_followup, name="ticket_followup"),
    path("tickets/<int:number>/canned/<int:canned_id>/", canned.canned_text, name="ticket_canned"),
    path("tickets/<int:number>/macro/", macros.ticket_macro, name="ticket_macro"),
    path("deliveries/<int:delivery_id>/retry/", desk.delivery_retry, name="delivery_retry"),
    path("attachments/<int:attachment_id>/", desk.attachment_download, name="attachment"),
    path("messages/<int:message_id>/html/", desk.message_html, name="message_html"),
    path("messages/<int:message_id>/raw/", desk.message_raw, name="message_raw"),
    path("held/", desk.held_events, name="held_events"),
    path("search/", search.search_page, name="search"),
    path("customers/<int:customer_id>/edit/", customers.customer_edit, name="customer_edit"),
    path("customers/<int:customer_id>/merge/", customers.customer_merge, name="customer_merge"),
    path("notifications/", notifications.notifications_page, name="notifications"),
    path("notifications/read/", notifications.notifications_read_all, name="notifications_read_all"),
    path("notifications/<int:notification_id>/read/", notifications.notification_read, name="notification_read"),
    path("notifications/<int:notification_id>/open/", notifications.notification_open, name="notification_open"),
    path("me/", notifications.preferences, name="preferences"),
    path("tickets/<int:number>/mentionable/", notifications.mentionable_agents, name="ticket_mentionable"),
]
