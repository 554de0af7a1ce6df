#!/usr/bin/env bash
# Switchboard's production processes on one host, against an existing PostgreSQL and Redis:
#
#   web     gunicorn (WSGI, threaded workers)  http://127.0.0.1:${WEB_PORT:-8000}   all HTTP
#   ws      uvicorn (ASGI)                 http://127.0.0.1:${WS_PORT:-8001}    websockets under /ws/
#   worker  celery worker
#   beat    celery beat (exactly one per deployment), schedule under ${SWITCHBOARD_DATA_DIR:-.data}
#
# Put a reverse proxy in front that sends /ws/ to the ws port and everything else to the web
# port (docs/deployment.md). Runs `migrate` (and `collectstatic`, unless COLLECTSTATIC=0) first.
# Ctrl-C or SIGTERM stops all four and exits 0; if any one of them dies, the others are
# stopped and the script exits non-zero. `make run-prod` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "run-prod: $*" >&2; }

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 3))); then
  log "needs bash >= 4.3 (this is $BASH_VERSION)"
  exit 2
fi

if [[ -z "${DATABASE_URL:-}" || -z "${REDIS_URL:-}" ]]; then
  log "DATABASE_URL and REDIS_URL must both be set, e.g."
  log "  DATABASE_URL=postgres://switchboard:PASSWORD@127.0.0.1:5432/switchboard \\"
  log "  REDIS_URL=redis://127.0.0.1:6379/0 make run-prod"
  log "Without them Switchboard runs embedded in one process: use 'make run' for that."
  exit 2
fi

# Prefer the project's virtualenv, else whatever is on PATH.
tool() {
  if [[ -x ".venv/bin/$1" ]]; then
    echo ".venv/bin/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    log "cannot find '$1' (not in .venv/bin nor on PATH); run 'make install' first"
    exit 2
  fi
}
if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=$(tool python3); fi
GUNICORN=$(tool gunicorn)
UVICORN=$(tool uvicorn)
CELERY=$(tool celery)

WEB_PORT="${WEB_PORT:-8000}"
WS_PORT="${WS_PORT:-8001}"
STOP_TIMEOUT="${STOP_TIMEOUT:-25}" # seconds between SIGTERM and SIGKILL when stopping
export SWITCHBOARD_DATA_DIR="${SWITCHBOARD_DATA_DIR:-.data}"
mkdir -p "$SWITCHBOARD_DATA_DIR"

# Job control: every process (with its own children) gets a process group of its own, so a
# Ctrl-C or a signal to this script's group reaches only this script, which then stops the
# processes in order; and a process that hangs can be killed with all its children.
set -m

pids=()
declare -A names=()

alive() { kill -0 "$1" 2>/dev/null; }

stop_all() {
  trap '' INT TERM
  local pid deadline
  for pid in "${pids[@]}"; do
    if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for pid in "${pids[@]}"; do
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  done
  for pid in "${pids[@]}"; do
    if alive "$pid"; then
      log "${names[$pid]} did not stop within ${STOP_TIMEOUT}s, killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
}

on_signal() {
  log "$1 received, stopping"
  stop_all
  log "stopped"
  exit 0
}
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM

# In the background (own process group), so that a signal to this script is handled at once.
start() {
  local name=$1
  shift
  "$@" </dev/null &
  pids+=("$!")
  names[$!]=$name
}

# A one-off step before the servers start.
step() {
  local status=0
  start "$@"
  wait "${pids[-1]}" || status=$?
  unset 'pids[-1]'
  if ((status != 0)); then
    log "$1 failed (exit $status)"
    exit "$status"
  fi
}

log "migrating the database"
step migrate "$PYTHON" manage.py migrate --noinput
if [[ "${COLLECTSTATIC:-1}" != "0" ]]; then
  step collectstatic "$PYTHON" manage.py collectstatic --noinput --verbosity 0
fi

start web "$GUNICORN" --config deploy/gunicorn.conf.py --bind "127.0.0.1:$WEB_PORT" helpdesk.wsgi:application
start ws "$UVICORN" helpdesk.asgi:application --host 127.0.0.1 --port "$WS_PORT" \
  --workers "${WS_CONCURRENCY:-1}" --lifespan off --proxy-headers --ws-per-message-deflate false \
  --timeout-graceful-shutdown 10
worker_args=(--app helpdesk worker --loglevel "${CELERY_LOG_LEVEL:-INFO}")
if [[ -n "${CELERY_CONCURRENCY:-}" ]]; then worker_args+=(--concurrency "$CELERY_CONCURRENCY"); fi
start worker "$CELERY" "${worker_args[@]}"
start beat "$CELERY" --app helpdesk beat --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
  --schedule "$SWITCHBOARD_DATA_DIR/celerybeat-schedule"
log "web http://127.0.0.1:$WEB_PORT  ws ws://127.0.0.1:$WS_PORT/ws/  worker  beat  (Ctrl-C stops)"

# Wait until one of them exits; a signal interrupts the wait and runs on_signal instead.
status=0
wait -n || status=$?
dead="a process"
for pid in "${pids[@]}"; do
  if ! alive "$pid"; then
    dead=${names[$pid]}
    break
  fi
done
log "$dead exited (status $status); stopping the others"
stop_all
exit $((status == 0 ? 1 : status))
