"""Password reset by email for desk accounts: Django's views, our templates, rate limits.

The answer to a reset request is the same whether or not the address belongs to anyone
(no account enumeration); only active agents (and superusers) with a usable password get a
mail. Requests are limited per client IP (over the limit: 429) and per address (over the
limit: the usual answer, no mail). Tokens are Django's: single-use (they sign the password
hash and the last login) and valid for PASSWORD_RESET_TIMEOUT seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy

from helpdesk.models import User

# Reset requests per client IP, and mails per address, in one window.
RESETS_PER_IP = 10
RESETS_PER_ADDRESS = 3
RESET_WINDOW_SECONDS = 3600


def _limit(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def _allowed(key: str, limit: int, window: int) -> bool:
    """Count one more use of `key` in its window; False once the count is over `limit`."""
    cache.add(key, 0, timeout=window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        count = 1
    return count <= limit


def client_ip(request: HttpRequest) -> str:
    """The client's address. Behind the deployment's proxy every request comes from the proxy:
    the client is the last address of X-Forwarded-For, the one the proxy itself appended (the
    ones before it are whatever the client sent)."""
    if getattr(settings, "BEHIND_PROXY", False):
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded and forwarded[-1]:
            return forwarded[-1][:64]
    return str(request.META.get("REMOTE_ADDR") or "unknown")


class DeskPasswordResetForm(auth_forms.PasswordResetForm):
    def get_users(self, email: str) -> Iterator[Any]:
        """Active agents and superusers with this address and a usable password."""
        users = list(super().get_users(email))
        agents = set(
            User.objects.filter(pk__in=[u.pk for u in users], agent__isnull=False).values_list("pk", flat=True)
        )
        return (u for u in users if u.is_superuser or u.pk in agents)

    def send_mail(self, *args: Any, **kwargs: Any) -> None:
        """Queue the mail instead of sending it here (helpdesk/actions/password_reset.py): the
        answer then takes as long for a known address as for an unknown one."""
        from helpdesk.sideeffects import enqueue
        from helpdesk.tasks import send_password_reset

        enqueue(send_password_reset, args[2]["user"].pk)


class PasswordResetView(auth_views.PasswordResetView):
    form_class = DeskPasswordResetForm
    template_name = "desk/password_reset_form.html"
    success_url = reverse_lazy("desk:password_reset_done")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        window = _limit("PASSWORD_RESET_WINDOW_SECONDS", RESET_WINDOW_SECONDS)
        ip_key = "desk:pw-reset:ip:" + hashlib.sha256(client_ip(request).encode()).hexdigest()
        if not _allowed(ip_key, _limit("PASSWORD_RESETS_PER_IP", RESETS_PER_IP), window):
            context = self.get_context_data(form=self.get_form(), rate_limited=True)
            return self.render_to_response(context, status=429)
        response: HttpResponse = super().post(request, *args, **kwargs)
        return response

    def form_valid(self, form: Any) -> HttpResponse:
        email = str(form.cleaned_data["email"]).strip().lower()
        address_key = "desk:pw-reset:address:" + hashlib.sha256(email.encode()).hexdigest()
        window = _limit("PASSWORD_RESET_WINDOW_SECONDS", RESET_WINDOW_SECONDS)
        if not _allowed(address_key, _limit("PASSWORD_RESETS_PER_ADDRESS", RESETS_PER_ADDRESS), window):
            # The same answer as always: the limit must not tell whether the address is known.
            return HttpResponseRedirect(self.get_success_url())
        response: HttpResponse = super().form_valid(form)
        return response


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "desk/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "desk/password_reset_confirm.html"
    success_url = reverse_lazy("desk:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "desk/password_reset_complete.html"
