"""The condition language: which tickets a trigger, time rule, SLA policy, routing rule or view
is about. One language, stored as data, checked once, evaluated two ways.

Data: `{"all": [cond, …], "any": [cond, …]}`, each `cond = {"field": …, "op": …, "value": …}`.
ALL: every condition is true; ANY: at least one is (an empty ANY list is true). Empty conditions
(`{}`, or both lists empty) match every ticket. `validate_conditions` checks everything and
returns the normalized form (priority names → numbers, tag names normalized, ids as ints, …);
every problem is one sentence in `InvalidConditions.errors`. At most 50 conditions, text values
of at most 500 characters, lists of at most 100 items.

Two evaluations that must agree (helpdesk/tests/test_conditions.py runs one table of cases
through both, on SQLite and PostgreSQL):

- `matches(conditions, ticket, change=…, now=…)` in memory, for event rules (triggers), and
  `explain` (each condition in words with its result: "test this rule against ticket N");
- `ticket_query(conditions, now=…)` → `(Q, check)`: a Q over Ticket for views and time rules
  (one query, no duplicated rows: tags and identities are EXISTS subqueries), plus an in-memory
  check for any part SQL cannot say (None today: every field compiles).

Fields (`describe_fields()` lists them with labels, operators and choices for the settings UI):

- `status` (new < open < pending < on_hold < solved < closed), `priority` (1..4, or low, normal,
  high, urgent): is, is_not, includes_any/none ("is one of"), less_than, greater_than, changed…
- `channel` (kind of the ticket's inbox), `inbox` (id): is, is_not, includes_any/none.
- `team`, `assignee` (id, or null / "none"), `customer.organization`, `sla_policy` (id or null):
  is, is_not, includes_any/none, present, not_present (+ changed… on team and assignee).
- `tags` (list of names): includes_any, includes_all, includes_none, present, not_present,
  changed… (changed_to: gained one of them; changed_from: lost one of them).
- `subject` (text): is, is_not, contains, not_contains, starts_with, present, not_present.
- `custom_field.<key>` (a JSON scalar): is, is_not, contains, present, not_present, greater_than,
  less_than (numbers only), changed….
- `customer.email` (any email identity of the customer): is, is_not, contains, not_contains,
  present, not_present. `customer.language` ("cs", "en-gb"): is, is_not, starts_with, present,
  not_present.
- `created`, `updated`, `status_changed`, `customer_replied`, `agent_replied`, `solved`: whole
  calendar hours since, greater_than, less_than, is.
- `sla_due`: hours until the ticket's next SLA deadline (negative: overdue), greater_than,
  less_than, present, not_present.
- `within_business_hours`: is true/false, now; optional `"calendar": id` on the condition (else
  the default calendar; without one every hour is a business hour).

Event-only (triggers; refused by `validate_conditions(for_query=True)`): `event` (the change
included an event of that kind: created, updated, message_received…), `message.text`,
`message.from` (customer|agent|system), `message.public`, `message.channel`,
`message.has_attachments` (all false when the change has no message), and the operators
`changed`, `changed_to`, `changed_from`, `not_changed` on status, priority, team, assignee, tags
and custom fields, computed from the change's events (a `created` change counts as a change from
nothing to the initial values). `changed_to X`: the field changed and its value after the change
is X; `changed_from X`: it changed and was X before.

Hours since: `greater_than N` is "at least N+1 whole hours", `is N` is "N whole hours (and less
than N+1)", `less_than N` is "less than N hours"; a timestamp that is not set matches nothing.
Text is compared case-insensitively (for non-ASCII letters, SQLite's LIKE is case-sensitive).
Conditions on a value that is not set: `is` is false, `is_not` true.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db.models import CharField, Exists, F, Func, OuterRef, Q
from django.db.models.lookups import Exact, In
from django.utils import timezone

from helpdesk.models import Message, Priority, Ticket, TicketEvent, TicketEventType, TicketStatus

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

MAX_CONDITIONS = 50
MAX_TEXT_CHARS = 500
MAX_LIST_ITEMS = 100
MAX_HOURS = 100_000
# The JSON numbers a custom field condition compares with (exact in a double, in SQLite's integers).
MAX_NUMBER = 2**53
# Same rule as helpdesk.actions.ticket_fields CUSTOM_FIELD_KEY; "__" is refused as well, since a
# key becomes part of an ORM lookup path.
CUSTOM_FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CUSTOM_PREFIX = "custom_field."

OPERATORS: dict[str, str] = {
    "is": "is",
    "is_not": "is not",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "includes_any": "includes any of",
    "includes_all": "includes all of",
    "includes_none": "includes none of",
    "greater_than": "is more than",
    "less_than": "is less than",
    "present": "is set",
    "not_present": "is not set",
    "changed": "changed",
    "changed_to": "changed to",
    "changed_from": "changed from",
    "not_changed": "did not change",
}
# Operators that look at what a change did: triggers only.
EVENT_OPS = frozenset({"changed", "changed_to", "changed_from", "not_changed"})
NO_VALUE_OPS = frozenset({"present", "not_present", "changed", "not_changed"})
LIST_OPS = frozenset({"includes_any", "includes_all", "includes_none"})
_CHANGE_OPS = ("changed", "changed_to", "changed_from", "not_changed")

# `event` values: (value, label, the event types that count; "updated" is any change that did
# not create the ticket).
EVENTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("created", "Ticket created", (TicketEventType.CREATED,)),
    ("updated", "Ticket updated", ()),
    ("message_received", "Message received", (TicketEventType.MESSAGE_RECEIVED,)),
    ("reply_added", "Agent reply added", (TicketEventType.REPLY_ADDED,)),
    ("note_added", "Internal note added", (TicketEventType.NOTE_ADDED,)),
    ("auto_reply_sent", "Automatic reply sent", (TicketEventType.AUTO_REPLY_SENT,)),
    ("status_changed", "Status changed", (TicketEventType.STATUS_CHANGED,)),
    ("priority_changed", "Priority changed", (TicketEventType.PRIORITY_CHANGED,)),
    ("assigned", "Assignee changed", (TicketEventType.ASSIGNED,)),
    ("team_changed", "Team changed", (TicketEventType.TEAM_CHANGED,)),
    ("tags_changed", "Tags changed", (TicketEventType.TAGS_CHANGED,)),
    ("custom_field_changed", "Custom field changed", (TicketEventType.CUSTOM_FIELD_CHANGED,)),
    ("sla_warning", "SLA deadline soon", (TicketEventType.SLA_WARNING,)),
    ("sla_breach", "SLA deadline missed", (TicketEventType.SLA_BREACHED,)),
    ("sla_fulfilled", "SLA target met", (TicketEventType.SLA_FULFILLED,)),
    ("merged", "Merged into another ticket", (TicketEventType.MERGED,)),
    ("chat_ended", "Chat ended", (TicketEventType.CHAT_ENDED,)),
    ("chat_rated", "Chat rated", (TicketEventType.CHAT_RATED,)),
]
EVENT_CHOICES: list[tuple[str, str]] = [(value, label) for value, label, _ in EVENTS]
_EVENT_TYPES = {value: types for value, _, types in EVENTS}
_MESSAGE_EVENTS = frozenset(
    {
        TicketEventType.MESSAGE_RECEIVED,
        TicketEventType.REPLY_ADDED,
        TicketEventType.NOTE_ADDED,
        TicketEventType.AUTO_REPLY_SENT,
    }
)

STATUS_ORDER = [value for value, _ in TicketStatus.choices]  # new < open < pending < on_hold < solved < closed
PRIORITY_ORDER = [value for value, _ in Priority.choices]  # 1 low … 4 urgent
MESSAGE_FROM_CHOICES = [("customer", "Customer"), ("agent", "Agent"), ("system", "System")]

# An always-true and an always-false Q: Q() would vanish when OR-ed with another Q.
_TRUE = Q(pk__isnull=False)
_FALSE = Q(pk__in=[])
_INVALID: Any = object()
_MISSING: Any = object()


class InvalidConditions(ValueError):
    """Conditions that cannot be stored or used; `errors` lists every problem, one sentence each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = errors


