"""Routing of tickets: which team (routing rules), the team's queue, and which agent (docs/routing.md).

1. A new ticket (a change with a `created` event; change-processor step 1, `route_new_ticket`)
   goes to the team of the first active RoutingRule, in `position` order, whose inbox (any,
   when empty) and conditions (helpdesk/conditions.py) match; without a match the inbox's team
   stays. The rules are cached per process (helpdesk/config_cache.py), keyed by a version in
   Django's cache that every save, delete and move changes, and re-read at least once a
   minute: a change with no rules costs no query.
2. After every change (step 4, `queue_for_routing`) the ticket is queued (`queued_at`) when it
   is eligible: its team routes (round robin or least loaded), status new or open, nobody
   assigned, not a live chat (chats have their router: helpdesk/actions/chats.py). Anything
   else takes it out of the queue. The team's assignment runs after commit, for the ticket's
   team and for the teams of an agent whose capacity the change freed (a ticket solved, set
   pending or on hold, given to someone else).
3. `do_assign_queued_tickets` hands each routing team's queue out, highest priority first, then
   the earliest SLA deadline (none: last), then the longest waiting (index
   ticket_routing_queue_idx), to the agent helpdesk/assignment.py chooses. Beat runs it for
   every team every ROUTING_SWEEP_SECONDS (agents who came online, a lost task).
4. `do_agent_went_offline`: in teams with `reassign_offline`, an agent's new and open tickets
   go back to the queue when the agent goes offline.

Concurrency: per ticket, one transaction locks the ticket row (`SKIP LOCKED`: a ticket another
worker is routing or the change processor holds is left for the next run), then the
candidate agents' AgentProfile rows ordered by id, and only then counts their load. Two
workers assigning at once therefore see each other's assignments, and no agent is put over
capacity (PostgreSQL; the embedded SQLite mode serializes writers). Lock order: the ticket,
then agent profiles (routed tickets are never chats, so the chat router's order — its chat,
profiles, its chat's ticket — cannot cross it). Manual assignment takes no such lock and may
exceed capacity: only routing respects it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Count, F, Max
from django.utils import timezone

from helpdesk.assignment import (
    ANY_KIND,
    CHAT_KIND,
    LOAD_STATUSES,
    ROUTABLE_STATUSES,
    Candidate,
    capacity_for,
    choose,
    language_required,
    normalize_language,
    presences_for,
)
from helpdesk.config_cache import VersionedCache
from helpdesk.models import (
    AgentProfile,
    Presence,
    Role,
    RoutingMode,
    RoutingRule,
    Team,
    Ticket,
    TicketEvent,
    TicketEventType,
)
from helpdesk.permissions import require_settings_admin
from helpdesk.sideeffects import after_commit, enqueue

if TYPE_CHECKING:
    from channels_inbox.models import Inbox
    from helpdesk.models import User

logger = logging.getLogger(__name__)

# Roles routing gives tickets to (light agents never reply).
ROUTING_ROLES = (Role.ADMIN, Role.SUPERVISOR, Role.AGENT)
# One run looks at most this many queued tickets of a team (the next run goes on).
SWEEP_LIMIT = 500
# Tickets one agent going offline returns to the queue at most per call.
OFFLINE_LIMIT = 1000
# The queue's order (index ticket_routing_queue_idx).
QUEUE_ORDER = ("-priority", F("sla_due_at").asc(nulls_last=True), "queued_at", "id")
# Limits of the settings.
MAX_NAME_CHARS = 200
MAX_CAPACITY = 1000
MAX_CHAT_CAPACITY = 50
MAX_LANGUAGES = 20
MAX_SKILLS_TIMEOUT_MINUTES = 7 * 24 * 60

_VERSION_KEY = "routing:rules:version"


class InvalidRoutingRule(ValueError):
    """Routing settings that cannot be saved; `errors` has one sentence per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = errors


class InvalidTeamRouting(InvalidRoutingRule):
    """A team's routing settings that cannot be saved."""


class InvalidAgentRouting(InvalidRoutingRule):
    """An agent's capacity, chat capacity or languages that cannot be saved."""


