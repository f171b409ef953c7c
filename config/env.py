"""Typed readers for the environment variables that configure EditLoop.

Every reader takes the variable's name and the raw string, and raises
ImproperlyConfigured naming the variable and the accepted forms when the value
is bad. They are plain functions so tests can check them without re-importing
the settings module.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

# Every variable the settings module reads; compose.yaml is checked against it.
KNOWN_VARIABLES = {
    "MODELS_DIRS": "comma-separated folders model weights may be read from, beside "
    "REWARD_MODELS_DIR and RL_RUNS_DIR (default: EDITLOOP_VAR_DIR)",
    "DEBUG": "1/0, true/false, yes/no, on/off (default 0; `make demo` turns it on)",
    "SECRET_KEY": "any string of 32 characters or more",
    "ALLOWED_HOSTS": "comma-separated host names, e.g. 'example.org,.example.org,127.0.0.1'",
    "DATABASE_URL": "sqlite:///relative/or/absolute/path.sqlite3 or "
    "postgres://user:password@host:port/name (postgresql:// too)",
    "CELERY_BROKER_URL": "filesystem:// (folders under EDITLOOP_VAR_DIR) or redis://host:port/db "
    "(rediss:// too)",
    "MEDIA_ROOT": "a folder path (relative paths are resolved against the project folder)",
    "EDITLOOP_VAR_DIR": "a folder path for local state (SQLite file, broker folders, secret key)",
    "EDITLOOP_HTTPS": "1/0: the site is served over HTTPS only: redirect, HSTS, secure cookies "
    "(default 1 when DEBUG is off and ALLOWED_HOSTS names other hosts than localhost, unless "
    "SECURE_COOKIES=0)",
    "EDITLOOP_BEHIND_PROXY": "1/0: a reverse proxy sets X-Forwarded-Proto (https) and appends the "
    "client's address to X-Forwarded-For (default 0)",
    "SECURE_COOKIES": "1/0: send cookies over HTTPS only (default: EDITLOOP_HTTPS)",
    "SECURE_SSL_REDIRECT": "1/0: redirect http to https (default: EDITLOOP_HTTPS)",
    "SECURE_HSTS_SECONDS": "an integer >= 0: HSTS max-age, 0 for none (default 31536000 with "
    "EDITLOOP_HTTPS, else 0)",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1/0: HSTS covers subdomains too (default 1)",
    "SECURE_HSTS_PRELOAD": "1/0: ask to be on browsers' HSTS preload list (default 0)",
    "CACHE_URL": "db:// (a table in the database, created by migrate), redis://host:port/db "
    "(rediss:// too) or locmem:// (one process only)",
    "LOGIN_FAILURE_LIMIT": "a positive integer: failed sign-ins per username and address "
    "before further tries are refused",
    "LOGIN_FAILURE_WINDOW_SECONDS": "a positive integer: the window those failures are counted in",
    "UPLOAD_MAX_BYTES": "a positive integer: the largest .zip accepted for import",
    "JOB_HEARTBEAT_SECONDS": "a positive number of seconds",
    "JOB_STALE_SECONDS": "a positive number of seconds",
    "JOB_REDISPATCH_SECONDS": "a positive number of seconds",
    "JOB_SWEEP_SECONDS": "a positive number of seconds",
    "REPORT_REFRESH_SECONDS": "a positive number of seconds",
    "BENCHMARK_PUBLIC_READ": "a boolean: 1/0, true/false, yes/no, on/off",
    "BENCHMARK_SCORES_DIR": "a folder",
    "REWARD_MODELS_DIR": "a folder",
    "RL_RUNS_DIR": "a folder",
    "RL_CPU_PROCESSES": "1/0: let an RL run with gpus > 1 start that many CPU processes (gloo) "
    "on a worker without CUDA; off: it is refused",
    "RL_PROMPTS_MAX_BYTES": "a positive integer",
    "JOB_MAX_ATTEMPTS": "a positive integer",
    "WORKER_STALE_SECONDS": "a positive number of seconds",
}

# The db:// cache's table; accounts' migrations create it, so `migrate` is enough.
CACHE_TABLE = "editloop_cache"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bad(name: str, value: str, why: str = "") -> ImproperlyConfigured:
    accepted = KNOWN_VARIABLES.get(name, "")
    detail = f" ({why})" if why else ""
    return ImproperlyConfigured(f"{name}={value!r} is invalid{detail}; accepted: {accepted}")


def read(name: str, default: str | None = None, environ: dict | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return environ.get(name, default)


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad(name, value)


def parse_positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _bad(name, value) from None
    if not number > 0 or number == float("inf"):
        raise _bad(name, value, "must be > 0")
    return number


def parse_positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad(name, value) from None
    if number < 1:
        raise _bad(name, value, "must be >= 1")
    return number


def parse_non_negative_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad(name, value) from None
    if number < 0:
        raise _bad(name, value, "must be >= 0")
    return number


def parse_hosts(name: str, value: str) -> list[str]:
    hosts = [h.strip() for h in value.split(",")]
    if not value.strip() or any(not h or " " in h or "/" in h for h in hosts):
        raise _bad(name, value, "empty entry, space or slash")
    return hosts


def parse_path(name: str, value: str, base_dir: Path) -> Path:
    if not value.strip():
        raise _bad(name, value, "empty")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def parse_database_url(name: str, value: str, base_dir: Path) -> dict:
    """Turn a DATABASE_URL into one Django DATABASES entry."""
    parts = urlsplit(value)
    options = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path or parts.path == "/":
            raise _bad(name, value, "expected sqlite:///path")
        path = parts.path[1:]  # sqlite:///var/db.sqlite3 -> relative; sqlite:////abs -> absolute
        resolved = Path(path) if Path(path).is_absolute() else base_dir / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(resolved),
            # Web, worker and beat share one file: WAL lets readers run beside the
            # writer, IMMEDIATE takes the write lock up front so transactions wait
            # for it (up to `timeout`) instead of failing with "database is locked".
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        db_name = parts.path.lstrip("/")
        if not db_name or "/" in db_name:
            raise _bad(name, value, "missing database name")
        try:
            port = parts.port
        except ValueError:
            raise _bad(name, value, "bad port") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(db_name),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"connect_timeout": 5, **options},
        }
    raise _bad(name, value, f"unknown scheme {parts.scheme!r}")


def parse_broker_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if value == "filesystem://":
        return value
    if parts.scheme in ("redis", "rediss"):
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise _bad(name, value, "bad port") from None
        if not parts.hostname:
            raise _bad(name, value, "missing host")
        db = parts.path.lstrip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise _bad(name, value, "database must be a number")
        return value
    raise _bad(name, value, f"unknown scheme {parts.scheme!r}")


def parse_cache_url(name: str, value: str) -> dict:
    """Turn a CACHE_URL into Django's default CACHES entry."""
    if value == "db://":
        return {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": CACHE_TABLE}
    if value == "locmem://":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if urlsplit(value).scheme in ("redis", "rediss"):
        parse_broker_url(name, value)  # the same checks: host, port, numeric database
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": value}
    raise _bad(name, value, f"unknown scheme {urlsplit(value).scheme!r}")


def filesystem_broker_options(var_dir: Path) -> dict:
    """kombu filesystem transport folders (see shared/docs/platform-notes.md)."""
    root = var_dir / "broker"
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "store_processed": True,
        "processed_folder": str(root / "processed"),
        "control_folder": str(root / "control"),
        "polling_interval": 0.1,
    }


def local_secret_key(var_dir: Path) -> str:
    """A key generated once and kept under var/ (mode 0600), for local use only."""
    path = var_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret_key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
        # link() fails if another process won the race; both then read the winner's key.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