@dataclass
class Change:
    """What one change did (event rules); views and time rules have none."""

    events: list[TicketEvent]
    message: Message | None = None  # the newest message of the change, if any

    @classmethod
    def from_events(cls, events: list[TicketEvent]) -> Change:
        """The change these events make, with its newest message loaded (one query, or none)."""
        message_id = None
        for event in reversed(events):
            if event.type in _MESSAGE_EVENTS:
                message_id = event.message_id or (event.data or {}).get("message_id")
                if message_id:
                    break
        message = Message.objects.filter(pk=message_id).first() if message_id else None
        return cls(events=list(events), message=message)


def event_happened(name: str, events: Iterable[TicketEvent]) -> bool:
    """Whether a change's events include one of kind `name` (a value of EVENT_CHOICES)."""
    events = list(events)
    if name == "updated":
        return bool(events) and not any(e.type == TicketEventType.CREATED for e in events)
    types = _EVENT_TYPES.get(name, ())
    return any(e.type in types for e in events)


# ---------------------------------------------------------------------------------------------
# The field registry


@dataclass(frozen=True)
class _Field:
    """One field conditions can name: how to check its values, read it, and query it."""

    name: str
    label: str
    kind: str  # choice, id, tags, text, email, hours_since, hours_until, custom, business_hours, bool, event
    ops: tuple[str, ...]
    column: str = ""  # the Ticket lookup path (SQL) and, for plain columns, the attribute (memory)
    event_only: bool = False
    nullable: bool = False
    model: str = ""  # id fields: a key of _ID_MODELS
    help: str = ""
    op_labels: tuple[tuple[str, str], ...] = ()
    noun: str = ""  # "'huge' is not a <noun>"

    def op_label(self, op: str) -> str:
        return dict(self.op_labels).get(op, OPERATORS[op])


_SCALAR_OPS = ("is", "is_not", "includes_any", "includes_none")
_ORDER_LABELS = (("includes_any", "is one of"), ("includes_none", "is none of"))
_HOURS_OPS = ("greater_than", "less_than", "is")
_TEXT_OPS = ("is", "is_not", "contains", "not_contains", "starts_with", "present", "not_present")


def _fields() -> dict[str, _Field]:
    scalar_labels = _ORDER_LABELS
    fields = [
        _Field(
            "status",
            "Status",
            "choice",
            (*_SCALAR_OPS, "less_than", "greater_than", *_CHANGE_OPS),
            column="status",
            noun="status",
            op_labels=(*scalar_labels, ("greater_than", "is after"), ("less_than", "is before")),
            help="Ordered new < open < pending < on hold < solved < closed.",
        ),
        _Field(
            "priority",
            "Priority",
            "choice",
            (*_SCALAR_OPS, "less_than", "greater_than", *_CHANGE_OPS),
            column="priority",
            noun="priority",
            op_labels=(*scalar_labels, ("greater_than", "is higher than"), ("less_than", "is lower than")),
        ),
        _Field(
            "channel",
            "Channel",
            "choice",
            _SCALAR_OPS,
            column="channel",
            noun="channel",
            op_labels=scalar_labels,
            help="The kind of the inbox the ticket started in.",
        ),
        _Field("inbox", "Inbox", "id", _SCALAR_OPS, column="inbox_id", model="inbox", op_labels=scalar_labels),
        _Field(
            "team",
            "Team",
            "id",
            (*_SCALAR_OPS, "present", "not_present", *_CHANGE_OPS),
            column="team_id",
            nullable=True,
            model="team",
            op_labels=scalar_labels,
        ),
        _Field(
            "assignee",
            "Assignee",
            "id",
            (*_SCALAR_OPS, "present", "not_present", *_CHANGE_OPS),
            column="assignee_id",
            nullable=True,
            model="user",
            op_labels=scalar_labels,
            help='An agent, or "none" for nobody.',
        ),
        _Field(
            "tags",
            "Tags",
            "tags",
            ("includes_any", "includes_all", "includes_none", "present", "not_present", *_CHANGE_OPS),
            op_labels=(
                ("includes_any", "include any of"),
                ("includes_all", "include all of"),
                ("includes_none", "include none of"),
                ("present", "are set"),
                ("not_present", "are not set"),
                ("changed_to", "gained any of"),
                ("changed_from", "lost any of"),
            ),
        ),
        _Field("subject", "Subject", "text", _TEXT_OPS, column="subject"),
        _Field(
            "customer.email",
            "Customer email",
            "email",
            ("is", "is_not", "contains", "not_contains", "present", "not_present"),
            help="Any of the customer's email addresses.",
        ),
        _Field(
            "customer.language",
            "Customer language",
            "text",
            ("is", "is_not", "starts_with", "present", "not_present"),
            column="customer__language",
        ),
        _Field(
            "customer.organization",
            "Customer organization",
            "id",
            (*_SCALAR_OPS, "present", "not_present"),
            column="customer__organization_id",
            nullable=True,
            model="organization",
            op_labels=scalar_labels,
        ),
        _Field(
            "sla_policy",
            "SLA policy",
            "id",
            (*_SCALAR_OPS, "present", "not_present"),
            column="sla_policy_id",
            nullable=True,
            model="sla_policy",
            op_labels=scalar_labels,
        ),
        _Field("created", "Hours since created", "hours_since", _HOURS_OPS, column="created_at"),
        _Field("updated", "Hours since updated", "hours_since", _HOURS_OPS, column="updated_at"),
        _Field(
            "status_changed", "Hours since the status changed", "hours_since", _HOURS_OPS, column="status_changed_at"
        ),
        _Field(
            "customer_replied",
            "Hours since the customer wrote",
            "hours_since",
            _HOURS_OPS,
            column="last_customer_message_at",
        ),
        _Field(
            "agent_replied", "Hours since an agent replied", "hours_since", _HOURS_OPS, column="last_agent_message_at"
        ),
        _Field("solved", "Hours since solved", "hours_since", _HOURS_OPS, column="solved_at"),
        _Field(
            "sla_due",
            "Hours until the SLA deadline",
            "hours_until",
            ("greater_than", "less_than", "present", "not_present"),
            column="sla_due_at",
            help="Hours until the ticket's next SLA deadline; negative when it is overdue.",
        ),
        _Field(
            "within_business_hours",
            "Within business hours",
            "business_hours",
            ("is",),
            help='Now, by the default calendar or the one in "calendar".',
        ),
        _Field(
            "event",
            "The change",
            "event",
            ("is", "is_not", "includes_any"),
            event_only=True,
            noun="event",
            op_labels=(("is", "includes"), ("is_not", "does not include"), ("includes_any", "includes any of")),
        ),
        _Field(
            "message.text",
            "Message text",
            "text",
            ("is", "contains", "not_contains", "starts_with"),
            event_only=True,
        ),
        _Field("message.from", "Message from", "choice", ("is", "is_not"), event_only=True, noun="sender"),
        _Field("message.public", "Message is public", "bool", ("is",), event_only=True),
        _Field("message.channel", "Message channel", "choice", ("is", "is_not"), event_only=True, noun="channel"),
        _Field("message.has_attachments", "Message has attachments", "bool", ("is",), event_only=True),
    ]
    return {f.name: f for f in fields}


