"""The production run mode: `check --deploy`, the health probes, `deploy/run-prod.sh` end to
end, and the shape of Dockerfile, docker-compose.yml and deploy/nginx.conf (docs/deployment.md).

There is no Docker engine where these tests run, so the container files are checked as data;
the processes they start are the same ones `run-prod.sh` starts, which is run for real.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import yaml
from django.conf import settings
from django.db import OperationalError, connections
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
RUN_PROD = ROOT / "deploy" / "run-prod.sh"
PYTHON = sys.executable

# Settings read from the environment that would change what these tests see.
_SETTINGS_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "SITE_URL",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DEBUG",
    "BEHIND_PROXY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SWITCHBOARD_DATA_DIR",
    "MEDIA_ROOT",
    "EMAIL_URL",
    "DEFAULT_FROM_EMAIL",
    "WEB_CONCURRENCY",
    "CELERY_TASK_ALWAYS_EAGER",
)


def _clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    env["DJANGO_SETTINGS_MODULE"] = "helpdesk.settings"
    env.update(values)
    return env


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return _clean_env(
        SITE_URL="https://help.example.com",
        SECRET_KEY=secrets.token_urlsafe(60),
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
        REDIS_URL="redis://127.0.0.1:6379/9",
        ALLOWED_HOSTS="help.example.com",
        BEHIND_PROXY="true",
        SWITCHBOARD_DATA_DIR=str(tmp_path / "data"),
        **extra,
    )


def _manage(env: dict[str, str], *args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


# --- manage.py check --deploy -------------------------------------------------------------


def test_check_deploy_is_clean_in_production(tmp_path: Path) -> None:
    # given a production environment (https, behind a proxy, real secret, PostgreSQL + Redis)
    env = _production_env(tmp_path)
    # when
    result = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_stays_clean_when_hsts_preload_is_opted_in(tmp_path: Path) -> None:
    # given the operator opts in to HSTS preload: the silenced reminder is no longer needed
    env = _production_env(tmp_path, SECURE_HSTS_PRELOAD="true")
    # when
    result = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout, result.stdout


def test_production_security_settings(tmp_path: Path) -> None:
    # given the production environment
    env = _production_env(tmp_path)
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS > 0, s.SECURE_PROXY_SSL_HEADER, s.ALLOWED_HOSTS)"
    )
    # when
    result = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    # then HTTPS is enforced, cookies are secure, and the proxy's X-Forwarded-Proto is trusted
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "True",
        "True",
        "True",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "['help.example.com']",
    ]


def test_embedded_default_still_works_over_plain_http(tmp_path: Path) -> None:
    # given no configuration at all (the embedded default on http://127.0.0.1:8000)
    env = _clean_env(SWITCHBOARD_DATA_DIR=str(tmp_path / "data"))
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "'127.0.0.1' in s.ALLOWED_HOSTS)"
    )
    # when
    result = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    # then no redirect to https and no secure-only cookies, or logging in over http would break
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False", "0", "True"]


# --- /healthz and /readyz -----------------------------------------------------------------


def test_healthz_answers_without_touching_the_database(client: Client) -> None:
    # when
    resp = client.get("/healthz")
    # then
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_database_answers(client: Client) -> None:
    # when
    resp = client.get("/readyz")
    # then
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    if settings.REDIS_URL:
        assert body["checks"]["redis"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_when_database_is_unreachable(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a database that refuses connections
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["default"], "cursor", unreachable)
    # when
    resp = client.get("/readyz")
    # then
    assert resp.status_code == 503, resp.content
    body = resp.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "error: OperationalError"


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client: Client, settings: Any) -> None:
    # given a Redis URL where nothing listens
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    # when
    resp = client.get("/readyz")
    # then
    assert resp.status_code == 503, resp.content
    body = resp.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")


# --- deploy/run-prod.sh ---------------------------------------------------------------------


def test_run_prod_refuses_to_start_without_database_and_redis(tmp_path: Path) -> None:
    for missing in ("DATABASE_URL", "REDIS_URL"):
        # given one of the two unset
        env = _clean_env(
            DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
            REDIS_URL="redis://127.0.0.1:6379/11",
            SWITCHBOARD_DATA_DIR=str(tmp_path / "data"),
        )
        del env[missing]
        # when
        result = subprocess.run([str(RUN_PROD)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        # then it says why and exits 2, before starting anything
        assert result.returncode == 2, result.stdout + result.stderr
        assert "DATABASE_URL and REDIS_URL must both be set" in result.stderr
        assert "migrating" not in result.stderr


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its command line (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        todo.extend(children.get(child, []))
    return found


def _running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def prod_database_url() -> Iterator[str]:
    """A throwaway PostgreSQL database on the server the suite uses, dropped afterwards."""
    import psycopg

    db = settings.DATABASES["default"]
    host = str(db.get("HOST") or "127.0.0.1")
    port = int(db.get("PORT") or 5432)
    user = str(db.get("USER") or "postgres")
    password = str(db.get("PASSWORD") or "")

    def admin() -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=host, port=port, user=user, password=password or None, dbname="postgres", connect_timeout=10
        )

    name = f"sb_prod_{secrets.token_hex(4)}"
    with admin() as conn:
        conn.autocommit = True
        conn.execute(f'CREATE DATABASE "{name}"')
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    try:
        yield f"postgres://{auth}@{host}:{port}/{name}"
    finally:
        with admin() as conn:
            conn.autocommit = True
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class RunProd:
    """`deploy/run-prod.sh` as a subprocess in its own process group, on free ports."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        redis = urlsplit(settings.REDIS_URL)
        self.web_port = _free_port()
        self.ws_port = _free_port()
        self.log_path = tmp_path / "run-prod.log"
        self.env = _clean_env(
            DATABASE_URL=database_url,
            REDIS_URL=f"redis://{redis.hostname or '127.0.0.1'}:{redis.port or 6379}/11",
            SWITCHBOARD_DATA_DIR=str(tmp_path / "data"),
            WEB_PORT=str(self.web_port),
            WS_PORT=str(self.ws_port),
            WEB_CONCURRENCY="2",
            CELERY_CONCURRENCY="1",
            # The suite may run beside this: leave the checkout's staticfiles/ alone.
            COLLECTSTATIC="0",
            STOP_TIMEOUT="15",
        )
        self.seen: dict[int, str] = {}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(RUN_PROD)],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = {"/healthz", "/readyz"}
        while pending:
            assert self.proc.poll() is None, f"run-prod.sh exited with {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"not ready after {timeout}s (waiting for {pending}):\n{self.log()}"
            for path in sorted(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{self.web_port}{path}", timeout=2).status_code == 200:
                        pending.discard(path)
            if pending:
                time.sleep(0.3)
        # The ws server and the Celery processes start beside gunicorn; wait for them too.
        while not (_listening(self.ws_port) and len(self.processes_by_role()) == 4):
            assert self.proc.poll() is None, f"run-prod.sh exited with {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"not all processes up after {timeout}s:\n{self.log()}"
            time.sleep(0.3)

    def processes_by_role(self) -> dict[str, list[int]]:
        found = _descendants(self.proc.pid)
        self.seen.update(found)
        roles: dict[str, list[int]] = {}
        for pid, cmd in found.items():
            for role, pattern in (
                ("web", r"gunicorn .*helpdesk\.wsgi:application"),
                ("ws", r"uvicorn helpdesk\.asgi:application"),
                ("worker", r"celery .*\bworker\b"),
                ("beat", r"celery .*\bbeat\b"),
            ):
                if re.search(pattern, cmd):
                    roles.setdefault(role, []).append(pid)
        return roles

    def wait_all_gone(self, deadline: float) -> None:
        """The script and every process it ever started are gone by `deadline`."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        assert self.proc.returncode is not None, f"run-prod.sh still running:\n{self.log()}"
        while any(_running(pid) for pid in self.seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {pid: cmd for pid, cmd in self.seen.items() if _running(pid)}
        assert not left, f"still running: {left}\n{self.log()}"
        assert not _listening(self.web_port)
        assert not _listening(self.ws_port)

    def kill(self) -> None:
        """Last resort in teardown: only the processes this test started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in list(self.seen):
            if _running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


@pytest.fixture
def run_prod(tmp_path: Path, prod_database_url: str) -> Iterator[RunProd]:
    server = RunProd(tmp_path, prod_database_url)
    try:
        yield server
    finally:
        server.kill()


def _login_session(web_port: int, email: str, password: str) -> str:
    base = f"http://127.0.0.1:{web_port}"
    with httpx.Client(base_url=base, timeout=10) as http:
        http.get("/desk/login/").raise_for_status()
        resp = http.post(
            "/desk/login/",
            data={"username": email, "password": password, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
            headers={"Referer": f"{base}/desk/login/"},
        )
        assert resp.status_code == 302, resp.text
        return str(http.cookies["sessionid"])


def _anonymous_websocket(url: str, origin: Any) -> tuple[str, int]:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, origin=origin, open_timeout=10) as ws:
            ws.recv(timeout=10)
    except InvalidStatus as exc:
        return ("http", exc.response.status_code)
    except ConnectionClosed as exc:
        return ("close", exc.rcvd.code if exc.rcvd else 0)
    return ("open", 0)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_run_prod_serves_and_stops_on_sigterm(run_prod: RunProd) -> None:
    from websockets.sync.client import connect
    from websockets.typing import Origin

    # given run-prod.sh on a fresh database (it migrates it first)
    run_prod.wait_ready(timeout=60)
    roles = run_prod.processes_by_role()
    assert sorted(roles) == ["beat", "web", "worker", "ws"], run_prod.log()
    assert len(roles["beat"]) == 1
    # gunicorn answers readiness with the database and Redis it was given
    ready = httpx.get(f"http://127.0.0.1:{run_prod.web_port}/readyz", timeout=5).json()
    assert ready["checks"] == {"database": "ok", "redis": "ok"}

    # when an anonymous client opens the desk websocket on the uvicorn port
    ws_url = f"ws://127.0.0.1:{run_prod.ws_port}/ws/desk/"
    origin = Origin(f"http://127.0.0.1:{run_prod.ws_port}")
    outcome = _anonymous_websocket(ws_url, origin)
    # then it is refused: before the handshake (HTTP 403) or by the consumer's close code
    assert outcome in {("http", 403), ("close", 4403)}, outcome

    # and an agent logged in through gunicorn is accepted by uvicorn: same sessions, live layer
    password = "pw-" + secrets.token_urlsafe(12)
    created = _manage(run_prod.env, "agent", "create", "ops@example.com", "--password", password)
    assert created.returncode == 0, created.stdout + created.stderr
    session = _login_session(run_prod.web_port, "ops@example.com", password)
    with connect(
        ws_url,
        origin=origin,
        additional_headers={"Cookie": f"sessionid={session}"},
        open_timeout=10,
    ) as ws:
        ws.send('{"action": "subscribe_list"}')
        assert ws.recv(timeout=10) == '{"type": "subscribed", "list": true}'

    # when the process group gets SIGTERM (what a service manager or Ctrl-C does)
    run_prod.processes_by_role()
    started = time.monotonic()
    os.killpg(run_prod.proc.pid, signal.SIGTERM)
    # then everything is gone within 20 s and the script reports a clean stop
    run_prod.wait_all_gone(deadline=started + 20)
    assert run_prod.proc.returncode == 0, run_prod.log()
    assert "stopped" in run_prod.log()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_run_prod_stops_everything_when_one_process_dies(run_prod: RunProd) -> None:
    # given all four processes up
    run_prod.wait_ready(timeout=60)
    roles = run_prod.processes_by_role()
    # when beat dies
    started = time.monotonic()
    os.kill(roles["beat"][0], signal.SIGKILL)
    # then the others are stopped and the script exits non-zero, saying which one died
    run_prod.wait_all_gone(deadline=started + 20)
    assert run_prod.proc.returncode not in (0, None), run_prod.log()
    assert "beat exited" in run_prod.log()


# --- docker-compose.yml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_compose_has_every_process(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "web", "ws", "worker", "beat", "proxy"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert _command(services["migrate"]).startswith("python manage.py migrate")
    assert services["migrate"]["restart"] == "no"
    web = _command(services["web"])
    assert web.startswith("gunicorn")
    assert "helpdesk.wsgi:application" in web
    assert "deploy/gunicorn.conf.py" in web
    ws = _command(services["ws"])
    assert ws.startswith("uvicorn")
    assert "helpdesk.asgi:application" in ws
    assert "--ws-per-message-deflate=false" in ws
    assert re.match(r"celery --app helpdesk worker\b", _command(services["worker"]))
    assert re.match(r"celery --app helpdesk beat\b", _command(services["beat"]))
    assert "deploy/nginx.conf" in " ".join(services["proxy"]["volumes"])


def test_compose_scalable_services_have_no_fixed_name_or_host_port(compose: dict[str, Any]) -> None:
    for name in ("web", "ws", "worker"):
        service = compose["services"][name]
        assert "container_name" not in service, name
        assert "ports" not in service, name
        assert service.get("deploy", {}).get("replicas", 1) >= 1


def test_compose_runs_exactly_one_beat(compose: dict[str, Any]) -> None:
    services = compose["services"]
    beats = [name for name, service in services.items() if re.search(r"\bbeat\b", _command(service))]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    # and no worker embeds a scheduler (`celery worker -B`)
    for name, service in services.items():
        assert not re.search(r"\sworker\b.*\s(-B|--beat)\b", _command(service)), name


def test_compose_configures_through_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("migrate", "web", "ws", "worker", "beat"):
        environment = services[name]["environment"]
        for var in (
            "DATABASE_URL",
            "REDIS_URL",
            "SECRET_KEY",
            "SITE_URL",
            "ALLOWED_HOSTS",
            "EMAIL_URL",
            "DEFAULT_FROM_EMAIL",
        ):
            assert str(environment[var]).startswith(f"${{{var}:"), (name, var)
        assert environment["BEHIND_PROXY"] == "true", name
        for dependency in ("postgres",):
            assert dependency in services[name]["depends_on"], name
        if name != "migrate":
            assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_compose_required_variables_are_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert {"SECRET_KEY", "DATABASE_URL", "SITE_URL", "ALLOWED_HOSTS", "POSTGRES_PASSWORD"} <= required
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert required <= defined, required - defined
    assert {"REDIS_URL", "EMAIL_URL", "DEFAULT_FROM_EMAIL"} <= defined


def test_compose_health_checks_use_the_probes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["ws"]["healthcheck"]["test"])
    for name in ("postgres", "redis", "worker", "beat"):
        assert services[name]["healthcheck"]["test"], name
    assert services["proxy"]["depends_on"]["web"] == {"condition": "service_healthy"}


