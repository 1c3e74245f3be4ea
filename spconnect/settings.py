"""Settings for spconnect, read from the environment (and an optional `.env`).

Every value that differs between a laptop and production comes from the environment.
Production (``DEBUG`` off) refuses to start without its secrets and names the missing one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = os.environ.get("SPCONNECT_ENV_FILE", str(BASE_DIR / ".env"))
if os.path.exists(_env_file):
    env.read_env(_env_file, overwrite=False)


def _secret(name: str, *, dev_default: str | None = None) -> str:
    """A secret from NAME or from the file named by NAME_FILE (Docker/K8s secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path} cannot be read: {exc}") from exc
    value = os.environ.get(name, "")
    if value:
        return value
    if DEBUG and dev_default is not None:
        return dev_default
    raise ImproperlyConfigured(
        f"The setting {name} is missing. Set {name} (or {name}_FILE) in the environment or .env; "
        "`make run` writes a .env with fresh random keys for local use."
    )


DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = _secret("SECRET_KEY")

# One Fernet key, or a comma-separated list: the first key encrypts, every key decrypts.
# django-encrypted-model-fields reads this once at import time.
FIELD_ENCRYPTION_KEY = [k.strip() for k in _secret("FIELD_ENCRYPTION_KEY").split(",") if k.strip()]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])

# Absolute base of every link the app sends out (invitations, redirect URI, emails).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000" if DEBUG else "").rstrip("/")
if not SITE_URL:
    # Every invitation, redirect URI and email link is built from it: never guess in production.
    raise ImproperlyConfigured("The setting SITE_URL is missing. Set it to the public https address, e.g. https://connect.example.com.")
if DEBUG and "ALLOWED_HOSTS" not in os.environ:
    # `make run HOST=… PORT=…` sets SITE_URL to where it serves: its links must be answered there.
    _site_host = urlsplit(SITE_URL).hostname
    if _site_host and _site_host not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(_site_host)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "encrypted_model_fields",
    "django_q",
    "sellers",
    "authflow",
    "sandbox",
    # The agency API (/api/v1/); "ninja" serves its docs page's Swagger UI from our static files.
    "ninja",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "spconnect.middleware.ContentSecurityPolicyMiddleware",
    # Before sessions: a rate-limited request costs one cache hit and never a session row.
    "spconnect.middleware.RateLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # /api/: Django's own 404 and 405 answers in the API's JSON error shape.
    "api.errors.ApiErrorsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "spconnect.middleware.OutOfRangeNumberMiddleware",
]

ROOT_URLCONF = "spconnect.urls"
WSGI_APPLICATION = "spconnect.wsgi.application"

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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
# A kept connection may have been ended by the server since the last request (a database restart
# or failover): check it with one round trip before a request uses it, and reconnect, instead of
# failing that request (a 500, or a false /healthz 503) once per thread.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Fail fast when PostgreSQL is away (libpq waits forever by default): /healthz answers 503
    # instead of hanging, and workers retry instead of piling up.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads and processes (runserver, the worker, the sandbox calling back into the
    # same process) share one file. A busy timeout alone is not enough: two default (deferred)
    # transactions that both read before writing cannot both be upgraded, and SQLite fails one
    # at once with "database is locked", timeout or not. IMMEDIATE takes the write lock at BEGIN,
    # so a second writer waits its turn (up to `timeout` seconds); WAL lets readers go on while
    # one writes.
    _sqlite = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite.setdefault("timeout", 20)
    _sqlite.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite.setdefault("init_command", "PRAGMA journal_mode=WAL;")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Seconds to connect to Redis, and to wait for each answer, for the cache and the task broker.
# redis-py waits 5 s by default (older releases forever): a frozen Redis would hold every public
# page that long (the rate limit asks the cache first). The broker's blocking pop waits up to 1 s
# for a task on the server, so an answer may take that long without anything being wrong.
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=2.0)
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=2.0)
if not 0 < REDIS_CONNECT_TIMEOUT <= 30:
    raise ImproperlyConfigured("REDIS_CONNECT_TIMEOUT must be more than 0 and at most 30 seconds.")
