"""What the settings screens (/desk/settings/…) share: permission decorators, posted ids, the
condition and step editors' rows (to data and back), moving rows up and down, and errors placed
next to the field they are about.

The editors post rows as parallel arrays, so the forms work without JavaScript:
conditions `all-field`, `all-op`, `all-value` (and `any-…`), steps `act-type`, `act-value`,
`act-value2` (a second part: a custom field's value, a notification's text, a webhook's secret).
A row with no field (or no type) is a blank row and is skipped. Values are typed here from what
the field or step says it is (`describe_fields()`, `describe_steps()`); whether they are right is
for the validators of helpdesk/conditions.py and helpdesk/runner.py to say.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, QueryDict
from django.http.response import HttpResponseBase

from helpdesk.permissions import access_ticket, require_settings_admin, settings_policy
from helpdesk.views.desk import staff_required

# The most rows an editor takes (more is refused with a message, not a 500).
MAX_ROWS = 50
# The longest single value a row may post (the validators hold to their own, smaller limits).
MAX_VALUE_CHARS = 20_000
# Steps whose value has two parts: the second input's name for each.
TWO_PART_STEPS = {"custom_field": ("key", "value"), "notify": ("to", "text"), "webhook": ("url", "secret")}
LIST_STEPS = frozenset({"add_tags", "remove_tags", "set_tags"})
NULLABLE_ID_STEPS = frozenset({"team", "sla_policy"})
TEXT_STEPS = frozenset({"reply", "note"})
# Operators whose value is a list (typed as comma-separated text).
LIST_OPS = frozenset({"includes_any", "includes_all", "includes_none"})


def settings_admin(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Staff only, and of those admins only (settings_policy.can_manage): 403 for the others."""

    @staff_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        require_settings_admin(request.user)
        return view(request, *args, **kwargs)

    return wrapper


def settings_staff(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Staff who may open the settings at all (macros and canned responses decide the rest)."""

    @staff_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings_policy.can_open(request.user):
            raise PermissionDenied("you may not open the settings")
        return view(request, *args, **kwargs)

    return wrapper


def parse_id(raw: Any) -> int | None:
    """A posted id or ticket number (a leading # allowed) that fits a bigint, else None."""
    if not isinstance(raw, str):
        return None
    raw = raw.strip().removeprefix("#")
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) < 19):
        return None
    value = int(raw)
    return value if value > 0 else None


