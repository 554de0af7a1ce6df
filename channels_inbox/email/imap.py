"""Talking IMAP with imap-tools: connect and log in per the inbox's settings, read a folder's
status, list new UIDs, and fetch raw messages byte-exact with BODY.PEEK (never marking \\Seen).

Only the transport lives here; what is stored and when the folder's last UID moves is
decided by channels_inbox/actions/mailbox.py (docs/email.md, "IMAP").
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import ImapToolsError

if TYPE_CHECKING:
    from channels_inbox.models import Inbox

# Errors that mean "this mailbox cannot be reached or read right now": recorded with backoff.
IMAP_ERRORS: tuple[type[BaseException], ...] = (
    imaplib.IMAP4.error,  # includes IMAP4.abort (connection lost) and IMAP4.readonly
    ImapToolsError,
    OSError,  # refused, unreachable, DNS, TLS (ssl.SSLError), socket timeouts
    EOFError,
)

_UID_RE = re.compile(rb"\bUID (\d+)")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class ImapConfigError(Exception):
    """The inbox's IMAP settings are incomplete (no host, no password…)."""


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    security: str  # ssl, starttls or none
    user: str
    auth: str  # password or xoauth2
    folders: tuple[str, ...]
    idle: bool
    timeout: float
    # Secrets: never logged, and scrubbed from error messages (see `scrub`).
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    def scrub(self, text: str) -> str:
        """`text` without the password or token in it (error messages may echo what was sent)."""
        for secret in (self.password, self.token):
            if secret and len(secret) >= 3:
                text = text.replace(secret, "***")
        return text


def folders_of(inbox: Inbox) -> list[str]:
    """The folders to poll: setting imap_folders, comma-separated, default INBOX."""
    raw = str(inbox.settings.get("imap_folders") or "INBOX")
    folders = []
    for name in raw.split(","):
        name = name.strip()
        if name and name not in folders:
            folders.append(name)
    return folders or ["INBOX"]


def has_imap(inbox: Inbox) -> bool:
    return inbox.kind == "email" and bool(str(inbox.settings.get("imap_host") or "").strip())


def imap_config(inbox: Inbox) -> ImapConfig:
    from channels_inbox.adapters.email import setting_flag

    host = str(inbox.settings.get("imap_host") or "").strip()
    if not host:
        raise ImapConfigError(f"inbox {inbox.slug} has no imap_host")
    security = str(inbox.settings.get("imap_security") or "ssl").strip().lower()
    if security not in ("ssl", "starttls", "none"):
        raise ImapConfigError(f"imap_security must be ssl, starttls or none, not {security!r}")
    port_setting = inbox.settings.get("imap_port")
    port = int(port_setting) if port_setting not in (None, "") else (993 if security == "ssl" else 143)
    auth = str(inbox.settings.get("imap_auth") or "password").strip().lower()
    user = str(inbox.settings.get("imap_user") or inbox.settings.get("address") or "").strip()
    password, token = inbox.secret("imap_password"), inbox.secret("imap_oauth2_token")
    if auth == "xoauth2" and not token:
        raise ImapConfigError(f"inbox {inbox.slug}: imap_auth is xoauth2 but the secret imap_oauth2_token is not set")
    if auth == "password" and not password:
        raise ImapConfigError(f"inbox {inbox.slug}: the secret imap_password is not set")
    if auth not in ("password", "xoauth2"):
        raise ImapConfigError(f"imap_auth must be password or xoauth2, not {auth!r}")
    return ImapConfig(
        host=host,
        port=port,
        security=security,
        user=user,
        auth=auth,
        folders=tuple(folders_of(inbox)),
        idle=setting_flag(inbox, "imap_idle"),
        timeout=float(settings.IMAP_TIMEOUT_SECONDS),
        password=password,
        token=token,
    )


def open_mailbox(config: ImapConfig) -> BaseMailBox:
    """A connected, logged-in mailbox with no folder selected. Raises one of IMAP_ERRORS."""
    mailbox: BaseMailBox
    if config.security == "ssl":
        mailbox = MailBox(config.host, config.port, timeout=config.timeout, ssl_context=ssl.create_default_context())
    elif config.security == "starttls":
        mailbox = MailBoxStartTls(
            config.host, config.port, timeout=config.timeout, ssl_context=ssl.create_default_context()
        )
    else:
        mailbox = MailBoxUnencrypted(config.host, config.port, timeout=config.timeout)
    try:
        if config.auth == "xoauth2":
            mailbox.xoauth2(config.user, config.token, initial_folder=None)
        else:
            mailbox.login(config.user, config.password, initial_folder=None)
    except BaseException:
        close_quietly(mailbox)
        raise
    return mailbox


def close_quietly(mailbox: BaseMailBox) -> None:
    """Log out, or at least drop the connection; never raises."""
    # Errors are of no interest here: the connection is going away anyway.
    with contextlib.suppress(Exception):
        if mailbox.client.state in ("AUTH", "SELECTED"):
            mailbox.logout()
            return
    with contextlib.suppress(Exception):
        mailbox.client.shutdown()


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int | None


def folder_status(mailbox: BaseMailBox, folder: str) -> FolderStatus:
    status = mailbox.folder.status(folder, ["UIDVALIDITY", "UIDNEXT"])
    if "UIDVALIDITY" not in status:
        raise imaplib.IMAP4.error(f"the server gave no UIDVALIDITY for {folder!r}")
    return FolderStatus(uidvalidity=int(status["UIDVALIDITY"]), uidnext=status.get("UIDNEXT"))