if not 1 < REDIS_SOCKET_TIMEOUT <= 30:
    raise ImproperlyConfigured(
        "REDIS_SOCKET_TIMEOUT must be more than 1 and at most 30 seconds: the task broker waits up to 1 s for a task."
    )

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Files served at the site's root by WhiteNoise (/favicon.ico: browsers ask for it on every page,
# the admin's included).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Email -----------------------------------------------------------------------------------
# In development (DEBUG) each message is a file in .mail/ (git-ignored) rather than lines lost
# among runserver's request lines; with DEBUG off, SMTP (EMAIL_HOST...) unless EMAIL_BACKEND says
# otherwise. Never the console there: messages carry sellers' links, and stdout is the logs
# (`check --deploy` refuses it: spconnect.E001).
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.filebased.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / ".mail"))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="spconnect <noreply@localhost>")

# --- Sessions and cookies ----------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Lax, not Strict: Amazon's consent page redirects the browser back to our callback, and the
# session cookie must come along for the state to be bound to the browser that started it.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    # Opt-in: only behind a proxy that sets (and strips client-sent) X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers probe over plain HTTP: /healthz must answer there, not redirect to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# None by default. spconnect.W001 (rate limits counted per process, no Redis) may be silenced
# on a deployment that runs a single web process.
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])

# --- Public pages: rate limits and Content-Security-Policy (spconnect/middleware.py) -----------
# How many reverse proxies of ours append to X-Forwarded-For. 0: the header is ignored and the
# peer address counts (anyone can write the header; trusting it unasked lets a client pick its
# own rate-limit bucket).
SPCONNECT_TRUSTED_PROXY_COUNT = env.int("SPCONNECT_TRUSTED_PROXY_COUNT", default=0)
# Requests per client address per window on the pages sellers reach without an account
# (invitation, start, callback, result, Login URI). 0 turns the limit off.
SPCONNECT_RATE_LIMIT_REQUESTS = env.int("SPCONNECT_RATE_LIMIT_REQUESTS", default=60)
SPCONNECT_RATE_LIMIT_WINDOW_SECONDS = env.int("SPCONNECT_RATE_LIMIT_WINDOW_SECONDS", default=60)
SPCONNECT_RATE_LIMIT_PATHS = ["/connect/", "/authflow/"]
# Staff sign-in attempts (POSTs to the admin login) per client address per window, counted apart
# from the public pages: guessing passwords is slowed without locking anybody's account.
SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS = env.int("SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS", default=10)
SPCONNECT_LOGIN_RATE_LIMIT_WINDOW_SECONDS = env.int("SPCONNECT_LOGIN_RATE_LIMIT_WINDOW_SECONDS", default=300)
SPCONNECT_LOGIN_PATHS = ["/admin/login/"]
SPCONNECT_CSP_EXEMPT_PATHS = ["/admin/"]
# The agency API (/api/v1/): requests per API key per window (429 beyond); 0 turns it off.
SPCONNECT_API_RATE_LIMIT_REQUESTS = env.int("SPCONNECT_API_RATE_LIMIT_REQUESTS", default=600)
SPCONNECT_API_RATE_LIMIT_WINDOW_SECONDS = env.int("SPCONNECT_API_RATE_LIMIT_WINDOW_SECONDS", default=60)
for _name, _least in (
    ("SPCONNECT_TRUSTED_PROXY_COUNT", 0),
    ("SPCONNECT_RATE_LIMIT_REQUESTS", 0),
    ("SPCONNECT_RATE_LIMIT_WINDOW_SECONDS", 1),
    ("SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS", 0),
    ("SPCONNECT_LOGIN_RATE_LIMIT_WINDOW_SECONDS", 1),
    ("SPCONNECT_API_RATE_LIMIT_REQUESTS", 0),
    ("SPCONNECT_API_RATE_LIMIT_WINDOW_SECONDS", 1),
):
    if globals()[_name] < _least:
        raise ImproperlyConfigured(f"{_name} must be {_least} or more.")

