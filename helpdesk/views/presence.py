"""The top bar's presence control: the agent sets online, away or appear offline.

A plain POST form (works without JavaScript: back to the page with a flash message); the
desk's script posts the same form with `Accept: application/json` and gets JSON back.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from helpdesk.actions.presence import do_set_presence_choice
from helpdesk.models import Presence
from helpdesk.views.desk import staff_required

CHOICE_LABELS = {Presence.ONLINE: "Online", Presence.AWAY: "Away", Presence.OFFLINE: "Appear offline"}


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")[:2000]
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False)
    if safe and target.startswith("/desk/") and not target.startswith("//"):
        return target
    return reverse("desk:ticket_list")


@require_POST
@staff_required
def set_presence(request: HttpRequest) -> HttpResponse:
    wants_json = "application/json" in request.headers.get("Accept", "")
    choice = request.POST.get("choice", "")
    try:
        state = do_set_presence_choice(request.user, choice, actor=request.user)  # type: ignore[arg-type]
    except ValueError as exc:
        if wants_json:
            return JsonResponse({"error": str(exc)}, status=400)
        messages.error(request, str(exc))
        return HttpResponseRedirect(_next(request))
    if wants_json:
        return JsonResponse({"presence": state, "choice": choice})
    messages.success(request, f"Your status: {CHOICE_LABELS[Presence(choice)]}.")
    return HttpResponseRedirect(_next(request))