FIELDS = _fields()


def _custom_field(key: str) -> _Field:
    return _Field(
        CUSTOM_PREFIX + key,
        f"Custom field {key}",
        "custom",
        ("is", "is_not", "contains", "present", "not_present", "greater_than", "less_than", *_CHANGE_OPS),
        column=key,
    )


def _field_for(name: str) -> _Field | None:
    if name.startswith(CUSTOM_PREFIX):
        key = name[len(CUSTOM_PREFIX) :]
        if CUSTOM_FIELD_KEY.match(key) and "__" not in key:
            return _custom_field(key)
        return None
    return FIELDS.get(name)


def _channel_choices() -> list[tuple[str, str]]:
    try:
        from channels_inbox.adapters import adapter_kinds, get_adapter
    except ImportError:  # pragma: no cover - the app is always installed
        return []
    return [(kind, str(getattr(get_adapter(kind), "label", kind))) for kind in adapter_kinds()]


def _choices(f: _Field) -> list[tuple[Any, str]]:
    if f.name == "status":
        return [(v, str(label)) for v, label in TicketStatus.choices]
    if f.name == "priority":
        return [(v, str(label)) for v, label in Priority.choices]
    if f.name in ("channel", "message.channel"):
        return _channel_choices()
    if f.name == "message.from":
        return MESSAGE_FROM_CHOICES
    if f.name == "event":
        return EVENT_CHOICES
    return []


def _order(f: _Field) -> list[Any]:
    return STATUS_ORDER if f.name == "status" else PRIORITY_ORDER


# ---------------------------------------------------------------------------------------------
# Validation


def _show(value: Any) -> str:
    """A short, safe rendering of a value for a message (never recursive: input may be hostile)."""
    if isinstance(value, str):
        shown = "".join("?" if unicodedata.category(c).startswith("C") else c for c in value[:40])
        return "'" + (shown if len(value) <= 40 else shown[:39] + "…") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**20 else "a huge number"
        return text
    if isinstance(value, float):
        return repr(value)[:40]
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "that value"


def _or_list(words: list[str], joiner: str = "or") -> str:
    words = [str(w) for w in words]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {joiner} {words[-1]}"


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _as_id(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,18}\s*", value):
        value = int(value)
    return value if _is_id(value) else _INVALID


def _as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no"):
        return False
    return _INVALID


def _as_int(value: Any, low: int, high: int) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,9}\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) <= high:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return _INVALID