# --- the rules, cached per process ----------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    id: int
    inbox_id: int | None
    team_id: int
    conditions: dict[str, Any]

    @property
    def has_conditions(self) -> bool:
        return bool(self.conditions.get("all") or self.conditions.get("any"))


def _load_active_rules() -> tuple[_Rule, ...]:
    return tuple(
        _Rule(id=r.pk, inbox_id=r.inbox_id, team_id=r.team_id, conditions=r.conditions or {})
        for r in RoutingRule.objects.filter(is_active=True).order_by("position", "id")
    )


# Per process, under _VERSION_KEY (helpdesk/config_cache.py; re-read at least every 60 s).
_local: VersionedCache[tuple[_Rule, ...]] = VersionedCache(_VERSION_KEY, _load_active_rules)


def _rules_version() -> str:
    return _local.version() or ""


def _bump_rules_version() -> None:
    """Every process reloads the rules; again after commit, so a process that read the old rows
    between this write and its commit reloads once more."""
    _local.changed()


def active_rules() -> tuple[_Rule, ...]:
    """The active routing rules in order (no query while the cached version holds)."""
    return _local.get()


def route_new_ticket(ticket: Ticket, events: list[TicketEvent]) -> Ticket:
    """Change-processor step 1: a new ticket goes to the team of the first matching rule."""
    if not any(e.type == TicketEventType.CREATED for e in events):
        return ticket
    rules = active_rules()
    if not rules:
        return ticket
    change: Any = None
    for rule in rules:
        if rule.inbox_id is not None and rule.inbox_id != ticket.inbox_id:
            continue
        if rule.has_conditions:
            from helpdesk.conditions import Change, matches

            if change is None:
                change = Change.from_events(events)
            if not matches(rule.conditions, ticket, change=change):
                continue
        if rule.team_id == ticket.team_id:
            return ticket
        team = Team.objects.filter(pk=rule.team_id).first()
        if team is None:
            continue
        from helpdesk.actions.ticket_fields import do_change_team

        return do_change_team(ticket, team=team, actor=None)
    return ticket


# --- the queue --------------------------------------------------------------------------------


def _routes(mode: str | None) -> bool:
    return mode in (RoutingMode.ROUND_ROBIN, RoutingMode.LEAST_LOADED)


def is_routable(ticket: Ticket, mode: str | None) -> bool:
    """Whether the ticket belongs in its team's routing queue (`mode`: the team's routing)."""
    return (
        _routes(mode)
        and ticket.status in ROUTABLE_STATUSES
        and ticket.assignee_id is None
        and ticket.channel != CHAT_KIND
    )


def _team_mode(team_id: int | None) -> str | None:
    if team_id is None:
        return None
    return Team.objects.filter(pk=team_id).values_list("routing", flat=True).first()


def _set_queued(ticket: Ticket, queued_at: datetime | None) -> None:
    ticket.queued_at = queued_at
    Ticket.objects.filter(pk=ticket.pk).update(queued_at=queued_at)


def _freed_agents(ticket: Ticket, events: list[TicketEvent]) -> set[int]:
    """Agents whose load this change lowered: given away, or the ticket left new/open."""
    freed: set[int] = set()
    left_load = False
    for event in events:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == TicketEventType.ASSIGNED and data.get("old_assignee_id"):
            freed.add(int(data["old_assignee_id"]))
        elif (
            event.type == TicketEventType.STATUS_CHANGED
            and data.get("old") in LOAD_STATUSES
            and data.get("new") not in LOAD_STATUSES
        ):
            left_load = True
    if left_load and ticket.assignee_id is not None:
        freed.add(ticket.assignee_id)
    return freed


def _routing_teams_of(user_ids: Iterable[int]) -> list[int]:
    ids = sorted(set(user_ids))
    if not ids:
        return []
    return sorted(
        set(
            Team.objects.filter(agents__user_id__in=ids)
            .exclude(routing=RoutingMode.MANUAL)
            .values_list("pk", flat=True)
        )
    )


