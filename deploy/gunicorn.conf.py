"""Gunicorn settings for Switchboard's HTTP side (`gunicorn -c deploy/gunicorn.conf.py helpdesk.wsgi:application`).

Every value can be changed through the environment; command-line flags override this file
(deploy/run-prod.sh passes `--bind 127.0.0.1:$WEB_PORT`).
"""

from __future__ import annotations

import multiprocessing
import os

wsgi_app = "helpdesk.wsgi:application"
# Inside its container, reached only through the proxy; run-prod.sh binds 127.0.0.1.
bind = [os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")]

# Sync workers: sync Django measured ~7x faster under gunicorn's sync workers than under an
# ASGI server on the same machine (docs/deployment.md). One request per worker at a time, so
# each worker needs one database connection (kept warm by psycopg's pool).
# Threads, not the sync worker: a sync worker is held by one connection until it has sent its
# whole request (and gunicorn's 30 s timeout kills it when a client opens a connection and
# sends nothing), so a burst of provider webhooks on many connections stalls every worker.
# A gthread worker reads connections as they become ready and answers keep-alive requests.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * multiprocessing.cpu_count())
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle a worker now and then, jittered so they do not all restart at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500"))

# Access log to stdout, errors to stderr: the container runtime / process manager collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Which peers may set X-Forwarded-Proto & co. In docker-compose only the proxy can reach
# the web containers, so the compose file sets FORWARDED_ALLOW_IPS=*; on one host the proxy
# is local and the default (127.0.0.1,::1) is right.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The heartbeat file on tmpfs: on a disk-backed /tmp (containers) fchmod can stall workers.
if os.path.isdir("/dev/shm"):  # noqa: S108 - a directory, not a temporary file name
    worker_tmp_dir = "/dev/shm"  # noqa: S108

# No `gunicornc` control socket: it defaults to one path per user, which two instances on
# one host (or a read-only home in a container) would fight over.
control_socket_disable = True
