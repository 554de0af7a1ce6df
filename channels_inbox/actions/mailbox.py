"""Polling IMAP folders of email inboxes: exactly-once by (UIDVALIDITY, UID) per folder.

One poll of a folder (channel-specs.md §4.1, docs/email.md "IMAP"):

1. Claim the folder's lease on its MailboxState with one conditional UPDATE; a folder
   another poller holds is reported busy and left alone.
2. Read the folder's UIDVALIDITY and UIDNEXT. A new UIDVALIDITY voids the stored UIDs
   (the folder was recreated): the folder is read again from UID 1. The raw mails get new
   dedupe keys, and ingest drops the copies by Message-ID (or content hash).
3. `UID SEARCH UID last+1:*`, keeping only UIDs above the last one.
4. In chunks: fetch the raw bytes with BODY.PEEK[] (never \\Seen), then in ONE transaction
   store each mail (`store_email`, key `imap:<folder>:<uidvalidity>:<uid>`) and move the
   folder's last UID to the chunk's highest. A crash before the commit fetches the chunk
   again (the unique key drops copies); after it, the chunk is never fetched again.
   That UPDATE is conditional on still holding the lease, so a poller that lost its lease
   rolls back instead of moving the UID under its successor.

Connection and login errors are recorded on the folder with exponential backoff; one bad
mailbox never stops the others, and mail is not parsed here (processing does that later).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from imap_tools import BaseMailBox

from channels_inbox.actions.receive_email import store_email
from channels_inbox.email.imap import (
    ImapConfig,
    ImapConfigError,
    close_quietly,
    describe_error,
    existing_uids,
    fetch_raw,
    folder_status,
    folders_of,
    has_imap,
    has_new_mail,
    idle_poll,
    idle_start,
    idle_stop,
    imap_config,
    message_sizes,
    open_mailbox,
    select_readonly,
    uids_after,
)
from channels_inbox.models import Inbox, MailboxState

logger = logging.getLogger(__name__)

# UIDs per UID FETCH command and per storing transaction; a chunk also stays under
# CHUNK_BYTES of mail (at least one message), so memory stays bounded.
CHUNK_UIDS = 25
CHUNK_BYTES = 50 * 1024 * 1024
# Notes about mails left on the server (too large, empty) kept on the folder's state.
MAX_NOTES = 50
# RFC 2177: a client should end IDLE and issue it again at least every 29 minutes.
MAX_IDLE_SECONDS = 29 * 60


class LeaseLost(Exception):
    """Another poller took over the folder (our lease ran out): stop, roll back the chunk."""


class UidValidityChanged(Exception):
    """The folder was recreated between STATUS and EXAMINE: the next poll rescans it."""


@dataclass
class FolderPoll:
    """What one poll did to one folder."""

    folder: str
    # ok; busy (another poller holds the folder); failed; waiting (in backoff, not polled).
    status: str = "ok"
    stored: int = 0
    duplicates: int = 0
    last_uid: int = 0
    uidvalidity: int | None = None
    uidvalidity_changed: bool = False
    # Mails left on the server, e.g. "uid 7: over EMAIL_MAX_BYTES (52428800 bytes)".
    skipped: list[str] = field(default_factory=list)
    error: str = ""
    next_poll_at: datetime | None = None
    event_ids: list[int] = field(default_factory=list)


@dataclass
class PollResult:
    inbox: str
    folders: list[FolderPoll] = field(default_factory=list)

    @property
    def status(self) -> str:
        statuses = {f.status for f in self.folders}
        if "failed" in statuses:
            return "failed"
        if statuses == {"busy"}:
            return "busy"
        if statuses == {"waiting"}:
            return "waiting"
        return "ok"

    @property
    def stored(self) -> int:
        return sum(f.stored for f in self.folders)

    @property
    def event_ids(self) -> list[int]:
        return [pk for f in self.folders for pk in f.event_ids]


def new_lease_owner() -> str:
    """`host:pid:random`: who holds a lease, for operators reading the state."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"[:64]


def backoff_delay(failures: int) -> timedelta:
    seconds = settings.IMAP_BACKOFF_BASE_SECONDS * (2 ** max(failures - 1, 0))
    return timedelta(seconds=min(seconds, settings.IMAP_BACKOFF_MAX_SECONDS))


def _lease_delta() -> timedelta:
    return timedelta(seconds=settings.IMAP_LEASE_SECONDS)