# --- deploy/nginx.conf --------------------------------------------------------------------------


def _block(text: str, opening: str) -> str:
    """The body of the `opening { … }` block."""
    start = text.index(opening + " {")
    depth, i = 0, start
    while True:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1


def _without_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_nginx_routes_websockets_to_ws_with_upgrade_headers() -> None:
    conf = _without_comments((ROOT / "deploy" / "nginx.conf").read_text())
    ws = _block(conf, "location /ws/")
    assert re.search(r"set \$(\w+) http://ws:8001;", ws)
    assert re.search(r"proxy_pass \$\w+;", ws)
    assert "proxy_http_version 1.1;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{[^}]*default\s+upgrade;", conf)


def test_nginx_routes_everything_else_to_web_with_forwarded_headers() -> None:
    conf = _without_comments((ROOT / "deploy" / "nginx.conf").read_text())
    web = _block(conf, "location /")
    assert re.search(r"set \$(\w+) http://web:8000;", web)
    assert "Upgrade" not in web
    # Docker's DNS, looked up per request, so scaled replicas are found
    assert re.search(r"^resolver 127\.0\.0\.11\b", conf, flags=re.MULTILINE)
    for location in (web, _block(conf, "location /ws/")):
        for header in ("X-Forwarded-Proto", "X-Forwarded-For", "X-Forwarded-Host", "Host"):
            assert re.search(rf"proxy_set_header {header} \$\w+;", location), header


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed here")
def test_nginx_conf_is_valid_for_nginx(tmp_path: Path) -> None:
    # given the file included in an http block, as the nginx image does with conf.d/
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{ access_log off; include {ROOT / 'deploy' / 'nginx.conf'}; }}\n"
    )
    # when
    result = subprocess.run(
        ["nginx", "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # then
    assert result.returncode == 0, result.stderr


# --- Dockerfile -----------------------------------------------------------------------------------


def _dockerfile_copies() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    sources: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY" and not any(p.startswith("--") for p in parts[1:]):
            sources.extend(p.rstrip("/") for p in parts[1:-1])
    return sources


def test_dockerfile_builds_the_production_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.MULTILINE)
    assert re.search(r"pip install -r requirements\.lock", text)
    assert re.search(r"manage\.py collectstatic --noinput", text)
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0"), users
    # the code the image needs is copied: every project app, templates, static, deploy/
    local_apps = {app for app in settings.INSTALLED_APPS if (ROOT / app).is_dir()}
    assert local_apps <= set(_dockerfile_copies()), local_apps - set(_dockerfile_copies())
    assert {"manage.py", "templates", "static", "deploy", "requirements.lock"} <= set(_dockerfile_copies())


@pytest.mark.slow
def test_image_file_set_collects_static_and_passes_checks(tmp_path: Path) -> None:
    # given only what the Dockerfile copies into the image
    app = tmp_path / "app"
    app.mkdir()
    for source in _dockerfile_copies():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, app / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, app / source)
    env = _clean_env(SECRET_KEY="collectstatic-only-not-a-secret", SWITCHBOARD_DATA_DIR=str(tmp_path / "data"))
    # when the build step runs there
    collected = _manage(env, "collectstatic", "--noinput", "--verbosity", "0", cwd=app, timeout=120)
    # then static files are collected with their manifest, and the project's checks pass
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert (app / "staticfiles" / "staticfiles.json").is_file()
    checked = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING", cwd=app)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- docs/deployment.md -----------------------------------------------------------------------------


def test_deployment_doc_lists_every_setting() -> None:
    # given every environment variable settings.py reads
    source = (ROOT / "helpdesk" / "settings.py").read_text()
    variables = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"", source))
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SITE_URL", "BEHIND_PROXY"} <= variables
    # then the deployment page documents each one
    doc = (ROOT / "docs" / "deployment.md").read_text()
    missing = sorted(v for v in variables if f"`{v}`" not in doc)
    assert not missing, f"docs/deployment.md does not mention {missing}"