class _Checker:
    """Checks one condition's value for its field and operator, appending sentences to `errors`."""

    def __init__(self, where: str, f: _Field, op: str, errors: list[str]) -> None:
        self.where, self.f, self.op, self.errors = where, f, op, errors

    def fail(self, sentence: str) -> Any:
        self.errors.append(f"{self.where}: {sentence}")
        return _INVALID

    def value(self, raw: Any) -> Any:
        if self.op in NO_VALUE_OPS:
            return None
        if self.op in LIST_OPS or (self.f.kind == "tags" and self.op in ("changed_to", "changed_from")):
            return self.many(raw)  # tags changed to/from: one tag or a list, "gained any of"
        return self.one(raw)

    def many(self, raw: Any) -> Any:
        if not isinstance(raw, list):
            raw = [raw]
        if not raw:
            return self.fail("give at least one value.")
        if len(raw) > MAX_LIST_ITEMS:
            return self.fail(f"a list has at most {MAX_LIST_ITEMS} values (this one has {len(raw)}).")
        before = len(self.errors)
        values = [self.one(item) for item in raw]
        if len(self.errors) > before:
            return _INVALID
        unique: list[Any] = []
        for v in values:
            if v not in unique or any(type(v) is not type(u) for u in unique if u == v):
                unique.append(v)
        return unique

    def one(self, raw: Any) -> Any:
        kind = self.f.kind
        method: Callable[[Any], Any] = getattr(self, f"_{kind}")
        return method(raw)

    def _text(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            return self.fail(f"give a text, not {_show(raw)}.")
        raw = raw.replace("\x00", "")
        if len(raw) > MAX_TEXT_CHARS:
            return self.fail(f"the text is too long ({len(raw)} characters; at most {MAX_TEXT_CHARS}).")
        if not raw.strip():
            hint = "; to match an empty value use “is not set”" if "not_present" in self.f.ops else ""
            return self.fail(f"the text is empty{hint}.")
        if self.f.name == "customer.language":
            raw = raw.strip().lower()
        return raw

    def _email(self, raw: Any) -> Any:
        value = self._text(raw)
        return value if value is _INVALID else value.strip().lower()

    def _choice(self, raw: Any) -> Any:
        choices = _choices(self.f)
        if self.f.name == "priority":
            if isinstance(raw, str) and re.fullmatch(r"\s*[0-9]\s*", raw):
                raw = int(raw)
            if isinstance(raw, int) and not isinstance(raw, bool) and raw in PRIORITY_ORDER:
                return raw
        if isinstance(raw, str):
            wanted = raw.strip().lower()
            for value, label in choices:
                if wanted in (str(value).lower(), label.lower()):
                    return value
        names = [label.lower() if self.f.name in ("status", "priority") else str(value) for value, label in choices]
        return self.fail(f"{_show(raw)} is not a {self.f.noun}; use {_or_list(names)}.")

    def _id(self, raw: Any) -> Any:
        if self.f.nullable and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null"))):
            return None
        value = _as_id(raw)
        if value is _INVALID:
            extra = ' (or "none")' if self.f.nullable else ""
            return self.fail(f"{_show(raw)} is not the id of {_ID_MODELS[self.f.model][1]}{extra}.")
        return value

    def _tags(self, raw: Any) -> Any:
        from helpdesk.actions.ticket_fields import InvalidTag, normalize_tag

        if not isinstance(raw, str):
            return self.fail(f"a tag is a name, not {_show(raw)}.")
        try:
            return normalize_tag(raw)
        except InvalidTag as exc:
            return self.fail(str(exc)[0].lower() + str(exc)[1:])

    def _hours_since(self, raw: Any) -> Any:
        value = _as_int(raw, 0, MAX_HOURS)
        if value is _INVALID:
            return self.fail(f"give whole hours from 0 to {MAX_HOURS}, not {_show(raw)}.")
        return value

    def _hours_until(self, raw: Any) -> Any:
        value = _as_int(raw, -MAX_HOURS, MAX_HOURS)
        if value is _INVALID:
            return self.fail(f"give whole hours from -{MAX_HOURS} to {MAX_HOURS}, not {_show(raw)}.")
        return value

    def _bool(self, raw: Any) -> Any:
        value = _as_bool(raw)
        if value is _INVALID:
            return self.fail(f"give true or false, not {_show(raw)}.")
        return value

    _business_hours = _bool

    def _event(self, raw: Any) -> Any:
        if isinstance(raw, str) and raw.strip().lower() in _EVENT_TYPES:
            return raw.strip().lower()
        return self.fail(f"{_show(raw)} is not an event; use {_or_list([v for v, _ in EVENT_CHOICES])}.")

    def _custom(self, raw: Any) -> Any:
        op = self.op
        if raw is None:
            if op in ("changed_to", "changed_from"):
                return None
            return self.fail("give a value; to match a field that is not set use “is not set”.")
        numeric = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        if op in ("greater_than", "less_than") and not numeric:
            return self.fail(f"give a number, not {_show(raw)}.")
        if op == "contains" and not isinstance(raw, str):
            return self.fail(f"give the text to look for, not {_show(raw)}.")
        if isinstance(raw, str):
            return self._text(raw)
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, (int, float)):
            if isinstance(raw, float) and not math.isfinite(raw):
                return self.fail("give a finite number.")
            if abs(raw) > MAX_NUMBER:
                return self.fail(f"give a number between -{MAX_NUMBER} and {MAX_NUMBER}.")
            return raw
        return self.fail(f"a custom field holds a text, a number or true/false, not {_show(raw)}.")


def _lazy_models() -> dict[str, Any]:
    from channels_inbox.models import Inbox
    from customers.models import Organization
    from helpdesk.models import BusinessCalendar, SlaPolicy, Team, User

    return {
        "team": Team,
        "inbox": Inbox,
        "user": User,
        "organization": Organization,
        "sla_policy": SlaPolicy,
        "calendar": BusinessCalendar,
    }


# model key -> (label of the model, "the id of <…>")
_ID_MODELS: dict[str, tuple[str, str]] = {
    "team": ("team", "a team"),
    "inbox": ("inbox", "an inbox"),
    "user": ("agent", "an agent"),
    "organization": ("organization", "an organization"),
    "sla_policy": ("SLA policy", "an SLA policy"),
    "calendar": ("calendar", "a calendar"),
}

_COND_KEYS = frozenset({"field", "op", "value", "calendar"})


def _parse(data: Any, *, for_query: bool, check_refs: bool) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The normalized conditions and the sentences saying what is wrong with them."""
    errors: list[str] = []
    normalized: dict[str, list[dict[str, Any]]] = {"all": [], "any": []}
    if data is None:
        return normalized, errors
    if not isinstance(data, dict):
        return normalized, [f'Conditions are an object with the lists "all" and "any", not {_show(data)}.']
    for key in data:
        if key not in ("all", "any"):
            shown = _show(key) if isinstance(key, str) else "That key"
            errors.append(f'{shown} is not a part of conditions; use "all" and "any".')
    groups: dict[str, list[Any]] = {}
    for group in ("all", "any"):
        raw = data.get(group)
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            errors.append(f'"{group}" is a list of conditions, not {_show(raw)}.')
            raw = []
        groups[group] = raw
    total = len(groups["all"]) + len(groups["any"])
    if total > MAX_CONDITIONS:
        errors.append(f"At most {MAX_CONDITIONS} conditions (these are {total}).")
        return normalized, errors
    refs: list[tuple[str, int, str]] = []  # (model key, id, where)
    for group in ("all", "any"):
        for index, raw in enumerate(groups[group], 1):
            where = f"Condition {index}" if group == "all" else f"ANY condition {index}"
            cond = _parse_one(raw, where, for_query=for_query, errors=errors, refs=refs)
            if cond is not None:
                normalized[group].append(cond)
    if check_refs and refs and not errors:
        _check_refs(refs, errors)
    return normalized, errors


def _parse_one(
    raw: Any, where: str, *, for_query: bool, errors: list[str], refs: list[tuple[str, int, str]]
) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: a condition is an object with field, op and value, not {_show(raw)}.")
        return None
    unknown = [k for k in raw if k not in _COND_KEYS]
    if unknown:
        shown = _show(unknown[0]) if isinstance(unknown[0], str) else "a key"
        errors.append(f"{where}: {shown} is not part of a condition; use field, op and value.")
        return None
    name = raw.get("field")
    if not isinstance(name, str) or not name:
        errors.append(f"{where}: name the field to test (e.g. status, priority, tags).")
        return None
    f = _field_for(name)
    if f is None:
        if name.startswith(CUSTOM_PREFIX):
            errors.append(
                f"{where}: {_show(name[len(CUSTOM_PREFIX) :])} is not a custom field key "
                "(1–64 lower-case letters, digits or single underscores, starting with a letter)."
            )
            return None
        close = difflib.get_close_matches(name, list(FIELDS), n=1)
        hint = f"; did you mean {close[0]}?" if close else "."
        errors.append(f"{where}: {_show(name)} is not a field{hint}")
        return None
    where = f"{where} ({f.name})"
    op = raw.get("op")
    if not isinstance(op, str) or op not in f.ops:
        allowed = _or_list([op_name.replace("_", " ") for op_name in f.ops])
        errors.append(f"{where}: {_show(op)} is not an operator for {f.label.lower()}; use {allowed}.")
        return None
    if for_query and (f.event_only or op in EVENT_OPS):
        what = f"“{f.op_label(op)}”" if op in EVENT_OPS else f"the {f.name} field"
        errors.append(
            f"{where}: {what} looks at what a change did, so it only works in triggers "
            "(not in views, time rules or SLA policies)."
        )
        return None
    before = len(errors)
    value = _Checker(where, f, op, errors).value(raw.get("value"))
    if len(errors) > before:
        return None
    cond: dict[str, Any] = {"field": f.name, "op": op, "value": value}
    if f.kind == "id" and f.model:
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                refs.append((f.model, v, where))
    if "calendar" in raw:
        if f.kind != "business_hours":
            errors.append(f"{where}: only “within business hours” takes a calendar.")
            return None
        calendar = raw["calendar"]
        if calendar is not None:
            calendar = _as_id(calendar)
            if calendar is _INVALID:
                errors.append(f"{where}: {_show(raw['calendar'])} is not the id of a calendar.")
                return None
            refs.append(("calendar", calendar, where))
            cond["calendar"] = calendar
    return cond


def _check_refs(refs: list[tuple[str, int, str]], errors: list[str]) -> None:
    """Every id a condition names exists (one query per kind of object)."""
    models = _lazy_models()
    by_model: dict[str, set[int]] = {}
    for model, pk, _ in refs:
        by_model.setdefault(model, set()).add(pk)
    existing = {
        model: set(models[model].objects.filter(pk__in=ids).values_list("pk", flat=True))
        for model, ids in by_model.items()
    }
    for model, pk, where in refs:
        if pk not in existing[model]:
            errors.append(f"{where}: there is no {_ID_MODELS[model][0]} with id {pk}.")


def validate_conditions(data: Any, *, for_query: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The normalized conditions, or InvalidConditions saying every problem in one sentence.

    `for_query`: for views, time rules and SLA policies, which look at tickets as they are;
    event fields and the "changed" operators (what a change did) are refused. Ids (teams,
    inboxes, agents, organizations, SLA policies, calendars) must exist.
    """
    normalized, errors = _parse(data, for_query=for_query, check_refs=True)
    if errors:
        raise InvalidConditions(errors)
    return normalized


