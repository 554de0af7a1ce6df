from django.urls import include, path

from channels_inbox.views.email_webhooks import email_webhook
from channels_inbox.views.files import api_attachment
from channels_inbox.views.webhooks import webhook

urlpatterns = [
    # Before the generic pattern: an ESP's inbound mail for an email inbox.
    path("webhooks/email/<slug:esp>/<str:inbox_uuid>/", email_webhook, name="email_webhook"),
    # Mailgun posts the raw MIME (`body-mime`) only to a URL that ends in "mime".
    path(
        "webhooks/email/mailgun/<str:inbox_uuid>/mime",
        email_webhook,
        {"esp": "mailgun"},
        name="email_webhook_mailgun_mime",
    ),
    path("webhooks/<slug:provider>/<str:inbox_uuid>/", webhook, name="webhook"),
    # Files of replies sent through an API inbox, by the signed URL in the callback.
    path("files/api/<str:token>/", api_attachment, name="api_attachment"),
    # The live-chat widget: loader, frame, and the visitor's HTTP API (docs/chat.md).
    path("widget/v1/", include(("channels_inbox.widget_urls", "widget"), namespace="widget")),
]
