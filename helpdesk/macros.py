"""Macro steps: what a stored macro may say, checked with messages that say what is wrong.

A macro's `actions` is a list of steps, each `{"type": …, "value": …}`, applied in the order
written (helpdesk/actions/macros.py) — except that `team` and `assignee` go last, in the order
that keeps the ticket editable longest: they can take the ticket out of the sight of the agent
applying it, and every later step would be refused:

| type          | value                                                                      |
|---------------|----------------------------------------------------------------------------|
| `reply`       | text of a public reply; canned placeholders (`{{ customer.first_name }}`…) |
| `note`        | text of an internal note; the same placeholders                            |
| `status`      | a ticket status: `open`, `pending`, `on_hold`, `solved`, `closed`          |
| `priority`    | 1 low, 2 normal, 3 high, 4 urgent                                          |
| `team`        | a team id, or null for no team                                             |
| `assignee`    | `"me"` (whoever applies it), `"nobody"`, or an agent's user id             |
| `add_tags`    | a list of tag names                                                        |
| `remove_tags` | a list of tag names                                                        |

Each type appears at most once. The steps are the action runner's (helpdesk/runner.py), which
checks and applies them for macros, triggers, time rules and SLA escalations alike; a macro may
use these eight. `plan_macro` turns valid steps into what one application to one ticket will
do, which is both the preview the agent sees and what is applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from helpdesk.models import Ticket, TicketStatus
from helpdesk.runner import MACRO_STEP_TYPES, InvalidActions, PlannedStep, plan_actions, validate_actions

__all__ = [
    "EDIT_STEPS",
    "MACRO_STATUSES",
    "MAX_STEPS",
    "STEP_TYPES",
    "InvalidMacro",
    "MacroPlan",
    "PlannedStep",
    "plan_macro",
    "required_permissions",
    "validate_macro",
    "validate_steps",
]

STEP_TYPES = MACRO_STEP_TYPES
# Steps that change the ticket's fields: they need ticket_policy.can_edit.
EDIT_STEPS = frozenset({"status", "priority", "team", "assignee", "add_tags", "remove_tags"})
# A macro sets a ticket to one of these (a ticket is never made "new" again).
MACRO_STATUSES = tuple(s for s in TicketStatus.values if s != TicketStatus.NEW)
MAX_STEPS = len(STEP_TYPES)
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 500


class InvalidMacro(InvalidActions):
    """Steps that cannot be stored or applied; `errors` lists every problem, one sentence each."""


def validate_steps(raw: Any) -> list[dict[str, Any]]:
    """The steps in their stored form (tags normalized, texts without NUL), or InvalidMacro.

    The runner's checks in the macro context (helpdesk/runner.py `validate_actions`): the eight
    macro types, each at most once. Teams and agents named by id must exist (an agent: an active
    one); that is one query each at most.
    """
    try:
        return validate_actions(raw, context="macro")
    except InvalidActions as exc:
        raise InvalidMacro(exc.errors) from None


def validate_macro(*, name: str, description: str, actions: Any) -> tuple[str, str, list[dict[str, Any]]]:
    """Name, description and steps as stored, or InvalidMacro listing every problem."""
    errors: list[str] = []
    name = name.replace("\x00", "").strip()
    description = description.replace("\x00", "").strip()
    if not name:
        errors.append("A macro needs a name.")
    elif len(name) > MAX_NAME_CHARS:
        errors.append(f"The name is too long ({len(name)} characters; at most {MAX_NAME_CHARS}).")
    if len(description) > MAX_DESCRIPTION_CHARS:
        errors.append(f"The description is too long ({len(description)} characters; at most {MAX_DESCRIPTION_CHARS}).")
    steps: list[dict[str, Any]] = []
    try:
        steps = validate_steps(actions)
    except InvalidMacro as exc:
        errors.extend(exc.errors)
    if errors:
        raise InvalidMacro(errors)
    return name, description, steps


def required_permissions(steps: Iterable[dict[str, Any]]) -> set[str]:
    """What applying the steps needs of ticket_policy: "reply", "note", "edit"."""
    needs: set[str] = set()
    for step in steps:
        kind = step["type"]
        needs.add("edit" if kind in EDIT_STEPS else kind)
    return needs


@dataclass
class MacroPlan:
    steps: list[PlannedStep] = field(default_factory=list)

    @property
    def sends_reply(self) -> bool:
        return any(s.type == "reply" for s in self.steps)


def plan_macro(steps: list[dict[str, Any]], ticket: Ticket, agent: Any) -> MacroPlan:
    """What the (valid) steps do on this ticket for this agent: placeholders rendered, "me",
    teams and agents resolved (one query for each of those steps at most). A team or agent gone
    since the macro was saved is an InvalidMacro."""
    try:
        planned = plan_actions(steps, ticket, agent=agent, context="macro")
    except InvalidActions as exc:
        raise InvalidMacro(exc.errors) from None
    return MacroPlan(_hand_off_last(planned, ticket, agent))


def _hand_off_last(planned: list[PlannedStep], ticket: Ticket, agent: Any) -> list[PlannedStep]:
    """The steps with team and assignee moved to the end (the rest in their order).

    Either may take the ticket out of the agent's sight (a team they are not in; no longer
    assigned to them), after which every later step would be refused although the macro was
    allowed as a whole. Of the two, the one after which the agent still may edit goes first.
    """
    from helpdesk.permissions import ticket_policy

    rest = [step for step in planned if step.type not in ("team", "assignee")]
    hand_off = [step for step in planned if step.type in ("team", "assignee")]
    if len(hand_off) == 2:
        first = hand_off[0]
        after_first = Ticket(pk=ticket.pk, team_id=ticket.team_id, assignee_id=ticket.assignee_id)
        if first.type == "team":
            after_first.team_id = first.target.pk if first.target else None
        else:
            after_first.assignee_id = first.target.pk if first.target else None
        if not ticket_policy.can_edit(agent, after_first):
            hand_off.reverse()
    return rest + hand_off
