"""`manage.py agent create EMAIL [--team T] [--role R]` — staff accounts from the shell."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from helpdesk.actions.agents import do_create_agent
from helpdesk.models import AgentProfile, Role


class Command(BaseCommand):
    help = "Create or list helpdesk staff (agents, light agents, supervisors, admins)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="create or update an agent; prints a password if one was generated")
        create.add_argument("email")
        create.add_argument("--name", default="")
        create.add_argument("--team", action="append", default=[], help="team name (repeatable; created if new)")
        create.add_argument("--role", default=Role.AGENT, choices=Role.values)
        create.add_argument("--language", action="append", default=None, help="language the agent answers in")
        create.add_argument("--password", default=None, help="default: generated and printed once")
        sub.add_parser("list")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verb"] == "list":
            for profile in (
                AgentProfile.objects.select_related("user").prefetch_related("teams").order_by("user__email")
            ):
                teams = ",".join(t.slug for t in profile.teams.all()) or "-"
                self.stdout.write(f"{profile.user.email:<32} {profile.role:<12} {teams}")
            return
        email = options["email"]
        if "@" not in email:
            raise CommandError(f"not an email address: {email!r}")
        password = options["password"] or secrets.token_urlsafe(12)
        user = do_create_agent(
            email=email,
            name=options["name"],
            password=password,
            role=options["role"],
            teams=options["team"],
            languages=options["language"],
        )
        self.stdout.write(f"{user.email} ({options['role']})")
        if not options["password"]:
            self.stdout.write(f"password: {password}")
