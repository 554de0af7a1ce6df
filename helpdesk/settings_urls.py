"""The workspace settings under /desk/settings/ (included from helpdesk/desk_urls.py, so every
name is `desk:settings_…`). docs/settings.md describes each screen."""

from django.urls import path, re_path

from helpdesk.views import settings_calendars as calendars
from helpdesk.views import settings_inboxes as inboxes
from helpdesk.views import settings_index as index
from helpdesk.views import settings_macros as macros
from helpdesk.views import settings_routing as routing
from helpdesk.views import settings_rules as rules
from helpdesk.views import settings_sla as sla

RULES = r"(?P<slug>triggers|time-rules)"

urlpatterns = [
    path("", index.settings_index, name="settings"),
    # Business calendars
    path("calendars/", calendars.calendar_list, name="settings_calendars"),
    path("calendars/new/", calendars.calendar_form, name="settings_calendar_new"),
    path("calendars/<int:calendar_id>/", calendars.calendar_form, name="settings_calendar"),
    path("calendars/<int:calendar_id>/delete/", calendars.calendar_delete, name="settings_calendar_delete"),
    # SLA policies
    path("sla/", sla.sla_list, name="settings_sla"),
    path("sla/new/", sla.sla_form, name="settings_sla_new"),
    path("sla/<int:policy_id>/", sla.sla_form, name="settings_sla_edit"),
    path("sla/<int:policy_id>/move/", sla.sla_move, name="settings_sla_move"),
    path("sla/<int:policy_id>/delete/", sla.sla_delete, name="settings_sla_delete"),
    # Routing
    path("routing/", routing.routing_overview, name="settings_routing"),
    path("routing/rules/new/", routing.routing_rule_form, name="settings_routing_rule_new"),
    path("routing/rules/<int:rule_id>/", routing.routing_rule_form, name="settings_routing_rule"),
    path("routing/rules/<int:rule_id>/move/", routing.routing_rule_move, name="settings_routing_rule_move"),
    path("routing/rules/<int:rule_id>/delete/", routing.routing_rule_delete, name="settings_routing_rule_delete"),
    path("routing/teams/<int:team_id>/", routing.team_routing, name="settings_team_routing"),
    path("routing/agents/<int:user_id>/", routing.agent_routing, name="settings_agent_routing"),
    # Triggers and time rules: one set of views, the kind in the path.
    re_path(rf"^{RULES}/$", rules.rule_list, name="settings_rules"),
    re_path(rf"^{RULES}/new/$", rules.rule_form, name="settings_rule_new"),
    re_path(rf"^{RULES}/(?P<rule_id>[0-9]{{1,18}})/$", rules.rule_form, name="settings_rule"),
    re_path(rf"^{RULES}/(?P<rule_id>[0-9]{{1,18}})/move/$", rules.rule_move, name="settings_rule_move"),
    re_path(rf"^{RULES}/(?P<rule_id>[0-9]{{1,18}})/delete/$", rules.rule_delete, name="settings_rule_delete"),
    # Macros and canned responses
    path("macros/", macros.macro_list, name="settings_macros"),
    path("macros/new/", macros.macro_form, name="settings_macro_new"),
    path("macros/<int:macro_id>/", macros.macro_form, name="settings_macro"),
    path("macros/<int:macro_id>/delete/", macros.macro_delete, name="settings_macro_delete"),
    path("canned/", macros.canned_list, name="settings_canned"),
    path("canned/new/", macros.canned_form, name="settings_canned_new"),
    path("canned/<int:canned_id>/", macros.canned_form, name="settings_canned_edit"),
    path("canned/<int:canned_id>/delete/", macros.canned_delete, name="settings_canned_delete"),
    # Inboxes (channels)
    path("inboxes/", inboxes.inbox_list, name="settings_inboxes"),
    path("inboxes/new/", inboxes.inbox_new, name="settings_inbox_new"),
    path("inboxes/<int:inbox_id>/", inboxes.inbox_edit, name="settings_inbox"),
    path("inboxes/<int:inbox_id>/telegram/", inboxes.inbox_telegram, name="settings_inbox_telegram"),
]
