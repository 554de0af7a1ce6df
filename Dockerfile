# Switchboard's production image: one image for every process (web, ws, worker, beat,
# migrate); docker-compose.yml picks the command. See docs/deployment.md.

# The front-end libraries, installed by npm from package-lock.json (no install scripts); only
# the files the desk serves are copied into the image below.
FROM node:20-slim AS frontend
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SWITCHBOARD_DATA_DIR=/data

RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin switchboard

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them. Every wheel in the lock
# (psycopg-binary, uvloop, httptools…) is prebuilt: no compiler, no libpq needed.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# The code, named one by one so that nothing local (.venv, .data with its secret key, .git)
# ends up in the image.
COPY manage.py ./
COPY deploy/ deploy/
COPY helpdesk/ helpdesk/
COPY customers/ customers/
COPY channels_inbox/ channels_inbox/
COPY knowledge_base/ knowledge_base/
COPY reporting/ reporting/
COPY templates/ templates/
COPY static/ static/
COPY --from=frontend /build/node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js

# Static files are collected (hashed, compressed) into the image; whitenoise serves them from
# gunicorn. collectstatic needs settings but no database and no real secret.
RUN SECRET_KEY=collectstatic-only-not-a-secret SWITCHBOARD_DATA_DIR=/tmp/build-data \
       python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build-data \
    && mkdir -p /data/media \
    && chown -R switchboard:switchboard /data

# Media (attachments) and beat's schedule live under /data: mount a volume there
# (docker-compose.yml does). Health checks are in docker-compose.yml, one per process kind.
USER switchboard
EXPOSE 8000 8001

CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py", "helpdesk.wsgi:application"]