def _claim(inbox: Inbox, folder: str, owner: str) -> MailboxState | None:
    """The folder's state with its lease now ours, or None if another poller holds it."""
    state, _ = MailboxState.objects.get_or_create(inbox=inbox, folder=folder)
    now = timezone.now()
    claimed = (
        MailboxState.objects.filter(pk=state.pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + _lease_delta(), lease_owner=owner)
    )
    if not claimed:
        return None
    state.refresh_from_db()
    return state


def _renew(state: MailboxState, owner: str, **fields: Any) -> None:
    """Extend our lease (and set `fields`); LeaseLost if the folder is no longer ours."""
    updated = MailboxState.objects.filter(pk=state.pk, lease_owner=owner).update(
        lease_until=timezone.now() + _lease_delta(), **fields
    )
    if not updated:
        raise LeaseLost(f"the lease on {state.folder} passed to another poller")


def _notes_of(last_error: str) -> list[str]:
    return [line for line in last_error.splitlines() if line.startswith("uid ")]


def _with_notes(error: str, notes: list[str]) -> str:
    kept = notes[-MAX_NOTES:]
    return "\n".join([error, *kept] if error else kept)


def _record_success(state: MailboxState, owner: str, started: datetime, *, keep_lease: bool = False) -> datetime:
    now = timezone.now()
    next_poll_at = started + timedelta(seconds=settings.IMAP_POLL_INTERVAL_SECONDS)
    fields: dict[str, Any] = {
        "failures": 0,
        "next_poll_at": next_poll_at,
        "last_polled_at": now,
        "last_error": _with_notes("", _notes_of(state.last_error)),
    }
    if keep_lease:
        fields["lease_until"] = now + _lease_delta()
    else:
        fields.update(lease_until=None, lease_owner="")
    MailboxState.objects.filter(pk=state.pk, lease_owner=owner).update(**fields)
    state.failures, state.next_poll_at, state.last_error = 0, next_poll_at, fields["last_error"]
    return next_poll_at


def _record_failure(state: MailboxState, owner: str, error: str) -> datetime:
    """failures + 1, next poll after the backoff, the error kept; releases the lease."""
    failures = state.failures + 1
    next_poll_at = timezone.now() + backoff_delay(failures)
    last_error = _with_notes(error, _notes_of(state.last_error))
    MailboxState.objects.filter(pk=state.pk, lease_owner=owner).update(
        failures=failures, next_poll_at=next_poll_at, last_error=last_error, lease_until=None, lease_owner=""
    )
    state.failures, state.next_poll_at, state.last_error = failures, next_poll_at, last_error
    return next_poll_at


def _release(state: MailboxState, owner: str) -> None:
    MailboxState.objects.filter(pk=state.pk, lease_owner=owner).update(lease_until=None, lease_owner="")


def _chunks(uids: list[int], sizes: dict[int, int]) -> list[list[int]]:
    chunks: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for uid in uids:
        size = min(sizes.get(uid, 0), settings.EMAIL_MAX_BYTES + 1)
        if current and (len(current) >= CHUNK_UIDS or current_bytes + size > CHUNK_BYTES):
            chunks.append(current)
            current, current_bytes = [], 0
        current.append(uid)
        current_bytes += size
    if current:
        chunks.append(current)
    return chunks


