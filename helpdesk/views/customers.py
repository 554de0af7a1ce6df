"""The ticket page's customer panel: edit a customer's profile, merge a duplicate into them."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from customers.actions.merge import CustomerMergeRefused, do_merge_customers
from customers.actions.profile import MAX_ATTRIBUTES, InvalidProfile, do_update_customer
from customers.models import Customer
from customers.selectors import BadReference, find_customer
from helpdesk.permissions import access_customer, customer_policy
from helpdesk.views.desk import staff_required

# Attribute rows one form may post (the limit plus room for rows being blanked out).
MAX_POSTED_ROWS = 2 * MAX_ATTRIBUTES


def _ticket_number(request: HttpRequest) -> int | None:
    """The number of the ticket page the form was on, if it posted a well-formed one."""
    raw = request.POST.get("ticket", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def _back(request: HttpRequest) -> HttpResponseRedirect:
    """To the ticket page the form was on, else the ticket list."""
    number = _ticket_number(request)
    if number is not None:
        return HttpResponseRedirect(reverse("desk:ticket_detail", args=[number]))
    return HttpResponseRedirect(reverse("desk:ticket_list"))


def _posted_attributes(request: HttpRequest) -> dict[str, str]:
    """The attribute rows (attr_key / attr_value pairs); a row with both blank is dropped."""
    keys = request.POST.getlist("attr_key")
    values = request.POST.getlist("attr_value")
    if len(keys) != len(values):
        raise InvalidProfile("Each attribute needs a key and a value.")
    if len(keys) > MAX_POSTED_ROWS:
        raise InvalidProfile(f"Too many attributes ({len(keys)}; at most {MAX_ATTRIBUTES}).")
    attributes: dict[str, str] = {}
    for key, value in zip(keys, values, strict=True):
        key = key.strip()
        if not key and not value.strip():
            continue
        if key in attributes:
            raise InvalidProfile(f"Attribute {key[:64]!r} is given twice.")
        attributes[key] = value
    return attributes


@require_POST
@staff_required
def customer_edit(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = access_customer(request.user, customer_id, for_="edit")
    try:
        do_update_customer(
            customer,
            name=request.POST.get("name"),
            language=request.POST.get("language"),
            time_zone=request.POST.get("time_zone"),
            attributes=_posted_attributes(request) if "attributes" in request.POST else None,
            actor=request.user,  # type: ignore[arg-type]
        )
    except InvalidProfile as exc:
        messages.error(request, str(exc))
        return _back(request)
    messages.success(request, "Customer saved.")
    return _back(request)


@require_POST
@staff_required
def customer_merge(request: HttpRequest, customer_id: int) -> HttpResponse:
    """First post: a confirmation page showing both customers; with confirm=1: the merge."""
    target = access_customer(request.user, customer_id, for_="edit")
    try:
        source = find_customer(request.POST.get("duplicate", ""))
    except BadReference as exc:
        messages.error(request, str(exc))
        return _back(request)
    if source is None or not customer_policy.can_edit(request.user, source):
        messages.error(request, "No customer you may edit has that address or id.")
        return _back(request)
    if source.pk == target.pk:
        messages.error(request, "That is this customer: a customer cannot be merged into itself.")
        return _back(request)
    if request.POST.get("confirm") != "1":
        pair = {c.pk: c for c in Customer.objects.filter(pk__in=[source.pk, target.pk]).prefetch_related("identities")}
        counts = {pk: pair[pk].tickets.count() for pk in pair}
        context = {
            "source": pair[source.pk],
            "target": pair[target.pk],
            "source_tickets": counts[source.pk],
            "target_tickets": counts[target.pk],
            "duplicate": request.POST.get("duplicate", "")[:320],
            "ticket_number": _ticket_number(request),
        }
        return render(request, "desk/customer_merge_confirm.html", context)
    try:
        record = do_merge_customers(source, into=target, actor=request.user)  # type: ignore[arg-type]
    except CustomerMergeRefused as exc:
        messages.error(request, str(exc))
        return _back(request)
    moved = len(record.identities)
    messages.success(
        request,
        f"{record.source_name or f'Customer #{record.source_id}'} was merged into {target.display_name} "
        f"({moved} identit{'y' if moved == 1 else 'ies'}, {record.tickets_moved} ticket"
        f"{'' if record.tickets_moved == 1 else 's'}).",
    )
    return _back(request)
