from django.urls import path

from channels_inbox.views.webhooks import webhook

urlpatterns = [
    path("webhooks/<slug:provider>/<str:inbox_uuid>/", webhook, name="webhook"),
]
