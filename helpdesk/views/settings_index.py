"""Settings: the index page (/desk/settings/), listing the areas the user may open."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from helpdesk.permissions import settings_policy
from helpdesk.views.settings_common import settings_staff

# (area key, url name and its arguments, title, what it is, admins only)
AREAS = [
    (
        "calendars",
        "desk:settings_calendars",
        "Business calendars",
        "Opening hours, time zones and holidays SLA targets count in.",
        True,
    ),
    (
        "sla",
        "desk:settings_sla",
        "SLA policies",
        "How fast tickets are answered: targets per priority, warnings, escalations.",
        True,
    ),
    (
        "routing",
        "desk:settings_routing",
        "Routing",
        "Which team new tickets go to, and how each team hands out its queue.",
        True,
    ),
    ("triggers", "desk:settings_rules triggers", "Triggers", "Rules that run when tickets change.", True),
    (
        "time-rules",
        "desk:settings_rules time-rules",
        "Time rules",
        "Rules that run every hour over the tickets they select.",
        True,
    ),
    (
        "inboxes",
        "desk:settings_inboxes",
        "Inboxes",
        "The channels customers write to: settings, secrets, webhook URLs.",
        True,
    ),
    ("macros", "desk:settings_macros", "Macros", "Sets of changes agents apply to a ticket in one go.", False),
    ("canned", "desk:settings_canned", "Canned responses", "Reply texts agents insert into the composer.", False),
]


def areas_for(user: object) -> list[dict[str, object]]:
    manage = settings_policy.can_manage(user)
    return [
        {"key": key, "url": reverse(name.split()[0], args=name.split()[1:]), "title": title, "text": text}
        for key, name, title, text, admin_only in AREAS
        if manage or not admin_only
    ]


@require_GET
@settings_staff
def settings_index(request: HttpRequest) -> HttpResponse:
    return render(request, "desk/settings/index.html", {"area": "", "areas": areas_for(request.user)})