# --- Amazon ----------------------------------------------------------------------------------
# The built-in local stand-in for Seller Central, LWA and SP-API (served under /sandbox/).
SPAPI_SANDBOX = env.bool("SPAPI_SANDBOX", default=False)
if SPAPI_SANDBOX and not DEBUG and not env.bool("SPAPI_SANDBOX_ALLOW_WITHOUT_DEBUG", default=False):
    raise ImproperlyConfigured(
        "SPAPI_SANDBOX=true is for local runs and tests only; it is refused with DEBUG off. "
        "Unset SPAPI_SANDBOX (or set SPAPI_SANDBOX_ALLOW_WITHOUT_DEBUG=true for a load test)."
    )

_sandbox_base = f"{SITE_URL}/sandbox"

# Seller Central host per region, used to build the consent URL.
SPAPI_CONSENT_HOSTS = {
    "na": env.str("SPAPI_CONSENT_HOST_NA", default=f"{_sandbox_base}/na" if SPAPI_SANDBOX else "https://sellercentral.amazon.com"),
    "eu": env.str("SPAPI_CONSENT_HOST_EU", default=f"{_sandbox_base}/eu" if SPAPI_SANDBOX else "https://sellercentral-europe.amazon.com"),
    "fe": env.str("SPAPI_CONSENT_HOST_FE", default=f"{_sandbox_base}/fe" if SPAPI_SANDBOX else "https://sellercentral.amazon.co.jp"),
}
# Login URI (Amazon-initiated authorization): the only hosts `amazon_callback_uri` may send a
# browser to (https, exact host match), each with the region its consent covers. Anything else
# gets a 400 page, never a redirect. Override as "host=region,host=region".
_CENTRALS = {
    "na": ["amazon.com", "amazon.ca", "amazon.com.mx", "amazon.com.br"],
    "eu": ["amazon.co.uk", "amazon.de", "amazon.fr", "amazon.it", "amazon.es", "amazon.nl", "amazon.se", "amazon.pl",
           "amazon.com.tr", "amazon.ae", "amazon.in", "amazon.com.be", "amazon.eg", "amazon.sa"],
    "fe": ["amazon.sg", "amazon.com.au", "amazon.co.jp"],
}
SPAPI_AMAZON_CALLBACK_HOSTS = env.dict(
    "SPAPI_AMAZON_CALLBACK_HOSTS",
    default={
        "sellercentral-europe.amazon.com": "eu",
        **{f"{central}.{domain}": region for region, domains in _CENTRALS.items() for domain in domains
           for central in ("sellercentral", "vendorcentral")},
    },
)
SPAPI_LWA_TOKEN_URL = env.str(
    "SPAPI_LWA_TOKEN_URL",
    default=f"{_sandbox_base}/auth/o2/token" if SPAPI_SANDBOX else "https://api.amazon.com/auth/o2/token",
)
SPAPI_API_HOSTS = {
    "na": env.str("SPAPI_API_HOST_NA", default=f"{_sandbox_base}/spapi/na" if SPAPI_SANDBOX else "https://sellingpartnerapi-na.amazon.com"),
    "eu": env.str("SPAPI_API_HOST_EU", default=f"{_sandbox_base}/spapi/eu" if SPAPI_SANDBOX else "https://sellingpartnerapi-eu.amazon.com"),
    "fe": env.str("SPAPI_API_HOST_FE", default=f"{_sandbox_base}/spapi/fe" if SPAPI_SANDBOX else "https://sellingpartnerapi-fe.amazon.com"),
}
# (connect, read) seconds for every outbound request: `requests` has no default timeout.
SPAPI_HTTP_TIMEOUT = (env.float("SPAPI_HTTP_CONNECT_TIMEOUT", default=5.0), env.float("SPAPI_HTTP_READ_TIMEOUT", default=20.0))