def _load(conditions: Any, *, for_query: bool) -> dict[str, list[dict[str, Any]]]:
    normalized, errors = _parse(conditions, for_query=for_query, check_refs=False)
    if errors:
        raise InvalidConditions(errors)
    return normalized


def is_empty(conditions: Any) -> bool:
    """Conditions that match every ticket."""
    return not conditions or not (conditions.get("all") or conditions.get("any"))


# ---------------------------------------------------------------------------------------------
# In memory


class _Facts:
    """What one evaluation reads about a ticket, loaded once and only when a condition needs it."""

    def __init__(self, ticket: Ticket, change: Change | None, now: datetime) -> None:
        self.ticket, self.change, self.now = ticket, change, now
        self._open: dict[int | None, bool] = {}

    @cached_property
    def tags(self) -> frozenset[str]:
        return frozenset(tag.name for tag in self.ticket.tags.all())

    @cached_property
    def emails(self) -> list[str]:
        from customers.models import IdentityKind

        cache = getattr(self.ticket.customer, "_prefetched_objects_cache", {})
        if "identities" in cache:
            identities = [i.value for i in self.ticket.customer.identities.all() if i.kind == IdentityKind.EMAIL]
        else:
            identities = list(
                self.ticket.customer.identities.filter(kind=IdentityKind.EMAIL).values_list("value", flat=True)
            )
        return [value.lower() for value in identities]

    @cached_property
    def events(self) -> list[TicketEvent]:
        return list(self.change.events) if self.change else []

    @cached_property
    def created(self) -> bool:
        return any(e.type == TicketEventType.CREATED for e in self.events)

    @cached_property
    def has_attachments(self) -> bool:
        message = self.change.message if self.change else None
        if message is None:
            return False
        if "attachments" in getattr(message, "_prefetched_objects_cache", {}):
            return bool(message.attachments.all())
        return message.attachments.exists()

    def is_open(self, calendar_id: int | None) -> bool:
        if calendar_id not in self._open:
            self._open[calendar_id] = _is_open(calendar_id, self.now)
        return self._open[calendar_id]


def _is_open(calendar_id: int | None, now: datetime) -> bool:
    """Whether the calendar (or the default calendar; without one, every hour) is open at `now`."""
    from helpdesk.calendars import default_calendar, schedule_for
    from helpdesk.models import BusinessCalendar

    calendar = BusinessCalendar.objects.filter(pk=calendar_id).first() if calendar_id else None
    if calendar is None:
        calendar = default_calendar()
    return schedule_for(calendar).is_open(now)


