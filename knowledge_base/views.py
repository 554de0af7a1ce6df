"""The help center's public pages: thin; the checks live in forms.py, the write in
channels_inbox/actions/receive_web_form.py."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from channels_inbox.actions.receive_web_form import do_receive_web_form
from channels_inbox.adapters.web_form import dedupe_key
from channels_inbox.chat.limits import HOUR, client_ip, hit
from channels_inbox.models import InboundEvent, Inbox
from knowledge_base.forms import (
    HONEYPOT,
    TOKEN_MESSAGES,
    RequestForm,
    TokenProblem,
    new_token,
    read_sent_token,
    read_token,
    sent_token,
)

logger = logging.getLogger(__name__)


def _inbox(slug: str) -> Inbox:
    return get_object_or_404(Inbox, slug=slug, kind="web_form", is_active=True)


def _page(
    request: HttpRequest, inbox: Inbox, form: RequestForm, *, notice: str = "", status: int = 200
) -> HttpResponse:
    return render(request, "help/new_request.html", {"inbox": inbox, "form": form, "notice": notice}, status=status)


@require_GET
def new_request_default(request: HttpRequest) -> HttpResponse:
    inbox = Inbox.objects.filter(kind="web_form", is_active=True).order_by("pk").first()
    if inbox is None:
        raise Http404("no web form")
    return redirect("help:new_request", slug=inbox.slug)


@require_http_methods(["GET", "POST"])
def new_request(request: HttpRequest, slug: str) -> HttpResponse:
    inbox = _inbox(slug)
    if request.method != "POST":
        return _page(request, inbox, RequestForm(inbox=inbox, initial={"token": new_token(inbox)}))
    if not hit("helpform", client_ip(request), limit=settings.HELP_FORM_PER_IP_PER_HOUR, window=HOUR):
        return render(request, "help/rate_limited.html", {"inbox": inbox}, status=429)
    token_value = str(request.POST.get("token") or "")
    if request.POST.get(HONEYPOT):
        logger.info("help form %s: honeypot filled, submission dropped", inbox.slug)
        return redirect("help:request_sent", slug=inbox.slug, token=sent_token("honeypot"))
    try:
        token = read_token(inbox, token_value)
    except TokenProblem as problem:
        data = request.POST.copy()
        if problem.reason != "too_fast":
            # A fresh form (new nonce and time); the customer's text stays.
            data["token"] = new_token(inbox)
        form = RequestForm(data, request.FILES, inbox=inbox)
        form.is_valid()  # the entered text is shown again, with its own errors if any
        return _page(request, inbox, form, notice=str(TOKEN_MESSAGES[problem.reason]), status=400)
    form = RequestForm(request.POST, request.FILES, inbox=inbox)
    if not form.is_valid():
        return _page(request, inbox, form, status=400)
    do_receive_web_form(inbox, form.submission(token.nonce))
    return redirect("help:request_sent", slug=inbox.slug, token=sent_token(token.nonce))


@require_GET
def request_sent(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    inbox = _inbox(slug)
    nonce = read_sent_token(token)
    if nonce is None:
        raise Http404("no such request")
    event = (
        InboundEvent.objects.filter(inbox=inbox, dedupe_key=dedupe_key(nonce))
        .select_related("message__ticket")
        .only("pk", "status", "message__ticket__number")
        .first()
    )
    number = event.message.ticket.number if event is not None and event.message is not None else None
    # Stored but not processed yet: the page looks again in a moment for the number.
    pending = event is not None and number is None
    return render(request, "help/request_sent.html", {"inbox": inbox, "number": number, "pending": pending})