def select_readonly(mailbox: BaseMailBox, folder: str) -> int | None:
    """EXAMINE the folder (read-only: nothing we do can change its flags); returns its UIDVALIDITY."""
    mailbox.folder.set(folder, readonly=True)
    values = mailbox.client.untagged_responses.get("UIDVALIDITY") or []
    value = values[-1] if values else None
    if isinstance(value, bytes) and value.strip().isdigit():
        return int(value)
    return None


def uids_after(mailbox: BaseMailBox, last_uid: int) -> list[int]:
    """UIDs above last_uid in the selected folder, ascending.

    `UID n:*` always matches the newest message, even when its UID is below n (RFC 3501
    §6.4.8: `*` is the largest UID in use), so anything <= last_uid is dropped here.
    """
    found = mailbox.uids(f"UID {last_uid + 1}:*", charset=None)
    return sorted({int(uid) for uid in found if uid.isdigit() and int(uid) > last_uid})


def existing_uids(mailbox: BaseMailBox, uids: list[int]) -> set[int]:
    """Which of these UIDs the selected folder still holds (no `*`: no newest-message quirk)."""
    if not uids:
        return set()
    found = mailbox.uids(f"UID {_uid_set(uids)}", charset=None)
    return {int(uid) for uid in found if uid.isdigit()} & set(uids)


def _uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(uid) for uid in uids)


def message_sizes(mailbox: BaseMailBox, uids: list[int]) -> dict[int, int]:
    """RFC822.SIZE of each UID (messages expunged meanwhile are missing from the result)."""
    sizes: dict[int, int] = {}
    for start in range(0, len(uids), 500):
        typ, data = mailbox.client.uid("FETCH", _uid_set(uids[start : start + 500]), "(UID RFC822.SIZE)")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"UID FETCH RFC822.SIZE failed: {typ} {data!r}"[:500])
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid, size = _UID_RE.search(line), _SIZE_RE.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def fetch_raw(mailbox: BaseMailBox, uids: list[int]) -> dict[int, bytes]:
    """The exact bytes of each message (one UID FETCH … (BODY.PEEK[]) command for all of them).

    PEEK never sets \\Seen. A message expunged since the search is missing from the result.
    """
    if not uids:
        return {}
    typ, data = mailbox.client.uid("FETCH", _uid_set(uids), "(UID BODY.PEEK[])")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH BODY.PEEK[] failed: {typ} {data!r}"[:500])
    wanted = set(uids)
    raw: dict[int, bytes] = {}
    for index, item in enumerate(data):
        # A message comes as (b'12 (UID 34 BODY[] {567}', b'<the bytes>') followed by b')'; some
        # servers put the UID after the literal instead: (b'12 (BODY[] {567}', …), b' UID 34)'.
        if not isinstance(item, tuple) or len(item) < 2 or b"BODY[]" not in item[0]:
            continue
        match = _UID_RE.search(item[0])
        if match is None and index + 1 < len(data) and isinstance(data[index + 1], bytes):
            match = _UID_RE.search(data[index + 1])
        if match is None:
            continue
        uid = int(match.group(1))
        if uid in wanted:
            raw[uid] = bytes(item[1])
    return raw


def idle_start(mailbox: BaseMailBox) -> list[bytes]:
    """Start IDLE; returns what the server already said after its `+ idling`.

    Dovecot sends `* N EXISTS` for mail that came since the last command right behind the
    continuation, often in the same packet: those lines then sit in imaplib's read buffer,
    where waiting for the socket to become readable (imap-tools' `idle.poll`) never sees
    them. They are read here, so such mail is fetched at once, not at the next re-issue.
    """
    mailbox.idle.start()
    return _buffered_lines(mailbox)


def _buffered_lines(mailbox: BaseMailBox) -> list[bytes]:
    lines: list[bytes] = []
    sock = mailbox.client.sock
    reader: Any = mailbox.client.file  # a BufferedReader over the socket
    old_timeout = sock.gettimeout()
    sock.settimeout(0)  # peek must not wait for the network
    try:
        while True:
            try:
                buffered = reader.peek(1)
            except OSError:  # nothing buffered and nothing arrived (BlockingIOError, SSLWantReadError)
                break
            if b"\n" not in buffered:
                break
            # imaplib's own line reader (as imap-tools' idle.poll uses it): the line is complete.
            lines.append(mailbox.client._get_line())
    finally:
        sock.settimeout(old_timeout)
    return lines


def idle_poll(mailbox: BaseMailBox, timeout: float) -> list[bytes]:
    """Responses the server sent during IDLE within `timeout` seconds (may be empty)."""
    return list(mailbox.idle.poll(timeout=timeout))


def idle_stop(mailbox: BaseMailBox) -> None:
    mailbox.idle.stop()


def has_new_mail(responses: list[bytes]) -> bool:
    """Did the server announce a new message (`* N EXISTS`) or a change (`RECENT`)?"""
    return any(b"EXISTS" in line or b"RECENT" in line for line in responses if isinstance(line, bytes))


def describe_error(exc: BaseException, config: ImapConfig | None = None) -> str:
    """A short, secret-free description of a connection or protocol error."""
    if isinstance(exc, socket.timeout | TimeoutError):
        text = f"timed out after {config.timeout:g}s" if config else "timed out"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if config is not None:
        text = config.scrub(text)
        text = f"{config.host}:{config.port} ({config.security}, {config.auth} as {config.user}): {text}"
    return text[:1000]