def _json_type(value: Any) -> str:
    """A value's JSON type, named as PostgreSQL's jsonb_typeof names it (or "missing")."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _json_equal(actual: Any, value: Any) -> bool:
    if _json_type(actual) != _json_type(value):
        return False
    if isinstance(value, str):
        return bool(actual.lower() == value.lower())
    return bool(actual == value)


def _read(f: _Field, facts: _Facts) -> Any:
    ticket = facts.ticket
    if f.name == "customer.language":
        return ticket.customer.language or ""
    if f.name == "customer.organization":
        return ticket.customer.organization_id
    if f.kind == "custom":
        return (ticket.custom_fields or {}).get(f.column, _MISSING)
    if f.name.startswith("message."):
        message = facts.change.message if facts.change else None
        if message is None:
            return _MISSING
        if f.name == "message.text":
            return message.text or ""
        if f.name == "message.channel":
            return message.channel or ""
        if f.name == "message.public":
            return message.direction != "note"
        if f.name == "message.from":
            if message.direction == "inbound":
                return "customer"
            return "agent" if message.author_agent_id else "system"
        return facts.has_attachments
    return getattr(ticket, f.column)


def _eval(cond: dict[str, Any], facts: _Facts) -> bool:
    f = _field_for(cond["field"])
    assert f is not None, "conditions are parsed before they are evaluated"
    op, value = cond["op"], cond["value"]
    if op in EVENT_OPS:
        return _eval_change(f, op, value, facts)
    kind = f.kind
    if kind == "business_hours":
        return facts.is_open(cond.get("calendar")) == value
    if kind == "event":
        if facts.change is None:
            return False
        if op == "is":
            return event_happened(value, facts.events)
        if op == "is_not":
            return not event_happened(value, facts.events)
        return any(event_happened(v, facts.events) for v in value)
    if kind == "tags":
        return _eval_set(op, value, facts.tags)
    if kind == "email":
        emails = facts.emails
        if op == "is":
            return value in emails
        if op == "is_not":
            return value not in emails
        if op == "contains":
            return any(value in e for e in emails)
        if op == "not_contains":
            return not any(value in e for e in emails)
        return bool(emails) == (op == "present")
    actual = _read(f, facts)
    if actual is _MISSING and f.name.startswith("message."):
        return False  # no message in this change: message conditions are false
    if kind in ("choice", "id"):
        return _eval_scalar(f, op, value, actual)
    if kind == "bool":
        return bool(actual == value)
    if kind == "text":
        return _eval_text(op, value, actual)
    if kind == "hours_since":
        return _eval_hours_since(op, value, actual, facts.now)
    if kind == "hours_until":
        if op in ("present", "not_present"):
            return (actual is not None) == (op == "present")
        if actual is None:
            return False
        limit = facts.now + timedelta(hours=value)
        return bool(actual > limit) if op == "greater_than" else bool(actual < limit)
    if kind == "custom":
        return _eval_custom(op, value, actual)
    raise AssertionError(f"unknown kind {kind}")  # pragma: no cover


def _eval_scalar(f: _Field, op: str, value: Any, actual: Any) -> bool:
    if op == "is":
        return bool(actual == value)
    if op == "is_not":
        return bool(actual != value)
    if op == "includes_any":
        return actual in value
    if op == "includes_none":
        return actual not in value
    if op == "present":
        return actual is not None
    if op == "not_present":
        return actual is None
    order = _order(f)
    if actual not in order:
        return False
    if op == "greater_than":
        return order.index(actual) > order.index(value)
    return order.index(actual) < order.index(value)  # less_than


def _eval_set(op: str, value: Any, actual: frozenset[str]) -> bool:
    if op == "includes_any":
        return bool(actual.intersection(value))
    if op == "includes_all":
        return actual.issuperset(value)
    if op == "includes_none":
        return not actual.intersection(value)
    return bool(actual) == (op == "present")


def _eval_text(op: str, value: Any, actual: str) -> bool:
    actual_l = (actual or "").lower()
    if op == "present":
        return bool(actual)
    if op == "not_present":
        return not actual
    needle = value.lower()
    if op == "is":
        return actual_l == needle
    if op == "is_not":
        return actual_l != needle
    if op == "contains":
        return needle in actual_l
    if op == "not_contains":
        return needle not in actual_l
    return actual_l.startswith(needle)  # starts_with


def _hours_bounds(op: str, value: int, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(after, at_or_before): the timestamp t matches when after < t <= at_or_before."""
    hour = timedelta(hours=1)
    if op == "greater_than":  # at least value+1 whole hours ago
        return None, now - (value + 1) * hour
    if op == "less_than":  # less than value hours ago
        return now - value * hour, None
    return now - (value + 1) * hour, now - value * hour  # is: exactly value whole hours


def _eval_hours_since(op: str, value: int, actual: datetime | None, now: datetime) -> bool:
    if actual is None:
        return False
    after, upto = _hours_bounds(op, value, now)
    return (after is None or actual > after) and (upto is None or actual <= upto)


def _eval_custom(op: str, value: Any, actual: Any) -> bool:
    kind = _json_type(actual)
    if op == "is":
        return _json_equal(actual, value)
    if op == "is_not":
        return not _json_equal(actual, value)
    if op == "contains":
        return kind == "string" and value.lower() in actual.lower()
    if op == "present":
        return kind in ("number", "boolean", "array", "object") or (kind == "string" and actual != "")
    if op == "not_present":
        return kind in ("missing", "null") or (kind == "string" and actual == "")
    if kind != "number":
        return False
    return bool(actual > value) if op == "greater_than" else bool(actual < value)


_CHANGE_EVENTS: dict[str, tuple[str, str, str]] = {
    # field -> (event type, data key of the old value, data key of the new value)
    "status": (TicketEventType.STATUS_CHANGED, "old", "new"),
    "priority": (TicketEventType.PRIORITY_CHANGED, "old", "new"),
    "team": (TicketEventType.TEAM_CHANGED, "old_team_id", "new_team_id"),
    "assignee": (TicketEventType.ASSIGNED, "old_assignee_id", "new_assignee_id"),
}


def _transitions(f: _Field, facts: _Facts) -> list[tuple[Any, Any]]:
    """The (old, new) values a field went through in the change, a creation first."""
    result: list[tuple[Any, Any]] = []
    if f.kind == "custom":
        for e in facts.events:
            data = e.data or {}
            if e.type == TicketEventType.CUSTOM_FIELD_CHANGED and data.get("key") == f.column:
                result.append((data.get("old"), data.get("new")))
    else:
        type_, old_key, new_key = _CHANGE_EVENTS[f.name]
        for e in facts.events:
            if e.type == type_:
                data = e.data or {}
                result.append((data.get(old_key), data.get(new_key)))
    if facts.created:
        if result:
            initial = result[0][0]
        else:
            current = _read(f, facts)
            initial = None if current is _MISSING else current
        result.insert(0, (None, initial))
    return result


def _eval_change(f: _Field, op: str, value: Any, facts: _Facts) -> bool:
    if facts.change is None:
        return False
    if f.kind == "tags":
        added, removed = _tag_changes(facts)
        changed = bool(added or removed)
        if op == "changed":
            return changed
        if op == "not_changed":
            return not changed
        return bool((added if op == "changed_to" else removed).intersection(value))
    transitions = _transitions(f, facts)
    same: Callable[[Any, Any], bool] = _json_equal if f.kind == "custom" else (lambda a, b: bool(a == b))
    changed = any(not same(old, new) or (old is None) != (new is None) for old, new in transitions)
    if op == "changed":
        return changed
    if op == "not_changed":
        return not changed
    if not changed:
        return False
    if op == "changed_to":
        final = transitions[-1][1]
        return final is None if value is None else same(final, value)
    first = transitions[0][0]
    return first is None if value is None else same(first, value)


def _tag_changes(facts: _Facts) -> tuple[set[str], set[str]]:
    """The tags the change added and removed, net (added then removed is nothing)."""
    added: set[str] = set()
    removed: set[str] = set()
    for e in facts.events:
        if e.type != TicketEventType.TAGS_CHANGED:
            continue
        data = e.data or {}
        for tag in data.get("added", []):
            if tag in removed:
                removed.discard(tag)
            else:
                added.add(tag)
        for tag in data.get("removed", []):
            if tag in added:
                added.discard(tag)
            else:
                removed.add(tag)
    if facts.created:
        added |= set(facts.tags) - removed
    return added, removed


def _now(now: datetime | None) -> datetime:
    return now if now is not None else timezone.now()


def matches(
    conditions: dict[str, Any], ticket: Ticket, *, change: Change | None = None, now: datetime | None = None
) -> bool:
    """Whether the ticket (and the change, for triggers) meets the conditions, in memory.

    Reads the ticket's fields as they are on the instance; tags, customer emails and the message's
    attachments cost one query each when a condition needs them (none when prefetched). Raises
    InvalidConditions for data that is not valid (stored conditions were validated on save).
    """
    normalized = _load(conditions, for_query=False)
    facts = _Facts(ticket, change, _now(now))
    if not all(_eval(cond, facts) for cond in normalized["all"]):
        return False
    return not normalized["any"] or any(_eval(cond, facts) for cond in normalized["any"])