def _poll_folder(mailbox: BaseMailBox, inbox: Inbox, state: MailboxState, owner: str, result: FolderPoll) -> None:
    """Fetch and store what is new in one folder; we hold its lease. Raises IMAP errors, LeaseLost."""
    folder = state.folder
    status = folder_status(mailbox, folder)
    if state.uidvalidity != status.uidvalidity:
        if state.uidvalidity is not None:
            logger.warning(
                "inbox %s folder %s: UIDVALIDITY changed from %s to %s; rescanning the folder",
                inbox.slug,
                folder,
                state.uidvalidity,
                status.uidvalidity,
            )
            result.uidvalidity_changed = True
        # The old UIDs, and notes about them, mean nothing in the new folder.
        _renew(state, owner, uidvalidity=status.uidvalidity, last_uid=0, last_error="")
        state.last_error = ""
        state.uidvalidity, state.last_uid = status.uidvalidity, 0
    result.uidvalidity, result.last_uid = state.uidvalidity, state.last_uid
    if status.uidnext is not None and status.uidnext <= state.last_uid + 1:
        return  # no UID above ours has been given out yet
    selected = select_readonly(mailbox, folder)
    if selected is not None and selected != status.uidvalidity:
        raise UidValidityChanged(f"{folder}: UIDVALIDITY changed while polling ({status.uidvalidity} → {selected})")
    uids = uids_after(mailbox, state.last_uid)
    if not uids:
        return
    sizes = message_sizes(mailbox, uids)
    _check_gone(mailbox, [uid for uid in uids if uid not in sizes], "size")
    uidvalidity = status.uidvalidity
    for chunk in _chunks(uids, sizes):
        _renew(state, owner)
        wanted = [uid for uid in chunk if 0 < sizes.get(uid, 0) <= settings.EMAIL_MAX_BYTES]
        raws = fetch_raw(mailbox, wanted)
        _check_gone(mailbox, [uid for uid in wanted if uid not in raws], "body")
        notes: list[str] = []
        stored: list[int] = []
        duplicates = 0
        with transaction.atomic():
            for uid in chunk:
                if uid not in sizes:
                    continue  # expunged since the search
                raw = raws.get(uid)
                size = len(raw) if raw is not None else sizes[uid]
                if size > settings.EMAIL_MAX_BYTES:
                    notes.append(f"uid {uid}: over EMAIL_MAX_BYTES ({size} bytes)")
                    continue
                if size == 0 or (raw is not None and not raw.strip()):
                    notes.append(f"uid {uid}: empty message")
                    continue
                if raw is None:
                    continue  # expunged between the size and the body
                receipt = store_email(
                    inbox, raw, dedupe_key=f"imap:{folder}:{uidvalidity}:{uid}", source=f"imap:{folder}"
                )
                if receipt.stored:
                    stored.append(receipt.event_id)
                else:
                    duplicates += 1
            last_error = _with_notes("", [*_notes_of(state.last_error), *notes]) if notes else state.last_error
            _renew(state, owner, last_uid=chunk[-1], last_error=last_error)
        state.last_uid, state.last_error = chunk[-1], last_error
        result.last_uid = chunk[-1]
        result.stored += len(stored)
        result.event_ids += stored
        result.duplicates += duplicates
        result.skipped += notes
        for note in notes:
            logger.warning("inbox %s folder %s: %s; the message stays on the server", inbox.slug, folder, note)


def _check_gone(mailbox: BaseMailBox, missing: list[int], what: str) -> None:
    """Messages a FETCH did not answer for may be skipped only if they were expunged meanwhile;
    otherwise the poll fails (and is retried) rather than step over mail it did not store."""
    present = existing_uids(mailbox, missing)
    if present:
        listed = ", ".join(str(uid) for uid in sorted(present)[:10])
        raise imaplib.IMAP4.error(f"the server sent no {what} for uid {listed}")


def do_poll_mailbox(inbox: Inbox, *, folder: str | None = None, respect_backoff: bool = False) -> PollResult:
    """Poll the inbox's IMAP folders (or one of them) once, over one connection.

    `respect_backoff`: folders whose last connection failed and whose backoff has not run
    out are reported `waiting` instead of polled. Never raises for a mailbox problem: the
    error is recorded on the folder's MailboxState and in the result.
    """
    if not has_imap(inbox):
        raise ImapConfigError(f"inbox {inbox.slug} has no IMAP server (setting imap_host)")
    result = PollResult(inbox=inbox.slug)
    owner = new_lease_owner()
    started = timezone.now()
    claimed: list[tuple[MailboxState, FolderPoll]] = []
    for name in [folder] if folder else folders_of(inbox):
        poll = FolderPoll(folder=name)
        result.folders.append(poll)
        if respect_backoff:
            waiting = MailboxState.objects.filter(
                inbox=inbox, folder=name, failures__gt=0, next_poll_at__gt=started
            ).first()
            if waiting is not None:
                poll.status, poll.next_poll_at, poll.last_uid = "waiting", waiting.next_poll_at, waiting.last_uid
                poll.uidvalidity, poll.error = waiting.uidvalidity, waiting.last_error.split("\n", 1)[0]
                continue
        state = _claim(inbox, name, owner)
        if state is None:
            poll.status = "busy"
            continue
        poll.last_uid, poll.uidvalidity = state.last_uid, state.uidvalidity
        claimed.append((state, poll))
    if not claimed:
        return result
    config: ImapConfig | None = None
    mailbox: BaseMailBox | None = None
    try:
        config = imap_config(inbox)
        mailbox = open_mailbox(config)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is this mailbox's, never the poller's
        error = str(exc) if isinstance(exc, ImapConfigError) else describe_error(exc, config)
        logger.warning("inbox %s: IMAP connection failed: %s", inbox.slug, error)
        for state, poll in claimed:
            poll.status, poll.error = "failed", error
            poll.next_poll_at = _record_failure(state, owner, error)
        return result
    try:
        for state, poll in claimed:
            _poll_claimed(mailbox, inbox, config, state, owner, poll, started)
    finally:
        close_quietly(mailbox)
    return result


