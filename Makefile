# Switchboard — `make run` serves the embedded demo, `make test` runs the suite.
# Everything installs into .venv from requirements.lock and into node_modules from
# package-lock.json; nothing is needed beforehand but Python >= 3.11 with venv and Node.js with
# npm (Debian: apt-get install python3-venv nodejs npm).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test test-embedded test-fast lint fmt install migrate demo run-prod lock clean help

help:
	@echo "make run        set up and serve the embedded demo on http://$(HOST):$(PORT)/desk/"
	@echo "make test       set up and run the whole suite (uses DATABASE_URL/REDIS_URL when set)"
	@echo "make lint       ruff, ruff format --check, mypy, makemigrations --check"
	@echo "make run-prod   web (gunicorn) + ws (uvicorn) + worker + beat against DATABASE_URL and REDIS_URL"

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Switchboard needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

# Front-end libraries: npm installs the lock (no install scripts run), and the one file each
# library serves is copied into static/vendor/ (git-ignored), where collectstatic finds it.
NODE_STAMP := node_modules/.installed
VENDOR := static/vendor/htmx.min.js

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "Switchboard needs Node.js with npm for its front-end libraries: install them (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund
	touch $(NODE_STAMP)

$(VENDOR): $(NODE_STAMP)
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)

install: $(STAMP) $(VENDOR)

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

demo: migrate
	$(PY) manage.py seed_demo

run: demo
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# The embedded default (SQLite, no Redis), whatever the environment says.
test-embedded: install
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py makemigrations --check --dry-run

fmt: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

run-prod: install
	./deploy/run-prod.sh

lock:
	$(PYTHON) -m venv /tmp/switchboard-lock && /tmp/switchboard-lock/bin/pip install --quiet -r requirements.in
	/tmp/switchboard-lock/bin/pip freeze | sort -f > requirements.lock && rm -rf /tmp/switchboard-lock

clean:
	rm -rf $(VENV) staticfiles node_modules static/vendor .pytest_cache .mypy_cache .ruff_cache