def explain(
    conditions: dict[str, Any], ticket: Ticket, *, change: Change | None = None, now: datetime | None = None
) -> list[tuple[str, bool]]:
    """Each condition in words with its result for this ticket (the "test against ticket N" preview).
    ANY conditions start with "Any of: "."""
    normalized = _load(conditions, for_query=False)
    facts = _Facts(ticket, change, _now(now))
    labels = _Labels(normalized)
    result = []
    for group in ("all", "any"):
        for cond in normalized[group]:
            words = _words(cond, labels)
            f = _field_for(cond["field"])
            if change is None and f is not None and (f.event_only or cond["op"] in EVENT_OPS):
                words += " (only in triggers: there is no change to look at)"
            result.append((("Any of: " if group == "any" else "") + words, _eval(cond, facts)))
    return result


# ---------------------------------------------------------------------------------------------
# In the database


class _JsonTypeOf(Func):
    """The JSON type of one key of `custom_fields`, never NULL: object, array, string, number,
    boolean, null, or missing (SQLite's json_type names mapped to jsonb_typeof's)."""

    output_field = CharField()

    def __init__(self, key: str) -> None:
        super().__init__(F("custom_fields"))
        self.key = key

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(jsonb_typeof({sql} -> %s), 'missing')", [*params, self.key]

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"CASE json_type({sql}, %s) WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' "
            "WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' "
            "WHEN 'null' THEN 'null' WHEN 'array' THEN 'array' WHEN 'object' THEN 'object' "
            "ELSE 'missing' END",
            [*params, f'$."{self.key}"'],
        )


def _q_scalar(f: _Field, op: str, value: Any) -> Q:
    col = f.column

    def eq(v: Any) -> Q:
        return Q(**{f"{col}__isnull": True}) if v is None else Q(**{col: v})

    def among(values: list[Any]) -> Q:
        q = Q(**{f"{col}__in": [v for v in values if v is not None]})
        return q | eq(None) if None in values else q

    if op == "is":
        return eq(value)
    if op == "is_not":
        return ~eq(value)
    if op == "includes_any":
        return among(value)
    if op == "includes_none":
        return ~among(value)
    if op in ("present", "not_present"):
        return Q(**{f"{col}__isnull": op == "not_present"})
    order = _order(f)
    position = order.index(value)
    return Q(**{f"{col}__in": order[position + 1 :] if op == "greater_than" else order[:position]})


def _q_text(col: str, op: str, value: Any) -> Q:
    if op == "present":
        return ~Q(**{col: ""})
    if op == "not_present":
        return Q(**{col: ""})
    lookup = {
        "is": "iexact",
        "is_not": "iexact",
        "contains": "icontains",
        "not_contains": "icontains",
        "starts_with": "istartswith",
    }[op]
    q = Q(**{f"{col}__{lookup}": value})
    return ~q if op in ("is_not", "not_contains") else q


def _q_tags(op: str, value: Any) -> Q:
    through = Ticket.tags.through

    def having(names: list[str] | None) -> Q:
        rows = through.objects.filter(ticket_id=OuterRef("pk"))
        if names is not None:
            rows = rows.filter(tag__name__in=names)
        return Q(Exists(rows))

    if op == "includes_any":
        return having(value)
    if op == "includes_all":
        q = _TRUE
        for name in value:
            q &= having([name])
        return q
    if op == "includes_none":
        return ~having(value)
    return having(None) if op == "present" else ~having(None)


def _q_email(op: str, value: Any) -> Q:
    from customers.models import Identity, IdentityKind

    rows = Identity.objects.filter(customer_id=OuterRef("customer_id"), kind=IdentityKind.EMAIL)
    if op in ("is", "is_not"):
        rows = rows.filter(value=value)
    elif op in ("contains", "not_contains"):
        rows = rows.filter(value__icontains=value)
    q = Q(Exists(rows))
    return ~q if op in ("is_not", "not_contains", "not_present") else q


def _q_custom(key: str, op: str, value: Any) -> Q:
    json_type = _JsonTypeOf(key)

    def typed(name: str) -> Q:
        return Q(Exact(json_type, name))

    def equal(v: Any) -> Q:
        kind = _json_type(v)
        lookup = "iexact" if kind == "string" else "exact"
        return typed(kind) & Q(**{f"custom_fields__{key}__{lookup}": v})

    if op == "is":
        return equal(value)
    if op == "is_not":
        return ~equal(value)
    if op == "contains":
        return typed("string") & Q(**{f"custom_fields__{key}__icontains": value})
    if op in ("present", "not_present"):
        empty = Q(In(json_type, ["missing", "null"])) | (typed("string") & Q(**{f"custom_fields__{key}": ""}))
        return ~empty if op == "present" else empty
    lookup = "gt" if op == "greater_than" else "lt"
    return typed("number") & Q(**{f"custom_fields__{key}__{lookup}": value})


def _q(cond: dict[str, Any], now: datetime) -> Q | None:
    """The condition as a Q over Ticket, or None when only memory can say it."""
    f = _field_for(cond["field"])
    assert f is not None
    op, value, kind = cond["op"], cond["value"], f.kind
    if kind in ("choice", "id"):
        return _q_scalar(f, op, value)
    if kind == "text":
        return _q_text(f.column, op, value)
    if kind == "tags":
        return _q_tags(op, value)
    if kind == "email":
        return _q_email(op, value)
    if kind == "custom":
        return _q_custom(f.column, op, value)
    if kind == "hours_since":
        after, upto = _hours_bounds(op, value, now)
        q = Q(**{f"{f.column}__isnull": False})
        if after is not None:
            q &= Q(**{f"{f.column}__gt": after})
        if upto is not None:
            q &= Q(**{f"{f.column}__lte": upto})
        return q
    if kind == "hours_until":
        if op in ("present", "not_present"):
            return Q(**{f"{f.column}__isnull": op == "not_present"})
        lookup = "gt" if op == "greater_than" else "lt"
        return Q(**{f"{f.column}__{lookup}": now + timedelta(hours=value)})
    if kind == "business_hours":
        # Does not depend on the ticket: decided now, for every ticket at once.
        return _TRUE if _is_open(cond.get("calendar"), now) == value else _FALSE
    return None  # event fields: refused for queries before we get here


