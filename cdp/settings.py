"""The one settings module. Everything that differs between machines comes from the environment.

Embedded default (no environment at all): DEBUG on, SQLite in var/, a Celery broker on the
filesystem (no server), a file-based cache, e-mail printed to the console.

Production: DEBUG=0 and SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL (PostgreSQL), REDIS_URL and
EMAIL_URL from the environment. `manage.py check --deploy` passes with no warnings.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as csp_const
from django.core.exceptions import ImproperlyConfigured

from cdp.ops.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("CDP_VAR_DIR", default=str(BASE_DIR / "var")))
# Set by pytest-xdist in each test worker process (gwN), before the settings are imported: that
# worker gets its own var dir (VAR_DIR/xdist-gwN) and Redis db (REDIS_URL's db + N), as tests clear
# the cache and take locks. Not for production.
_XDIST_WORKER = environ.Env().str("PYTEST_XDIST_WORKER", default="")
if _XDIST_WORKER:
    VAR_DIR = VAR_DIR / f"xdist-{_XDIST_WORKER}"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set in the environment when DEBUG is off.")
    SECRET_KEY = "dev-insecure-secret-key-only-for-DEBUG-mode-never-in-production"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in the environment when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
USE_X_FORWARDED_FOR = env.bool("USE_X_FORWARDED_FOR", default=False)

# Where links in e-mails point (invitations, password resets). No trailing slash.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
SITE_NAME = env.str("SITE_NAME", default="Northwind CDP")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",
    "django_htmx",
    "template_partials",
    "ninja",  # serves the API docs' JS/CSS from our own static files, never a CDN
    "cdp",
    "cdp.ops",
    "accounts",
    "profiles",
    "resources",
    "history",
    "segments",
    "content",
    "delivery",
    "mailings",
    "scenarios",
]

MIDDLEWARE = [
    "cdp.ops.middleware.RequestIdMiddleware",  # first: every later log line carries the request id
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",  # after WhiteNoise: static files need no policy; before views (request.csp_nonce)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.CurrentAccountMiddleware",
    "cdp.api.middleware.ApiMiddleware",
]

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"
ASGI_APPLICATION = "cdp.asgi.application"

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
                "accounts.context_processors.current_account",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cdp.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers and the one writer work at once; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on busy_timeout instead of failing with "database is locked"
    # half-way through a transaction.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
            "PRAGMA busy_timeout=30000; PRAGMA temp_store=MEMORY; PRAGMA mmap_size=134217728;"
        ),
    }
    # Tests use a file, like the embedded default: an in-memory shared-cache database ignores
    # busy_timeout and fails concurrent tests with "table is locked".
    _db["TEST"] = {"NAME": str(VAR_DIR / "test-cdp.sqlite3")}
else:
    _db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Celery ---------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL and _XDIST_WORKER:
    from urllib.parse import urlsplit, urlunsplit

    _redis = urlsplit(REDIS_URL)
    _redis_db = int(_redis.path.strip("/") or 0) + int(_XDIST_WORKER.removeprefix("gw") or 0)
    REDIS_URL = urlunsplit(_redis._replace(path=f"/{_redis_db}"))

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="cdp"),
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    # Shared between the web, worker and beat processes of the embedded default.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
    _queue_dir = VAR_DIR / "celery"
    for _sub in ("queue", "control", "processed"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "control_folder": str(_queue_dir / "control"),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True  # a task lost with its worker is redelivered; tasks are idempotent
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES_NAMES = ("trigger", "scenarios", "default", "bulk")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# --- Auth ------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24  # one day

# Login lockout: this many failures for one e-mail (or 4x as many from one IP address) inside
# the window locks further attempts until the window has passed since the last failure.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)

# --- API -------------------------------------------------------------------------------------
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=1200)
API_IDEMPOTENCY_TTL_HOURS = env.int("API_IDEMPOTENCY_TTL_HOURS", default=24)
NINJA_PAGINATION_MAX_LIMIT = 1000

# --- Profile imports -------------------------------------------------------------------------
PROFILE_IMPORT_MAX_BYTES = env.int("PROFILE_IMPORT_MAX_BYTES", default=2 * 1024**3)

# --- Subscribers' public pages ----------------------------------------------------------------
# Sign-ups through a resource's public subscribe endpoint, per minute: per client IP, per resource.
PUBLIC_SUBSCRIBE_RATE_IP = env.int("PUBLIC_SUBSCRIBE_RATE_IP", default=10)
PUBLIC_SUBSCRIBE_RATE_RESOURCE = env.int("PUBLIC_SUBSCRIBE_RATE_RESOURCE", default=600)
# How long a double opt-in confirmation link works.
SUBSCRIPTION_CONFIRM_MAX_AGE = timedelta(days=env.int("SUBSCRIPTION_CONFIRM_DAYS", default=7))

# --- Website tracking (the JavaScript snippet's collector, /t/collect/<key>) --------------------------
# Requests a minute per (resource key, client IP) and per resource key; the largest body accepted.
TRACKING_COLLECT_RATE_IP = env.int("TRACKING_COLLECT_RATE_IP", default=120)
TRACKING_COLLECT_RATE_KEY = env.int("TRACKING_COLLECT_RATE_KEY", default=6000)
TRACKING_COLLECT_MAX_BYTES = env.int("TRACKING_COLLECT_MAX_BYTES", default=512 * 1024)

# --- E-mail ----------------------------------------------------------------------------------
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"{SITE_NAME} <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- i18n, static, media ---------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("es", "Español"), ("ru", "Русский")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
if STATIC_ROOT.is_relative_to(VAR_DIR):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start without it
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"  # never served directly: downloads go through views that check access
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

MESSAGE_TAGS = {40: "danger"}  # Bootstrap's name for error

# --- Security --------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "cdp.csrf.csrf_failure"  # the platform's layout (Django's page has an inline style the CSP blocks)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]  # probes and scrapes come over plain HTTP
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

# Content-Security-Policy (django-csp) on every response that has none of its own: the template
# preview and the outbox's message frame set their stricter sandbox policy themselves, and the
# middleware never overwrites a header a view set. Scripts: our own files, plus inline blocks only
# with the request's nonce (templates write nonce="{{ request.csp_nonce }}"); no 'unsafe-inline',
# no 'unsafe-eval' (htmx runs without eval: no hx-on / hx-vars / js: values are used). <style>
# blocks likewise need the nonce. Style *attributes* are allowed (style-src-attr only): ~80 of them
# carry computed values (progress bar widths, the scenario diagram's node positions, canvas sizes)
# that a class cannot express; an injected style attribute can restyle its own element but cannot
# load anything (img-src/font-src stay 'self') or read the page, unlike an injected <style> or script.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp_const.SELF],
        "script-src": [csp_const.SELF, csp_const.NONCE],
        "style-src": [csp_const.SELF, csp_const.NONCE],
        "style-src-attr": [csp_const.UNSAFE_INLINE],
        "img-src": [csp_const.SELF, "data:"],
        "font-src": [csp_const.SELF],
        "connect-src": [csp_const.SELF],
        "frame-src": [csp_const.SELF],
        "frame-ancestors": [csp_const.NONE],
        "form-action": [csp_const.SELF],
        "base-uri": [csp_const.SELF],
        "object-src": [csp_const.NONE],
    },
}

# --- Logging -------------------------------------------------------------------------------
# Log lines to stderr: "text" for people (make run), "json" for log collectors (one object a
# line with request_id / job_id: cdp/ops/logs.py).
LOGGING = logging_config(fmt=env.str("LOG_FORMAT", default="text"), level=env.str("LOG_LEVEL", default="INFO"))

FORM_RENDERER = "cdp.forms.FormRenderer"

# --- delivery ---
# Secrets at rest (DKIM private keys, provider credentials): Fernet keys, comma separated; the
# first encrypts, all decrypt (rotation). Unset: derived from SECRET_KEY (see cdp/secrets.py).
SECRETS_KEYS = env.list("CDP_SECRETS_KEY", default=[])
# Channel backends, shaped like CACHES (delivery/backends/__init__.py). Embedded default: every
# channel is written to VAR_DIR/outbox (the outbox page shows it). DELIVERY_BACKEND=smtp sends
# e-mail through EMAIL_URL's relay instead (accounts' own provider accounts override both).
DELIVERY_OUTBOX_DIR = Path(env.str("DELIVERY_OUTBOX_DIR", default=str(VAR_DIR / "outbox")))
_delivery_file = {"BACKEND": "delivery.backends.file.FileBackend", "OPTIONS": {"directory": str(DELIVERY_OUTBOX_DIR)}}
DELIVERY_BACKENDS = {"default": _delivery_file, "email": _delivery_file}
if env.str("DELIVERY_BACKEND", default="file") == "smtp":
    DELIVERY_BACKENDS["email"] = {
        "BACKEND": "delivery.backends.smtp.SmtpBackend",
        "OPTIONS": {
            "host": vars().get("EMAIL_HOST", "localhost"),
            "port": vars().get("EMAIL_PORT", 25),
            "username": vars().get("EMAIL_HOST_USER", ""),
            "password": vars().get("EMAIL_HOST_PASSWORD", ""),
            "tls": "implicit" if vars().get("EMAIL_USE_SSL") else ("starttls" if vars().get("EMAIL_USE_TLS") else "none"),
            "rate_per_second": env.float("DELIVERY_SMTP_RATE", default=0.0),
        },
    }
# DNS suggestions: the SPF include of the relay that sends for us ("" suggests "v=spf1 mx ~all"),
# where DMARC aggregate reports go ("" = dmarc-reports@<domain>), the MX of bounce handling
# ("" = no return-path record is asked for); a dotted path to a resolve(name, rdtype) function
# replaces real DNS (browser tests).
DELIVERY_SPF_INCLUDE = env.str("DELIVERY_SPF_INCLUDE", default="")
DELIVERY_DMARC_RUA = env.str("DELIVERY_DMARC_RUA", default="")
DELIVERY_BOUNCE_MX = env.str("DELIVERY_BOUNCE_MX", default="")
DELIVERY_DNS_RESOLVER = env.str("DELIVERY_DNS_RESOLVER", default="")
# "Send a test" goes to any address typed in: at most this many an hour per account.
TEST_SEND_LIMIT_PER_HOUR = env.int("TEST_SEND_LIMIT_PER_HOUR", default=100)
# Provider URLs, SMTP hosts of accounts' provider accounts and web push endpoints may not point the
# server at loopback, private or link-local addresses (SSRF, delivery/netpolicy.py). True lifts
# that for self-hosting next to the relay/gateway (and the tests' loopback emulators).
DELIVERY_ALLOW_PRIVATE_HOSTS = env.bool("DELIVERY_ALLOW_PRIVATE_HOSTS", default=False)

# --- Mailings ------------------------------------------------------------------------------------
# The send ledger's leases (seconds): a row handed to a batch task must be claimed within
# HANDOUT_LEASE (else the sweeper hands it out again: a task lost with Redis); a claimed row must
# be settled within CLAIM_LEASE (a batch renews it as it goes; else its worker died: rows not yet on
# the wire are queued again, rows on the wire become "ambiguous", never resent for marketing).
MAILINGS_HANDOUT_LEASE = env.int("MAILINGS_HANDOUT_LEASE", default=600)
MAILINGS_CLAIM_LEASE = env.int("MAILINGS_CLAIM_LEASE", default=300)
# Messages a second per provider account when its settings name no rate (0: no limit). Shared by
# every worker through Redis (mailings.throttle); per process in the embedded default.
MAILINGS_PROVIDER_RATE = env.float("MAILINGS_PROVIDER_RATE", default=0.0)
# Back-off after 421/451/429 (seconds): base * 2**strikes up to the cap, or the provider's
# Retry-After when longer (up to MAX_RETRY_AFTER). Per-domain limits: mailings.throttle's
# DEFAULT_DOMAIN_LIMITS unless MAILINGS_DOMAIN_LIMITS is set (in Python settings).
MAILINGS_BACKOFF_BASE = env.float("MAILINGS_BACKOFF_BASE", default=30.0)
MAILINGS_BACKOFF_CAP = env.float("MAILINGS_BACKOFF_CAP", default=900.0)
MAILINGS_BACKOFF_MAX_RETRY_AFTER = env.float("MAILINGS_BACKOFF_MAX_RETRY_AFTER", default=3600.0)
# Soft bounces: a subscription is paused for SOFT_BOUNCE_PAUSE_DAYS after SOFT_BOUNCE_LIMIT of
# them within SOFT_BOUNCE_DAYS.
MAILINGS_SOFT_BOUNCE_LIMIT = env.int("MAILINGS_SOFT_BOUNCE_LIMIT", default=3)
MAILINGS_SOFT_BOUNCE_DAYS = env.int("MAILINGS_SOFT_BOUNCE_DAYS", default=7)
MAILINGS_SOFT_BOUNCE_PAUSE_DAYS = env.int("MAILINGS_SOFT_BOUNCE_PAUSE_DAYS", default=14)
# How long the marks that make tracking and bounce events count once are kept (days): longer than
# any redelivery of the history outbox.
MAILINGS_HANDLED_EVENT_DAYS = env.int("MAILINGS_HANDLED_EVENT_DAYS", default=7)

# --- Scenarios -----------------------------------------------------------------------------------
# Webhook steps may not POST to loopback, private, link-local or reserved addresses (SSRF) unless
# the scenario allows it (an admin's choice) or this is set (self-hosting next to the receiver).
SCENARIOS_WEBHOOK_ALLOW_PRIVATE = env.bool("SCENARIOS_WEBHOOK_ALLOW_PRIVATE", default=False)
# A profile may enter one scenario at most this many times in a sliding minute (re-entry "always"
# or "after exit"): an event flood for one person is contained there, others are not slowed.
SCENARIOS_ENTRIES_PER_MINUTE = env.int("SCENARIOS_ENTRIES_PER_MINUTE", default=10)

# --- Operations (cdp/ops) ---------------------------------------------------------------------------
# Bearer token that Prometheus sends to /metrics ("Authorization: Bearer <token>"); empty: only a
# staff session may read it. Without either the endpoint answers 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# How often each Celery worker writes its heartbeat (seconds); it counts as gone after three.
OPS_HEARTBEAT_SECONDS = env.float("OPS_HEARTBEAT_SECONDS", default=15.0)
# /readyz fails when the mailings or scenarios tick has not succeeded for this long (seconds).
OPS_TICK_MAX_LAG_SECONDS = env.float("OPS_TICK_MAX_LAG_SECONDS", default=60.0)
# The status page lists a job as stuck after this long without progress (minutes), and a sending
# mailing run as not moving after this long with nothing settled.
OPS_JOB_STUCK_MINUTES = env.int("OPS_JOB_STUCK_MINUTES", default=5)
OPS_STALLED_RUN_MINUTES = env.int("OPS_STALLED_RUN_MINUTES", default=10)
# How long the sums of the send counters are reused between scrapes (seconds; 0: every scrape).
OPS_COUNTERS_CACHE_SECONDS = env.int("OPS_COUNTERS_CACHE_SECONDS", default=30)
# Where workers' heartbeats and the ticks' last runs are kept without Redis ("" = VAR_DIR/ops).
OPS_BEACON_DIR = env.str("OPS_BEACON_DIR", default="")
