"""`manage.py poll_mailboxes [--inbox SLUG] [--loop] [--idle] [--max-seconds N]`: fetch mail over IMAP.

- Without options: poll every configured mailbox once now and print one line per folder;
  exit 1 if any failed. Mailboxes in backoff after a failed connection wait their turn
  (and count as failing), unless `--inbox` names one: then it is polled regardless.
- `--loop`: poll due mailboxes every `--every` seconds until stopped (SIGINT/SIGTERM), for
  deployments without Celery beat.
- `--idle`: one thread per folder of the inboxes with `imap_idle` true, waiting for new
  mail with IMAP IDLE and fetching it at once; with `--loop` the other mailboxes are
  polled meanwhile.

Every way takes the folders' leases, so it may run beside beat's periodic poll: a folder
is only ever fetched by one poller at a time. In the embedded mode (no REDIS_URL) the
command processes what it stored itself, as no worker would; with Redis a worker does.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from channels_inbox.actions.mailbox import (
    FolderPoll,
    PollResult,
    backoff_delay,
    do_poll_due_mailboxes,
    do_poll_mailbox,
    do_watch_mailbox,
    imap_inboxes,
)
from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.email.imap import folders_of, has_imap
from channels_inbox.models import Inbox


class Command(BaseCommand):
    help = "Fetch new mail of the email inboxes over IMAP (once, in a loop, or with IMAP IDLE)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--inbox", default="", help="slug of one email inbox (default: all with imap_host)")
        parser.add_argument("--loop", action="store_true", help="poll due mailboxes again and again until stopped")
        parser.add_argument("--idle", action="store_true", help="watch inboxes with imap_idle true using IMAP IDLE")
        parser.add_argument("--every", type=float, default=5.0, help="seconds between rounds of --loop (default 5)")
        parser.add_argument("--max-seconds", type=float, default=None, help="stop --loop/--idle after this long")
        parser.add_argument(
            "--process",
            choices=["auto", "yes", "no"],
            default="auto",
            help="process stored mail in this command (auto: in the embedded mode only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.process = options["process"] == "yes" or (options["process"] == "auto" and settings.EMBEDDED)
        self.write_lock = threading.Lock()
        inboxes = self._inboxes(options["inbox"])
        if not options["loop"] and not options["idle"]:
            failed = False
            for inbox in inboxes:
                result = do_poll_mailbox(inbox, respect_backoff=not options["inbox"])
                self._report(result)
                # In backoff after a failure counts as failing too: the mailbox is still broken.
                failed = failed or any(f.status in ("failed", "waiting") for f in result.folders)
            if failed:
                sys.exit(1)
            return
        stop = threading.Event()
        restore = self._stop_on_signals(stop)
        try:
            self._run(inboxes, stop, options)
        finally:
            restore()

    def _inboxes(self, slug: str) -> list[Inbox]:
        if not slug:
            return imap_inboxes()
        inbox = Inbox.objects.filter(slug=slug, is_active=True).first()
        if inbox is None or inbox.kind != "email":
            raise CommandError(f"no active email inbox with slug {slug!r}")
        if not has_imap(inbox):
            raise CommandError(f"inbox {slug} has no IMAP server (setting imap_host)")
        return [inbox]

    def _run(self, inboxes: list[Inbox], stop: threading.Event, options: dict[str, Any]) -> None:
        deadline = time.monotonic() + options["max_seconds"] if options["max_seconds"] is not None else None
        watchers: list[threading.Thread] = []
        if options["idle"]:
            watched = [inbox for inbox in inboxes if _idle_enabled(inbox)]
            if not watched:
                raise CommandError("no inbox to watch: set imap_idle true on an email inbox with imap_host")
            for inbox in watched:
                for folder in folders_of(inbox):
                    thread = threading.Thread(
                        target=self._watch, args=(inbox, folder, stop), name=f"idle-{inbox.slug}-{folder}", daemon=True
                    )
                    thread.start()
                    watchers.append(thread)
        polling = options["loop"]
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if polling:
                try:
                    if options["inbox"]:
                        results = [do_poll_mailbox(inbox, respect_backoff=True) for inbox in inboxes]
                    else:
                        results = do_poll_due_mailboxes(inline=True).results
                except DatabaseError as exc:
                    # The database is away (a restart, a failover): say so and keep polling.
                    self._write(f"polling failed: {type(exc).__name__}: {exc}; trying again", error=True)
                    connection.close()
                    results = []
                for result in results:
                    self._report(result, quiet=True)
            wait = options["every"] if polling else 0.5
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            stop.wait(wait)
        stop.set()
        for thread in watchers:
            thread.join(timeout=settings.IMAP_TIMEOUT_SECONDS + 5)

    def _watch(self, inbox: Inbox, folder: str, stop: threading.Event) -> None:
        def report(poll: FolderPoll) -> None:
            self._report(PollResult(inbox=inbox.slug, folders=[poll]), quiet=True)

        failures = 0
        while not stop.is_set():
            try:
                do_watch_mailbox(inbox.pk, folder=folder, stop=stop, on_poll=report)
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the database restarting: wait, then watch again
                failures += 1
                delay = backoff_delay(failures).total_seconds()
                self._write(
                    f"{inbox.slug} {folder}: watcher failed ({type(exc).__name__}: {exc}); "
                    f"starting again in {delay:.0f} s",
                    error=True,
                )
                stop.wait(delay)
            finally:
                connection.close()

    def _report(self, result: PollResult, *, quiet: bool = False) -> None:
        for poll in result.folders:
            if quiet and poll.status in ("ok", "busy", "waiting") and not poll.stored and not poll.skipped:
                continue
            line = (
                f"{result.inbox} {poll.folder}: {poll.status}, stored {poll.stored}, "
                f"already stored {poll.duplicates}, last uid {poll.last_uid}, uidvalidity {poll.uidvalidity}"
            )
            if poll.uidvalidity_changed:
                line += ", UIDVALIDITY changed: folder read again"
            if poll.status == "busy":
                line += " (another poller holds it)"
            if poll.error:
                line += f", error: {poll.error}"
            if poll.status in ("failed", "waiting") and poll.next_poll_at:
                line += f", next try {poll.next_poll_at:%Y-%m-%d %H:%M:%S}Z"
            for note in poll.skipped:
                line += f"\n  left on the server: {note}"
            self._write(line)
            if self.process:
                for event_id in poll.event_ids:
                    # Failures are recorded on the event and retried by the sweeper: the mail is safe.
                    do_process_inbound_event(event_id)

    def _write(self, line: str, *, error: bool = False) -> None:
        with self.write_lock:
            (self.stderr if error else self.stdout).write(line)

    def _stop_on_signals(self, stop: threading.Event) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


def _idle_enabled(inbox: Inbox) -> bool:
    from channels_inbox.adapters.email import setting_flag

    return setting_flag(inbox, "imap_idle")
