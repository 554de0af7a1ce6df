"""The shell contract: inbox create/list/show/set/rotate-secret, agent create, createsuperuser."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from channels_inbox.models import Inbox
from helpdesk.models import AgentProfile, Role, User

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_inbox_create_prints_uuid_token_webhook_and_secrets_as_json() -> None:
    # when
    data = json.loads(
        run("inbox", "create", "--kind", "api", "--name", "Shop", "--set", "callback_url=https://x.example/h", "--json")
    )
    # then
    inbox = Inbox.objects.get()
    assert data["uuid"] == str(inbox.uuid)
    assert data["public_token"] == inbox.public_token
    assert data["webhook_url"] == f"http://127.0.0.1:8000/webhooks/api/{inbox.uuid}/"
    assert data["secrets"]["signing_secret"] == inbox.secret("signing_secret")
    assert len(data["secrets"]["signing_secret"]) == 64
    assert data["settings"] == {"callback_url": "https://x.example/h"}
    assert data["slug"] == "shop"


def test_email_inbox_create_prints_each_esps_url_with_credentials_only_once() -> None:
    # when
    data = json.loads(
        run("inbox", "create", "--kind", "email", "--name", "Support", "--set", "address=support@example.com", "--json")
    )
    # then
    inbox = Inbox.objects.get()
    secret = inbox.secret("webhook_secret")
    assert data["secrets"]["webhook_secret"] == secret
    assert data["webhook_url"] == f"http://127.0.0.1:8000/webhooks/email/<esp>/{inbox.uuid}/"
    assert set(data["webhook_urls"]) == {"mailgun", "postmark", "sendgrid", "amazon_ses", "mailjet", "brevo"}
    assert (
        data["webhook_urls"]["postmark"]
        == f"http://support:{secret}@127.0.0.1:8000/webhooks/email/postmark/{inbox.uuid}/"
    )
    # shown later: the URLs without the credentials
    for shown in (json.loads(run("inbox", "show", "support", "--json")), json.loads(run("inbox", "list", "--json"))[0]):
        assert shown["webhook_urls"]["mailgun"] == f"http://127.0.0.1:8000/webhooks/email/mailgun/{inbox.uuid}/mime"
        assert secret not in json.dumps(shown)
    # a rotation prints the new ones
    rotated = json.loads(run("inbox", "rotate-secret", "support", "--name", "webhook_secret", "--json"))
    new = rotated["secrets"]["webhook_secret"]
    assert new != secret
    assert rotated["webhook_urls"]["brevo"] == f"http://support:{new}@127.0.0.1:8000/webhooks/email/brevo/{inbox.uuid}/"


def test_inbox_list_and_show_never_print_secrets() -> None:
    created = json.loads(run("inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    secret = created["secrets"]["signing_secret"]
    listing = json.loads(run("inbox", "list", "--json"))
    shown = json.loads(run("inbox", "show", created["uuid"], "--json"))
    by_slug = json.loads(run("inbox", "show", "shop", "--json"))
    assert [i["uuid"] for i in listing] == [created["uuid"]]
    assert shown == by_slug
    for text in (json.dumps(listing), json.dumps(shown), run("inbox", "list"), run("inbox", "show", "shop")):
        assert secret not in text
        assert "secrets" not in text


def test_inbox_slugs_are_unique() -> None:
    a = json.loads(run("inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    b = json.loads(run("inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    assert (a["slug"], b["slug"]) == ("shop", "shop-2")


def test_inbox_set_and_rotate_secret() -> None:
    created = json.loads(run("inbox", "create", "--kind", "api", "--name", "Shop", "--json"))
    run("inbox", "set", created["uuid"], "--set", "callback_url=https://y.example/h")
    rotated = json.loads(run("inbox", "rotate-secret", created["uuid"], "--json"))
    inbox = Inbox.objects.get()
    assert inbox.settings == {"callback_url": "https://y.example/h"}
    assert inbox.secret("signing_secret") == rotated["secrets"]["signing_secret"]
    assert inbox.secret("previous_signing_secret") == created["secrets"]["signing_secret"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--kind", "api", "--name", "X", "--set", "nonsense"], "key=value"),
        (["--kind", "api", "--name", "X", "--set", "colour=red"], "unknown settings"),
        (["--kind", "api", "--name", "X", "--team", "nope"], "no team"),
    ],
)
def test_inbox_create_refuses_bad_input(args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        run("inbox", "create", *args)
    assert not Inbox.objects.exists()


def test_inbox_create_refuses_an_unknown_kind() -> None:
    with pytest.raises(CommandError):
        run("inbox", "create", "--kind", "fax", "--name", "X")


def test_inbox_show_unknown() -> None:
    with pytest.raises(CommandError, match="no inbox"):
        run("inbox", "show", "00000000-0000-0000-0000-000000000000")


def test_agent_create_prints_a_password_that_signs_in(client: Any) -> None:
    # when
    out = run("agent", "create", "ada@example.com", "--team", "Support", "--team", "Billing", "--role", "supervisor")
    # then
    password = out.split("password: ")[1].strip()
    user = User.objects.get(email="ada@example.com")
    profile = AgentProfile.objects.get(user=user)
    assert profile.role == Role.SUPERVISOR
    assert sorted(profile.teams.values_list("slug", flat=True)) == ["billing", "support"]
    assert client.login(username="ada@example.com", password=password)


def test_agent_create_twice_updates_instead_of_duplicating() -> None:
    run("agent", "create", "ada@example.com", "--password", "first-pw-123")
    run("agent", "create", "ADA@example.com", "--role", "light_agent", "--password", "second-pw-123")
    assert User.objects.count() == 1
    assert AgentProfile.objects.get().role == Role.LIGHT_AGENT


def test_agent_create_refuses_a_non_address() -> None:
    with pytest.raises(CommandError, match="not an email"):
        run("agent", "create", "ada")


def test_createsuperuser_noinput_with_environment(client: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "root-pw-12345")
    call_command(
        "createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com", stdout=io.StringIO()
    )
    assert client.login(username="root@example.com", password="root-pw-12345")
    assert client.get("/desk/").status_code == 200


@pytest.mark.skipif("DATABASE_URL" in os.environ, reason="embedded default only")
def test_embedded_sqlite_uses_wal_busy_timeout_and_immediate_transactions() -> None:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 5000
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    # the test database is in memory; the served one is a file in WAL mode:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django,os;os.environ['DJANGO_SETTINGS_MODULE']='helpdesk.settings';django.setup();"
            "from django.db import connection as c;cur=c.cursor();"
            "cur.execute('PRAGMA journal_mode');print(cur.fetchone()[0])",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "SWITCHBOARD_DATA_DIR": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"sb-wal-{os.getpid()}"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "wal", out.stderr


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    code = (
        "import django,os;os.environ['DJANGO_SETTINGS_MODULE']='helpdesk.settings';django.setup();"
        "from django.conf import settings;print(settings.SECRET_KEY)"
    )
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {"SWITCHBOARD_DATA_DIR": str(tmp_path)}
    keys = [
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        ).stdout.strip()
        for _ in range(2)
    ]
    assert len(keys[0]) >= 50
    assert keys[0] == keys[1]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
