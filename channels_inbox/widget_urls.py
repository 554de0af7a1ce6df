"""The chat widget's HTTP API and pages, under /widget/v1/ (docs/chat.md)."""

from django.urls import path

from channels_inbox.views import widget, widget_demo

urlpatterns: list = [
    path("loader.js", widget.loader_js, name="loader"),
    path("files/<str:token>", widget.file, name="file"),
    path("<str:inbox_token>/config", widget.config, name="config"),
    path("<str:inbox_token>/frame", widget.frame, name="frame"),
    path("<str:inbox_token>/c/<str:link_token>/", widget.conversation_page, name="conversation_page"),
    path("<str:inbox_token>/session", widget.session, name="session"),
    path("<str:inbox_token>/identify", widget.identify, name="identify"),
    path("<str:inbox_token>/reset", widget.reset, name="reset"),
    path("<str:inbox_token>/uploads", widget.uploads, name="uploads"),
    path("<str:inbox_token>/messages", widget.messages, name="messages"),
    path("<str:inbox_token>/page", widget.page, name="page"),
    path("<str:inbox_token>/proactive", widget.proactive, name="proactive"),
    path("<str:inbox_token>/conversations/<str:conversation_id>/events", widget.events, name="events"),
    path("<str:inbox_token>/conversations/<str:conversation_id>/read", widget.read, name="read"),
    path("<str:inbox_token>/conversations/<str:conversation_id>/typing", widget.typing, name="typing"),
    path("<str:inbox_token>/conversations/<str:conversation_id>/end", widget.end, name="end"),
    path("<str:inbox_token>/conversations/<str:conversation_id>/rating", widget.rating, name="rating"),
    path("<str:inbox_token>/conversations/<str:conversation_id>/transcript", widget.transcript, name="transcript"),
]

# The demo host page (`make run` → /widget/v1/demo/; channels_inbox/views/widget_demo.py): it
# answers 404 unless CHAT_DEMO_PAGE (default: the embedded mode only).
urlpatterns += [path("demo/", widget_demo.demo, name="demo")]
