from django.contrib import admin
from django.urls import include, path

from helpdesk.views.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("desk/", include(("helpdesk.desk_urls", "desk"), namespace="desk")),
    path("help/", include("knowledge_base.urls")),
    path("", include("channels_inbox.urls")),
]
