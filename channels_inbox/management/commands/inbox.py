"""`manage.py inbox create|list|show|set|rotate-secret` — configure channels from the shell."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_inbox.actions.inboxes import (
    do_create_inbox,
    do_rotate_inbox_secret,
    do_update_inbox_settings,
    email_webhook_urls,
    webhook_url,
)
from channels_inbox.adapters import adapter_kinds
from channels_inbox.models import Inbox
from helpdesk.models import Team


def _pairs(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--set takes key=value, got {item!r}")
        values[key.strip()] = value
    return values


def _describe(inbox: Inbox, secrets: dict[str, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uuid": str(inbox.uuid),
        "kind": inbox.kind,
        "name": inbox.name,
        "slug": inbox.slug,
        "public_token": inbox.public_token,
        "webhook_url": webhook_url(inbox),
        "settings": inbox.settings,
        "team": inbox.team.slug if inbox.team else None,
        "is_active": inbox.is_active,
    }
    if inbox.kind == "email":
        # With the credentials only where the secrets are shown (at creation).
        data["webhook_urls"] = email_webhook_urls(inbox, with_credentials=secrets is not None)
    if secrets is not None:
        data["secrets"] = secrets
    return data


class Command(BaseCommand):
    help = "Create, list, show and configure inboxes (channels)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="create an inbox; prints its secrets once")
        create.add_argument("--kind", required=True, choices=adapter_kinds())
        create.add_argument("--name", required=True)
        create.add_argument("--slug", default="")
        create.add_argument("--team", default="", help="team slug that receives its tickets")
        create.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        create.add_argument("--json", action="store_true")
        listing = sub.add_parser("list")
        listing.add_argument("--json", action="store_true")
        show = sub.add_parser("show")
        show.add_argument("inbox", help="uuid or slug")
        show.add_argument("--json", action="store_true")
        update = sub.add_parser("set", help="change settings")
        update.add_argument("inbox")
        update.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        update.add_argument("--json", action="store_true")
        rotate = sub.add_parser(
            "rotate-secret", help="new secret; the previous one stays valid until the next rotation"
        )
        rotate.add_argument("inbox")
        rotate.add_argument("--name", default="signing_secret")
        rotate.add_argument("--json", action="store_true")

    def _get(self, ref: str) -> Inbox:
        try:
            inbox = Inbox.objects.select_related("team").filter(uuid=uuid.UUID(ref)).first()
        except ValueError:
            inbox = Inbox.objects.select_related("team").filter(slug=ref).first()
        if inbox is None:
            raise CommandError(f"no inbox {ref!r}")
        return inbox

    def _out(self, data: Any, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
        elif isinstance(data, list):
            for row in data:
                self.stdout.write(f"{row['uuid']}  {row['kind']:<10} {row['slug']:<24} {row['webhook_url']}")
        else:
            for key, value in data.items():
                self.stdout.write(f"{key}: {value}")

    def handle(self, *args: Any, **options: Any) -> None:
        verb = options["verb"]
        if verb == "create":
            team = None
            if options["team"]:
                team = Team.objects.filter(slug=options["team"]).first()
                if team is None:
                    raise CommandError(f"no team {options['team']!r}")
            try:
                inbox, secrets = do_create_inbox(
                    kind=options["kind"],
                    name=options["name"],
                    slug=options["slug"],
                    values=_pairs(options["set"]),
                    team=team,
                )
            except (ValueError, LookupError) as exc:
                raise CommandError(str(exc)) from exc
            self._out(_describe(inbox, secrets), options["json"])
            if not options["json"]:
                self.stderr.write("Keep the secrets now: they are not shown again.")
        elif verb == "list":
            self._out([_describe(i) for i in Inbox.objects.select_related("team").order_by("name")], options["json"])
        elif verb == "show":
            self._out(_describe(self._get(options["inbox"])), options["json"])
        elif verb == "set":
            inbox = self._get(options["inbox"])
            try:
                do_update_inbox_settings(inbox, values=_pairs(options["set"]))
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self._out(_describe(inbox), options["json"])
        elif verb == "rotate-secret":
            inbox = self._get(options["inbox"])
            try:
                new = do_rotate_inbox_secret(inbox, name=options["name"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            rotated: dict[str, Any] = {"uuid": str(inbox.uuid), "secrets": {options["name"]: new}}
            if inbox.kind == "email" and options["name"] == "webhook_secret":
                # The URLs to give the ESPs now (the previous secret works until the next rotation).
                rotated["webhook_urls"] = email_webhook_urls(inbox, with_credentials=True)
            self._out(rotated, options["json"])
