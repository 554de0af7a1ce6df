"""Switchboard settings: configured only through environment variables.

With nothing set, Switchboard runs in the *embedded* mode: SQLite under `.data/`, an
in-memory channel layer and Celery inside the web process. With `DATABASE_URL` and
`REDIS_URL` set it runs against PostgreSQL and Redis with separate processes
(see docs/deployment.md).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _data_dir() -> Path:
    path = Path(env.str("SWITCHBOARD_DATA_DIR", default=str(BASE_DIR / ".data")))
    path.mkdir(parents=True, exist_ok=True)
    return path


DATA_DIR = _data_dir()


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept under .data/."""
    from_env = env.str("SECRET_KEY", default="")
    if from_env:
        return from_env
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)

SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
_site = urlsplit(SITE_URL)
SITE_IS_HTTPS = _site.scheme == "https"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[_site.hostname or "127.0.0.1", "127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[f"{_site.scheme}://{_site.netloc}"])

# --- run mode ---------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Embedded: no Redis → Celery worker and beat run inside the web process on an in-memory
# broker, and the channel layer is in memory. Only one process may serve in this mode.
EMBEDDED = not REDIS_URL

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "helpdesk",
    "customers",
    "channels_inbox",
    "knowledge_base",
    "reporting",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "helpdesk.urls"
WSGI_APPLICATION = "helpdesk.wsgi.application"
ASGI_APPLICATION = "helpdesk.asgi.application"
AUTH_USER_MODEL = "helpdesk.User"
AUTHENTICATION_BACKENDS = ["helpdesk.auth.EmailOrUsernameBackend"]
LOGIN_URL = "desk:login"
LOGIN_REDIRECT_URL = "desk:ticket_list"
LOGOUT_REDIRECT_URL = "desk:login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
    _db = DATABASES["default"]
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {})
        # psycopg 3's pool: a process keeps warm connections and hands them to requests and
        # tasks; with it, ASGI processes do not leak one connection per thread (floors.md §6).
        if env.bool("DB_POOL", default=True):
            _db["CONN_MAX_AGE"] = 0
            _db["OPTIONS"]["pool"] = {
                "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
                "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
                "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
            }
        else:
            _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
            _db["CONN_HEALTH_CHECKS"] = True
        # Search queries suffer from generic plans (floors.md §7): never auto-prepare.
        _db["OPTIONS"].setdefault("prepare_threshold", None)
        # The desk's statements are short; PostgreSQL's JIT compiled some for 88–150 ms on a
        # 3 ms query (a large estimated cost of a branch that never runs). Off for our sessions.
        _db["OPTIONS"].setdefault("options", "-c jit=off")
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "switchboard.sqlite3",
            "OPTIONS": {
                # Writers take the lock at BEGIN, so two writers never deadlock on upgrade;
                # WAL lets readers run beside the writer; busy_timeout waits instead of failing.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
                    "PRAGMA busy_timeout=20000;PRAGMA foreign_keys=ON;"
                ),
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DB_VENDOR = "postgresql" if DATABASES["default"]["ENGINE"].endswith("postgresql") else "sqlite"

# --- channels (websockets) ----------------------------------------------------------------
# CHANNEL_LAYER picks the Redis layer: "pubsub" (default) or "core" (kept to compare them:
# bench/chat_latency.py --layer core). Both need socket_timeout None (redis-py 8's 5 s timeout
# races the core layer's 5 s blocking read and drops idle consumers) and a max_connections
# above redis-py's 100 (bursts raise MaxConnectionsError); the core layer also needs a
# capacity far above its default 100, which one server process's consumers share and which
# silently dropped 399 of a burst of 500 (floors.md §5, §8 surprises 2–4). CHANNEL_LAYER_PREFIX
# names the layer's keys and pub/sub channels: Redis pub/sub ignores the database number, so
# two deployments (or test runs) on one Redis server need different prefixes.
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="pubsub")
CHANNEL_LAYER_PREFIX = env.str("CHANNEL_LAYER_PREFIX", default="asgi")
if CHANNEL_LAYER not in ("pubsub", "core"):
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be pubsub or core, not {CHANNEL_LAYER!r}")
_layer_hosts = [{"address": REDIS_URL, "socket_timeout": None, "max_connections": 5000}]
if REDIS_URL and CHANNEL_LAYER == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": _layer_hosts, "capacity": 10000, "prefix": CHANNEL_LAYER_PREFIX},
        }
    }
