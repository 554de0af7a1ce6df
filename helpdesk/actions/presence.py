"""Agent presence: the effective state others (and routing) see, and the agent's own choice.

`do_set_presence` is written by the live layer (helpdesk/presence.py) from the agent's open
desk websockets; `do_set_presence_choice` is the top bar's control (online, away, appear
offline). Both publish to the agent's own live group after commit, so every desk page of
the agent updates its control and re-announces the agent on the tickets it shows.

An agent whose presence becomes offline has, after commit, their new and open tickets of teams
with `reassign_offline` returned to the routing queue (helpdesk/actions/routing.py
`do_agent_went_offline`).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from helpdesk.models import AgentProfile, Presence, User
from helpdesk.realtime import publish_presence
from helpdesk.sideeffects import after_commit


def do_set_presence(user_id: int, presence: str, *, actor: User | None) -> bool:
    """Set the agent's effective presence; True when it changed (then published).

    A compare-and-set UPDATE: two processes recomputing the same agent at once write it once.
    `actor` is the agent when they caused it by hand, None when the live layer did.
    """
    presence = Presence(presence)
    with transaction.atomic():
        changed = (
            AgentProfile.objects.filter(user_id=user_id)
            .exclude(presence=presence)
            .update(presence=presence, presence_changed_at=timezone.now())
        )
        if changed:
            choice = AgentProfile.objects.filter(user_id=user_id).values_list("presence_choice", flat=True).first()
            publish_presence(user_id, presence=presence, choice=choice or Presence.ONLINE)
            # Routing: teams with reassign_offline take back an offline agent's tickets (after commit).
            from helpdesk.actions.routing import note_presence_changed

            note_presence_changed(user_id, presence)
    return bool(changed)


def do_set_presence_choice(user: User, choice: str, *, actor: User) -> str:
    """The agent chose online, away or offline by hand; returns the effective presence.

    The cache and the live state follow after commit.

    Raises ValueError for an unknown choice and PermissionDenied for someone else's presence.
    """
    from helpdesk import presence as live_presence

    if actor.pk != user.pk:
        raise PermissionDenied("agents set their own presence")
    if not isinstance(choice, str) or choice not in Presence.values:
        raise ValueError(f"Unknown presence {str(choice)[:40]!r}.")
    with transaction.atomic():
        profile = AgentProfile.objects.select_for_update().filter(user_id=user.pk).first()
        if profile is None:
            raise PermissionDenied("this account is not a helpdesk agent")
        previous = profile.presence_choice
        if previous != choice:
            profile.presence_choice = choice
            profile.save(update_fields=["presence_choice"])

    def follow() -> None:
        live_presence.remember_choice(user.pk, choice)
        state = live_presence.recompute(user.pk, force=True)
        if previous != choice:
            # The control of the agent's other pages follows even when the effective state did
            # not change (e.g. "away" chosen while idle already).
            publish_presence(user.pk, presence=state, choice=choice)

    after_commit(follow)
    return live_presence.effective(user.pk)
