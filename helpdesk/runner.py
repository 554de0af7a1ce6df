"""The action runner: one set of steps for macros, triggers, time rules and SLA escalations.

A step is `{"type": …, "value": …}`. The macro steps (helpdesk/macros.py) plus what rules add:

| type           | value                                                                         |
|----------------|-------------------------------------------------------------------------------|
| `reply`        | text with canned placeholders; from a macro a public agent reply, from a rule |
|                | an automatic reply (AutoReplySent: never the first response, never a turn)   |
| `note`         | text of an internal note; the same placeholders                              |
| `status`       | `open`, `pending`, `on_hold`, `solved`, `closed`                             |
| `priority`     | 1 low, 2 normal, 3 high, 4 urgent                                            |
| `team`         | a team id, or null for no team                                               |
| `assignee`     | `"nobody"`, an agent's user id, or (macros only) `"me"`                      |
| `add_tags`     | a list of tag names                                                          |
| `remove_tags`  | a list of tag names                                                          |
| `set_tags`     | (rules) the ticket's whole list of tags (`[]`: none)                         |
| `custom_field` | (rules) `{"key": "order_id", "value": "A-1"}` (null value: remove it)        |
| `notify`       | (rules) `{"to": "assignee" | "team" | [user ids], "text": "…"}`              |
| `webhook`      | (rules) `{"url": "https://…", "secret": "…"}`: a signed POST (outbox)        |
| `sla_policy`   | (rules) an SLA policy id, or null for none                                   |

`validate_actions(steps, context=…)` checks the steps with one sentence per problem, in the
words of the context ("macro", "trigger", "time", "sla"). `run_actions` applies valid steps
to one ticket, inside the caller's transaction, through the ticket actions — with `actor`
None for rules, the system, which no permission check stops — and for rules it appends
`RuleFired` first, so the ticket's log says which rule made the changes that follow.
`preview_actions` says in words what the steps would do and writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from helpdesk.actions.ticket_fields import (
    CUSTOM_FIELD_KEY,
    MAX_CUSTOM_FIELD_CHARS,
    MAX_TAGS_PER_EDIT,
    InvalidTag,
    normalize_tag,
)
from helpdesk.canned import MAX_BODY_CHARS, placeholder_values, render_canned
from helpdesk.models import Priority, Team, Ticket, TicketStatus, User

if TYPE_CHECKING:
    from helpdesk.models import WebhookCall

logger = logging.getLogger(__name__)

MACRO_STEP_TYPES = ("reply", "note", "status", "priority", "team", "assignee", "add_tags", "remove_tags")
RULE_STEP_TYPES = (*MACRO_STEP_TYPES, "set_tags", "custom_field", "notify", "webhook", "sla_policy")
STEP_TYPES = RULE_STEP_TYPES
CONTEXTS = ("macro", "trigger", "time", "sla")
# What the sentences call the owner of the steps.
NOUNS = {"macro": "macro", "trigger": "trigger", "time": "time rule", "sla": "SLA escalation"}
# Steps a rule may hold more than once (each with its own recipients, address or key).
REPEATABLE = frozenset({"notify", "webhook", "custom_field"})
# Steps that set a ticket to a status (a ticket is never made "new" again).
STEP_STATUSES = tuple(s for s in TicketStatus.values if s != TicketStatus.NEW)
MAX_MACRO_STEPS = len(MACRO_STEP_TYPES)
MAX_RULE_STEPS = 20
MAX_NOTIFY_TEXT = 500
MAX_NOTIFY_USERS = 50
MAX_URL_CHARS = 2000
MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 200
SIGNATURE_HEADER = "X-Switchboard-Signature"
DELIVERY_HEADER = "X-Switchboard-Delivery"
# What a step's check leaves when the value is wrong (None is a valid team: no team).
_INVALID: Any = object()


class InvalidActions(ValueError):
    """Steps that cannot be stored or applied; `errors` lists every problem, one sentence each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class RuleSource:
    """Who runs the steps: a macro, a trigger, a time rule or an SLA escalation. `event` says
    what woke a rule (a trigger's event, "time", "sla_breach"…), for the webhook's body."""

    kind: str
    rule_id: int | None
    name: str
    event: str = ""


