"""A real IMAP server for tests: Dovecot on a loopback port over Maildirs in a temporary directory.

`running_dovecot()` writes a minimal dovecot.conf (plain IMAP on 127.0.0.1, no TLS, PLAIN/
LOGIN and XOAUTH2/OAUTHBEARER logins), starts `dovecot -F`, waits for its greeting and
stops it at the end. Every test takes a fresh account (`new_account()`), so tests never
see each other's mail. XOAUTH2 tokens are checked by Dovecot's oauth2 passdb against a
small token-introspection endpoint served here on another loopback port.

When run as root, mail processes run as `nobody` (Dovecot refuses UID 0 for mail access);
otherwise everything runs as the current user.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
# Accounts created up front, one per test that asks for one.
ACCOUNTS = 200


def dovecot_available() -> bool:
    return os.access(DOVECOT, os.X_OK)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    token: str  # a valid XOAUTH2 access token for this user


class _Introspection(BaseHTTPRequestHandler):
    """RFC 7662 token introspection as Dovecot's oauth2 passdb asks it (POST token=…)."""

    tokens: dict[str, str] = {}
    seen: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        token = (parse_qs(body).get("token") or [""])[0]
        self.seen.append(token)
        user = self.tokens.get(token)
        answer = {"active": True, "username": user} if user else {"active": False}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class Dovecot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.passwd = root / "passwd"
        self.mail = root / "mail"
        self.log = root / "dovecot.log"
        self._accounts = [
            Account(
                user=f"user{n}-{uuid.uuid4().hex[:6]}@example.com",
                password=f"pw-{uuid.uuid4().hex}",
                token=f"tok-{uuid.uuid4().hex}",
            )
            for n in range(1, ACCOUNTS + 1)
        ]
        self._lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        handler = type("Introspection", (_Introspection,), {"tokens": {}, "seen": []})
        self.introspection = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.tokens: dict[str, str] = handler.tokens  # type: ignore[attr-defined]
        self.tokens_seen: list[str] = handler.seen  # type: ignore[attr-defined]

    # --- lifecycle -------------------------------------------------------------------------
    def _config(self) -> str:
        if os.getuid() == 0:
            mail_user, mail_group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
            internal_user, login_user = _existing_user("dovecot", "nobody"), _existing_user("dovenull", "nobody")
        else:
            mail_user = internal_user = login_user = pwd.getpwuid(os.getuid()).pw_name
            mail_group = grp.getgrgid(os.getgid()).gr_name
        introspection_port = self.introspection.server_address[1]
        (self.root / "oauth2.conf.ext").write_text(
            "introspection_mode = post\n"
            f"introspection_url = http://127.0.0.1:{introspection_port}/introspect\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        return f"""
protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
info_log_path = {self.log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = 1
mail_uid = {mail_user}
mail_gid = {mail_group}
mail_location = maildir:{self.mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd}
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={self.mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""

    def start(self) -> None:
        for name in ("run", "state", "mail"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.passwd.write_text("".join(f"{a.user}:{{PLAIN}}{a.password}::::::\n" for a in self._accounts))
        self.tokens.update({a.token: a.user for a in self._accounts})
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        threading.Thread(target=self.introspection.serve_forever, name="oauth2-introspection", daemon=True).start()
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config())
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise RuntimeError(f"dovecot exited with {self.process.returncode}: {output}\n{self._log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on {self.host}:{self.port}\n{self._log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.introspection.shutdown()
        self.introspection.server_close()

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    # --- accounts and mail -------------------------------------------------------------------
    def new_account(self) -> Account:
        """An account no other test has used (all are written before Dovecot starts: it
        re-reads a changed passwd-file at most once a second)."""
        with self._lock:
            if not self._accounts:
                raise RuntimeError(f"all {ACCOUNTS} test accounts are used; raise ACCOUNTS")
            return self._accounts.pop(0)

    @contextlib.contextmanager
    def client(self, account: Account) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            imap.login(account.user, account.password)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def append(self, account: Account, raw: bytes, *, folder: str = "INBOX", flags: str = "") -> int:
        """APPEND a message; returns its UID."""
        with self.client(account) as imap:
            # imaplib takes None for "no flags" and "no date", and returns (typ, data); its stubs differ.
            appended: Any = imap.append(_quote(folder), f"({flags})" if flags else None, None, raw)  # type: ignore[arg-type]
            typ, data = appended
        assert typ == "OK", data
        match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        assert match, data
        return int(match.group(1))

    def deliver_file(self, account: Account, raw: bytes) -> None:
        """Deliver as an MTA does: write into the account's Maildir tmp/, then move to new/."""
        with self.client(account) as imap:
            imap.select("INBOX")  # makes sure the Maildir exists
        maildir = self.mail / account.user
        name = f"{time.time_ns()}.P{os.getpid()}.{uuid.uuid4().hex[:8]}.localhost"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
        tmp.rename(maildir / "new" / name)

    def status(self, account: Account, folder: str = "INBOX") -> dict[str, int]:
        with self.client(account) as imap:
            typ, data = imap.status(_quote(folder), "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
        assert typ == "OK", data
        values = re.findall(rb"([A-Z]+) (\d+)", data[0] or b"")
        return {k.decode(): int(v) for k, v in values}

    def flags(self, account: Account, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID → flags of every message in the folder (read with EXAMINE: changes nothing)."""
        with self.client(account) as imap:
            imap.select(_quote(folder), readonly=True)
            typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
        assert typ == "OK", data
        result: dict[int, set[str]] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid = re.search(rb"UID (\d+)", line)
            flags = re.search(rb"FLAGS \(([^)]*)\)", line)
            if uid:
                result[int(uid.group(1))] = set((flags.group(1) if flags else b"").decode().split())
        return result

    def expunge(self, account: Account, uid: int, folder: str = "INBOX") -> None:
        with self.client(account) as imap:
            imap.select(_quote(folder))
            typ, data = imap.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            assert typ == "OK", data
            typ, data = imap.expunge()
        assert typ == "OK", data

    def kick(self, account: Account) -> None:
        """Drop the account's connections, as a server restart or an admin would (`* BYE`)."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        subprocess.run([doveadm, "-c", str(self.root / "dovecot.conf"), "kick", account.user], check=True, timeout=10)

    def create_folder(self, account: Account, folder: str) -> None:
        with self.client(account) as imap:
            typ, data = imap.create(_quote(folder))
        assert typ == "OK", data

    def delete_folder(self, account: Account, folder: str) -> None:
        with self.client(account) as imap:
            typ, data = imap.delete(_quote(folder))
        assert typ == "OK", data


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _existing_user(*names: str) -> str:
    for name in names:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError(f"none of the users {names} exists")


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """A started Dovecot in its own temporary directory; stopped and removed at the end."""
    # Not under pytest's tmp dir: that one is private to the current user (0700), and when
    # run as root the mail processes run as nobody, who must reach the Maildirs.
    root = Path(tempfile.mkdtemp(prefix="switchboard-dovecot-"))
    root.chmod(0o755)
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
