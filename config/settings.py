"""EditLoop settings: one module, driven by environment variables (see config/env.py).

Embedded defaults run everything on one machine with no servers: a SQLite file
and kombu's filesystem broker, both under EDITLOOP_VAR_DIR (default ./var).
Set DATABASE_URL and CELERY_BROKER_URL for PostgreSQL and Redis.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config import env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env.parse_path("EDITLOOP_VAR_DIR", env.read("EDITLOOP_VAR_DIR", "var"), BASE_DIR)
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Off unless turned on: `make demo` and `manage.py demo` turn it on for their local servers.
DEBUG = env.parse_bool("DEBUG", env.read("DEBUG", "0"))

ALLOWED_HOSTS = env.parse_hosts(
    "ALLOWED_HOSTS", env.read("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
)
# A site that answers to this machine's names only (the default): a key generated once into
# var/ will do, and plain http is the default. A site that names other hosts is a deployment.
LOCAL_ONLY = set(ALLOWED_HOSTS) <= {"localhost", "127.0.0.1", "[::1]"}

_secret = env.read("SECRET_KEY")
if _secret is not None:
    if len(_secret) < 32:
        raise ImproperlyConfigured(
            f"SECRET_KEY is too short ({len(_secret)} characters); "
            f"accepted: {env.KNOWN_VARIABLES['SECRET_KEY']}"
        )
    SECRET_KEY = _secret
elif DEBUG or LOCAL_ONLY:
    SECRET_KEY = env.local_secret_key(VAR_DIR)
else:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set when ALLOWED_HOSTS names other hosts than this machine's"
    )
# Debug pages (DEBUG on) and error reports show settings and the environment: passwords
# inside URLs (CELERY_BROKER_URL, DATABASE_URL, CACHE_URL) are masked as well as Django's list.
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.reporting.MaskingReporterFilter"

INSTALLED_APPS = [
    "accounts.admin_apps.EditLoopAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "accounts",
    "jobs",
    "annotation",
    "benchmark",
    "rewardmodel",
    "rltraining",
    "lineage",
    "hooks",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.csp.ContentSecurityPolicyMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
    "config.errors.EditLoopErrorMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless its view says otherwise (login, /healthz).
    "accounts.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

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
    "default": env.parse_database_url(
        "DATABASE_URL",
        env.read("DATABASE_URL", f"sqlite:///{VAR_DIR / 'editloop.sqlite3'}"),
        BASE_DIR,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file (not :memory:) so a Celery worker started by a test sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"  # filled by collectstatic when DEBUG is off
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = env.parse_path("MEDIA_ROOT", env.read("MEDIA_ROOT", str(VAR_DIR / "media")), BASE_DIR)
# Form and JSON bodies bigger than this are refused (400 for forms, 413 for the API).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Largest .zip a researcher may upload for import (bigger bundles: import_groups).
UPLOAD_MAX_BYTES = env.parse_positive_int(
    "UPLOAD_MAX_BYTES", env.read("UPLOAD_MAX_BYTES", str(2 * 1024**3))
)

# --- HTTPS: off with DEBUG or on a local-only site (`make demo` is plain http on 127.0.0.1), on
# by default for a deployment. SECURE_COOKIES=0 was the switch for plain http before EDITLOOP_HTTPS (compose.yaml on
# localhost), so it still turns the redirect and HSTS off unless EDITLOOP_HTTPS is set.
_cookies = env.read("SECURE_COOKIES")
_cookies = None if _cookies is None else env.parse_bool("SECURE_COOKIES", _cookies)
HTTPS = env.parse_bool(
    "EDITLOOP_HTTPS",
    env.read("EDITLOOP_HTTPS", "0" if DEBUG or LOCAL_ONLY or _cookies is False else "1"),
)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS if _cookies is None else _cookies
SECURE_SSL_REDIRECT = env.parse_bool(
    "SECURE_SSL_REDIRECT", env.read("SECURE_SSL_REDIRECT", "1" if HTTPS else "0")
)
SECURE_HSTS_SECONDS = env.parse_non_negative_int(
    "SECURE_HSTS_SECONDS", env.read("SECURE_HSTS_SECONDS", "31536000" if HTTPS else "0")
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.parse_bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", env.read("SECURE_HSTS_INCLUDE_SUBDOMAINS", "1")
)
SECURE_HSTS_PRELOAD = env.parse_bool("SECURE_HSTS_PRELOAD", env.read("SECURE_HSTS_PRELOAD", "0"))
if not SECURE_HSTS_PRELOAD:
    # Preloading is a commitment made on hstspreload.org, not a default to nag about.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
BEHIND_PROXY = env.parse_bool("EDITLOOP_BEHIND_PROXY", env.read("EDITLOOP_BEHIND_PROXY", "0"))
if BEHIND_PROXY:
    # Trusted only behind a proxy that sets the header itself; otherwise clients could forge it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Shared by every web process (login failures are counted here), so not per-process locmem.
CACHES = {"default": env.parse_cache_url("CACHE_URL", env.read("CACHE_URL", "db://"))}
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
LOGIN_FAILURE_LIMIT = env.parse_positive_int(
    "LOGIN_FAILURE_LIMIT", env.read("LOGIN_FAILURE_LIMIT", "5")
)
LOGIN_FAILURE_WINDOW_SECONDS = env.parse_positive_int(
    "LOGIN_FAILURE_WINDOW_SECONDS", env.read("LOGIN_FAILURE_WINDOW_SECONDS", "900")
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.LimitedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    # `?format=` is ours (export formats), not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
}

# --- OpenAPI 3 schema of /api/ (drf-spectacular), served at /api/schema/ to signed-in users.
SPECTACULAR_SETTINGS = {
    "TITLE": "EditLoop API",
    "DESCRIPTION": "Annotation, benchmark and job API. Authenticate with `Authorization: "
    "Token <key>` (see /account/token/) or a signed-in session.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/",
    "SERVE_INCLUDE_SCHEMA": True,  # /api/schema/ lists itself: every /api/ path is in it
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # /api/docs/ serves Swagger UI from the sidecar package's static files, not a CDN
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery: JSON only; the job row is the truth, the message only rings the bell.
CELERY_BROKER_URL = env.parse_broker_url(
    "CELERY_BROKER_URL", env.read("CELERY_BROKER_URL", "filesystem://")
)
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT_OPTIONS = env.filesystem_broker_options(VAR_DIR)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Longer than any job step: an unacked message is redelivered after this,
        # and the job claim makes the duplicate a no-op anyway.
        "visibility_timeout": 6 * 3600,
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_EVENT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES_NAMES = ("default", "gpu")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Job framework timings (seconds).
JOB_HEARTBEAT_SECONDS = env.parse_positive_float(
    "JOB_HEARTBEAT_SECONDS", env.read("JOB_HEARTBEAT_SECONDS", "10")
)
JOB_STALE_SECONDS = env.parse_positive_float(
    "JOB_STALE_SECONDS", env.read("JOB_STALE_SECONDS", "120")
)
JOB_REDISPATCH_SECONDS = env.parse_positive_float(
    "JOB_REDISPATCH_SECONDS", env.read("JOB_REDISPATCH_SECONDS", "60")
)
JOB_SWEEP_SECONDS = env.parse_positive_float(
    "JOB_SWEEP_SECONDS", env.read("JOB_SWEEP_SECONDS", "30")
)
# Benchmark results (leaderboard, runs) readable without signing in.
BENCHMARK_PUBLIC_READ = env.parse_bool(
    "BENCHMARK_PUBLIC_READ", env.read("BENCHMARK_PUBLIC_READ", "0")
)
# Scores files (`file:path=...` scorer) of runs started from the web or the API
# must be regular files inside this folder (shared by web and workers).
BENCHMARK_SCORES_DIR = env.parse_path(
    "BENCHMARK_SCORES_DIR",
    env.read("BENCHMARK_SCORES_DIR", str(MEDIA_ROOT / "_scores")),
    BASE_DIR,
)
# Fine-tuned reward models (LoRA adapters and checkpoints), on the volume the GPU
# workers and the benchmark workers share.
REWARD_MODELS_DIR = env.parse_path(
    "REWARD_MODELS_DIR", env.read("REWARD_MODELS_DIR", str(VAR_DIR / "reward_models")), BASE_DIR
)
# RL runs (checkpoints, adapters, torchrun files), on the GPU workers' shared volume.
RL_RUNS_DIR = env.parse_path(
    "RL_RUNS_DIR", env.read("RL_RUNS_DIR", str(VAR_DIR / "rl_runs")), BASE_DIR
)
# Folders model weights may be read from, beside the two above (config/model_roots.py).
MODELS_DIRS = [
    env.parse_path("MODELS_DIRS", part.strip(), BASE_DIR)
    for part in (env.read("MODELS_DIRS") or str(VAR_DIR)).split(",")
    if part.strip()
]
# gpus > 1 on a worker without CUDA: that many CPU processes (gloo) only when this is on (tests,
# a CPU cluster); otherwise the run is refused before anything is spawned.
RL_CPU_PROCESSES = env.parse_bool("RL_CPU_PROCESSES", env.read("RL_CPU_PROCESSES") or "0")
# Uploaded RL prompt files (JSONL with base64 source images) are refused above this size.
RL_PROMPTS_MAX_BYTES = env.parse_positive_int(
    "RL_PROMPTS_MAX_BYTES", env.read("RL_PROMPTS_MAX_BYTES", str(64 * 1024 * 1024))
)
# Dataset quality reports (agreement, annotators, editor leaderboard) are
# recomputed by beat this often, for datasets with new rankings.
REPORT_REFRESH_SECONDS = env.parse_positive_float(
    "REPORT_REFRESH_SECONDS", env.read("REPORT_REFRESH_SECONDS", "60")
)
JOB_MAX_ATTEMPTS = env.parse_positive_int("JOB_MAX_ATTEMPTS", env.read("JOB_MAX_ATTEMPTS", "3"))
WORKER_STALE_SECONDS = env.parse_positive_float(
    "WORKER_STALE_SECONDS", env.read("WORKER_STALE_SECONDS", "60")
)
if JOB_STALE_SECONDS <= JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        f"JOB_STALE_SECONDS ({JOB_STALE_SECONDS}) must be larger than "
        f"JOB_HEARTBEAT_SECONDS ({JOB_HEARTBEAT_SECONDS})"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # kombu warns that "filesystem://" has no hostname on every connection.
        "kombu.connection": {"level": "ERROR"},
    },
}
