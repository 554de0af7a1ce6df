"""`/widget/v1/demo/`: a plain host page on our own origin that embeds the chat widget of the
first active chat inbox, so a new install can try live chat (`make run` → this page).

Only when CHAT_DEMO_PAGE is on (default: the embedded mode): in production our own origin
is always an allowed origin, so the page would let anyone chat with the first inbox."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from channels_inbox.models import Inbox


def embed_snippet(inbox: Inbox) -> str:
    """The script tag a website adds to show this inbox's widget (docs/chat.md)."""
    return f'<script src="{settings.SITE_URL}/widget/v1/loader.js" data-inbox="{inbox.public_token}" async></script>'


@require_GET
def demo(request: HttpRequest) -> HttpResponse:
    if not settings.CHAT_DEMO_PAGE:
        raise Http404("the chat demo page is off (CHAT_DEMO_PAGE)")
    inbox = Inbox.objects.filter(kind="chat", is_active=True).order_by("pk").first()
    context = {
        "inbox": inbox,
        "loader_url": f"{settings.SITE_URL}/widget/v1/loader.js",
        "snippet": embed_snippet(inbox) if inbox else "",
        "desk_url": f"{settings.SITE_URL}/desk/",
    }
    return render(request, "widget/demo.html", context, status=200 if inbox else 404)
