"""IMAP polling against a real Dovecot (tests/imap_server.py): exactly-once by (UIDVALIDITY, UID),
PEEK, the per-folder lease, backoff, XOAUTH2, the poll_mailboxes command and IMAP IDLE."""

from __future__ import annotations

import io
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from channels_inbox.actions import mailbox as mailbox_actions
from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.actions.mailbox import do_poll_due_mailboxes, do_poll_mailbox
from channels_inbox.models import InboundEvent, Inbox, MailboxState
from helpdesk.models import Message, Ticket
from tests.imap_server import Account, Dovecot, dovecot_available, running_dovecot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(not dovecot_available(), reason="needs Dovecot (/usr/sbin/dovecot, Debian dovecot-imapd)"),
]


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def account(dovecot: Dovecot) -> Account:
    return dovecot.new_account()


def make_inbox(dovecot: Dovecot, account: Account, *, name: str = "Support", **values: Any) -> Inbox:
    settings = {
        "address": "support@example.com",
        "imap_host": dovecot.host,
        "imap_port": dovecot.port,
        "imap_security": "none",
        "imap_user": account.user,
        "imap_password": account.password,
        **values,
    }
    inbox, _ = do_create_inbox(kind="email", name=name, values=settings)
    return inbox


@pytest.fixture
def inbox(dovecot: Dovecot, account: Account) -> Inbox:
    return make_inbox(dovecot, account)


def mail(n: int, *, subject: str = "", sender: str = "") -> bytes:
    sender = sender or f"customer{n}@example.net"
    return (
        f"From: Customer {n} <{sender}>\r\n"
        "To: support@example.com\r\n"
        f"Subject: {subject or f'Question {n}'}\r\n"
        f"Message-ID: <q{n}.{time.time_ns()}@example.net>\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Hello, this is question number {n}.\r\n"
    ).encode()


def state_of(inbox: Inbox, folder: str = "INBOX") -> MailboxState:
    return MailboxState.objects.get(inbox=inbox, folder=folder)


# --- exactly once -------------------------------------------------------------------------------


def test_first_poll_stores_every_mail_byte_exact_and_opens_tickets(
    dovecot: Dovecot, account: Account, inbox: Inbox
) -> None:
    # given
    raws = [mail(1), mail(2), mail(3)]
    uids = [dovecot.append(account, raw) for raw in raws]

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert result.status == "ok", result
    assert result.stored == 3
    events = list(InboundEvent.objects.filter(inbox=inbox).order_by("pk"))
    assert [bytes(e.payload) for e in events] == raws
    uidvalidity = dovecot.status(account)["UIDVALIDITY"]
    assert [e.dedupe_key for e in events] == [f"imap:INBOX:{uidvalidity}:{uid}" for uid in uids]
    assert {e.status for e in events} == {"processed"}
    assert sorted(Ticket.objects.filter(inbox=inbox).values_list("subject", flat=True)) == [
        "Question 1",
        "Question 2",
        "Question 3",
    ]
    state = state_of(inbox)
    assert (state.uidvalidity, state.last_uid, state.failures) == (uidvalidity, uids[-1], 0)
    assert state.lease_owner == ""
    assert state.lease_until is None
    assert state.last_polled_at is not None
    assert state.next_poll_at is not None
    assert state.next_poll_at > timezone.now() + timedelta(seconds=30)


