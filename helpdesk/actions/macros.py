"""Macros: applied to one ticket in one transaction through the ticket actions; saved and deleted
by the agents allowed to (permissions.macro_policy).

A macro is not part of any ticket's history, so saving one writes no TicketEvent: the row keeps
who created it (`created_by`) and when it last changed (`updated_at`), and what it did to a
ticket is in that ticket's log as the events of each step, with the agent who applied it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from helpdesk.macros import MacroPlan, plan_macro, required_permissions, validate_macro, validate_steps
from helpdesk.models import Macro, Ticket, TicketEvent
from helpdesk.permissions import macro_policy, ticket_policy
from helpdesk.runner import RuleSource, run_planned

if TYPE_CHECKING:
    from helpdesk.models import Team, User

_MAY = {"reply": ticket_policy.can_reply, "note": ticket_policy.can_add_note, "edit": ticket_policy.can_edit}
_REFUSAL = {
    "reply": "it sends a public reply, which you may not do on this ticket",
    "note": "it adds a note, which you may not do on this ticket",
    "edit": "it changes the ticket's fields, which you may not do on this ticket",
}


class StaleTicket(Exception):
    """The macro would send a reply, but the customer wrote again or another agent replied after
    the page the agent applied it from (`news`, oldest first)."""

    def __init__(self, news: list[TicketEvent]) -> None:
        super().__init__("the ticket has news since the page was loaded")
        self.news = news


def macro_refusal(ticket: Ticket, macro: Macro, actor: Any, steps: list[dict[str, Any]]) -> str | None:
    """Why the actor may not apply these steps to the ticket as it is, or None."""
    if not macro_policy.can_use(actor, macro):
        return "You may not use this macro."
    for need in ("reply", "note", "edit"):
        if need in required_permissions(steps) and not _MAY[need](actor, ticket):
            return f"You may not apply “{macro.name}”: {_REFUSAL[need]}. Nothing was changed."
    return None


def do_apply_macro(ticket: Ticket, macro: Macro, *, actor: User, seen_seq: int | None = None) -> MacroPlan:
    """Apply every step of `macro` to `ticket`, all or nothing; the plan that was applied is returned.

    Refused before anything changes: a macro the actor may not use or with a step they may not do
    (PermissionDenied), steps that are no longer valid (InvalidMacro), and, with `seen_seq`, a
    macro sending a reply after news the actor's page had not shown (StaleTicket). Each step goes
    through its own action, so events, deliveries and live publishes are the same as for a
    single edit (the action runner, helpdesk/runner.py, with the agent as actor and no
    RuleFired: the agent did it); a step that fails (a closed ticket reopened…) rolls the whole
    macro back.
    """
    from helpdesk.selectors import news_since

    steps = validate_steps(macro.actions)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update(of=("self",)).select_related("customer", "inbox").get(pk=ticket.pk)
        refusal = macro_refusal(ticket, macro, actor, steps)
        if refusal:
            raise PermissionDenied(refusal)
        plan = plan_macro(steps, ticket, actor)
        if seen_seq is not None and plan.sends_reply:
            news = news_since(ticket, seen_seq, viewer=actor)
            if news:
                raise StaleTicket(news)
        run_planned(ticket, plan.steps, source=RuleSource("macro", macro.pk, macro.name), actor=actor)
    return plan


def do_save_macro(
    macro: Macro | None,
    *,
    name: str,
    description: str = "",
    actions: Any,
    team: Team | None = None,
    owner: User | None = None,
    actor: User,
) -> Macro:
    """Create a macro (`macro` None) or change one; the steps are validated (InvalidMacro) and the
    actor must manage both its old and its new scope."""
    name, description, steps = validate_macro(name=name, description=description, actions=actions)
    if team is not None and owner is not None:
        raise ValueError("A macro is shared with a team or personal, not both.")
    if not macro_policy.can_manage(actor, team_id=team.pk if team else None, owner_id=owner.pk if owner else None):
        raise PermissionDenied("you may not manage this macro")
    with transaction.atomic():
        if macro is None or macro.pk is None:
            return Macro.objects.create(
                name=name, description=description, actions=steps, team=team, owner=owner, created_by=actor
            )
        current = Macro.objects.select_for_update().get(pk=macro.pk)
        if not macro_policy.can_manage(actor, team_id=current.team_id, owner_id=current.owner_id):
            raise PermissionDenied("you may not manage this macro")
        current.name, current.description, current.actions = name, description, steps
        current.team, current.owner = team, owner
        current.save(update_fields=["name", "description", "actions", "team", "owner", "updated_at"])
    return current


def do_delete_macro(macro: Macro, *, actor: User) -> None:
    with transaction.atomic():
        current = Macro.objects.select_for_update().filter(pk=macro.pk).first()
        if current is None:
            return
        if not macro_policy.can_manage(actor, team_id=current.team_id, owner_id=current.owner_id):
            raise PermissionDenied("you may not manage this macro")
        current.delete()