elif REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer: ~2× the throughput of the core layer and no per-process
            # capacity key that silently drops bursts (floors.md §5, surprises 2–4).
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": _layer_hosts, "prefix": CHANNEL_LAYER_PREFIX},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "helpdesk.realtime.EmbeddedChannelLayer", "CONFIG": {"capacity": 10000}}}

# --- cache ----------------------------------------------------------------------------------
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_TASK_IGNORE_RESULT = True
# The queue tasks go to and workers take them from: deployments (or test runs) sharing one Redis
# database must use different names, or each one's workers run the other's tasks.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_RESULT_BACKEND = None
# A task is acknowledged after it ran, and re-queued if its worker died: with idempotent
# tasks this turns a crash into a retry instead of a lost message.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
SWEEP_INTERVAL_SECONDS = env.float("SWEEP_INTERVAL_SECONDS", default=30.0)
# IMAP: how often each mailbox is polled (beat queues the due ones at this interval).
IMAP_POLL_INTERVAL_SECONDS = env.float("IMAP_POLL_INTERVAL_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE = {
    "sweep-lost-work": {
        "task": "channels_inbox.tasks.sweep",
        "schedule": SWEEP_INTERVAL_SECONDS,
    },
    "poll-mailboxes": {
        "task": "channels_inbox.tasks.poll_mailboxes",
        "schedule": IMAP_POLL_INTERVAL_SECONDS,
    },
    # Notification emails whose task was lost (helpdesk/actions/notifications.py).
    "sweep-notification-emails": {
        "task": "helpdesk.tasks.sweep_notification_emails",
        "schedule": 120,
    },
    # Agents left online by a desk process that died (helpdesk/presence.py).
    "sweep-presence": {
        "task": "helpdesk.tasks.sweep_presence",
        "schedule": 60,
    },
}

# --- ingest and delivery --------------------------------------------------------------------
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=20 * 1024 * 1024)
ATTACHMENT_MAX_BYTES = env.int("ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
# Files an agent attaches to one reply or note: how many, and their total size (each one is
# also at most ATTACHMENT_MAX_BYTES). The composer states both. 15 MiB, base64-encoded in a
# mail (+33 %), stays under the 25 MB most mail providers accept.
REPLY_ATTACHMENTS_MAX_FILES = env.int("REPLY_ATTACHMENTS_MAX_FILES", default=10)
REPLY_ATTACHMENTS_MAX_TOTAL_BYTES = env.int("REPLY_ATTACHMENTS_MAX_TOTAL_BYTES", default=15 * 1024 * 1024)
# How long the signed download URL of an attachment in an API channel callback stays valid.
API_ATTACHMENT_URL_MAX_AGE_SECONDS = env.int("API_ATTACHMENT_URL_MAX_AGE_SECONDS", default=7 * 24 * 3600)
# The largest raw email taken in (by IMAP, the MTA pipe or an ESP); larger ones are refused
# (an MTA then bounces them to their sender) and listed on the mailbox state by IMAP.
EMAIL_MAX_BYTES = env.int("EMAIL_MAX_BYTES", default=40 * 1024 * 1024)
INBOUND_MAX_ATTEMPTS = env.int("INBOUND_MAX_ATTEMPTS", default=8)
# A worker processes up to this many waiting events of one inbox in one transaction.
INGEST_BATCH_SIZE = env.int("INGEST_BATCH_SIZE", default=50)
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=6)
DELIVERY_BACKOFF_BASE_SECONDS = env.float("DELIVERY_BACKOFF_BASE_SECONDS", default=30.0)
DELIVERY_BACKOFF_MAX_SECONDS = env.float("DELIVERY_BACKOFF_MAX_SECONDS", default=3600.0)
DELIVERY_TIMEOUT_SECONDS = env.float("DELIVERY_TIMEOUT_SECONDS", default=15.0)
# How long a claimed delivery or inbound event belongs to the worker that claimed it;
# after that the sweeper hands it to another worker.
WORK_LEASE_SECONDS = env.float("WORK_LEASE_SECONDS", default=300.0)
# How long the sweeper leaves fresh work to the task queued for it.
SWEEP_GRACE_SECONDS = env.float("SWEEP_GRACE_SECONDS", default=60.0)
DEFAULT_PHONE_REGION = env.str("DEFAULT_PHONE_REGION", default="") or None
# IMAP polling: timeout of one network operation; after a failed connection a mailbox waits
# base × 2^(failures − 1) seconds, at most the max; a poller holds a folder for the lease.
IMAP_TIMEOUT_SECONDS = env.float("IMAP_TIMEOUT_SECONDS", default=30.0)
IMAP_BACKOFF_BASE_SECONDS = env.float("IMAP_BACKOFF_BASE_SECONDS", default=30.0)
IMAP_BACKOFF_MAX_SECONDS = env.float("IMAP_BACKOFF_MAX_SECONDS", default=3600.0)
IMAP_LEASE_SECONDS = env.float("IMAP_LEASE_SECONDS", default=300.0)
# `poll_mailboxes --idle` ends and re-issues IDLE this often (RFC 2177: at most 29 minutes).
IMAP_IDLE_SECONDS = env.float("IMAP_IDLE_SECONDS", default=1500.0)