def _assign_after_commit(team_ids: Iterable[int]) -> None:
    from helpdesk.tasks import assign_queued_tickets

    for team_id in sorted(set(team_ids)):
        enqueue(assign_queued_tickets, team_id)


def queue_for_routing(ticket: Ticket, events: list[TicketEvent]) -> Ticket:
    """Change-processor step 4: put the ticket in its team's queue or take it out, and run the
    assignment after commit for its team and for the teams of agents whose capacity it freed.
    At most one query when nothing changes (the team's routing; none without a team)."""
    if ticket.channel == CHAT_KIND:
        return ticket
    mode = _team_mode(ticket.team_id)
    run: set[int] = set()
    if is_routable(ticket, mode):
        moved = any(e.type == TicketEventType.TEAM_CHANGED for e in events)
        if ticket.queued_at is None or moved:
            # Queued now; a ticket moved to another team waits there from now.
            _set_queued(ticket, timezone.now())
        assert ticket.team_id is not None
        run.add(ticket.team_id)
    elif ticket.queued_at is not None:
        _set_queued(ticket, None)
    freed = _freed_agents(ticket, events)
    if freed:
        run.update(_routing_teams_of(freed))
    _assign_after_commit(run)
    return ticket


# --- assignment -------------------------------------------------------------------------------


def do_assign_queued_tickets(team_id: int | None = None, *, now: datetime | None = None) -> int:
    """Hand queued tickets of one team (None: every routing team) to agents with spare capacity,
    in queue order; returns how many were assigned. `now` is for the skills timeout (tests)."""
    teams = Team.objects.exclude(routing=RoutingMode.MANUAL).order_by("id")
    if team_id is not None:
        teams = teams.filter(pk=team_id)
    return sum(_assign_team(team, now or timezone.now()) for team in list(teams))


def _assign_team(team: Team, now: datetime) -> int:
    rows = list(
        Ticket.objects.filter(team_id=team.pk, queued_at__isnull=False)
        .order_by(*QUEUE_ORDER)
        .values_list("pk", "channel", "customer__language", "queued_at")[:SWEEP_LIMIT]
    )
    # (channel kind, language it needs or "") for which nobody had room: later tickets skip it.
    full: set[tuple[str, str]] = set()
    assigned = 0
    for ticket_id, channel, language, queued_at in rows:
        needs = language_required(
            language=language or "", timeout_minutes=team.skills_timeout_minutes, queued_at=queued_at, now=now
        )
        key = (channel, (language or "").lower() if needs else "")
        if (channel, "") in full or key in full:
            continue
        result = _assign_one(ticket_id, team, now)
        if result == "assigned":
            assigned += 1
        elif result == "full":
            full.add(key)
    return assigned


def _candidates(team: Team, channel: str) -> list[AgentProfile]:
    """The team's agents present for this channel, their profile rows locked in id order."""
    return list(
        AgentProfile.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(
            teams=team,
            user__is_active=True,
            role__in=ROUTING_ROLES,
            presence__in=presences_for(channel),
        )
        .order_by("id")
    )


