from django.urls import path

from channels_inbox.consumers import VisitorConsumer

widget_urlpatterns = [
    path("ws/widget/", VisitorConsumer.as_asgi()),
]
