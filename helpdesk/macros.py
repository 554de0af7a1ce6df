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

Each type appears at most once. The steps are data, so that other runners (rules) can share
them; `plan_macro` turns valid steps into what one application to one ticket will do, which
is both the preview the agent sees and what is applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from helpdesk.actions.ticket_fields import MAX_TAGS_PER_EDIT, InvalidTag, normalize_tag
from helpdesk.canned import MAX_BODY_CHARS, placeholder_values, render_canned
from helpdesk.models import Priority, Team, Ticket, TicketStatus, User

STEP_TYPES = ("reply", "note", "status", "priority", "team", "assignee", "add_tags", "remove_tags")
# Steps that change the ticket's fields: they need ticket_policy.can_edit.
EDIT_STEPS = frozenset({"status", "priority", "team", "assignee", "add_tags", "remove_tags"})
# A macro sets a ticket to one of these (a ticket is never made "new" again).
MACRO_STATUSES = tuple(s for s in TicketStatus.values if s != TicketStatus.NEW)
MAX_STEPS = len(STEP_TYPES)
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 500
# What a step's check leaves when the value is wrong (None is a valid team: no team).
_INVALID: Any = object()


class InvalidMacro(ValueError):
    """Steps that cannot be stored or applied; `errors` lists every problem, one sentence each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = errors


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _step_name(index: int, kind: str) -> str:
    return f"Step {index} ({kind})"


def _text(where: str, value: Any, errors: list[str]) -> str | None:
    if not isinstance(value, str):
        errors.append(f"{where}: the text must be a string.")
        return None
    value = value.replace("\x00", "")
    if not value.strip():
        errors.append(f"{where}: the text is empty.")
        return None
    if len(value) > MAX_BODY_CHARS:
        errors.append(f"{where}: the text is too long ({len(value)} characters; at most {MAX_BODY_CHARS}).")
        return None
    return value


def _tags(where: str, value: Any, errors: list[str]) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        errors.append(f"{where}: give a list of tag names.")
        return None
    if len(value) > MAX_TAGS_PER_EDIT:
        errors.append(f"{where}: at most {MAX_TAGS_PER_EDIT} tags.")
        return None
    names: list[str] = []
    for name in value:
        if not isinstance(name, str):
            errors.append(f"{where}: a tag name must be a string, not {name!r:.40}.")
            return None
        try:
            names.append(normalize_tag(name))
        except InvalidTag as exc:
            errors.append(f"{where}: {exc}")
            return None
    return list(dict.fromkeys(names))


def validate_steps(raw: Any) -> list[dict[str, Any]]:
    """The steps in their stored form (tags normalized, texts without NUL), or InvalidMacro.

    Teams and agents named by id must exist (an agent: an active one); that is one query each
    at most.
    """
    errors: list[str] = []
    if not isinstance(raw, list):
        raise InvalidMacro(['The steps must be a list of {"type": …, "value": …} objects.'])
    if not raw:
        raise InvalidMacro(["A macro needs at least one step."])
    if len(raw) > MAX_STEPS:
        raise InvalidMacro([f"A macro has at most {MAX_STEPS} steps (one of each type); this one has {len(raw)}."])
    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, step in enumerate(raw, start=1):
        if not isinstance(step, dict):
            errors.append(f"Step {index}: must be an object with a type and a value.")
            continue
        kind = step.get("type")
        if not isinstance(kind, str) or kind not in STEP_TYPES:
            errors.append(f"Step {index}: unknown type {kind!r:.60}; one of: {', '.join(STEP_TYPES)}.")
            continue
        where = _step_name(index, kind)
        extra = sorted(str(k) for k in step if k not in ("type", "value"))
        if extra:
            errors.append(f"{where}: unknown field {extra[0][:40]!r}; a step has only a type and a value.")
            continue
        if "value" not in step:
            errors.append(f"{where}: the value is missing.")
            continue
        if kind in seen:
            errors.append(f"{where}: a macro has one {kind} step at most.")
            continue
        seen.add(kind)
        value = step["value"]
        normalized: Any = _INVALID
        if kind in ("reply", "note"):
            normalized = _text(where, value, errors)
        elif kind == "status":
            if isinstance(value, str) and value in MACRO_STATUSES:
                normalized = value
            else:
                errors.append(f"{where}: {value!r:.60} is not a status; one of: {', '.join(MACRO_STATUSES)}.")
        elif kind == "priority":
            if _is_id(value) and value in Priority.values:
                normalized = value
            else:
                choices = ", ".join(f"{p.value} ({p.label.lower()})" for p in Priority)
                errors.append(f"{where}: {value!r:.60} is not a priority; one of: {choices}.")
        elif kind == "team":
            if value is None:
                normalized = None
            elif not _is_id(value):
                errors.append(f"{where}: give a team id, or null for no team (not {value!r:.60}).")
            elif not Team.objects.filter(pk=value).exists():
                errors.append(f"{where}: there is no team with id {value}.")
            else:
                normalized = value
        elif kind == "assignee":
            if value in ("me", "nobody"):
                normalized = value
            elif not _is_id(value):
                errors.append(f'{where}: give "me", "nobody" or an agent id (not {value!r:.60}).')
            elif not User.objects.filter(pk=value, agent__isnull=False, is_active=True).exists():
                errors.append(f"{where}: there is no active agent with id {value}.")
            else:
                normalized = value
        else:
            normalized = _tags(where, value, errors)
        # (_text and _tags answer None for a value they refused; for a team, None is "no team".)
        if normalized is not _INVALID and (normalized is not None or kind == "team"):
            steps.append({"type": kind, "value": normalized})
    by_kind = {s["type"]: s["value"] for s in steps}
    both = set(by_kind.get("add_tags", [])) & set(by_kind.get("remove_tags", []))
    if both:
        errors.append(f"Tags {', '.join(sorted(both))} are both added and removed.")
    if errors:
        raise InvalidMacro(errors)
    return steps


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
class PlannedStep:
    """One step as it will be applied to one ticket: the resolved value and how it reads."""

    type: str
    value: Any
    label: str
    # The rendered text of a reply or note; a team or an agent for those steps.
    text: str = ""
    target: Any = None


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
    values: dict[str, str] | None = None
    planned: list[PlannedStep] = []
    for index, step in enumerate(steps, start=1):
        kind, value = step["type"], step["value"]
        where = _step_name(index, kind)
        if kind in ("reply", "note"):
            if values is None:
                values = placeholder_values(ticket, agent)
            text = render_canned(value, values)
            label = "Reply to the customer" if kind == "reply" else "Add an internal note"
            planned.append(PlannedStep(kind, value, label, text=text))
        elif kind == "status":
            planned.append(PlannedStep(kind, value, f"Status: {TicketStatus(value).label}"))
        elif kind == "priority":
            planned.append(PlannedStep(kind, value, f"Priority: {Priority(value).label}"))
        elif kind == "team":
            team = Team.objects.filter(pk=value).first() if value is not None else None
            if value is not None and team is None:
                raise InvalidMacro([f"{where}: the team with id {value} no longer exists."])
            planned.append(PlannedStep(kind, value, f"Team: {team.name}" if team else "Team: none", target=team))
        elif kind == "assignee":
            assignee: Any
            if value == "me":
                assignee = agent
            elif value == "nobody":
                assignee = None
            else:
                assignee = User.objects.filter(pk=value, agent__isnull=False, is_active=True).first()
                if assignee is None:
                    raise InvalidMacro([f"{where}: the agent with id {value} is no longer an active agent."])
            label = f"Assign to {assignee.display_name}" if assignee else "Unassign"
            planned.append(PlannedStep(kind, value, label, target=assignee))
        elif kind == "add_tags":
            planned.append(PlannedStep(kind, value, "Add tags: " + ", ".join(value)))
        else:
            planned.append(PlannedStep(kind, value, "Remove tags: " + ", ".join(value)))
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