def test_second_poll_stores_nothing_and_a_new_mail_is_the_only_one_fetched(
    dovecot: Dovecot, account: Account, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    dovecot.append(account, mail(1))
    dovecot.append(account, mail(2))
    do_poll_mailbox(inbox)
    fetched: list[list[int]] = []
    real_fetch = mailbox_actions.fetch_raw

    def recording_fetch(mailbox: Any, uids: list[int]) -> dict[int, bytes]:
        fetched.append(list(uids))
        return real_fetch(mailbox, uids)

    monkeypatch.setattr(mailbox_actions, "fetch_raw", recording_fetch)

    # when
    again = do_poll_mailbox(inbox)

    # then
    assert (again.status, again.stored, fetched) == ("ok", 0, [])
    assert InboundEvent.objects.filter(inbox=inbox).count() == 2

    # when: one more mail arrives
    uid = dovecot.append(account, mail(3))
    third = do_poll_mailbox(inbox)

    # then
    assert (third.stored, fetched) == (1, [[uid]])
    assert InboundEvent.objects.filter(inbox=inbox).count() == 3
    assert Ticket.objects.filter(inbox=inbox).count() == 3
    assert state_of(inbox).last_uid == uid


def test_newest_message_below_last_uid_is_not_fetched_again(dovecot: Dovecot, account: Account, inbox: Inbox) -> None:
    # given: polled up to UID 2; UID 3 came and went, so `UID SEARCH UID 3:*` matches UID 2
    dovecot.append(account, mail(1))
    dovecot.append(account, mail(2))
    do_poll_mailbox(inbox)
    dovecot.expunge(account, dovecot.append(account, mail(3)))
    assert dovecot.status(account)["UIDNEXT"] == 4

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert (result.status, result.stored, result.folders[0].duplicates) == ("ok", 0, 0)
    assert InboundEvent.objects.filter(inbox=inbox).count() == 2
    assert state_of(inbox).last_uid == 2


def test_polling_leaves_seen_flags_as_they_were(dovecot: Dovecot, account: Account, inbox: Inbox) -> None:
    # given
    unread = dovecot.append(account, mail(1))
    read = dovecot.append(account, mail(2), flags="\\Seen")

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert result.stored == 2
    flags = dovecot.flags(account)
    assert "\\Seen" not in flags[unread]
    assert "\\Seen" in flags[read]
    assert dovecot.status(account)["UNSEEN"] == 1


def test_new_uidvalidity_rescans_the_folder_without_duplicate_messages(dovecot: Dovecot, account: Account) -> None:
    # given: a polled folder
    dovecot.create_folder(account, "Tickets")
    inbox = make_inbox(dovecot, account, imap_folders="Tickets")
    first, second = mail(1), mail(2)
    dovecot.append(account, first, folder="Tickets")
    dovecot.append(account, second, folder="Tickets")
    do_poll_mailbox(inbox)
    old_uidvalidity = state_of(inbox, "Tickets").uidvalidity

    # when: the folder is recreated (new UIDVALIDITY) with the same mails and a new one
    dovecot.delete_folder(account, "Tickets")
    dovecot.create_folder(account, "Tickets")
    for raw in (first, second, mail(3)):
        dovecot.append(account, raw, folder="Tickets")
    new_uidvalidity = dovecot.status(account, "Tickets")["UIDVALIDITY"]
    assert new_uidvalidity != old_uidvalidity
    result = do_poll_mailbox(inbox)

    # then
    poll = result.folders[0]
    assert poll.uidvalidity_changed
    assert poll.uidvalidity == new_uidvalidity
    assert (poll.status, poll.stored) == ("ok", 3)
    state = state_of(inbox, "Tickets")
    assert (state.uidvalidity, state.last_uid) == (new_uidvalidity, 3)
    assert Message.objects.filter(inbox=inbox).count() == 3
    assert Ticket.objects.filter(inbox=inbox).count() == 3


def test_every_configured_folder_is_polled_with_its_own_state(dovecot: Dovecot, account: Account) -> None:
    # given
    dovecot.create_folder(account, "Escalations")
    inbox = make_inbox(dovecot, account, imap_folders="INBOX, Escalations")
    dovecot.append(account, mail(1))
    dovecot.append(account, mail(2), folder="Escalations")
    dovecot.append(account, mail(3), folder="Escalations")

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert [(f.folder, f.status, f.stored, f.last_uid) for f in result.folders] == [
        ("INBOX", "ok", 1, 1),
        ("Escalations", "ok", 2, 2),
    ]
    assert InboundEvent.objects.filter(inbox=inbox, dedupe_key__startswith="imap:Escalations:").count() == 2


# --- the lease ------------------------------------------------------------------------------------


def test_a_folder_leased_to_another_poller_is_busy_until_the_lease_runs_out(
    dovecot: Dovecot, account: Account, inbox: Inbox
) -> None:
    # given
    dovecot.append(account, mail(1))
    MailboxState.objects.create(
        inbox=inbox, folder="INBOX", lease_owner="other:1:x", lease_until=timezone.now() + timedelta(minutes=5)
    )

    # when
    busy = do_poll_mailbox(inbox)

    # then
    assert (busy.status, busy.stored) == ("busy", 0)
    assert state_of(inbox).lease_owner == "other:1:x"
    assert not InboundEvent.objects.filter(inbox=inbox).exists()

    # when: the other poller died and its lease expired
    MailboxState.objects.filter(inbox=inbox).update(lease_until=timezone.now() - timedelta(seconds=1))
    taken = do_poll_mailbox(inbox)

    # then
    assert (taken.status, taken.stored) == ("ok", 1)
    assert state_of(inbox).lease_owner == ""


# SQLite's in-memory test database shares one cache between threads, whose table locks fail
# at once instead of waiting ("database table is locked"): real concurrency needs PostgreSQL.
@pytest.mark.postgres
def test_two_pollers_at_once_store_each_mail_once_and_one_is_busy(
    dovecot: Dovecot, account: Account, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a slow server, so both pollers overlap
    for n in range(1, 6):
        dovecot.append(account, mail(n))
    real_open = mailbox_actions.open_mailbox

    def slow_open(config: Any) -> Any:
        time.sleep(0.5)
        return real_open(config)

    monkeypatch.setattr(mailbox_actions, "open_mailbox", slow_open)
    MailboxState.objects.create(inbox=inbox, folder="INBOX")
    barrier = threading.Barrier(2)
    statuses: list[str] = []
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(do_poll_mailbox(Inbox.objects.get(pk=inbox.pk)).status)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(2)]

    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then
    assert not errors, errors
    assert sorted(statuses) == ["busy", "ok"]
    keys = list(InboundEvent.objects.filter(inbox=inbox).values_list("dedupe_key", flat=True))
    assert len(keys) == len(set(keys)) == 5
    assert Ticket.objects.filter(inbox=inbox).count() == 5
    assert state_of(inbox).last_uid == 5


# --- crashes, errors, odd mail -------------------------------------------------------------------


def test_crash_inside_the_store_transaction_stores_nothing_and_the_next_poll_stores_each_once(
    dovecot: Dovecot, account: Account, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: storing fails at the second mail of the chunk
    for n in range(1, 4):
        dovecot.append(account, mail(n))
    real_store = mailbox_actions.store_email
    calls: list[int] = []

    def crashing_store(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(mailbox_actions, "store_email", crashing_store)

    # when
    crashed = do_poll_mailbox(inbox)

    # then
    assert crashed.status == "failed"
    assert "worker killed" in crashed.folders[0].error
    assert not InboundEvent.objects.filter(inbox=inbox).exists()
    state = state_of(inbox)
    assert (state.last_uid, state.failures, state.lease_owner) == (0, 1, "")

    # when
    monkeypatch.setattr(mailbox_actions, "store_email", real_store)
    retried = do_poll_mailbox(inbox)

    # then
    assert (retried.status, retried.stored) == ("ok", 3)
    keys = list(InboundEvent.objects.filter(inbox=inbox).values_list("dedupe_key", flat=True))
    assert len(keys) == len(set(keys)) == 3
    assert Ticket.objects.filter(inbox=inbox).count() == 3
    assert state_of(inbox).failures == 0


def test_a_refetched_chunk_is_not_stored_twice(dovecot: Dovecot, account: Account, inbox: Inbox) -> None:
    # given: mails stored, but the commit of last_uid was lost (as after a crash at commit time)
    dovecot.append(account, mail(1))
    dovecot.append(account, mail(2))
    do_poll_mailbox(inbox)
    MailboxState.objects.filter(inbox=inbox).update(last_uid=0)

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert (result.stored, result.folders[0].duplicates) == (0, 2)
    assert InboundEvent.objects.filter(inbox=inbox).count() == 2
    assert state_of(inbox).last_uid == 2


def test_a_mail_the_server_sends_no_body_for_is_not_stepped_over(
    dovecot: Dovecot, account: Account, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a FETCH answer we cannot use for a message that is still there
    dovecot.append(account, mail(1))
    monkeypatch.setattr(mailbox_actions, "fetch_raw", lambda mailbox, uids: {})

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert result.status == "failed"
    state = state_of(inbox)
    assert state.last_uid == 0
    assert "no body for uid 1" in state.last_error


def test_a_mail_expunged_between_search_and_fetch_is_skipped(
    dovecot: Dovecot, account: Account, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: another client deletes mail 1 while we fetch
    first = dovecot.append(account, mail(1))
    dovecot.append(account, mail(2))
    real_fetch = mailbox_actions.fetch_raw

    def fetch_after_expunge(mailbox: Any, uids: list[int]) -> dict[int, bytes]:
        dovecot.expunge(account, first)
        return real_fetch(mailbox, uids)

    monkeypatch.setattr(mailbox_actions, "fetch_raw", fetch_after_expunge)

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert (result.status, result.stored, result.folders[0].skipped) == ("ok", 1, [])
    assert state_of(inbox).last_uid == 2


def test_wrong_password_backs_off_without_the_password_and_other_inboxes_still_poll(
    dovecot: Dovecot, account: Account, settings: Any
) -> None:
    # given
    settings.IMAP_BACKOFF_BASE_SECONDS = 30
    wrong_password = "Wr0ng-Passw0rd-Value"
    broken = make_inbox(dovecot, account, name="Broken", imap_password=wrong_password)
    other = dovecot.new_account()
    working = make_inbox(dovecot, other, name="Working")
    dovecot.append(account, mail(1))
    dovecot.append(other, mail(2))

    # when
    before = timezone.now()
    results = {r.inbox: r for r in do_poll_due_mailboxes(inline=True).results}

    # then
    assert results[broken.slug].status == "failed"
    assert results[working.slug].status == "ok"
    assert results[working.slug].stored == 1
    state = state_of(broken)
    assert state.failures == 1
    assert "AUTHENTICATIONFAILED" in state.last_error or "Authentication failed" in state.last_error
    assert wrong_password not in state.last_error
    assert wrong_password not in results[broken.slug].folders[0].error
    assert state.next_poll_at is not None
    assert before + timedelta(seconds=29) <= state.next_poll_at <= timezone.now() + timedelta(seconds=31)
    assert not InboundEvent.objects.filter(inbox=broken).exists()

    # when: the next poll fails again
    do_poll_mailbox(broken)

    # then: the wait doubles
    state = state_of(broken)
    assert state.failures == 2
    assert state.next_poll_at is not None
    assert state.next_poll_at >= timezone.now() + timedelta(seconds=59)

    # when: the password is fixed
    from channels_inbox.actions.inboxes import do_update_inbox_settings

    do_update_inbox_settings(broken, values={"imap_password": account.password})
    fixed = do_poll_mailbox(broken)

    # then
    assert (fixed.status, fixed.stored) == ("ok", 1)
    state = state_of(broken)
    assert (state.failures, state.last_error) == (0, "")


def test_backoff_is_capped_at_an_hour(settings: Any) -> None:
    # given
    settings.IMAP_BACKOFF_BASE_SECONDS = 30
    settings.IMAP_BACKOFF_MAX_SECONDS = 3600

    # then
    assert [mailbox_actions.backoff_delay(n).total_seconds() for n in (1, 2, 3, 7, 8, 30)] == [
        30,
        60,
        120,
        1920,
        3600,
        3600,
    ]


def test_unreachable_server_is_recorded_as_a_failure(account: Account, dovecot: Dovecot, settings: Any) -> None:
    # given: nothing listens on the port
    settings.IMAP_TIMEOUT_SECONDS = 3
    inbox = make_inbox(dovecot, account, imap_port=1)

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert result.status == "failed"
    state = state_of(inbox)
    assert state.failures == 1
    assert "127.0.0.1:1" in state.last_error
    assert account.password not in state.last_error


def test_mail_over_the_size_limit_is_left_on_the_server_and_noted(
    dovecot: Dovecot, account: Account, inbox: Inbox, settings: Any
) -> None:
    # given
    settings.EMAIL_MAX_BYTES = 2000
    big = mail(1) + b"x" * 3000 + b"\r\n"
    big_uid = dovecot.append(account, big)
    small_uid = dovecot.append(account, mail(2))

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert result.stored == 1
    assert result.folders[0].skipped == [f"uid {big_uid}: over EMAIL_MAX_BYTES ({len(big)} bytes)"]
    state = state_of(inbox)
    assert state.last_uid == small_uid
    assert f"uid {big_uid}: over EMAIL_MAX_BYTES ({len(big)} bytes)" in state.last_error
    assert dovecot.status(account)["MESSAGES"] == 2

    # when: later polls succeed; the note stays
    do_poll_mailbox(inbox)

    # then
    assert f"uid {big_uid}: over EMAIL_MAX_BYTES" in state_of(inbox).last_error
    assert InboundEvent.objects.filter(inbox=inbox).count() == 1


def test_empty_mail_is_skipped_and_noted(dovecot: Dovecot, account: Account, inbox: Inbox) -> None:
    # given: an MTA dropped an empty file into the Maildir
    dovecot.deliver_file(account, b"")
    dovecot.append(account, mail(1))

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert (result.status, result.stored) == ("ok", 1)
    [note] = result.folders[0].skipped
    assert note.startswith("uid ")
    assert note.endswith(": empty message")
    assert state_of(inbox).last_uid == 2


def test_malformed_mail_is_stored_raw_and_becomes_a_ticket_with_an_error(
    dovecot: Dovecot, account: Account, inbox: Inbox
) -> None:
    # given: bytes that are no mail at all, delivered into the Maildir, then a good mail
    # (no NUL: IMAP cannot carry NUL in a message literal, Dovecot sends it as 0x80)
    garbage = b"\xff\xfe\x80 this is not an RFC 822 message\r\n\r\n\x1b[31m--\r\n"
    dovecot.deliver_file(account, garbage)
    dovecot.append(account, mail(1))

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert (result.status, result.stored) == ("ok", 2)
    [event] = [e for e in InboundEvent.objects.filter(inbox=inbox) if bytes(e.payload) == garbage]
    assert event.status == "processed"
    assert event.message_id is not None
    message = Message.objects.get(pk=event.message_id)
    assert message.metadata["email"]["parse_error"]
    assert "could not be read" in message.text
    assert Ticket.objects.filter(inbox=inbox).count() == 2


# --- XOAUTH2 ------------------------------------------------------------------------------------


def test_xoauth2_logs_in_with_the_access_token(dovecot: Dovecot, account: Account) -> None:
    # given: Dovecot checks the token against its introspection endpoint
    inbox = make_inbox(dovecot, account, imap_password="", imap_auth="xoauth2", imap_oauth2_token=account.token)
    dovecot.append(account, mail(1))

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert (result.status, result.stored) == ("ok", 1)
    assert account.token in dovecot.tokens_seen


def test_xoauth2_with_an_expired_token_fails_without_showing_it(dovecot: Dovecot, account: Account) -> None:
    # given
    token = "expired-token-0123456789"
    inbox = make_inbox(dovecot, account, imap_password="", imap_auth="xoauth2", imap_oauth2_token=token)

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert result.status == "failed"
    assert token in dovecot.tokens_seen
    state = state_of(inbox)
    assert state.failures == 1
    assert "xoauth2" in state.last_error
    assert token not in state.last_error


def test_missing_password_is_a_recorded_failure(dovecot: Dovecot, account: Account) -> None:
    # given
    inbox = make_inbox(dovecot, account, imap_password="")

    # when
    result = do_poll_mailbox(inbox)

    # then
    assert result.status == "failed"
    assert "imap_password" in state_of(inbox).last_error


# --- due mailboxes, tasks, beat --------------------------------------------------------------------


def test_due_mailboxes_are_queued_once_and_not_again_until_their_interval(
    dovecot: Dovecot, account: Account, inbox: Inbox, lost_tasks: list[tuple[str, tuple[Any, ...]]]
) -> None:
    # given: an inactive inbox and one without IMAP are never polled
    old = make_inbox(dovecot, dovecot.new_account(), name="Old")
    Inbox.objects.filter(pk=old.pk).update(is_active=False)
    do_create_inbox(kind="email", name="Pipe only", values={"address": "pipe@example.com"})

    # when
    due = do_poll_due_mailboxes()

    # then
    assert due.queued == [inbox.pk]
    assert lost_tasks == [("channels_inbox.tasks.poll_mailbox", (inbox.pk,))]

    # when: it was polled just now
    MailboxState.objects.create(inbox=inbox, folder="INBOX", next_poll_at=timezone.now() + timedelta(seconds=60))

    # then
    assert do_poll_due_mailboxes().queued == []

    # when: its time has come
    MailboxState.objects.filter(inbox=inbox).update(next_poll_at=timezone.now() - timedelta(seconds=1))

    # then
    assert do_poll_due_mailboxes().queued == [inbox.pk]


def test_poll_tasks_poll_due_mailboxes(dovecot: Dovecot, account: Account, inbox: Inbox) -> None:
    # given
    from channels_inbox.tasks import poll_mailbox, poll_mailboxes

    dovecot.append(account, mail(1))

    # when
    queued = poll_mailboxes.delay().get()

    # then: beat's task queued the poll, which ran (eagerly) and stored the mail
    assert queued == {"queued": 1}
    assert InboundEvent.objects.filter(inbox=inbox).count() == 1
    assert poll_mailbox.delay(inbox.pk).get() == {"status": "ok", "stored": 0}
    assert poll_mailbox.delay(10**9).get() == {"status": "missing", "stored": 0}


def test_beat_polls_mailboxes_every_poll_interval() -> None:
    from django.conf import settings

    from helpdesk.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["poll-mailboxes"]
    assert entry == {"task": "channels_inbox.tasks.poll_mailboxes", "schedule": settings.IMAP_POLL_INTERVAL_SECONDS}
    from channels_inbox.tasks import poll_mailboxes

    assert app.tasks["channels_inbox.tasks.poll_mailboxes"].name == poll_mailboxes.name


# --- the command -----------------------------------------------------------------------------------


def test_command_polls_every_mailbox_once_and_prints_a_line_per_folder(
    dovecot: Dovecot, account: Account, inbox: Inbox
) -> None:
    # given
    dovecot.append(account, mail(1))
    dovecot.append(account, mail(2))
    out = io.StringIO()

    # when
    call_command("poll_mailboxes", stdout=out)

    # then
    assert out.getvalue().strip() == (
        f"{inbox.slug} INBOX: ok, stored 2, already stored 0, last uid 2, "
        f"uidvalidity {dovecot.status(account)['UIDVALIDITY']}"
    )
    assert Ticket.objects.filter(inbox=inbox).count() == 2


def test_command_exits_1_when_a_mailbox_fails_and_still_polls_the_others(
    dovecot: Dovecot, account: Account, inbox: Inbox
) -> None:
    # given
    broken = make_inbox(dovecot, dovecot.new_account(), name="Broken", imap_password="nope-nope")
    dovecot.append(account, mail(1))
    out = io.StringIO()

    # when
    with pytest.raises(SystemExit) as exit_info:
        call_command("poll_mailboxes", stdout=out)

    # then
    assert exit_info.value.code == 1
    lines = out.getvalue().splitlines()
    assert any(line.startswith(f"{inbox.slug} INBOX: ok, stored 1") for line in lines), lines
    assert any(line.startswith(f"{broken.slug} INBOX: failed") and "error:" in line for line in lines), lines
    assert "nope-nope" not in out.getvalue()


def test_command_respects_backoff_unless_the_inbox_is_named(dovecot: Dovecot, account: Account, inbox: Inbox) -> None:
    # given: the last connection failed a moment ago
    dovecot.append(account, mail(1))
    MailboxState.objects.create(
        inbox=inbox, folder="INBOX", failures=3, next_poll_at=timezone.now() + timedelta(minutes=2)
    )
    out = io.StringIO()

    # when
    with pytest.raises(SystemExit) as exit_info:
        call_command("poll_mailboxes", stdout=out)

    # then: still failing, so the exit status says so
    assert exit_info.value.code == 1
    assert f"{inbox.slug} INBOX: waiting" in out.getvalue()
    assert not InboundEvent.objects.filter(inbox=inbox).exists()

    # when
    call_command("poll_mailboxes", "--inbox", inbox.slug, stdout=out)

    # then
    assert f"{inbox.slug} INBOX: ok, stored 1" in out.getvalue()
    assert state_of(inbox).failures == 0


def test_command_refuses_an_unknown_inbox(db: Any) -> None:
    with pytest.raises(CommandError, match="no active email inbox"):
        call_command("poll_mailboxes", "--inbox", "nope")


def test_command_loop_polls_until_its_time_is_up(dovecot: Dovecot, account: Account, inbox: Inbox) -> None:
    # given
    dovecot.append(account, mail(1))
    out = io.StringIO()

    # when
    started = time.monotonic()
    call_command("poll_mailboxes", "--loop", "--every", "0.2", "--max-seconds", "1.5", stdout=out)

    # then
    assert 1.4 <= time.monotonic() - started < 10
    assert f"{inbox.slug} INBOX: ok, stored 1" in out.getvalue()
    assert InboundEvent.objects.filter(inbox=inbox).count() == 1


class _Lines(io.StringIO):
    """Command output that tells waiting threads when a line with `stored N` (N > 0) appears."""

    def __init__(self) -> None:
        super().__init__()
        self.stored = threading.Semaphore(0)

    def write(self, text: str) -> int:
        if ": ok, stored " in text and ": ok, stored 0," not in text:
            self.stored.release()
        return super().write(text)


def test_command_idle_fetches_a_new_mail_within_seconds_and_stops_on_sigterm(
    dovecot: Dovecot, account: Account, settings: Any
) -> None:
    # given: periodic polling far away, so only IDLE can fetch the second mail quickly
    settings.IMAP_POLL_INTERVAL_SECONDS = 600
    inbox = make_inbox(dovecot, account, imap_idle="true")
    dovecot.append(account, mail(1))
    out = _Lines()
    timings: dict[str, float] = {}
    problems: list[BaseException] = []

    def customer() -> None:
        try:
            assert out.stored.acquire(timeout=20), "the first mail was not fetched"
            time.sleep(0.5)  # the watcher is in IDLE now
            timings["sent"] = time.monotonic()
            dovecot.append(account, mail(2))
            assert out.stored.acquire(timeout=20), "the second mail was not fetched"
            timings["stored"] = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            problems.append(exc)
        finally:
            if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):  # the command's handler
                os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=customer)
    thread.start()

    # when
    started = time.monotonic()
    call_command("poll_mailboxes", "--idle", "--max-seconds", "60", stdout=out)
    thread.join(timeout=10)

    # then
    assert not problems, (problems, out.getvalue())
    assert timings["stored"] - timings["sent"] < 5
    assert time.monotonic() - started < 45  # stopped by the signal, not the time limit
    assert InboundEvent.objects.filter(inbox=inbox).count() == 2
    assert Ticket.objects.filter(inbox=inbox).count() == 2
    state = state_of(inbox)
    assert (state.last_uid, state.lease_owner) == (2, "")


def test_watcher_reconnects_after_the_server_drops_it_and_fetches_what_came_meanwhile(
    dovecot: Dovecot, account: Account, settings: Any
) -> None:
    # given: a watcher in IDLE
    settings.IMAP_BACKOFF_BASE_SECONDS = 0.2
    settings.IMAP_POLL_INTERVAL_SECONDS = 600
    inbox = make_inbox(dovecot, account, imap_idle="true")
    polls: queue.Queue[mailbox_actions.FolderPoll] = queue.Queue()
    stop = threading.Event()

    def watch() -> None:
        try:
            mailbox_actions.do_watch_mailbox(inbox.pk, folder="INBOX", stop=stop, on_poll=polls.put)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert polls.get(timeout=10).status == "ok"
        time.sleep(0.3)

        # when: the server drops the connection, then a mail arrives
        dovecot.kick(account)
        dropped = polls.get(timeout=10)
        dovecot.append(account, mail(1))
        after = [polls.get(timeout=10)]
        while after[-1].stored == 0:
            after.append(polls.get(timeout=10))
    finally:
        stop.set()
        watcher.join(timeout=30)

    # then
    assert dropped.status == "failed"
    assert "IDLE" in dropped.error or "BYE" in dropped.error
    assert after[-1].status == "ok"
    assert InboundEvent.objects.filter(inbox=inbox).count() == 1
    state = state_of(inbox)
    assert (state.failures, state.lease_owner) == (0, "")


def test_idle_start_reports_mail_announced_with_the_continuation(dovecot: Dovecot, account: Account) -> None:
    # given: a mail arrives between the last command and IDLE (Dovecot then sends its
    # EXISTS right behind `+ idling`, where waiting on the socket does not see it)
    from channels_inbox.email.imap import close_quietly, has_new_mail, idle_start, idle_stop, imap_config, open_mailbox

    inbox = make_inbox(dovecot, account)
    mailbox = open_mailbox(imap_config(inbox))
    try:
        mailbox.folder.set("INBOX", readonly=True)
        dovecot.append(account, mail(1))
        time.sleep(0.2)

        # when
        early = idle_start(mailbox)
        idle_stop(mailbox)
    finally:
        close_quietly(mailbox)

    # then
    assert has_new_mail(early), early


def test_command_idle_refuses_when_no_inbox_uses_idle(inbox: Inbox) -> None:
    with pytest.raises(CommandError, match="imap_idle"):
        call_command("poll_mailboxes", "--idle", "--max-seconds", "1")


def test_an_idle_watcher_that_fails_starts_again(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    from types import SimpleNamespace

    from django.db import DatabaseError

    from channels_inbox.management.commands import poll_mailboxes as command_module

    # given a watcher whose first run dies on a database restart
    settings.IMAP_BACKOFF_BASE_SECONDS = 0.01
    runs: list[str] = []

    def flaky(inbox_id: int, *, folder: str, stop: threading.Event, on_poll: Any) -> None:
        runs.append(folder)
        if len(runs) == 1:
            raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr(command_module, "do_watch_mailbox", flaky)
    command = command_module.Command(stdout=io.StringIO(), stderr=io.StringIO())
    command.write_lock = threading.Lock()
    # when
    command._watch(SimpleNamespace(pk=1, slug="support"), "INBOX", threading.Event())  # type: ignore[arg-type]
    # then it said so and watched again, instead of leaving the folder unwatched
    assert runs == ["INBOX", "INBOX"]
    assert "support INBOX: watcher failed (DatabaseError" in command.stderr.getvalue()