def ticket_query(conditions: dict[str, Any], *, now: datetime) -> tuple[Q, Callable[[Ticket], bool] | None]:
    """A Q over Ticket selecting what the conditions match at `now`, and an in-memory check for
    the parts SQL cannot say (None when there are none; apply it to each row the Q returns).

    Use as `Ticket.objects.filter(q)`: one query, rows never duplicated. Raises
    InvalidConditions for event-only conditions (they only work in triggers).
    """
    normalized = _load(conditions, for_query=True)
    q = _TRUE
    in_memory: list[dict[str, Any]] = []
    for cond in normalized["all"]:
        part = _q(cond, now)
        if part is None:
            in_memory.append(cond)
        else:
            q &= part
    any_group = normalized["any"]
    memory_any = False
    if any_group:
        parts = [_q(cond, now) for cond in any_group]
        if any(part is None for part in parts):
            memory_any = True  # the whole ANY group is decided in memory
        else:
            either = _FALSE
            for part in parts:
                assert part is not None
                either |= part
            q &= either
    if not in_memory and not memory_any:
        return q, None

    def check(ticket: Ticket) -> bool:
        facts = _Facts(ticket, None, now)
        if not all(_eval(cond, facts) for cond in in_memory):
            return False
        return not memory_any or any(_eval(cond, facts) for cond in any_group)

    return q, check


# ---------------------------------------------------------------------------------------------
# Words, for the settings UI


class _Labels:
    """Names of the objects conditions refer to by id, loaded once (one query per kind)."""

    def __init__(self, normalized: dict[str, list[dict[str, Any]]]) -> None:
        wanted: dict[str, set[int]] = {}
        for cond in normalized["all"] + normalized["any"]:
            f = _field_for(cond["field"])
            if f is not None and f.kind == "id":
                values = cond["value"] if isinstance(cond["value"], list) else [cond["value"]]
                wanted.setdefault(f.model, set()).update(v for v in values if v is not None)
            if cond.get("calendar"):
                wanted.setdefault("calendar", set()).add(cond["calendar"])
        self.names: dict[tuple[str, int], str] = {}
        if not wanted:
            return
        models = _lazy_models()
        for model, ids in wanted.items():
            for obj in models[model].objects.filter(pk__in=ids):
                self.names[(model, obj.pk)] = _object_name(model, obj)

    def name(self, model: str, pk: int) -> str:
        return self.names.get((model, pk), f"{_ID_MODELS[model][0]} {pk} (deleted)")


def _object_name(model: str, obj: Any) -> str:
    return str(obj.display_name) if model == "user" else str(obj.name)


def _value_words(f: _Field, value: Any, labels: _Labels, joiner: str = "or") -> str:
    if isinstance(value, list):
        return _or_list([_value_words(f, v, labels) for v in value], joiner)
    if f.kind == "choice" or f.kind == "event":
        return dict(_choices(f)).get(value, str(value))
    if f.kind == "id":
        if value is None:
            return "nobody" if f.model == "user" else "none"
        return labels.name(f.model, value)
    if f.kind == "tags":
        return str(value)
    if f.kind in ("hours_since", "hours_until"):
        return f"{value} hour" if abs(value) == 1 else f"{value} hours"
    if isinstance(value, str):
        return f"“{value}”"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    return str(value)


def _words(cond: dict[str, Any], labels: _Labels) -> str:
    f = _field_for(cond["field"])
    assert f is not None
    op, value = cond["op"], cond["value"]
    if f.kind == "business_hours":
        calendar = cond.get("calendar")
        where = labels.name("calendar", calendar) if calendar else "the default calendar"
        return f"{'Within' if value else 'Outside'} business hours ({where})"
    if f.kind == "bool":
        return f"{f.label}: {'yes' if value else 'no'}"
    words = f"{f.label} {f.op_label(op)}"
    if op in NO_VALUE_OPS:
        return words
    return f"{words} {_value_words(f, value, labels, 'and' if op == 'includes_all' else 'or')}"


def describe(conditions: dict[str, Any]) -> list[str]:
    """The conditions as sentences: one per ALL condition, then one for the ANY group."""
    normalized = _load(conditions, for_query=False)
    if is_empty(normalized):
        return ["Every ticket"]
    labels = _Labels(normalized)
    sentences = [_words(cond, labels) for cond in normalized["all"]]
    if normalized["any"]:
        sentences.append("At least one of: " + "; ".join(_words(cond, labels) for cond in normalized["any"]))
    return sentences


def _value_shape(f: _Field, op: str) -> str:
    if op in NO_VALUE_OPS:
        return "none"
    if op in LIST_OPS or (f.kind == "tags" and op in ("changed_to", "changed_from")):
        return "list"
    return "one"


def describe_fields() -> list[dict[str, Any]]:
    """Every field for the settings UI: name, label, type, operators [(op, label)], choices
    [(value, label)] or None, whether it only works in triggers, and which value each operator
    takes ("none", "one" or "list"). `custom_field.<key>` stands for every custom field."""
    models = _lazy_models()
    db_choices: dict[str, list[tuple[Any, str]]] = {
        "team": [(t.pk, t.name) for t in models["team"].objects.order_by("name")],
        "inbox": [(i.pk, i.name) for i in models["inbox"].objects.order_by("name")],
        "user": [
            (u.pk, u.display_name)
            for u in models["user"].objects.filter(agent__isnull=False, is_active=True).order_by("first_name", "id")
        ],
        "organization": [(o.pk, o.name) for o in models["organization"].objects.order_by("name")[:500]],
        "sla_policy": [(p.pk, p.name) for p in models["sla_policy"].objects.order_by("position", "id")],
    }
    calendars = [(c.pk, c.name) for c in models["calendar"].objects.order_by("name")]
    result = []
    for f in [*FIELDS.values(), _custom_field("key")]:
        choices: list[tuple[Any, str]] | None
        if f.kind in ("choice", "event"):
            choices = _choices(f)
        elif f.kind == "id":
            choices = list(db_choices[f.model])
            if f.nullable:
                choices.insert(0, (None, "Nobody" if f.model == "user" else "None"))
        elif f.kind in ("bool", "business_hours"):
            choices = [(True, "Yes"), (False, "No")]
        else:
            choices = None
        entry: dict[str, Any] = {
            "name": "custom_field.<key>" if f.kind == "custom" else f.name,
            "label": "Custom field" if f.kind == "custom" else f.label,
            "type": f.kind,
            "operators": [(op, f.op_label(op)) for op in f.ops],
            "values": {op: _value_shape(f, op) for op in f.ops},
            "choices": choices,
            "event_only": f.event_only,
            "event_operators": [op for op in f.ops if op in EVENT_OPS],
            "help": f.help,
        }
        if f.kind == "business_hours":
            entry["calendars"] = calendars
        result.append(entry)
    return result


__all__ = [
    "EVENT_CHOICES",
    "FIELDS",
    "Change",
    "InvalidConditions",
    "describe",
    "describe_fields",
    "event_happened",
    "explain",
    "is_empty",
    "matches",
    "ticket_query",
    "validate_conditions",
]
