"""Staff accounts: agents, supervisors, admins."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from helpdesk.models import AgentProfile, Role, Team, User


def do_create_agent(
    *,
    email: str,
    name: str = "",
    password: str | None = None,
    role: str = Role.AGENT,
    teams: list[str] | None = None,
    languages: list[str] | None = None,
    actor: User | None = None,
) -> User:
    """Create (or update) a staff account with its agent profile; teams are created by name."""
    role = Role(role)
    email = email.strip().lower()
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User(username=email, email=email)
        first, _, last = name.partition(" ")
        if name:
            user.first_name, user.last_name = first, last
        user.is_staff = role == Role.ADMIN
        user.is_superuser = role == Role.ADMIN or user.is_superuser
        if password:
            user.set_password(password)
        elif user._state.adding:
            user.set_unusable_password()
        user.save()
        profile, _ = AgentProfile.objects.get_or_create(user=user, defaults={"role": role})
        profile.role = role
        if languages is not None:
            profile.languages = languages
        profile.save(update_fields=["role", "languages"])
        for team_name in teams or []:
            team, _ = Team.objects.get_or_create(slug=slugify(team_name), defaults={"name": team_name})
            profile.teams.add(team)
    return user
