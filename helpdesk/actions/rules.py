"""Business rules: triggers after every ticket change, time rules every hour, and the webhook
calls their steps make. Saved, deleted and ordered by admins (permissions.settings_policy).

Triggers (Zendesk's semantics, ../shared/reference/commercial.md §3.1): after a change, the
active triggers run in `position` order; each sees the ticket as the triggers before it left
it; when one fires, the pass starts again from the top; a trigger that fired does not fire
again in the same change; the run ends with a pass in which nothing fires. The events a trigger
appends belong to the same change. Triggers never run on closed tickets, except on the change
that closed it. Across changes, loop protection stops firing on a ticket once rules fired
RULES_MAX_FIRINGS_PER_HOUR times on it in the last hour (logged once).

Time rules (§3.2): hourly over the unsolved and solved tickets their conditions select (a query),
at most TIME_RULES_BATCH firings per rule and run (paging by id past the tickets it passes
over), one transaction per ticket. A time rule must hold a
condition its own actions make false, so it fires once per ticket, not every hour for ever;
`do_save_rule` refuses one that does not.

The active rules are cached in each process (helpdesk/config_cache.py), keyed by a version in
Django's cache that every save, delete and move changes (at once and again after commit), and
reloaded at least once a minute, so a change made in one process is seen by all: a ticket
change with no triggers costs no query.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from helpdesk.conditions import EVENT_CHOICES, FIELDS, event_happened
from helpdesk.config_cache import VersionedCache
from helpdesk.models import Rule, RuleKind, Ticket, TicketEvent, TicketEventType, TicketStatus, WebhookCall
from helpdesk.models.rule import WebhookCallStatus
from helpdesk.permissions import require_settings_admin
from helpdesk.runner import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    InvalidActions,
    RuleSource,
    host_problem,
    is_public_address,
    preview_actions,
    run_actions,
    sets_value,
    validate_actions,
)

if TYPE_CHECKING:
    import httpx

    from helpdesk.models import User

logger = logging.getLogger(__name__)

# The change kinds a trigger can wait for: the condition language's `event` values, so that
# "Rule.events" and an `event` condition mean the same (helpdesk/conditions.py EVENTS).
TRIGGER_EVENTS: list[tuple[str, str]] = list(EVENT_CHOICES)
_EVENT_VALUES = frozenset(value for value, _ in TRIGGER_EVENTS)
# Bookkeeping that is no change anyone makes to the ticket: it wakes no trigger.
QUIET_EVENTS = frozenset(
    {
        TicketEventType.DELIVERY_CHANGED,
        TicketEventType.CHAT_SEEN,
        TicketEventType.RULE_FIRED,
        TicketEventType.SLA_APPLIED,
    }
)
# Time rules work the tickets that are not closed: unsolved, and solved (to close them later).
TIME_RULE_STATUSES = (
    TicketStatus.NEW,
    TicketStatus.OPEN,
    TicketStatus.PENDING,
    TicketStatus.ON_HOLD,
    TicketStatus.SOLVED,
)
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 500
VERSION_KEY = "switchboard:rules:version"
LOOP_WARNED_KEY = "switchboard:rules:loop-warned:{}"
WEBHOOK_SWEEP_BATCH = 500
# A queued call's own task has this long to run before the sweeper queues it again.
WEBHOOK_SWEEP_GRACE = timedelta(seconds=60)
MAX_ERROR_CHARS = 500


class InvalidRule(ValueError):
    """A rule that cannot be saved; `errors` lists every problem, one sentence each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = errors


# --- the cached list of active rules --------------------------------------------------------------


def _load_active_rules() -> dict[str, list[Rule]]:
    by_kind: dict[str, list[Rule]] = {RuleKind.TRIGGER: [], RuleKind.TIME: []}
    for rule in Rule.objects.filter(is_active=True).order_by("kind", "position", "id"):
        by_kind.setdefault(rule.kind, []).append(rule)
    return by_kind


# Per process, under VERSION_KEY (helpdesk/config_cache.py).
_cached: VersionedCache[dict[str, list[Rule]]] = VersionedCache(VERSION_KEY, _load_active_rules)


def rules_version() -> str:
    """The version of the rules in Django's cache (made up when the cache lost it)."""
    return _cached.version() or ""


def bump_rules_version() -> None:
    """Every process reloads its rules: now, and once more after commit (a process that reloaded
    in between read the rules before the commit)."""
    _cached.changed()