def load_of(user_ids: list[int], channel: str) -> dict[int, int]:
    """Each agent's load on a channel kind: their tickets of that kind in new or open (one query)."""
    if not user_ids:
        return {}
    rows = (
        Ticket.objects.filter(assignee_id__in=user_ids, status__in=LOAD_STATUSES, channel=channel)
        .values_list("assignee_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {int(user_id): int(n) for user_id, n in rows}


def _assign_one(ticket_id: int, team: Team, now: datetime) -> str:
    """ "assigned", "full" (nobody may take it now) or "skipped" (gone, locked, not eligible)."""
    from helpdesk.actions.tickets import do_assign_ticket

    with transaction.atomic():
        ticket = (
            Ticket.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("customer")
            .filter(pk=ticket_id)
            .first()
        )
        if ticket is None:
            return "skipped"
        if ticket.team_id != team.pk or not is_routable(ticket, team.routing):
            if ticket.queued_at is not None and ticket.team_id == team.pk:
                _set_queued(ticket, None)
            return "skipped"
        language = ticket.customer.language or ""
        needs = language_required(
            language=language, timeout_minutes=team.skills_timeout_minutes, queued_at=ticket.queued_at, now=now
        )
        profiles = _candidates(team, ticket.channel)
        loads = load_of([p.user_id for p in profiles], ticket.channel)
        candidates = [
            Candidate(
                profile_id=p.pk,
                user_id=p.user_id,
                presence=p.presence,
                languages=tuple(x for x in (p.languages or []) if isinstance(x, str)),
                last_assigned_at=p.last_assigned_at,
                capacity=capacity_for(p, ticket.channel),
                load=loads.get(p.user_id, 0),
            )
            for p in profiles
        ]
        chosen = choose(
            candidates, mode=team.routing, channel=ticket.channel, language=language, require_language=needs
        )
        if chosen is None:
            return "full"
        profile = next(p for p in profiles if p.pk == chosen.profile_id)
        do_assign_ticket(ticket, assignee=profile.user, actor=None, via="routing")
        # Strictly after every other candidate's stamp: round robin never ties on one clock tick.
        newest = max((p.last_assigned_at for p in profiles if p.last_assigned_at is not None), default=None)
        stamp = timezone.now()
        if newest is not None and stamp <= newest:
            stamp = newest + timedelta(microseconds=1)
        AgentProfile.objects.filter(pk=profile.pk).update(last_assigned_at=stamp)
        Ticket.objects.filter(pk=ticket.pk).update(queued_at=None)
        return "assigned"


# --- presence -----------------------------------------------------------------------------------


def do_agent_went_offline(user: User) -> int:
    """The agent went offline: in teams with `reassign_offline`, their new and open tickets of
    those teams are unassigned (by the system, via "routing") and queued again where the team
    routes (with manual routing they wait unassigned in the team's list). Pending and on-hold
    tickets stay theirs. Does nothing when the agent is no longer offline. Returns how many."""
    from helpdesk.actions.tickets import do_assign_ticket

    presence = AgentProfile.objects.filter(user_id=user.pk).values_list("presence", flat=True).first()
    if presence != Presence.OFFLINE:
        return 0
    teams = dict(
        Team.objects.filter(reassign_offline=True, agents__user_id=user.pk).values_list("pk", "routing").distinct()
    )
    if not teams:
        return 0
    ticket_ids = list(
        Ticket.objects.filter(assignee_id=user.pk, team_id__in=list(teams), status__in=ROUTABLE_STATUSES)
        .exclude(channel=CHAT_KIND)
        .order_by("id")
        .values_list("pk", flat=True)[:OFFLINE_LIMIT]
    )
    returned = 0
    for ticket_id in ticket_ids:
        with transaction.atomic():
            ticket = (
                Ticket.objects.select_for_update()
                .filter(pk=ticket_id, assignee_id=user.pk, status__in=ROUTABLE_STATUSES)
                .first()
            )
            mode = teams.get(ticket.team_id) if ticket is not None and ticket.team_id is not None else None
            if ticket is None or mode is None:
                continue
            ticket = do_assign_ticket(ticket, assignee=None, actor=None, via="routing")
            if is_routable(ticket, mode) and ticket.queued_at is None:
                _set_queued(ticket, timezone.now())
            returned += 1
    if returned:
        _assign_after_commit(pk for pk, mode in teams.items() if _routes(mode))
    return returned


def note_presence_changed(user_id: int, presence: str) -> None:
    """Called by helpdesk/actions/presence.py inside the transaction that changed the presence:
    an agent gone offline has their tickets returned to the queue by the Celery task
    `helpdesk.tasks.agent_went_offline`, queued after commit."""
    if presence != Presence.OFFLINE:
        return
    from helpdesk.tasks import agent_went_offline

    enqueue(agent_went_offline, user_id)


# --- settings -----------------------------------------------------------------------------------


def _validate_rule(name: Any, inbox: Any, conditions: Any, team: Any) -> tuple[str, dict[str, Any]]:
    from channels_inbox.models import Inbox
    from helpdesk.conditions import InvalidConditions, validate_conditions

    errors: list[str] = []
    clean_name = name.strip() if isinstance(name, str) else ""
    if not clean_name:
        errors.append("The rule needs a name.")
    elif len(clean_name) > MAX_NAME_CHARS:
        errors.append(f"A rule's name has at most {MAX_NAME_CHARS} characters (this one has {len(clean_name)}).")
    if not isinstance(team, Team) or team.pk is None:
        errors.append("Choose the team the rule sends tickets to.")
    if inbox is not None and (not isinstance(inbox, Inbox) or inbox.pk is None):
        errors.append("Choose an inbox, or none for tickets from every inbox.")
    normalized: dict[str, Any] = {}
    try:
        normalized = validate_conditions(conditions if conditions is not None else {})
    except InvalidConditions as exc:
        errors.extend(exc.errors)
    if errors:
        raise InvalidRoutingRule(errors)
    return clean_name, normalized


def _renumber(rules: list[RoutingRule]) -> None:
    for index, rule in enumerate(rules):
        if rule.position != index:
            rule.position = index
            RoutingRule.objects.filter(pk=rule.pk).update(position=index)


def do_save_routing_rule(
    rule: RoutingRule | None,
    *,
    name: str,
    inbox: Inbox | None,
    conditions: Any,
    team: Team,
    is_active: bool,
    actor: User,
) -> RoutingRule:
    """Create (rule None: last in order) or change a routing rule. Raises PermissionDenied for a
    non-admin and InvalidRoutingRule with one sentence per problem."""
    require_settings_admin(actor)
    clean_name, normalized = _validate_rule(name, inbox, conditions, team)
    with transaction.atomic():
        if rule is None:
            top = RoutingRule.objects.select_for_update().aggregate(top=Max("position"))["top"]
            rule = RoutingRule(position=0 if top is None else top + 1)
        else:
            rule = RoutingRule.objects.select_for_update().get(pk=rule.pk)
        rule.name = clean_name
        rule.inbox = inbox
        rule.conditions = normalized
        rule.team = team
        rule.is_active = bool(is_active)
        rule.save()
        _bump_rules_version()
    return rule


def do_delete_routing_rule(rule: RoutingRule, *, actor: User) -> None:
    require_settings_admin(actor)
    with transaction.atomic():
        rules = list(RoutingRule.objects.select_for_update().order_by("position", "id"))
        RoutingRule.objects.filter(pk=rule.pk).delete()
        _renumber([r for r in rules if r.pk != rule.pk])
        _bump_rules_version()


def do_move_routing_rule(rule: RoutingRule, *, position: int, actor: User) -> None:
    """Put the rule at `position` (0 first; clamped) and number all rules 0..n-1."""
    require_settings_admin(actor)
    if not isinstance(position, int) or isinstance(position, bool):
        raise InvalidRoutingRule(["A position is a whole number."])
    with transaction.atomic():
        rules = list(RoutingRule.objects.select_for_update().order_by("position", "id"))
        moving = next((r for r in rules if r.pk == rule.pk), None)
        if moving is None:
            raise RoutingRule.DoesNotExist("no such routing rule")
        rest = [r for r in rules if r.pk != rule.pk]
        rest.insert(max(0, min(position, len(rest))), moving)
        _renumber(rest)
        _bump_rules_version()


def do_set_team_routing(
    team: Team, *, routing: str, reassign_offline: bool, skills_timeout_minutes: int | None, actor: User
) -> Team:
    """A team's routing mode, reassignment of an offline agent's tickets, and how long a ticket
    waits for an agent speaking its customer's language (None: never required; 0: never waits).
    Switching routing on queues the team's eligible tickets; switching it off empties the queue."""
    require_settings_admin(actor)
    errors: list[str] = []
    if routing not in RoutingMode.values:
        errors.append("Routing is manual, round robin or least loaded.")
    if skills_timeout_minutes is not None and (
        not isinstance(skills_timeout_minutes, int)
        or isinstance(skills_timeout_minutes, bool)
        or not 0 <= skills_timeout_minutes <= MAX_SKILLS_TIMEOUT_MINUTES
    ):
        errors.append(
            f"The language wait is 0 to {MAX_SKILLS_TIMEOUT_MINUTES} minutes, or empty to never require the language."
        )
    if errors:
        raise InvalidTeamRouting(errors)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        team.routing = routing
        team.reassign_offline = bool(reassign_offline)
        team.skills_timeout_minutes = skills_timeout_minutes
        team.save(update_fields=["routing", "reassign_offline", "skills_timeout_minutes"])
        queue = Ticket.objects.filter(team_id=team.pk)
        if _routes(routing):
            queue.filter(queued_at__isnull=True, assignee__isnull=True, status__in=ROUTABLE_STATUSES).exclude(
                channel=CHAT_KIND
            ).update(queued_at=timezone.now())
            _assign_after_commit([team.pk])
        else:
            queue.filter(queued_at__isnull=False).update(queued_at=None)
    return team


def _validate_agent(capacity: Any, chat_capacity: Any, languages: Any) -> tuple[dict[str, int], int, list[str]]:
    from channels_inbox.adapters import adapter_kinds

    errors: list[str] = []
    kinds = [*adapter_kinds(), ANY_KIND]
    clean: dict[str, int] = {}
    if not isinstance(capacity, dict):
        errors.append("Capacity is a number of tickets per channel.")
    else:
        for key, value in capacity.items():
            if key not in kinds:
                errors.append(f"“{str(key)[:40]}” is not a channel; capacity is set for {', '.join(kinds)}.")
            elif not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_CAPACITY:
                errors.append(f"The capacity for {key} is a whole number from 0 to {MAX_CAPACITY}.")
            else:
                clean[key] = value
    if (
        not isinstance(chat_capacity, int)
        or isinstance(chat_capacity, bool)
        or not 0 <= chat_capacity <= MAX_CHAT_CAPACITY
    ):
        errors.append(f"Chat capacity is a whole number from 0 to {MAX_CHAT_CAPACITY}.")
    clean_languages: list[str] = []
    if not isinstance(languages, list | tuple):
        errors.append("Languages are a list of language codes such as en, cs or pt-BR.")
    else:
        for code in languages:
            normalized = normalize_language(code) if isinstance(code, str) else None
            if normalized is None:
                errors.append(f"“{str(code)[:40]}” is not a language code (such as en, cs or pt-BR).")
            elif normalized not in clean_languages:
                clean_languages.append(normalized)
        if len(clean_languages) > MAX_LANGUAGES:
            errors.append(f"At most {MAX_LANGUAGES} languages.")
    if errors:
        raise InvalidAgentRouting(errors)
    return clean, int(chat_capacity), clean_languages


def do_set_agent_routing(
    profile: AgentProfile, *, capacity: dict[str, int], chat_capacity: int, languages: list[str], actor: User
) -> AgentProfile:
    """An agent's ticket capacity per channel kind (`"*"`: the kinds not named; an empty dict:
    ROUTING_DEFAULT_CAPACITY), live-chat capacity (0–50) and languages (BCP 47 codes). More room
    or other languages run the assignment of the agent's teams after commit."""
    require_settings_admin(actor)
    clean, chats, spoken = _validate_agent(capacity, chat_capacity, languages)
    with transaction.atomic():
        profile = AgentProfile.objects.select_for_update().get(pk=profile.pk)
        more_chats = chats > profile.chat_capacity
        profile.capacity = clean
        profile.chat_capacity = chats
        profile.languages = spoken
        profile.save(update_fields=["capacity", "chat_capacity", "languages"])
        _assign_after_commit(_routing_teams_of([profile.user_id]))
        from helpdesk.actions.chats import ChatAvailability, remember_availability

        known = ChatAvailability(
            available=profile.chat_available, capacity=chats, takes_chats=profile.role in ROUTING_ROLES
        )
        user_id = profile.user_id
        after_commit(lambda: remember_availability(user_id, known))
        if more_chats and profile.chat_available:
            from helpdesk.tasks import assign_waiting_chats

            enqueue(assign_waiting_chats)
    return profile