def _poll_claimed(
    mailbox: BaseMailBox,
    inbox: Inbox,
    config: ImapConfig,
    state: MailboxState,
    owner: str,
    poll: FolderPoll,
    started: datetime,
    *,
    keep_lease: bool = False,
) -> bool:
    """Poll one claimed folder and record the outcome; True if it succeeded."""
    try:
        _poll_folder(mailbox, inbox, state, owner, poll)
    except LeaseLost:
        poll.status = "busy"
        return False
    except Exception as exc:  # noqa: BLE001 - recorded on the folder, retried with backoff
        poll.status, poll.error = "failed", describe_error(exc, config)
        logger.warning("inbox %s folder %s: polling failed: %s", inbox.slug, state.folder, poll.error)
        poll.next_poll_at = _record_failure(state, owner, poll.error)
        return False
    poll.next_poll_at = _record_success(state, owner, started, keep_lease=keep_lease)
    return True


@dataclass
class DuePoll:
    queued: list[int] = field(default_factory=list)  # inbox ids whose poll task was queued
    results: list[PollResult] = field(default_factory=list)  # polled in-line


def imap_inboxes() -> list[Inbox]:
    """Active email inboxes with an IMAP server configured."""
    return [inbox for inbox in Inbox.objects.filter(kind="email", is_active=True).order_by("pk") if has_imap(inbox)]


def do_poll_due_mailboxes(*, inline: bool = False, now: datetime | None = None) -> DuePoll:
    """Queue `poll_mailbox` for every IMAP inbox with a folder due (or poll them in-line).

    Due: never polled, or `next_poll_at` reached (a few seconds early is due too, so a
    poll finishing just after beat's tick is not put off a whole interval), and no other
    poller holding it.
    """
    from channels_inbox.tasks import poll_mailbox
    from helpdesk.sideeffects import enqueue

    now = now or timezone.now()
    due_by = now + timedelta(seconds=min(5.0, settings.IMAP_POLL_INTERVAL_SECONDS / 4))
    inboxes = imap_inboxes()
    states = {
        (s.inbox_id, s.folder): s for s in MailboxState.objects.filter(inbox_id__in=[inbox.pk for inbox in inboxes])
    }
    outcome = DuePoll()
    for inbox in inboxes:
        due = False
        for name in folders_of(inbox):
            state = states.get((inbox.pk, name))
            if state is None or (
                (state.next_poll_at is None or state.next_poll_at <= due_by)
                and (state.lease_until is None or state.lease_until < now)
            ):
                due = True
        if not due:
            continue
        if inline:
            outcome.results.append(do_poll_mailbox(inbox))
        else:
            enqueue(poll_mailbox, inbox.pk)
            outcome.queued.append(inbox.pk)
    return outcome


