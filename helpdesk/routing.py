from django.urls import path

from helpdesk.consumers import DeskConsumer

websocket_urlpatterns = [
    path("ws/desk/", DeskConsumer.as_asgi()),
]