def active_rules(kind: str) -> list[Rule]:
    """The active rules of one kind in their order; one query when the version changed, else none."""
    return _cached.get().get(kind, [])


# --- saving -----------------------------------------------------------------------------------


def _clean_text(value: Any) -> str:
    return value.replace("\x00", "").strip() if isinstance(value, str) else ""


def _hours_fields() -> set[str]:
    """The condition fields that count time: "hours since …" and hours until the SLA deadline."""
    return {name for name, f in FIELDS.items() if f.kind in ("hours_since", "hours_until")}


def _conditions_of(conditions: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return list(conditions.get("all") or []), list(conditions.get("any") or [])


def _tag_names(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value.strip().lower()}
    if isinstance(value, (list, tuple)):
        return {str(v).strip().lower() for v in value}
    return set()


def _stand_in(field: str, value: Any) -> Ticket:
    ticket = Ticket(status=TicketStatus.OPEN, custom_fields={})
    if field == "status":
        ticket.status = value
    elif field == "priority":
        ticket.priority = value
    elif field == "team":
        ticket.team_id = value
    elif field == "assignee":
        ticket.assignee_id = value
    elif field.startswith("custom_field."):
        ticket.custom_fields = {field.split(".", 1)[1]: value} if value is not None else {}
    elif field == "sla_policy":
        ticket.sla_policy_id = value
    return ticket


def _tag_sets_after(effects: list[Any], relevant: set[str]) -> list[set[str]]:
    """The least and the most of the `relevant` tags the ticket can hold after these tag steps
    (the other tags it had stay unknown)."""
    low: set[str] = set()
    high: set[str] = set(relevant)
    for effect in effects:
        if "set" in effect:
            low = high = set(effect["set"]) & relevant
        elif "add" in effect:
            added = set(effect["add"]) & relevant
            low, high = low | added, high | added
        else:
            removed = set(effect["remove"])
            low, high = low - removed, high - removed
    return [low, high]


def _tags_false_after(op: str, wanted: set[str], effects: list[Any]) -> bool:
    """Whether a tags condition is false after these tag steps, whatever other tags the ticket
    has: checked at the least and the most of the named tags it can hold (every operator on a
    list of tags is monotone in them); "are (not) set" only when the steps say the whole list."""
    if op in ("present", "not_present"):
        last = effects[-1]
        if "set" in last:
            return bool(last["set"]) == (op == "not_present")
        return op == "not_present" and "add" in last and bool(last["add"])
    for tags in _tag_sets_after(effects, wanted):
        if op == "includes_any" and tags & wanted:
            return False
        if op == "includes_all" and wanted <= tags:
            return False
        if op == "includes_none" and not tags & wanted:
            return False
        if op not in ("includes_any", "includes_all", "includes_none"):
            return False
    return True


def made_false(condition: dict[str, Any], steps: list[dict[str, Any]]) -> bool:
    """Whether the steps leave this condition false whatever else the ticket is."""
    from helpdesk.conditions import matches

    field = str(condition.get("field", ""))
    effects = [v for f, v in (sets_value(s) or ("", None) for s in steps) if f == field and f]
    if not effects:
        return False
    if field == "tags":
        return _tags_false_after(str(condition.get("op")), _tag_names(condition.get("value")), effects)
    try:
        return not matches({"all": [condition], "any": []}, _stand_in(field, effects[-1]), now=timezone.now())
    except Exception:  # noqa: BLE001
        # A condition that needs more of the ticket than the actions set cannot be shown false.
        return False


def self_limit_refusal(conditions: dict[str, Any], steps: list[dict[str, Any]]) -> str | None:
    """Why a time rule would fire again every hour on the same tickets, or None.

    It must hold a condition its own actions make false: one of its "all" conditions, or every
    one of its "any" conditions (typically: requires a tag to be absent and adds it, or requires
    status pending and sets solved)."""
    all_of, any_of = _conditions_of(conditions)
    if any(made_false(c, steps) for c in all_of):
        return None
    if any_of and all(made_false(c, steps) for c in any_of):
        return None
    return (
        "A time rule must contain a condition that its own actions make false, or it fires on the "
        "same tickets every hour: for example, require the tag “reminded” to be absent and add it, "
        "or require status pending and set the status to solved."
    )


def _hours_refusal(conditions: dict[str, Any]) -> str | None:
    all_of, any_of = _conditions_of(conditions)
    hours = _hours_fields()
    if any(str(c.get("field")) in hours for c in all_of) or (
        any_of and all(str(c.get("field")) in hours for c in any_of)
    ):
        return None
    return (
        "A time rule needs an “hours since …” condition (for example hours since pending greater "
        "than 48): it runs every hour, and without one it acts on tickets the moment they match, "
        "which is a trigger's job."
    )


def _validate(
    *, kind: Any, name: Any, description: Any, events: Any, conditions: Any, actions: Any
) -> tuple[str, str, str, list[str], dict[str, Any], list[dict[str, Any]]]:
    from helpdesk.conditions import InvalidConditions, validate_conditions

    if kind not in RuleKind.values:
        raise InvalidRule([f"A rule is a trigger or a time rule (not {kind!r:.40})."])
    errors: list[str] = []
    name = _clean_text(name)
    description = _clean_text(description)
    if not name:
        errors.append("A rule needs a name.")
    elif len(name) > MAX_NAME_CHARS:
        errors.append(f"The name is too long ({len(name)} characters; at most {MAX_NAME_CHARS}).")
    if len(description) > MAX_DESCRIPTION_CHARS:
        errors.append(f"The description is too long ({len(description)} characters; at most {MAX_DESCRIPTION_CHARS}).")
    clean_events: list[str] = []
    if events is None:
        events = []
    if not isinstance(events, (list, tuple)):
        errors.append("The events must be a list.")
    elif kind == RuleKind.TIME and events:
        errors.append("A time rule runs every hour, not on events; leave its events empty.")
    else:
        for event in events:
            if not isinstance(event, str) or event not in _EVENT_VALUES:
                choices = ", ".join(value for value, _ in TRIGGER_EVENTS)
                errors.append(f"Unknown event {event!r:.40}; one of: {choices}.")
                break
            if event not in clean_events:
                clean_events.append(event)
    clean_conditions: dict[str, Any] = {}
    try:
        clean_conditions = validate_conditions(conditions, for_query=kind == RuleKind.TIME)
    except InvalidConditions as exc:
        errors.extend(exc.errors)
    steps: list[dict[str, Any]] = []
    try:
        steps = validate_actions(actions, context=kind)
    except InvalidActions as exc:
        errors.extend(exc.errors)
    if not errors and kind == RuleKind.TIME:
        for refusal in (_hours_refusal(clean_conditions), self_limit_refusal(clean_conditions, steps)):
            if refusal:
                errors.append(refusal)
    if not errors and kind == RuleKind.TRIGGER and not clean_events:
        all_of, any_of = _conditions_of(clean_conditions)
        if not all_of and not any_of:
            errors.append(
                "A trigger needs events or conditions; without either it would run on every change of every ticket."
            )
    if errors:
        raise InvalidRule(errors)
    return str(kind), name, description, clean_events, clean_conditions, steps


def do_save_rule(
    rule: Rule | None,
    *,
    kind: str,
    name: str,
    description: str = "",
    events: list[str] | None = None,
    conditions: Any,
    actions: Any,
    is_active: bool = True,
    actor: User,
) -> Rule:
    """Create a rule (`rule` None: last of its kind) or change one; everything is checked first
    (InvalidRule, one sentence per problem). Admins only."""
    require_settings_admin(actor)
    kind, name, description, events, conditions, steps = _validate(
        kind=kind, name=name, description=description, events=events, conditions=conditions, actions=actions
    )
    with transaction.atomic():
        if rule is None or rule.pk is None:
            position = _next_position(kind)
            saved = Rule.objects.create(
                kind=kind,
                name=name,
                description=description,
                position=position,
                is_active=bool(is_active),
                events=events,
                conditions=conditions,
                actions=steps,
                created_by=actor,
            )
        else:
            saved = Rule.objects.select_for_update().get(pk=rule.pk)
            old_kind = saved.kind
            if old_kind != kind:
                saved.position = _next_position(kind)
            saved.kind, saved.name, saved.description = kind, name, description
            saved.is_active, saved.events, saved.conditions, saved.actions = bool(is_active), events, conditions, steps
            saved.save(
                update_fields=[
                    "kind",
                    "name",
                    "description",
                    "position",
                    "is_active",
                    "events",
                    "conditions",
                    "actions",
                    "updated_at",
                ]
            )
            if old_kind != kind:
                _renumber(old_kind)
        bump_rules_version()
    return saved


def _next_position(kind: str) -> int:
    top = Rule.objects.filter(kind=kind).aggregate(top=Max("position"))["top"]
    return 0 if top is None else top + 1


def _renumber(kind: str, order: list[Rule] | None = None) -> None:
    rules = order if order is not None else list(Rule.objects.filter(kind=kind).order_by("position", "id"))
    changed = []
    for index, item in enumerate(rules):
        if item.position != index:
            item.position = index
            changed.append(item)
    if changed:
        Rule.objects.bulk_update(changed, ["position"])


def do_delete_rule(rule: Rule, *, actor: User) -> None:
    """Delete a rule (its webhook calls keep their rows, without it); admins only."""
    require_settings_admin(actor)
    with transaction.atomic():
        current = Rule.objects.select_for_update().filter(pk=rule.pk).first()
        if current is None:
            return
        kind = current.kind
        current.delete()
        _renumber(kind)
        bump_rules_version()


def do_move_rule(rule: Rule, *, position: int, actor: User) -> None:
    """Put a rule at `position` (0 first; beyond the end: last) among its kind, renumbered 0..n."""
    require_settings_admin(actor)
    if not isinstance(position, int) or isinstance(position, bool):
        raise InvalidRule(["The position must be a whole number."])
    with transaction.atomic():
        current = Rule.objects.select_for_update().filter(pk=rule.pk).first()
        if current is None:
            return
        rules = list(Rule.objects.select_for_update().filter(kind=current.kind).order_by("position", "id"))
        rules = [r for r in rules if r.pk != current.pk]
        rules.insert(max(0, min(position, len(rules))), current)
        _renumber(current.kind, rules)
        bump_rules_version()


# --- preview ----------------------------------------------------------------------------------


@dataclass
class RulePreview:
    """What a rule would do to one ticket now: whether it matches, each condition's result, the
    changes in words, and why the rule could not be saved (None when it could)."""

    matches: bool
    conditions: list[tuple[str, bool]]
    effects: list[str]
    refusal: str | None


def preview_rule(*, kind: str, conditions: Any, actions: Any, ticket: Ticket) -> RulePreview:
    """Test a rule (saved or not) against a ticket: writes nothing. A trigger is tested as if the
    ticket's newest event (and newest message) were the change; a time rule, as of now."""
    from helpdesk.conditions import Change, InvalidConditions, explain, matches, validate_conditions

    errors: list[str] = []
    if kind not in RuleKind.values:
        return RulePreview(False, [], [], f"A rule is a trigger or a time rule (not {kind!r:.40}).")
    clean: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    try:
        clean = validate_conditions(conditions, for_query=kind == RuleKind.TIME)
    except InvalidConditions as exc:
        errors.extend(exc.errors)
    try:
        steps = validate_actions(actions, context=kind)
    except InvalidActions as exc:
        errors.extend(exc.errors)
    if errors:
        return RulePreview(False, [], [], " ".join(errors))
    refusal = None
    if kind == RuleKind.TIME:
        refusal = _hours_refusal(clean) or self_limit_refusal(clean, steps)
    now = timezone.now()
    change = None
    if kind == RuleKind.TRIGGER:
        newest = TicketEvent.objects.filter(ticket=ticket).order_by("-seq").first()
        change = Change.from_events([newest] if newest else [])
    results = explain(clean, ticket, change=change, now=now)
    matched = matches(clean, ticket, change=change, now=now)
    try:
        effects = preview_actions(ticket, steps, context=kind)
    except InvalidActions as exc:
        effects, refusal = [], refusal or " ".join(exc.errors)
    return RulePreview(matched, results, effects, refusal)


# --- triggers ---------------------------------------------------------------------------------


def _closes(events: Iterable[TicketEvent]) -> bool:
    return any(e.type == TicketEventType.STATUS_CHANGED and e.data.get("new") == TicketStatus.CLOSED for e in events)


def _wakes(rule: Rule, events: list[TicketEvent]) -> bool:
    """Whether the change's events (bookkeeping left out) wake the trigger: any of its `events`
    happened ("updated": any change that did not create the ticket); no events: any change."""
    if not events:
        return False
    return not rule.events or any(event_happened(name, events) for name in rule.events)


def _event_name(rule: Rule, events: list[TicketEvent]) -> str:
    """The trigger event a webhook reports: the first of the rule's events that happened (for a
    rule without events, the first of all)."""
    names = rule.events or [value for value, _ in TRIGGER_EVENTS]
    return next((name for name in names if event_happened(name, events)), "updated")


def _recent_firings(ticket: Ticket, now: datetime) -> int:
    return TicketEvent.objects.filter(
        ticket_id=ticket.pk, type=TicketEventType.RULE_FIRED, created_at__gte=now - timedelta(hours=1)
    ).count()


def _warn_loop(ticket: Ticket, limit: int) -> None:
    if cache.add(LOOP_WARNED_KEY.format(ticket.pk), 1, timeout=3600):
        logger.warning(
            "ticket %s: rules fired %s times within an hour; no more triggers fire on it for now (loop protection)",
            ticket.number,
            limit,
        )


def _record_firings(rule_ids: Iterable[int], now: datetime) -> None:
    """After commit, outside the ticket's transaction: each fired rule's `last_fired_at`, one
    UPDATE (in autocommit) per rule, so processors firing the same trigger never wait for or
    deadlock on its row. Never moved back; a rolled-back change records nothing."""
    from helpdesk.sideeffects import after_commit

    for rule_id in sorted(set(rule_ids)):

        def record(rule_id: int = rule_id) -> None:
            Rule.objects.filter(Q(last_fired_at__isnull=True) | Q(last_fired_at__lt=now), pk=rule_id).update(
                last_fired_at=now
            )

        after_commit(record)


def run_triggers(ticket: Ticket, events: list[TicketEvent]) -> Ticket:
    """Change-processor step 2: run the active triggers over one change (`events`), the ticket
    locked by the caller; the ticket as the triggers left it. The rules' `last_fired_at` is
    written after commit (`_record_firings`), never under the ticket's lock."""
    fired: list[int] = []
    now = timezone.now()
    ticket = _run_triggers(ticket, events, now=now, fired=fired)
    if fired:
        _record_firings(fired, now)
    return ticket


def _run_triggers(ticket: Ticket, events: list[TicketEvent], *, now: datetime, fired: list[int]) -> Ticket:
    if all(e.type in QUIET_EVENTS for e in events):
        return ticket
    rules = active_rules(RuleKind.TRIGGER)
    if not rules:
        return ticket
    from helpdesk.conditions import Change, matches

    if ticket.status == TicketStatus.CLOSED and not _closes(events):
        return ticket
    change = Change.from_events(list(events))
    limit = settings.RULES_MAX_FIRINGS_PER_HOUR
    budget: int | None = None
    done: set[int] = set()
    while True:
        fired_now = False
        waking = [e for e in change.events if e.type not in QUIET_EVENTS]
        for rule in rules:
            if rule.pk in done or not _wakes(rule, waking):
                continue
            if ticket.status == TicketStatus.CLOSED and not _closes(change.events):
                return ticket
            try:
                matched = matches(rule.conditions, ticket, change=change, now=now)
            except Exception:
                logger.exception("trigger %s (%s): its conditions failed on ticket %s", rule.pk, rule.name, ticket.pk)
                done.add(rule.pk)
                continue
            if not matched:
                continue
            if budget is None:
                budget = limit - _recent_firings(ticket, now)
            if budget <= 0:
                _warn_loop(ticket, limit)
                return ticket
            done.add(rule.pk)
            seq = ticket.last_event_seq
            source = RuleSource(RuleKind.TRIGGER, rule.pk, rule.name, event=_event_name(rule, waking))
            try:
                with transaction.atomic():
                    ticket = run_actions(ticket, rule.actions, source=source)
            except Exception:
                logger.exception(
                    "trigger %s (%s) failed on ticket %s; nothing of it was kept", rule.pk, rule.name, ticket.pk
                )
                ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
                continue
            budget -= 1
            fired.append(rule.pk)
            # What the trigger did is part of this change: later triggers see its events too.
            appended = list(TicketEvent.objects.filter(ticket_id=ticket.pk, seq__gt=seq).order_by("seq"))
            change = Change(events=[*change.events, *appended], message=change.message)
            fired_now = True
            break  # the pass starts again from the top
        if not fired_now:
            return ticket


# --- time rules -------------------------------------------------------------------------------


def do_run_time_rules(*, now: datetime | None = None) -> int:
    """Run every active time rule over the tickets it selects; the number of firings.

    Each rule fires on at most TIME_RULES_BATCH tickets per run. Its matching tickets are read
    in pages of TIME_RULES_PAGE by id, with a cursor (`id > last`), until the batch has fired or
    no ticket is left: a ticket the in-memory check (business hours) refuses, one locked
    elsewhere (skipped, the next run takes it) or one whose actions raise does not hold up the
    tickets after it. A ticket the rule fired on no longer matches it. Each candidate is then
    locked, checked again and changed in a transaction of its own."""
    from helpdesk.conditions import ticket_query

    now = now or timezone.now()
    total = 0
    for rule in active_rules(RuleKind.TIME):
        try:
            query, check = ticket_query(rule.conditions, now=now)
        except Exception:
            logger.exception("time rule %s (%s): its conditions could not be queried", rule.pk, rule.name)
            continue
        fired = _run_time_rule(rule, query, check, now=now)
        if fired:
            Rule.objects.filter(pk=rule.pk).update(last_fired_at=now)
        total += fired
    return total


TIME_RULES_PAGE = 500


def _run_time_rule(rule: Rule, query: Q, check: Callable[[Ticket], bool] | None, *, now: datetime) -> int:
    from helpdesk.conditions import matches

    batch = settings.TIME_RULES_BATCH
    source = RuleSource(RuleKind.TIME, rule.pk, rule.name, event="time")
    selected = Ticket.objects.filter(status__in=TIME_RULE_STATUSES).filter(query).order_by("id")
    fired, last_id = 0, 0
    while fired < batch:
        try:
            page = list(selected.filter(id__gt=last_id)[:TIME_RULES_PAGE])
        except Exception:
            logger.exception("time rule %s (%s): its conditions could not be queried", rule.pk, rule.name)
            break
        for candidate in page:
            if fired >= batch:
                break
            last_id = candidate.pk
            try:
                # The in-memory check first, on the row as read: what it refuses costs no lock.
                if check is not None and not check(candidate):
                    continue
                with transaction.atomic():
                    ticket = (
                        Ticket.objects.select_for_update(skip_locked=True)
                        .filter(pk=candidate.pk, status__in=TIME_RULE_STATUSES)
                        .first()
                    )
                    if ticket is None or not matches(rule.conditions, ticket, now=now):
                        continue
                    if check is not None and not check(ticket):
                        continue
                    run_actions(ticket, rule.actions, source=source)
                    fired += 1
            except Exception:
                logger.exception("time rule %s (%s) failed on ticket %s", rule.pk, rule.name, candidate.pk)
        if len(page) < TIME_RULES_PAGE:
            break
    return fired


# --- webhook calls ----------------------------------------------------------------------------


class RefusedAddress(Exception):
    """The webhook's host is (or resolves to) an address webhooks may not call."""


@dataclass(frozen=True)
class WebhookTarget:
    """Where one delivery connects: `url` with its host replaced by the checked address, the
    Host header and the TLS server name (SNI, certificate check) of the original host."""

    url: str
    address: str
    host_header: str
    sni_hostname: str | None


def resolve_webhook_target(url: str) -> WebhookTarget:
    """Resolve the webhook's host once and check every address it resolves to: RefusedAddress
    when one is not public (`runner.is_public_address`) unless RULE_WEBHOOK_ALLOW_PRIVATE,
    OSError when it does not resolve, ValueError when it is no web address. The delivery then
    connects to the first checked address, so a second DNS answer (rebinding) is never asked."""
    import ipaddress

    import httpx

    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("the address must start with https:// or http:// and name a host")
    if parsed.userinfo:
        raise ValueError("the address may not hold a user name or password")
    host = parsed.raw_host.decode("ascii")
    problem = host_problem(host)
    if problem:
        raise ValueError(f"{host[:80]} {problem}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    if not settings.RULE_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if not is_public_address(address):
                raise RefusedAddress(
                    f"{host} resolves to {address}, a private or local address; webhooks may not call it"
                )
    chosen = str(addresses[0])
    try:
        ipaddress.ip_address(host)
        is_literal = True
    except ValueError:
        is_literal = False
    host_header = f"[{host}]" if ":" in host else host
    if parsed.port is not None:  # httpx leaves a scheme's default port out
        host_header += f":{parsed.port}"
    return WebhookTarget(
        url=str(parsed.copy_with(host=chosen)),
        address=chosen,
        host_header=host_header,
        sni_hostname=None if is_literal else host,
    )


def webhook_client(timeout: float) -> httpx.Client:
    """The client of one delivery: no proxy or .netrc from the environment, no redirects."""
    import httpx

    return httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout)


def post_webhook(url: str, *, content: bytes, headers: dict[str, str]) -> tuple[int, bool]:
    """POST to the checked address of `url`'s host (`resolve_webhook_target`); its status and
    whether it is a redirect. The body of the answer is not read."""
    target = resolve_webhook_target(url)
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    with (
        webhook_client(settings.RULE_WEBHOOK_TIMEOUT_SECONDS) as client,
        client.stream(
            "POST",
            target.url,
            content=content,
            headers={**headers, "Host": target.host_header},
            extensions=extensions,
        ) as response,
    ):
        return response.status_code, response.is_redirect


def do_deliver_webhook_call(call_id: int, *, now: datetime | None = None) -> str:
    """POST one queued call (what happened: "sent", "retry", "failed", "refused", or why nothing
    was done). Under the row's lock, so two runs never post twice; 2xx is sent; anything else
    (a redirect included: none is followed; any exception while resolving, connecting or
    sending) is a failed attempt, tried again with exponential backoff (DELIVERY_BACKOFF_*),
    DELIVERY_MAX_ATTEMPTS times in all, then failed. A refused address fails at once."""
    from channels_inbox.actions.receive import retry_delay
    from helpdesk.sideeffects import enqueue
    from helpdesk.tasks import deliver_webhook_call

    with transaction.atomic():
        call = WebhookCall.objects.select_for_update(skip_locked=True).filter(pk=call_id).first()
        if call is None:
            return "busy" if WebhookCall.objects.filter(pk=call_id).exists() else "missing"
        if call.status != WebhookCallStatus.QUEUED:
            return f"already {call.status}"
        now = now or timezone.now()
        call.attempts += 1
        error = ""
        try:
            status, is_redirect = post_webhook(
                call.url,
                content=call.body.encode(),
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "Switchboard-Webhooks/1",
                    SIGNATURE_HEADER: call.signature,
                    DELIVERY_HEADER: str(call.pk),
                },
            )
        except RefusedAddress as exc:
            call.status, call.last_error, call.next_attempt_at = WebhookCallStatus.FAILED, str(exc), None
            call.save(update_fields=["status", "attempts", "last_error", "next_attempt_at"])
            logger.warning("webhook call %s refused: %s", call.pk, exc)
            return "refused"
        except Exception as exc:  # noqa: BLE001 — whatever went wrong, the attempt counts
            error = f"{type(exc).__name__}: {exc}"
        else:
            call.response_status = status
            if 200 <= status < 300:
                call.status, call.sent_at, call.next_attempt_at, call.last_error = (
                    WebhookCallStatus.SENT,
                    now,
                    None,
                    "",
                )
                call.save(
                    update_fields=["status", "attempts", "response_status", "sent_at", "next_attempt_at", "last_error"]
                )
                return "sent"
            error = f"HTTP {status}" + (" (redirects are not followed)" if is_redirect else "")
        call.last_error = error[:MAX_ERROR_CHARS]
        if call.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
            call.status, call.next_attempt_at = WebhookCallStatus.FAILED, None
            call.save(update_fields=["status", "attempts", "response_status", "last_error", "next_attempt_at"])
            logger.warning("webhook call %s failed after %s attempts: %s", call.pk, call.attempts, call.last_error)
            return "failed"
        delay = retry_delay(call.attempts)
        call.next_attempt_at = now + delay
        call.save(update_fields=["attempts", "response_status", "last_error", "next_attempt_at"])
        enqueue(deliver_webhook_call, call.pk, countdown=delay.total_seconds())
        return "retry"


def do_sweep_webhook_calls(*, now: datetime | None = None) -> int:
    """Queue again the queued calls whose attempt is overdue (their task was lost); how many."""
    from helpdesk.tasks import deliver_webhook_call

    now = now or timezone.now()
    due = list(
        WebhookCall.objects.filter(status=WebhookCallStatus.QUEUED, next_attempt_at__lte=now - WEBHOOK_SWEEP_GRACE)
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:WEBHOOK_SWEEP_BATCH]
    )
    for call_id in due:
        try:
            deliver_webhook_call.delay(call_id)
        except Exception:
            logger.exception("could not queue webhook call %s", call_id)
            break
    return len(due)