# --- validation ------------------------------------------------------------------------------


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _where(index: int, kind: str) -> str:
    return f"Step {index} ({kind})"


def _text(where: str, value: Any, errors: list[str], *, limit: int = MAX_BODY_CHARS) -> str | None:
    if not isinstance(value, str):
        errors.append(f"{where}: the text must be a string.")
        return None
    value = value.replace("\x00", "")
    if not value.strip():
        errors.append(f"{where}: the text is empty.")
        return None
    if len(value) > limit:
        errors.append(f"{where}: the text is too long ({len(value)} characters; at most {limit}).")
        return None
    return value


def _tags(where: str, value: Any, errors: list[str], *, allow_empty: bool = False) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or (not value and not allow_empty):
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


def _object(where: str, value: Any, keys: tuple[str, ...], errors: list[str]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        errors.append(f"{where}: the value must be an object with {' and '.join(keys)}.")
        return None
    extra = sorted(str(k) for k in value if k not in keys)
    if extra:
        errors.append(f"{where}: unknown field {extra[0][:40]!r}; the value has only {' and '.join(keys)}.")
        return None
    missing = [k for k in keys if k not in value]
    if missing:
        errors.append(f"{where}: the {missing[0]} is missing.")
        return None
    return value


def _custom_field(where: str, value: Any, errors: list[str]) -> dict[str, Any] | None:
    data = _object(where, value, ("key", "value"), errors)
    if data is None:
        return None
    key, field_value = data["key"], data["value"]
    if not isinstance(key, str) or not CUSTOM_FIELD_KEY.match(key):
        errors.append(
            f"{where}: {key!r:.60} is not a field key; "
            "use 1–64 lower-case letters, digits or _, starting with a letter."
        )
        return None
    if isinstance(field_value, str):
        field_value = field_value.replace("\x00", "")
        if len(field_value) > MAX_CUSTOM_FIELD_CHARS:
            errors.append(f"{where}: the value is too long (at most {MAX_CUSTOM_FIELD_CHARS} characters).")
            return None
    elif (field_value is not None and not isinstance(field_value, (bool, int, float))) or (
        isinstance(field_value, float) and field_value != field_value  # NaN is no value
    ):
        errors.append(f"{where}: the value must be a string, a number, true/false or null.")
        return None
    return {"key": key, "value": field_value}


def _notify(where: str, value: Any, errors: list[str]) -> dict[str, Any] | None:
    data = _object(where, value, ("to", "text"), errors)
    if data is None:
        return None
    to = data["to"]
    if isinstance(to, list):
        if not to or len(to) > MAX_NOTIFY_USERS or not all(_is_id(i) for i in to):
            errors.append(f'{where}: give 1–{MAX_NOTIFY_USERS} agent ids, or "assignee" or "team".')
            return None
        ids = list(dict.fromkeys(to))
        found = set(User.objects.filter(pk__in=ids, agent__isnull=False, is_active=True).values_list("pk", flat=True))
        gone = [i for i in ids if i not in found]
        if gone:
            errors.append(f"{where}: there is no active agent with id {gone[0]}.")
            return None
        to = ids
    elif to not in ("assignee", "team"):
        errors.append(f'{where}: send to "assignee", "team" or a list of agent ids (not {to!r:.60}).')
        return None
    text = _text(where, data["text"], errors, limit=MAX_NOTIFY_TEXT)
    if text is None:
        return None
    return {"to": to, "text": text}


def literal_private_address(host: str) -> bool:
    """A host written as an address webhooks may not call (see `is_public_address`), or
    "localhost", which a webhook may not call unless RULE_WEBHOOK_ALLOW_PRIVATE. Legacy IPv4
    spellings that resolvers accept ("127.1", "2130706433", "0x7f.0.0.1") count as addresses."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        if not _LEGACY_IPV4.fullmatch(host):
            return False
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    return not is_public_address(address)


_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")
# NAT64 (RFC 6052): the well-known prefix carries a public IPv4 address in its last 32 bits;
# the local-use prefix (RFC 8215) is a site's own translator, never the public internet.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


def _plainly_global(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not address.is_global:
        return False
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return False
    if address.is_loopback or address.is_link_local or address.is_private:
        return False
    return not (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a webhook may call the address: globally routable (`is_global`) and no
    multicast, reserved or unspecified address — and an IPv6 address that carries an IPv4 one
    (IPv4-mapped, NAT64, 6to4, Teredo) only when that IPv4 address is public too. So
    100.64.0.0/10 (carrier-grade NAT, with cloud metadata at 100.100.100.200), 169.254.0.0/16,
    ::ffff:127.0.0.1 and 2002:7f00:1:: (6to4 around 127.0.0.1) are all refused."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address in NAT64_WELL_KNOWN:
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address in NAT64_LOCAL_USE:
            return False
        embedded: list[ipaddress.IPv4Address] = []
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if not all(is_public_address(inner) for inner in embedded):
            return False
    return _plainly_global(address)


def host_problem(host: str) -> str | None:
    """Why a URL's host name cannot be called (None when it can): it must encode to IDNA, with
    labels of 1–63 characters and 253 at most in all. Address literals are not names."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare.split("%")[0])
        return None
    except ValueError:
        pass
    try:
        ascii_host = bare.encode("idna").decode("ascii")
    except UnicodeError:
        return "is not a valid host name (each part between dots must be 1–63 characters)"
    labels = ascii_host[:-1].split(".") if ascii_host.endswith(".") else ascii_host.split(".")
    if any(not 1 <= len(label) <= 63 for label in labels):
        return "is not a valid host name (each part between dots must be 1–63 characters)"
    if len(ascii_host.rstrip(".")) > 253:
        return "is too long for a host name (at most 253 characters)"
    try:
        import httpx

        httpx.URL(f"http://{ascii_host}/")
    except Exception:  # noqa: BLE001 — whatever httpx cannot parse, it cannot call
        return "is not a valid host name"
    return None


def _webhook(where: str, value: Any, errors: list[str]) -> dict[str, Any] | None:
    data = _object(where, value, ("url", "secret"), errors)
    if data is None:
        return None
    url, secret = data["url"], data["secret"]
    if not isinstance(url, str) or not url.strip():
        errors.append(f"{where}: give the address to call (https://…).")
        return None
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        errors.append(f"{where}: the address is too long (at most {MAX_URL_CHARS} characters).")
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 — raises ValueError on a port that is not a number
    except ValueError:
        errors.append(f"{where}: {url[:80]!r} is not a web address.")
        return None
    if parts.scheme not in ("http", "https") or not host:
        errors.append(f"{where}: the address must start with https:// or http:// and name a host.")
        return None
    if parts.username or parts.password or "@" in parts.netloc:
        errors.append(f"{where}: put no user name or password in the address; the secret signs each call.")
        return None
    if any(ord(c) < 33 for c in url):
        errors.append(f"{where}: the address contains spaces or control characters.")
        return None
    problem = host_problem(host)
    if problem:
        errors.append(f"{where}: {host[:80]} {problem}.")
        return None
    if not settings.RULE_WEBHOOK_ALLOW_PRIVATE and literal_private_address(host):
        errors.append(f"{where}: {host[:80]} is a private or local address, which webhooks may not call.")
        return None
    if not isinstance(secret, str) or not (MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS):
        errors.append(f"{where}: the secret must be {MIN_SECRET_CHARS}–{MAX_SECRET_CHARS} characters.")
        return None
    if any(ord(c) < 32 for c in secret):
        errors.append(f"{where}: the secret cannot contain control characters.")
        return None
    return {"url": url, "secret": secret}


def validate_actions(steps: Any, *, context: str) -> list[dict[str, Any]]:
    """The steps in their stored form (tags normalized, texts without NUL), or InvalidActions
    listing every problem. Teams, agents and SLA policies named by id must exist (one query
    each at most)."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r}")
    noun = NOUNS[context]
    allowed = MACRO_STEP_TYPES if context == "macro" else RULE_STEP_TYPES
    limit = MAX_MACRO_STEPS if context == "macro" else MAX_RULE_STEPS
    if not isinstance(steps, list):
        raise InvalidActions(['The steps must be a list of {"type": …, "value": …} objects.'])
    if not steps:
        raise InvalidActions([f"A {noun} needs at least one step."])
    if len(steps) > limit:
        each = " (one of each type)" if context == "macro" else ""
        raise InvalidActions([f"A {noun} has at most {limit} steps{each}; this one has {len(steps)}."])
    errors: list[str] = []
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    keys_seen: set[str] = set()
    for index, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            errors.append(f"Step {index}: must be an object with a type and a value.")
            continue
        kind = step.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            if isinstance(kind, str) and kind in RULE_STEP_TYPES:
                errors.append(f"Step {index}: a {noun} cannot use {kind} steps; one of: {', '.join(allowed)}.")
            else:
                errors.append(f"Step {index}: unknown type {kind!r:.60}; one of: {', '.join(allowed)}.")
            continue
        where = _where(index, kind)
        extra = sorted(str(k) for k in step if k not in ("type", "value"))
        if extra:
            errors.append(f"{where}: unknown field {extra[0][:40]!r}; a step has only a type and a value.")
            continue
        if "value" not in step:
            errors.append(f"{where}: the value is missing.")
            continue
        if kind in seen and (context == "macro" or kind not in REPEATABLE):
            errors.append(f"{where}: a {noun} has one {kind} step at most.")
            continue
        seen.add(kind)
        value = step["value"]
        normalized: Any = _INVALID
        if kind in ("reply", "note"):
            normalized = _text(where, value, errors)
        elif kind == "status":
            if isinstance(value, str) and value in STEP_STATUSES:
                normalized = value
            else:
                errors.append(f"{where}: {value!r:.60} is not a status; one of: {', '.join(STEP_STATUSES)}.")
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
            if value == "me" and context == "macro":
                normalized = value
            elif value == "me":
                errors.append(
                    f'{where}: "me" is the agent applying a macro, and a {noun} has none; give "nobody" or an agent id.'
                )
            elif value == "nobody":
                normalized = value
            elif not _is_id(value):
                choices = '"me", "nobody" or an agent id' if context == "macro" else '"nobody" or an agent id'
                errors.append(f"{where}: give {choices} (not {value!r:.60}).")
            elif not User.objects.filter(pk=value, agent__isnull=False, is_active=True).exists():
                errors.append(f"{where}: there is no active agent with id {value}.")
            else:
                normalized = value
        elif kind in ("add_tags", "remove_tags"):
            normalized = _tags(where, value, errors)
        elif kind == "set_tags":
            normalized = _tags(where, value, errors, allow_empty=True)
        elif kind == "custom_field":
            normalized = _custom_field(where, value, errors)
            if normalized is not None:
                if normalized["key"] in keys_seen:
                    errors.append(f"{where}: the field {normalized['key']} is already set by an earlier step.")
                    normalized = _INVALID
                keys_seen.add(str(value.get("key")))
        elif kind == "notify":
            normalized = _notify(where, value, errors)
        elif kind == "webhook":
            normalized = _webhook(where, value, errors)
        elif kind == "sla_policy":
            from helpdesk.models import SlaPolicy

            if value is None:
                normalized = None
            elif not _is_id(value):
                errors.append(f"{where}: give an SLA policy id, or null for none (not {value!r:.60}).")
            elif not SlaPolicy.objects.filter(pk=value).exists():
                errors.append(f"{where}: there is no SLA policy with id {value}.")
            else:
                normalized = value
        # (the checks answer None for a value they refused; for a team or policy None is "none".)
        if normalized is not _INVALID and (normalized is not None or kind in ("team", "sla_policy")):
            out.append({"type": kind, "value": normalized})
    by_kind = {s["type"]: s["value"] for s in out}
    both = set(by_kind.get("add_tags", [])) & set(by_kind.get("remove_tags", []))
    if both:
        errors.append(f"Tags {', '.join(sorted(both))} are both added and removed.")
    if "set_tags" in by_kind and ("add_tags" in by_kind or "remove_tags" in by_kind):
        errors.append("A set_tags step replaces every tag; it cannot go with add_tags or remove_tags.")
    if errors:
        raise InvalidActions(errors)
    return out


# --- planning: what the steps do to one ticket ------------------------------------------------


class _System:
    """The placeholders' "agent" when a rule writes: the helpdesk itself."""

    first_name = ""
    last_name = ""
    email = ""
    username = "Support team"

    def get_full_name(self) -> str:
        return "Support team"


SYSTEM = _System()


@dataclass
class PlannedStep:
    """One step as it will be applied to one ticket: the resolved value and how it reads."""

    type: str
    value: Any
    label: str
    # The rendered text of a reply, note or notification; a team, agent or policy for those steps.
    text: str = ""
    target: Any = None


def _placeholder_agent(ticket: Ticket, agent: Any) -> Any:
    if agent is not None:
        return agent
    return ticket.assignee if ticket.assignee_id and ticket.assignee else SYSTEM


def plan_actions(steps: list[dict[str, Any]], ticket: Ticket, *, agent: Any = None, context: str) -> list[PlannedStep]:
    """What the (valid) steps do on this ticket: placeholders rendered (for a rule, the ticket's
    assignee or "Support team" is the agent), "me", teams, agents and policies resolved (one query
    for each of those steps at most). Something gone since the steps were saved is InvalidActions."""
    values: dict[str, str] | None = None
    planned: list[PlannedStep] = []
    automatic = context != "macro"
    for index, step in enumerate(steps, start=1):
        kind, value = step["type"], step["value"]
        where = _where(index, kind)
        if kind in ("reply", "note"):
            if values is None:
                values = placeholder_values(ticket, _placeholder_agent(ticket, agent))
            text = render_canned(value, values)
            if kind == "reply":
                label = "Send an automatic reply" if automatic else "Reply to the customer"
            else:
                label = "Add an internal note"
            planned.append(PlannedStep(kind, value, label, text=text))
        elif kind == "status":
            planned.append(PlannedStep(kind, value, f"Status: {TicketStatus(value).label}"))
        elif kind == "priority":
            planned.append(PlannedStep(kind, value, f"Priority: {Priority(value).label}"))
        elif kind == "team":
            team = Team.objects.filter(pk=value).first() if value is not None else None
            if value is not None and team is None:
                raise InvalidActions([f"{where}: the team with id {value} no longer exists."])
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
                    raise InvalidActions([f"{where}: the agent with id {value} is no longer an active agent."])
            label = f"Assign to {assignee.display_name}" if assignee else "Unassign"
            planned.append(PlannedStep(kind, value, label, target=assignee))
        elif kind == "add_tags":
            planned.append(PlannedStep(kind, value, "Add tags: " + ", ".join(value)))
        elif kind == "remove_tags":
            planned.append(PlannedStep(kind, value, "Remove tags: " + ", ".join(value)))
        elif kind == "set_tags":
            planned.append(PlannedStep(kind, value, "Set tags: " + (", ".join(value) or "none")))
        elif kind == "custom_field":
            shown = "removed" if value["value"] is None else json.dumps(value["value"], ensure_ascii=False)[:80]
            planned.append(PlannedStep(kind, value, f"Custom field {value['key']}: {shown}"))
        elif kind == "notify":
            if values is None:
                values = placeholder_values(ticket, _placeholder_agent(ticket, agent))
            text = render_canned(value["text"], values)[:MAX_NOTIFY_TEXT]
            to = value["to"]
            whom = (
                "the assignee"
                if to == "assignee"
                else "the ticket's team"
                if to == "team"
                else f"{len(to)} agent{'s' if len(to) != 1 else ''}"
            )
            planned.append(PlannedStep(kind, value, f"Notify {whom}: {text}", text=text))
        elif kind == "webhook":
            host = urlsplit(value["url"]).hostname or ""
            planned.append(PlannedStep(kind, value, f"Call the webhook at {host} (signed POST)"))
        elif kind == "sla_policy":
            from helpdesk.models import SlaPolicy

            policy = SlaPolicy.objects.filter(pk=value).first() if value is not None else None
            if value is not None and policy is None:
                raise InvalidActions([f"{where}: the SLA policy with id {value} no longer exists."])
            label = f"SLA policy: {policy.name}" if policy else "SLA policy: none"
            planned.append(PlannedStep(kind, value, label, target=policy))
    return planned


# --- applying ---------------------------------------------------------------------------------


def run_actions(
    ticket: Ticket, steps: list[dict[str, Any]], *, source: RuleSource, actor: User | None = None
) -> Ticket:
    """Apply valid steps to the ticket, all or nothing; the ticket as it is afterwards.

    Inside the caller's transaction (the caller holds the ticket's lock or takes it here). For a
    rule (`source.kind` trigger, time or sla) `RuleFired` comes first; every change then goes
    through its ticket action with `actor` (None: the system, no permission check)."""
    planned = plan_actions(steps, ticket, agent=actor, context=source.kind)
    return run_planned(ticket, planned, source=source, actor=actor)


def run_planned(ticket: Ticket, planned: list[PlannedStep], *, source: RuleSource, actor: User | None) -> Ticket:
    """Apply steps planned by `plan_actions` (a macro's preview is the plan it then applies)."""
    from helpdesk.actions.replies import do_add_note, do_add_rule_note, do_reply, do_send_auto_reply
    from helpdesk.actions.ticket_fields import do_change_priority, do_change_team, do_set_custom_field, do_set_tags
    from helpdesk.actions.tickets import do_assign_ticket, do_change_status
    from helpdesk.events import RuleFired, append_event

    automatic = source.kind != "macro"
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update(of=("self",)).select_related("customer", "inbox").get(pk=ticket.pk)
        if automatic:
            append_event(ticket, RuleFired(rule_id=source.rule_id, name=source.name, kind=source.kind))
        for step in planned:
            kind = step.type
            if kind == "reply":
                if automatic:
                    if do_send_auto_reply(ticket, text=step.text) is None:
                        logger.info("rule %s: ticket %s has no address to reply to", source.rule_id, ticket.pk)
                else:
                    assert actor is not None, "a macro's reply has an agent"
                    do_reply(ticket, actor=actor, text=step.text)
            elif kind == "note":
                if actor is None:
                    do_add_rule_note(ticket, text=step.text)
                else:
                    do_add_note(ticket, actor=actor, text=step.text)
            elif kind == "status":
                do_change_status(ticket, status=step.value, actor=actor)
            elif kind == "priority":
                do_change_priority(ticket, priority=step.value, actor=actor)
            elif kind == "team":
                do_change_team(ticket, team=step.target, actor=actor)
            elif kind == "assignee":
                do_assign_ticket(ticket, assignee=step.target, actor=actor, via="rule" if automatic else "")
            elif kind == "add_tags":
                do_set_tags(ticket, add=step.value, actor=actor)
            elif kind == "remove_tags":
                do_set_tags(ticket, remove=step.value, actor=actor)
            elif kind == "set_tags":
                current = set(ticket.tags.values_list("name", flat=True))
                wanted = set(step.value)
                do_set_tags(ticket, add=sorted(wanted - current), remove=sorted(current - wanted), actor=actor)
            elif kind == "custom_field":
                do_set_custom_field(ticket, key=step.value["key"], value=step.value["value"], actor=actor)
            elif kind == "notify":
                _notify_step(ticket, step)
            elif kind == "webhook":
                queue_webhook_call(ticket, step.value, source=source)
            elif kind == "sla_policy":
                from helpdesk.actions.sla import apply_policy

                apply_policy(Ticket.objects.get(pk=ticket.pk), step.target, actor=actor)
        return Ticket.objects.select_related("customer", "inbox").get(pk=ticket.pk)


def _notify_step(ticket: Ticket, step: PlannedStep) -> None:
    from helpdesk.actions.notifications import do_notify_rule, staff_users

    fresh = Ticket.objects.get(pk=ticket.pk)
    to = step.value["to"]
    if to == "assignee":
        users = staff_users().filter(pk=fresh.assignee_id) if fresh.assignee_id else User.objects.none()
    elif to == "team":
        users = staff_users().filter(agent__teams=fresh.team_id) if fresh.team_id else User.objects.none()
    else:
        users = staff_users().filter(pk__in=to)
    do_notify_rule(fresh, recipients=list(users.order_by("pk")), text=step.text)


def sign_body(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(ticket: Ticket, source: RuleSource) -> str:
    """What a webhook step posts: the ticket's number, status, priority and subject, what woke
    the rule, and the rule. No customer data beyond the subject."""
    return json.dumps(
        {
            "event": source.event or source.kind,
            "rule": {"id": source.rule_id, "name": source.name, "kind": source.kind},
            "ticket": {
                "number": ticket.number,
                "status": ticket.status,
                "priority": ticket.priority,
                "subject": ticket.subject,
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )


def queue_webhook_call(ticket: Ticket, value: dict[str, Any], *, source: RuleSource) -> WebhookCall:
    """The outbox row of one webhook call, signed now (the secret is not stored in the row), and
    its delivery task queued after commit."""
    from helpdesk.models import Rule, WebhookCall
    from helpdesk.sideeffects import enqueue
    from helpdesk.tasks import deliver_webhook_call

    fresh = Ticket.objects.get(pk=ticket.pk)
    body = webhook_body(fresh, source)
    rule_id = source.rule_id if source.kind in ("trigger", "time") else None
    if rule_id is not None and not Rule.objects.filter(pk=rule_id).exists():
        rule_id = None
    call = WebhookCall.objects.create(
        ticket=fresh,
        rule_id=rule_id,
        url=value["url"],
        body=body,
        signature=sign_body(value["secret"], body.encode()),
        next_attempt_at=timezone.now(),
    )
    enqueue(deliver_webhook_call, call.pk)
    return call


# --- reading ----------------------------------------------------------------------------------


def preview_actions(ticket: Ticket, steps: list[dict[str, Any]], *, context: str = "trigger") -> list[str]:
    """What the steps would do to the ticket, in words (with what stays as it is); writes nothing."""
    out: list[str] = []
    planned = plan_actions(steps, ticket, agent=None, context=context)
    tags: set[str] | None = None
    for step in planned:
        kind = step.type
        if kind == "status":
            now = TicketStatus(ticket.status).label
            same = ticket.status == step.value
            out.append(f"{step.label} (stays {now})" if same else f"{step.label} (now {now})")
        elif kind == "priority":
            now = Priority(ticket.priority).label
            same = ticket.priority == step.value
            out.append(f"{step.label} (stays {now})" if same else f"{step.label} (now {now})")
        elif kind == "team":
            same = ticket.team_id == step.value
            out.append(f"{step.label} (no change)" if same else step.label)
        elif kind == "assignee":
            new = step.target.pk if step.target else None
            out.append(f"{step.label} (no change)" if ticket.assignee_id == new else step.label)
        elif kind in ("add_tags", "remove_tags", "set_tags"):
            if tags is None:
                tags = set(ticket.tags.values_list("name", flat=True)) if ticket.pk else set()
            if kind == "add_tags":
                new_tags = tags | set(step.value)
            elif kind == "remove_tags":
                new_tags = tags - set(step.value)
            else:
                new_tags = set(step.value)
            out.append(step.label if new_tags != tags else f"{step.label} (no change)")
            tags = new_tags
        elif kind in ("reply", "note"):
            out.append(f"{step.label}: {step.text[:200]}")
        elif kind == "custom_field":
            old = (ticket.custom_fields or {}).get(step.value["key"])
            out.append(f"{step.label} (no change)" if old == step.value["value"] else step.label)
        else:
            out.append(step.label)
    return out


def sets_value(step: dict[str, Any]) -> tuple[str, Any] | None:
    """(condition field, value after the step) for the steps that set a field whatever the ticket
    was: status, priority, team, assignee (None for nobody), custom fields (`custom_field.<key>`), and
    tags as `("tags", {"add"|"remove"|"set": [names]})` since the other tags stay. None for the
    rest (texts, notifications, webhooks, "me")."""
    kind, value = step.get("type"), step.get("value")
    if kind in ("status", "priority", "team"):
        return (str(kind), value)
    if kind == "assignee":
        if value == "me":
            return None
        return ("assignee", None if value == "nobody" else value)
    if kind in ("add_tags", "remove_tags", "set_tags"):
        return ("tags", {str(kind).split("_")[0]: list(value or [])})
    if kind == "custom_field" and isinstance(value, dict):
        return (f"custom_field.{value.get('key')}", value.get("value"))
    if kind == "sla_policy":
        return ("sla_policy", value)
    return None


def describe_steps() -> list[dict[str, Any]]:
    """The step types for the settings UI: type, label, what the value is, where usable."""
    everywhere = list(CONTEXTS)
    rules = ["trigger", "time", "sla"]
    return [
        {"type": "reply", "label": "Reply", "value": "text with placeholders", "contexts": everywhere},
        {"type": "note", "label": "Internal note", "value": "text with placeholders", "contexts": everywhere},
        {
            "type": "status",
            "label": "Set status",
            "value": "status",
            "choices": [(v, str(TicketStatus(v).label)) for v in STEP_STATUSES],
            "contexts": everywhere,
        },
        {
            "type": "priority",
            "label": "Set priority",
            "value": "priority",
            "choices": [(p.value, p.label) for p in Priority],
            "contexts": everywhere,
        },
        {"type": "team", "label": "Set team", "value": "team id or null", "contexts": everywhere},
        {
            "type": "assignee",
            "label": "Set assignee",
            "value": '"nobody", agent id ("me" in macros)',
            "contexts": everywhere,
        },
        {"type": "add_tags", "label": "Add tags", "value": "list of tags", "contexts": everywhere},
        {"type": "remove_tags", "label": "Remove tags", "value": "list of tags", "contexts": everywhere},
        {"type": "set_tags", "label": "Set tags", "value": "list of tags (replaces all)", "contexts": rules},
        {"type": "custom_field", "label": "Set custom field", "value": '{"key", "value"}', "contexts": rules},
        {
            "type": "notify",
            "label": "Notify agents",
            "value": '{"to": "assignee"|"team"|[ids], "text"}',
            "contexts": rules,
        },
        {"type": "webhook", "label": "Call webhook", "value": '{"url", "secret"}', "contexts": rules},
        {"type": "sla_policy", "label": "Apply SLA policy", "value": "policy id or null", "contexts": rules},
    ]


def steps_without_secrets(steps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps as they may be shown or logged: webhook secrets masked."""
    out = []
    for step in steps:
        if step.get("type") == "webhook" and isinstance(step.get("value"), dict):
            out.append({"type": "webhook", "value": {**step["value"], "secret": "••••••"}})
        else:
            out.append(step)
    return out