def clip(raw: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A posted string without NUL, at most `limit` characters (the validators then say if too long)."""
    return str(raw or "").replace("\x00", "")[: limit + 1]


def checked(post: QueryDict, name: str) -> bool:
    return post.get(name, "") in ("on", "1", "true", "yes")


class Errors:
    """Error sentences by field (`form` for those about nothing in particular)."""

    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, field: str, *messages: str) -> None:
        for message in messages:
            bucket = self.by_field.setdefault(field, [])
            if message not in bucket:
                bucket.append(message)

    def place(
        self,
        messages: Iterable[str],
        rules: list[tuple[str, Callable[[str], bool]]],
        *,
        known: dict[str, set[str]] | None = None,
    ) -> None:
        """Each message to the first field whose rule accepts it; messages already known to
        belong to a field (`known`: field → messages) go there; the rest to `form`."""
        for message in messages:
            field = next((f for f, seen in (known or {}).items() if message in seen), None)
            if field is None:
                lower = message.lower()
                field = next((f for f, accepts in rules if accepts(lower)), "form")
            self.add(field, message)

    def __bool__(self) -> bool:
        return any(self.by_field.values())

    def count(self) -> int:
        return sum(len(v) for v in self.by_field.values())


def about(*words: str) -> Callable[[str], bool]:
    """A placement rule: the (lowercased) message mentions one of the words."""
    return lambda lower: any(word in lower for word in words)


# --- conditions ----------------------------------------------------------------------------------


def _field_index(fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(f.get("name")): f for f in fields}


CUSTOM_FIELD = "custom_field.<key>"
CUSTOM_PREFIX = "custom_field."


def _descriptor(index: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A field's description; `custom_field.<anything>` is described by `custom_field.<key>`."""
    if name.startswith(CUSTOM_PREFIX) and name not in index:
        return index.get(CUSTOM_FIELD)
    return index.get(name)


def value_shape(field: dict[str, Any] | None, op: str) -> str:
    """What an operator takes: "none", "one" or "list" (describe_fields' `values`)."""
    shapes = (field or {}).get("values") or {}
    if op in shapes:
        return str(shapes[op])
    return "list" if op in LIST_OPS else "one"


def _typed_condition_value(field: dict[str, Any] | None, op: str, raw: str) -> Any:
    """The posted text typed as the field says: None for operators without a value, lists for
    list operators, numbers for number fields, the choice itself (True, None, an id) when the text
    is a choice's value as the editor shows it. The rest stays text, for the validator to judge."""
    shape = value_shape(field, op)
    if shape == "none":
        return None
    choices = (field or {}).get("choices") or []
    kind = str((field or {}).get("type", "")).lower()

    def one(part: str) -> Any:
        for value, _label in choices:
            if _as_text(value) == part:
                return value
        if kind in ("number", "int", "integer") or (kind == "custom" and re.fullmatch(r"-?\d{1,15}", part)):
            signed = part.removeprefix("-")
            if signed.isascii() and signed.isdigit() and len(signed) < 16:
                return int(part)
        return part

    text = raw.strip()
    if shape == "list":
        return [one(p.strip()) for p in text.split(",") if p.strip()]
    return one(text)


def conditions_from_post(
    post: QueryDict, fields: list[dict[str, Any]]
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The posted condition rows as condition data, and the editor's own complaints (too many rows).
    A custom field row names its key in `<group>-key`."""
    index = _field_index(fields)
    data: dict[str, list[dict[str, Any]]] = {"all": [], "any": []}
    problems: list[str] = []
    for group in ("all", "any"):
        names = post.getlist(f"{group}-field")
        ops = post.getlist(f"{group}-op")
        values = post.getlist(f"{group}-value")
        keys = post.getlist(f"{group}-key")
        if len(names) > MAX_ROWS:
            problems.append(f"At most {MAX_ROWS} conditions in one group; {len(names)} were sent.")
            names = names[:MAX_ROWS]
        for i, name in enumerate(names):
            name = clip(name, 100).strip()
            if not name:
                continue
            if name == CUSTOM_FIELD:
                name = CUSTOM_PREFIX + clip(keys[i] if i < len(keys) else "", 100).strip()
            op = clip(ops[i] if i < len(ops) else "", 100).strip()
            raw = clip(values[i] if i < len(values) else "")
            value = _typed_condition_value(_descriptor(index, name), op, raw)
            data[group].append({"field": name, "op": op, "value": value})
    return data, problems


def count_conditions(conditions: Any) -> int:
    if not isinstance(conditions, dict):
        return 0
    return sum(len(conditions.get(g) or []) for g in ("all", "any") if isinstance(conditions.get(g) or [], list))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def condition_rows(conditions: Any, fields: list[dict[str, Any]], *, blank: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Rows for the editor from stored (or posted) conditions, plus `blank` empty rows per group;
    each row carries the operators and value choices of its field (JSON-safe `json_fields`)."""
    index = {f["name"]: f for f in fields}
    every_op: dict[str, str] = {}
    for f in fields:
        for op, label in f["operators"]:
            every_op.setdefault(op, label)
    rows: dict[str, list[dict[str, Any]]] = {}
    source = conditions if isinstance(conditions, dict) else {}
    for group in ("all", "any"):
        items = [c for c in source.get(group) or [] if isinstance(c, dict)]
        items += [{"field": "", "op": "", "value": ""} for _ in range(blank)]
        rows[group] = []
        for c in items:
            name, op = str(c.get("field", "")), str(c.get("op", ""))
            key = ""
            if name.startswith(CUSTOM_PREFIX) and name != CUSTOM_FIELD:
                name, key = CUSTOM_FIELD, name.removeprefix(CUSTOM_PREFIX)
            field = _descriptor(index, name)
            operators = field["operators"] if field else [[o, label] for o, label in every_op.items()]
            if op and op not in {o for o, _ in operators}:
                operators = [*operators, [op, op]]
            shape = value_shape(field, op or (operators[0][0] if operators else ""))
            value = _as_text(c.get("value"))
            choices = field["choices"] if field and field["choices"] and shape == "one" else None
            if choices and value and value not in {v for v, _ in choices}:
                choices = [*choices, [value, value]]
            rows[group].append(
                {
                    "field": name,
                    "key": key,
                    "unknown_field": bool(name) and field is None,
                    "op": op,
                    "value": value,
                    "shape": shape,
                    "operators": operators,
                    "choices": choices,
                }
            )
    return rows


# --- steps (macros, rules, escalations) ---------------------------------------------------------


def _typed_step_value(kind: str, raw: str, raw2: str) -> Any:
    text = raw.strip()
    if kind in TEXT_STEPS:
        return raw
    if kind == "priority":
        return int(text) if text.isascii() and text.isdigit() and len(text) < 4 else text
    if kind in NULLABLE_ID_STEPS:
        if not text:
            return None
        return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else text
    if kind == "assignee":
        return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else text
    if kind in LIST_STEPS:
        return [p.strip() for p in text.split(",") if p.strip()]
    if kind == "custom_field":
        return {"key": text, "value": raw2}
    if kind == "notify":
        to: Any = text
        if text not in ("assignee", "team"):
            parts = [p.strip() for p in text.split(",") if p.strip()]
            to = [int(p) if p.isascii() and p.isdigit() and len(p) < 19 else p for p in parts]
        return {"to": to, "text": raw2}
    if kind == "webhook":
        return {"url": text, "secret": raw2}
    return text


def steps_from_post(post: QueryDict, prefix: str = "act") -> tuple[list[dict[str, Any]], list[str]]:
    """The posted step rows as runner steps, and the editor's own complaints."""
    types = post.getlist(f"{prefix}-type")
    values = post.getlist(f"{prefix}-value")
    values2 = post.getlist(f"{prefix}-value2")
    problems: list[str] = []
    if len(types) > MAX_ROWS:
        problems.append(f"At most {MAX_ROWS} steps; {len(types)} were sent.")
        types = types[:MAX_ROWS]
    steps: list[dict[str, Any]] = []
    for i, kind in enumerate(types):
        kind = clip(kind, 100).strip()
        if not kind:
            continue
        raw = clip(values[i] if i < len(values) else "")
        raw2 = clip(values2[i] if i < len(values2) else "")
        steps.append({"type": kind, "value": _typed_step_value(kind, raw, raw2)})
    return steps, problems


def keep_webhook_secrets(steps: list[dict[str, Any]], stored: Any) -> None:
    """A webhook step posted with an empty secret keeps the stored secret of the same URL (the
    form never shows a secret)."""
    old = {
        s["value"].get("url"): s["value"].get("secret", "")
        for s in (stored if isinstance(stored, list) else [])
        if isinstance(s, dict) and s.get("type") == "webhook" and isinstance(s.get("value"), dict)
    }
    for step in steps:
        value = step.get("value")
        if step.get("type") == "webhook" and isinstance(value, dict) and not value.get("secret"):
            value["secret"] = old.get(value.get("url"), "")


def step_rows(steps: Any, kinds: list[dict[str, Any]], *, blank: int = 1) -> list[dict[str, Any]]:
    """Rows for the step editor from stored (or posted) steps (secrets left out), plus blank rows;
    each row carries its type's choices and second input (`step_kinds`)."""
    index = {k["type"]: k for k in kinds}
    rows: list[dict[str, Any]] = []
    items = [s for s in (steps if isinstance(steps, list) else []) if isinstance(s, dict)]
    for step in [*items, *({"type": "", "value": ""} for _ in range(blank))]:
        kind = str(step.get("type", ""))
        value = step.get("value")
        described = index.get(kind)
        row: dict[str, Any] = {
            "type": kind,
            "unknown_type": bool(kind) and described is None,
            "value": _as_text(value),
            "value2": "",
            "has_secret": False,
            "choices": described["choices"] if described else None,
            "second": described["second"] if described else None,
            "is_text": kind in TEXT_STEPS or kind == "",
        }
        if kind in TWO_PART_STEPS and isinstance(value, dict):
            first, second = TWO_PART_STEPS[kind]
            row["value"] = _as_text(value.get(first))
            if kind == "webhook":
                row["has_secret"] = bool(value.get(second))
            else:
                row["value2"] = _as_text(value.get(second))
        if row["choices"] and row["value"] not in {v for v, _ in row["choices"]}:
            row["choices"] = [*row["choices"], [row["value"], row["value"] or "—"]]
        rows.append(row)
    return rows


# --- ordering and previews -------------------------------------------------------------------


def new_position(ordered_ids: list[int], pk: int, direction: str) -> int | None:
    """Where a row moves one step up or down among `ordered_ids` (None: it stays)."""
    if pk not in ordered_ids or direction not in ("up", "down"):
        return None
    index = ordered_ids.index(pk)
    target = index - 1 if direction == "up" else index + 1
    return target if 0 <= target < len(ordered_ids) else None


def preview_ticket(request: HttpRequest, errors: Errors) -> Any:
    """The ticket the preview runs against (access_ticket: 404 for one the user may not see),
    or None with an error next to the ticket field."""
    raw = clip(request.POST.get("preview_ticket", ""), 40)
    number = parse_id(raw)
    if number is None:
        errors.add("preview_ticket", f"Give a ticket number to test against (not {raw.strip()[:20]!r}).")
        return None
    return access_ticket(request.user, number)


def json_fields(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The field descriptions in a JSON-safe form for the editor's script."""
    return [
        {
            "name": str(f.get("name", "")),
            "label": str(f.get("label", f.get("name", ""))),
            "type": str(f.get("type", "")),
            "operators": [[str(o[0]), str(o[1])] for o in f.get("operators") or []],
            "choices": _pairs(f.get("choices")),
            "values": {str(k): str(v) for k, v in (f.get("values") or {}).items()},
            "help": str(f.get("help") or ""),
        }
        for f in fields
    ]


def _pairs(choices: Any) -> list[list[str]] | None:
    """Choices as [value, label] text pairs (a bare value is its own label)."""
    if not choices:
        return None
    pairs = []
    for c in choices:
        if isinstance(c, list | tuple) and len(c) == 2:
            pairs.append([_as_text(c[0]), str(c[1])])
        else:
            pairs.append([_as_text(c), _as_text(c).replace("_", " ").capitalize()])
    return pairs


def db_step_choices(*, context: str) -> dict[str, list[list[str]]]:
    """Choices for the steps that name rows: teams, agents, SLA policies (three queries)."""
    from helpdesk.models import SlaPolicy, Team, User

    teams = [[str(t.pk), t.name] for t in Team.objects.order_by("name").only("pk", "name")]
    agents = [
        [str(u.pk), u.display_name]
        for u in User.objects.filter(agent__isnull=False, is_active=True).order_by("first_name", "last_name", "pk")
    ]
    choices = {
        "team": [["", "No team"], *teams],
        "assignee": [*([["me", "Whoever applies it"]] if context == "macro" else []), ["nobody", "Nobody"], *agents],
    }
    if context != "macro":
        policies = [[str(p.pk), p.name] for p in SlaPolicy.objects.order_by("position", "id").only("pk", "name")]
        choices["sla_policy"] = [["", "No SLA policy"], *policies]
    return choices


def step_kinds(described: list[dict[str, Any]], *, context: str) -> list[dict[str, Any]]:
    """The step types the editor offers in a context, JSON-safe; `describe_steps()` entries name
    their type (`type` or `name`), label, optional choices and optional contexts. Steps naming
    teams, agents or policies get those as choices."""
    from_db = db_step_choices(context=context)
    kinds: list[dict[str, Any]] = []
    for d in described:
        contexts = d.get("contexts")
        if contexts is not None and context not in contexts:
            continue
        kind = str(d.get("type") or d.get("name") or "")
        if not kind:
            continue
        parts = TWO_PART_STEPS.get(kind)
        kinds.append(
            {
                "type": kind,
                "label": str(d.get("label") or kind),
                "choices": from_db.get(kind) or _pairs(d.get("choices")),
                "second": parts[1] if parts else None,
                "help": str(d.get("help") or d.get("value") or ""),
            }
        )
    return kinds


def preview_view(result: Any) -> dict[str, Any]:
    """A preview (RulePreview, preview_policy's dict, the routing preview) as the template reads it:
    `deadlines` and `effects` None when the preview has none of that kind."""

    def get(name: str, default: Any = None) -> Any:
        return result.get(name, default) if isinstance(result, dict) else getattr(result, name, default)

    return {
        "matches": bool(get("matches")),
        "conditions": [(str(text), bool(ok)) for text, ok in get("conditions") or []],
        "effects": list(get("effects")) if get("effects") is not None else None,
        "deadlines": list(get("deadlines")) if get("deadlines") is not None else None,
        "refusal": get("refusal"),
    }
