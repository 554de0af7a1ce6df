"""`manage.py ingest_email --inbox SLUG [FILE|DIR|-]`: raw RFC 822 mail from files, a directory or stdin.

Made for an MTA pipe (Postfix `pipe`, Exim `pipe` transport, a `.forward`/aliases line):
the mail is stored durably before the command exits 0, and the exit status tells the
MTA what to do otherwise (sysexits.h):

- 0: stored (or already stored: a redelivery is not an error);
- 65 (EX_DATAERR): empty or over EMAIL_MAX_BYTES — the MTA bounces it to its sender;
- 75 (EX_TEMPFAIL): the inbox is unknown or inactive, or the database is unreachable —
  the MTA keeps the mail and tries again later, so a misconfiguration loses nothing.

In the embedded mode (no REDIS_URL) there is no worker to hand the mail to, so the
command processes what it stored itself; with Redis a worker does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.receive_email import do_receive_email, strip_mbox_line
from channels_inbox.adapters.base import BadPayload, PayloadTooLarge
from channels_inbox.models import Inbox

EX_DATAERR = 65
EX_TEMPFAIL = 75


class Command(BaseCommand):
    help = "Store raw RFC 822 mail for an email inbox, from files, a directory or stdin (-)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--inbox", required=True, help="slug of the email inbox")
        parser.add_argument("source", nargs="?", default="-", help="a .eml file, a directory of them, or - (stdin)")
        parser.add_argument(
            "--process",
            choices=["auto", "yes", "no"],
            default="auto",
            help="process stored mail in this command (auto: in the embedded mode only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            inbox = Inbox.objects.filter(slug=options["inbox"], is_active=True).first()
        except DatabaseError as exc:
            self._exit(EX_TEMPFAIL, f"database unavailable: {exc}")
        if inbox is None or inbox.kind != "email":
            self._exit(EX_TEMPFAIL, f"no active email inbox with slug {options['inbox']!r}")
        process = options["process"] == "yes" or (options["process"] == "auto" and settings.EMBEDDED)
        stored = duplicates = 0
        worst = 0
        for name, raw in self._sources(options["source"]):
            try:
                receipt = do_receive_email(inbox, strip_mbox_line(raw), source=f"pipe:{name}"[:100])
            except (BadPayload, PayloadTooLarge) as exc:
                self.stderr.write(f"{name}: refused: {exc}")
                worst = max(worst, EX_DATAERR)
                continue
            except DatabaseError as exc:
                self.stderr.write(f"{name}: not stored, try again later: {exc}")
                worst = EX_TEMPFAIL
                continue
            if receipt.stored:
                stored += 1
                if process:
                    # Failures are recorded on the event and retried by the sweeper: the mail is safe.
                    do_process_inbound_event(receipt.event_id)
            else:
                duplicates += 1
        self.stdout.write(f"stored {stored}, already stored {duplicates}")
        if worst:
            sys.exit(worst)

    def _sources(self, source: str) -> Any:
        if source == "-":
            yield "stdin", sys.stdin.buffer.read(settings.EMAIL_MAX_BYTES + 1)
            return
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            for file in files:
                yield file.name, file.read_bytes()
        elif path.is_file():
            yield path.name, path.read_bytes()
        else:
            raise CommandError(f"no such file or directory: {source}")

    def _exit(self, code: int, message: str) -> NoReturn:
        self.stderr.write(message)
        sys.exit(code)