# --- live chat (channels_inbox/chat/, docs/chat.md) ------------------------------------------
# A verified identify's issued_at may be at most this old (a leaked user_hash expires) and at
# most CHAT_IDENTITY_CLOCK_SKEW_SECONDS in the future.
CHAT_IDENTITY_MAX_AGE_SECONDS = env.int("CHAT_IDENTITY_MAX_AGE_SECONDS", default=12 * 3600)
CHAT_IDENTITY_CLOCK_SKEW_SECONDS = env.int("CHAT_IDENTITY_CLOCK_SKEW_SECONDS", default=300)
# One visitor message: characters of text, files, and bytes per file (also ≤ ATTACHMENT_MAX_BYTES).
CHAT_MESSAGE_MAX_CHARS = env.int("CHAT_MESSAGE_MAX_CHARS", default=5000)
CHAT_MESSAGE_MAX_FILES = env.int("CHAT_MESSAGE_MAX_FILES", default=5)
CHAT_UPLOAD_MAX_BYTES = env.int("CHAT_UPLOAD_MAX_BYTES", default=10 * 1024 * 1024)
# Rate limits: messages per visitor per minute; new visitors (sessions) and requests per IP per minute.
CHAT_VISITOR_MESSAGES_PER_MINUTE = env.int("CHAT_VISITOR_MESSAGES_PER_MINUTE", default=30)
CHAT_IP_SESSIONS_PER_MINUTE = env.int("CHAT_IP_SESSIONS_PER_MINUTE", default=20)
CHAT_IP_REQUESTS_PER_MINUTE = env.int("CHAT_IP_REQUESTS_PER_MINUTE", default=600)
# A visitor with no open widget for this long has left: agent replies then go out by email.
CHAT_AWAY_AFTER_SECONDS = env.int("CHAT_AWAY_AFTER_SECONDS", default=60)
# How often the widget's HTTP fallback polls (when websockets are blocked).
CHAT_POLL_SECONDS = env.float("CHAT_POLL_SECONDS", default=3.0)
# How long the conversation link in a continuity email (a visitor who left) stays valid.
CHAT_LINK_MAX_AGE_SECONDS = env.int("CHAT_LINK_MAX_AGE_SECONDS", default=30 * 24 * 3600)
# How long the download URLs of chat attachments shown in the widget stay valid.
CHAT_FILE_URL_MAX_AGE_SECONDS = env.int("CHAT_FILE_URL_MAX_AGE_SECONDS", default=24 * 3600)
# Largest JSON body the widget's HTTP API reads (uploads are limited by CHAT_UPLOAD_MAX_BYTES).
CHAT_JSON_MAX_BYTES = env.int("CHAT_JSON_MAX_BYTES", default=64 * 1024)
# Transcripts a visitor may have emailed per hour.
CHAT_TRANSCRIPTS_PER_HOUR = env.int("CHAT_TRANSCRIPTS_PER_HOUR", default=3)
# Widget uploads never sent (after a day) and sent ones (after a week) are removed hourly.
CELERY_BEAT_SCHEDULE["remove-stale-chat-uploads"] = {
    "task": "channels_inbox.tasks.remove_stale_chat_uploads",
    "schedule": 3600,
}
# How often Celery beat assigns waiting chats to agents who have become free or come online
# (helpdesk/actions/chats.py; ending or transferring a chat and "Available" also do it at once).
CHAT_ASSIGN_SWEEP_SECONDS = env.float("CHAT_ASSIGN_SWEEP_SECONDS", default=15.0)
CELERY_BEAT_SCHEDULE["assign-waiting-chats"] = {
    "task": "helpdesk.tasks.assign_waiting_chats",
    "schedule": CHAT_ASSIGN_SWEEP_SECONDS,
}
# Replies shown live but never read are emailed once their visitor has left: how often Celery
# beat looks (channels_inbox/adapters/chat.py do_sweep_chat_continuity).
CHAT_CONTINUITY_SWEEP_SECONDS = env.float("CHAT_CONTINUITY_SWEEP_SECONDS", default=20.0)
CELERY_BEAT_SCHEDULE["sweep-chat-continuity"] = {
    "task": "channels_inbox.tasks.sweep_chat_continuity",
    "schedule": CHAT_CONTINUITY_SWEEP_SECONDS,
}
# --- routing, SLA and rules (helpdesk/changes.py, docs/sla.md, docs/rules.md) ----------------
# After every ticket change, the change processor runs the triggers, the SLA clocks and routing
# in a Celery task; the sweeper queues it again for tickets whose changes have waited this long.
CHANGES_SWEEP_SECONDS = env.float("CHANGES_SWEEP_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE["sweep-ticket-changes"] = {
    "task": "helpdesk.tasks.sweep_ticket_changes",
    "schedule": CHANGES_SWEEP_SECONDS,
}
# SLA timers: a warning or breach due within SLA_SCHEDULE_AHEAD_SECONDS is queued as a Celery
# task at its moment (eta); beat queues the ones coming into that window every half of it, and
# the sweeper fires, every SLA_SWEEP_SECONDS, whatever is past due (a lost task, a restart).
SLA_SCHEDULE_AHEAD_SECONDS = env.float("SLA_SCHEDULE_AHEAD_SECONDS", default=300.0)
SLA_SWEEP_SECONDS = env.float("SLA_SWEEP_SECONDS", default=2.0)
# Clocks one sweeper run fires at most (the rest go in the next run, earliest first).
SLA_SWEEP_BATCH = env.int("SLA_SWEEP_BATCH", default=500)
CELERY_BEAT_SCHEDULE["schedule-sla-timers"] = {
    "task": "helpdesk.tasks.schedule_sla_timers",
    "schedule": SLA_SCHEDULE_AHEAD_SECONDS / 2,
}
CELERY_BEAT_SCHEDULE["sweep-sla-clocks"] = {
    "task": "helpdesk.tasks.sweep_sla_clocks",
    "schedule": SLA_SWEEP_SECONDS,
}
# Time rules run this often (hourly, as their "hours since" conditions count in whole hours), on
# at most TIME_RULES_BATCH tickets per rule and run.
TIME_RULES_SECONDS = env.float("TIME_RULES_SECONDS", default=3600.0)
TIME_RULES_BATCH = env.int("TIME_RULES_BATCH", default=1000)
CELERY_BEAT_SCHEDULE["run-time-rules"] = {
    "task": "helpdesk.tasks.run_time_rules",
    "schedule": TIME_RULES_SECONDS,
}
# Loop protection: rules fire at most this many times on one ticket within an hour.
RULES_MAX_FIRINGS_PER_HOUR = env.int("RULES_MAX_FIRINGS_PER_HOUR", default=100)
# A rule's webhook step: timeout per call; addresses in private, loopback and link-local
# networks are refused unless allowed here (tests and single-host set-ups).
RULE_WEBHOOK_TIMEOUT_SECONDS = env.float("RULE_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
RULE_WEBHOOK_ALLOW_PRIVATE = env.bool("RULE_WEBHOOK_ALLOW_PRIVATE", default=False)
CELERY_BEAT_SCHEDULE["sweep-webhook-calls"] = {
    "task": "helpdesk.tasks.sweep_webhook_calls",
    "schedule": 60,
}
# Routing: tickets an agent may hold at once per channel kind when their profile says nothing
# (`"*"` for the kinds not named), e.g. ROUTING_DEFAULT_CAPACITY=email=10,sms=5,*=10.
ROUTING_DEFAULT_CAPACITY = {
    key: int(value) for key, value in env.dict("ROUTING_DEFAULT_CAPACITY", default={"email": "10", "*": "10"}).items()
}
# How often beat hands queued tickets to agents whose capacity freed up (ending work does it at once).
ROUTING_SWEEP_SECONDS = env.float("ROUTING_SWEEP_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE["assign-queued-tickets"] = {
    "task": "helpdesk.tasks.assign_queued_tickets",
    "schedule": ROUTING_SWEEP_SECONDS,
}

# Open widget websockets at most per visitor and per client address (close code 4429 beyond).
CHAT_WS_PER_VISITOR = env.int("CHAT_WS_PER_VISITOR", default=10)
CHAT_WS_PER_IP = env.int("CHAT_WS_PER_IP", default=50)
# Per client address: new chat conversations per hour, visitor messages per minute, uploaded
# bytes per hour, transcripts per hour (visitors cost nothing to make, so per-visitor limits
# alone do not bound one address).
CHAT_IP_CONVERSATIONS_PER_HOUR = env.int("CHAT_IP_CONVERSATIONS_PER_HOUR", default=30)
CHAT_IP_MESSAGES_PER_MINUTE = env.int("CHAT_IP_MESSAGES_PER_MINUTE", default=120)
CHAT_IP_UPLOAD_BYTES_PER_HOUR = env.int("CHAT_IP_UPLOAD_BYTES_PER_HOUR", default=200 * 1024 * 1024)
CHAT_IP_TRANSCRIPTS_PER_HOUR = env.int("CHAT_IP_TRANSCRIPTS_PER_HOUR", default=10)
# The demo host page /widget/v1/demo/ (embeds the first chat inbox): on in the embedded mode only.
CHAT_DEMO_PAGE = env.bool("CHAT_DEMO_PAGE", default=EMBEDDED)

# --- email ------------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
globals().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="support@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文"), ("cs", "Čeština"), ("ru", "Русский")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "helpdesk.storage.StaticStorage"},
}
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