# --- Flow lifetimes --------------------------------------------------------------------------
SPCONNECT_STATE_TTL_SECONDS = env.int("SPCONNECT_STATE_TTL_SECONDS", default=600)
SPCONNECT_INVITATION_TTL_DAYS = env.int("SPCONNECT_INVITATION_TTL_DAYS", default=7)
SPCONNECT_RENEWAL_DAYS = 365  # Amazon's rule, not a preference.
SPCONNECT_RENEWAL_WINDOW_DAYS = env.int("SPCONNECT_RENEWAL_WINDOW_DAYS", default=30)
SPCONNECT_ACCESS_TOKEN_MARGIN_SECONDS = env.int("SPCONNECT_ACCESS_TOKEN_MARGIN_SECONDS", default=300)
SPCONNECT_REFRESH_WINDOW_SECONDS = env.int("SPCONNECT_REFRESH_WINDOW_SECONDS", default=900)
SPCONNECT_FAILING_THRESHOLD = env.int("SPCONNECT_FAILING_THRESHOLD", default=3)
# How long a scheduled refresh task may take to report back before the sweep counts it lost and
# enqueues its grant again. A little under two sweeps (5 min apart, each up to 30 s late: the
# scheduler looks twice a minute), so a lost task is retried by the second sweep after it. It must
# cover a task's wait in the queue plus its run (60 s at most), or a slow task counts as lost.
SPCONNECT_REFRESH_CLAIM_SECONDS = env.int("SPCONNECT_REFRESH_CLAIM_SECONDS", default=540)
if SPCONNECT_REFRESH_CLAIM_SECONDS < 60:
    raise ImproperlyConfigured("SPCONNECT_REFRESH_CLAIM_SECONDS must be 60 or more (the task timeout).")
# Webhooks go to public https hosts only (sellers/validators.py); true allows a local receiver.
SPCONNECT_WEBHOOK_ALLOW_PRIVATE = env.bool("SPCONNECT_WEBHOOK_ALLOW_PRIVATE", default=False)

# --- Background tasks (django-q2) ------------------------------------------------------------
# ORM broker by default (redelivers a task after `retry` seconds); Redis when REDIS_URL is set.
# `retry` must exceed `timeout`, or a slow task is delivered twice while it still runs.
Q_CLUSTER = {
    "name": "spconnect",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 60,
    "retry": 120,
    "max_attempts": 5,
    "attempt_count": 5,
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "label": "Background tasks",
}
if REDIS_URL:
    # django-q2 passes a URL string to redis-py as it is: the timeouts travel in its query (values
    # already in REDIS_URL's query win).
    _redis_url = urlsplit(REDIS_URL)
    _redis_query = {"socket_connect_timeout": str(REDIS_CONNECT_TIMEOUT), "socket_timeout": str(REDIS_SOCKET_TIMEOUT)}
    _redis_query.update(parse_qsl(_redis_url.query))
    Q_CLUSTER["redis"] = urlunsplit(_redis_url._replace(query=urlencode(_redis_query)))
else:
    Q_CLUSTER["orm"] = "default"

# --- Logging ---------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Every handler carries the redaction filter, not only the root's: Django's DEFAULT_LOGGING gives
# `django` and `django.server` handlers of their own that records reach without passing the
# root's (runserver's request lines, `Not Found: /connect/<token>/`). Naming those loggers here
# replaces their handlers. gunicorn's handlers get the filter from spconnect/gunicorn_conf.py.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "spconnect.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # runserver's request lines, as Django prints them.
        "server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
        "server": {"class": "logging.StreamHandler", "formatter": "server", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # No handler of its own: records go to the root's. Django's mail_admins goes too: its
        # report carries the request's full URL, query and headers, out of any filter's reach.
        "django": {"handlers": []},
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
        # django-q2 adds a handler of its own to a logger that has none in reach; this one has
        # the root's, whichever is imported first.
        "django-q": {"handlers": [], "propagate": True},
        # urllib3 logs full request lines at DEBUG; our URLs carry no secrets, but keep it quiet.
        "urllib3": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
    },
}
