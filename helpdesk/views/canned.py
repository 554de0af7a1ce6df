"""Canned responses in the composer: one response rendered for one ticket, as JSON."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from helpdesk.canned import placeholder_values, render_canned
from helpdesk.permissions import access_canned, access_ticket
from helpdesk.views.desk import staff_required


@require_GET
@staff_required
def canned_text(request: HttpRequest, number: int, canned_id: int) -> JsonResponse:
    ticket = access_ticket(request.user, number)
    canned = access_canned(request.user, canned_id)
    response = JsonResponse({"text": render_canned(canned.body, placeholder_values(ticket, request.user))})
    response["Cache-Control"] = "private, no-store"
    return response