# --- security -----------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if SITE_IS_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Asking browsers to preload HSTS binds the whole registrable domain and every
        # subdomain for months, and anyone may submit a domain that sends it: the operator
        # opts in (SECURE_HSTS_PRELOAD=true), so the check's reminder is not a finding.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    # Health probes come from inside the deployment over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# --- messaging and voice channels (docs/channels.md) --------------------------------------------
# Each provider's block below; the per-inbox credentials live on the inbox (its settings and
# secrets), these are the process-wide limits and timings.
# Media a provider hands us (MMS, WhatsApp and Telegram files, call recordings): the largest
# file fetched (a larger one is listed on the message, not stored) and the timeout of every
# call to a provider's API.
CHANNEL_MEDIA_MAX_BYTES = env.int("CHANNEL_MEDIA_MAX_BYTES", default=25 * 1024 * 1024)
CHANNEL_HTTP_TIMEOUT_SECONDS = env.float("CHANNEL_HTTP_TIMEOUT_SECONDS", default=10.0)
# [twilio]
# The most SMS a long reply is split into (each ≤ 1,600 characters, its own Twilio message);
# a longer reply is refused rather than sent as a flood of texts.
TWILIO_SMS_MAX_PARTS = env.int("TWILIO_SMS_MAX_PARTS", default=5)
# [meta]
# Graph API version used by the WhatsApp/Messenger/Instagram adapters when an inbox sets no
# `graph_version` of its own (URLs like https://graph.facebook.com/<version>/...).
META_GRAPH_VERSION = env.str("META_GRAPH_VERSION", default="v21.0")
# [telegram]
# Base URL of the Telegram Bot API (methods at <base>/bot<token>/<method>, files at
# <base>/file/bot<token>/<path>); change it only for a self-hosted Bot API server or a fake.
TELEGRAM_API_BASE = env.str("TELEGRAM_API_BASE", default="https://api.telegram.org").rstrip("/")
# setWebhook's max_connections: how many updates Telegram sends at once (1–100).
TELEGRAM_MAX_CONNECTIONS = env.int("TELEGRAM_MAX_CONNECTIONS", default=40)
# [voice]
# [web_form]
# The help center's request form (/help/<slug>/new/): a form sent back sooner than this many
# seconds after it was shown is refused as a bot's (the customer is asked to send it again).
HELP_FORM_MIN_SECONDS = env.int("HELP_FORM_MIN_SECONDS", default=3)
# A form shown longer ago than this is expired: shown again with the entered text kept.
HELP_FORM_MAX_AGE_SECONDS = env.int("HELP_FORM_MAX_AGE_SECONDS", default=24 * 3600)
# Form submissions per client address per hour; more get a 429 page (0: no limit).
HELP_FORM_PER_IP_PER_HOUR = env.int("HELP_FORM_PER_IP_PER_HOUR", default=10)
# Longest message (characters) a customer may send through the form.
HELP_FORM_MAX_MESSAGE_CHARS = env.int("HELP_FORM_MAX_MESSAGE_CHARS", default=20000)
# [channels-end]

# Behind the deployment's reverse proxy (deploy/nginx.conf): trust its X-Forwarded-* headers.
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
    },
}