def do_watch_mailbox(
    inbox_id: int,
    *,
    folder: str,
    stop: threading.Event,
    on_poll: Callable[[FolderPoll], None] | None = None,
) -> None:
    """Keep one folder fetched as mail arrives, until `stop` is set: connect, fetch, IMAP IDLE,
    fetch again on EXISTS (and at least every IMAP_IDLE_SECONDS); reconnect with backoff.

    Holds the folder's lease while connected (renewed as it waits), so no other poller
    fetches the folder meanwhile; a folder another poller holds is tried again later.
    """
    owner = new_lease_owner()
    retry_after = float(settings.IMAP_POLL_INTERVAL_SECONDS)
    while not stop.is_set():
        inbox = Inbox.objects.filter(pk=inbox_id, is_active=True).first()
        if inbox is None or not has_imap(inbox):
            logger.warning("inbox %s is gone, inactive or without IMAP: no longer watched", inbox_id)
            return
        state = _claim(inbox, folder, owner)
        if state is None:
            stop.wait(retry_after)
            continue
        config: ImapConfig | None = None
        try:
            config = imap_config(inbox)
            mailbox = open_mailbox(config)
        except Exception as exc:  # noqa: BLE001 - recorded, retried with backoff
            error = str(exc) if isinstance(exc, ImapConfigError) else describe_error(exc, config)
            logger.warning("inbox %s folder %s: IMAP connection failed: %s", inbox.slug, folder, error)
            poll = FolderPoll(folder=folder, status="failed", error=error)
            poll.next_poll_at = _record_failure(state, owner, error)
            if on_poll:
                on_poll(poll)
            stop.wait(max(0.0, (poll.next_poll_at - timezone.now()).total_seconds()))
            continue
        try:
            _watch_connected(mailbox, inbox, config, state, owner, stop, on_poll)
        finally:
            close_quietly(mailbox)
            _release(state, owner)
        if not stop.is_set() and state.failures:
            stop.wait(max(0.0, ((state.next_poll_at or timezone.now()) - timezone.now()).total_seconds()))


def _watch_connected(
    mailbox: BaseMailBox,
    inbox: Inbox,
    config: ImapConfig,
    state: MailboxState,
    owner: str,
    stop: threading.Event,
    on_poll: Callable[[FolderPoll], None] | None,
) -> None:
    idle_seconds = max(1.0, min(float(settings.IMAP_IDLE_SECONDS), MAX_IDLE_SECONDS))
    renew_every = max(1.0, settings.IMAP_LEASE_SECONDS / 3)
    while not stop.is_set():
        poll = FolderPoll(folder=state.folder)
        ok = _poll_claimed(mailbox, inbox, config, state, owner, poll, timezone.now(), keep_lease=True)
        if on_poll:
            on_poll(poll)
        if not ok:
            return  # failed (recorded, backoff) or the lease is gone: reconnect from the top
        try:
            _idle_until_news(mailbox, state, owner, stop, idle_seconds=idle_seconds, renew_every=renew_every)
        except LeaseLost:
            return
        except Exception as exc:  # noqa: BLE001 - a dropped connection: recorded, reconnect with backoff
            error = describe_error(exc, config)
            logger.warning("inbox %s folder %s: IDLE failed: %s", inbox.slug, state.folder, error)
            _record_failure(state, owner, error)
            if on_poll:
                on_poll(FolderPoll(folder=state.folder, status="failed", error=error, next_poll_at=state.next_poll_at))
            return


def _idle_until_news(
    mailbox: BaseMailBox,
    state: MailboxState,
    owner: str,
    stop: threading.Event,
    *,
    idle_seconds: float,
    renew_every: float,
) -> None:
    """IDLE until the server announces mail, `idle_seconds` pass, or `stop` is set."""
    early = idle_start(mailbox)
    try:
        if not has_new_mail(early):
            _wait_in_idle(mailbox, state, owner, stop, idle_seconds=idle_seconds, renew_every=renew_every)
    except BaseException:
        # Already failing (often the connection is gone): keep that error, not DONE's.
        with contextlib.suppress(Exception):
            idle_stop(mailbox)
        raise
    idle_stop(mailbox)


def _wait_in_idle(
    mailbox: BaseMailBox,
    state: MailboxState,
    owner: str,
    stop: threading.Event,
    *,
    idle_seconds: float,
    renew_every: float,
) -> None:
    begun = last_renew = time.monotonic()
    while not stop.is_set():
        remaining = idle_seconds - (time.monotonic() - begun)
        if remaining <= 0:
            return
        wait = min(1.0, remaining)
        asked = time.monotonic()
        responses = idle_poll(mailbox, timeout=wait)
        if any(line.startswith(b"* BYE") for line in responses):
            raise imaplib.IMAP4.abort("the server ended the connection during IDLE")
        if has_new_mail(responses):
            return
        if not responses and time.monotonic() - asked < wait / 2:
            # Readable with nothing to read: the server closed the connection.
            raise imaplib.IMAP4.abort("the connection closed during IDLE")
        if time.monotonic() - last_renew >= renew_every:
            # While we watch, the folder is not due for the periodic poll.
            _renew(state, owner, next_poll_at=timezone.now() + timedelta(seconds=settings.IMAP_POLL_INTERVAL_SECONDS))
            last_renew = time.monotonic()
