"""Settings are read from the environment; bad values fail loudly, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env

BASE = Path("/srv/editloop")
REPO = Path(__file__).resolve().parent.parent


def test_sqlite_url_relative_and_absolute():
    rel = env.parse_database_url("DATABASE_URL", "sqlite:///var/db.sqlite3", BASE)
    assert rel["ENGINE"] == "django.db.backends.sqlite3"
    assert rel["NAME"] == "/srv/editloop/var/db.sqlite3"
    assert rel["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    absolute = env.parse_database_url("DATABASE_URL", "sqlite:////tmp/x.sqlite3", BASE)
    assert absolute["NAME"] == "/tmp/x.sqlite3"


def test_postgres_url_with_credentials_port_and_options():
    db = env.parse_database_url(
        "DATABASE_URL", "postgresql://ed:p%40ss@db.local:6543/editloop?sslmode=require", BASE
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"]) == ("editloop", "ed", "p@ss")
    assert (db["HOST"], db["PORT"]) == ("db.local", "6543")
    assert db["OPTIONS"]["sslmode"] == "require"
    assert env.parse_database_url("DATABASE_URL", "postgres://127.0.0.1/test", BASE)["PORT"] == ""


@pytest.mark.parametrize(
    "value",
    [
        "mysql://root@localhost/db",
        "sqlite://",
        "sqlite:///",
        "postgres://host/",
        "postgres://h:x/db",
        "nonsense",
    ],
)
def test_bad_database_url_names_variable_and_forms(value):
    with pytest.raises(ImproperlyConfigured) as err:
        env.parse_database_url("DATABASE_URL", value, BASE)
    message = str(err.value)
    assert message.startswith("DATABASE_URL=")
    assert "sqlite:///" in message and "postgres://" in message


@pytest.mark.parametrize("value", ["filesystem://", "redis://127.0.0.1:6379/0", "rediss://r:6380"])
def test_good_broker_urls(value):
    assert env.parse_broker_url("CELERY_BROKER_URL", value) == value


@pytest.mark.parametrize(
    "value",
    ["amqp://guest@localhost//", "redis://", "redis://h:port/0", "redis://h/abc", "memory://"],
)
def test_bad_broker_urls(value):
    with pytest.raises(ImproperlyConfigured, match=r"CELERY_BROKER_URL=.*filesystem://.*redis://"):
        env.parse_broker_url("CELERY_BROKER_URL", value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False), ("", False)],
)
def test_bool(raw, expected):
    assert env.parse_bool("DEBUG", raw) is expected


def test_bad_bool_and_numbers_and_hosts():
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe'"):
        env.parse_bool("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="JOB_STALE_SECONDS"):
        env.parse_positive_float("JOB_STALE_SECONDS", "-3")
    with pytest.raises(ImproperlyConfigured, match="JOB_MAX_ATTEMPTS"):
        env.parse_positive_int("JOB_MAX_ATTEMPTS", "1.5")
    with pytest.raises(ImproperlyConfigured, match="ALLOWED_HOSTS"):
        env.parse_hosts("ALLOWED_HOSTS", "a.org,,b.org")
    assert env.parse_hosts("ALLOWED_HOSTS", "a.org, .b.org") == ["a.org", ".b.org"]


def test_filesystem_broker_folders_live_under_var(tmp_path):
    options = env.filesystem_broker_options(tmp_path)
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "broker/queue")
    assert options["store_processed"] is True
    assert options["control_folder"].startswith(str(tmp_path))


def test_local_secret_key_is_generated_once_and_private(tmp_path):
    first = env.local_secret_key(tmp_path)
    assert len(first) >= 50
    assert env.local_secret_key(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def _load_settings(tmp_path, **overrides):
    clean = {k: v for k, v in os.environ.items() if k not in env.KNOWN_VARIABLES}
    environ = {**clean, "EDITLOOP_VAR_DIR": str(tmp_path), **overrides}
    code = "from django.conf import settings; print(settings.DATABASES['default']['NAME'], settings.CELERY_BROKER_URL, settings.DEBUG)"
    return subprocess.run(
        [sys.executable, "-c", f"import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; {code}"],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_embedded_defaults_need_no_server(tmp_path):
    result = _load_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    # DEBUG is off unless turned on (`make demo` does); a local-only site needs no SECRET_KEY
    assert result.stdout.split() == [str(tmp_path / "editloop.sqlite3"), "filesystem://", "False"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL="),
        ({"CELERY_BROKER_URL": "amqp://x"}, "CELERY_BROKER_URL="),
        ({"ALLOWED_HOSTS": "editloop.example"}, "SECRET_KEY must be set when ALLOWED_HOSTS"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY is too short"),
        ({"JOB_HEARTBEAT_SECONDS": "200"}, "JOB_STALE_SECONDS"),
    ],
)
def test_bad_environment_stops_start_up_with_a_clear_error(tmp_path, overrides, named):
    result = _load_settings(tmp_path, **overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


def test_production_settings_with_key(tmp_path):
    result = _load_settings(
        tmp_path, DEBUG="off", SECRET_KEY="k" * 40, DATABASE_URL="postgres://u@db:5432/editloop",
        CELERY_BROKER_URL="redis://redis:6379/0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["editloop", "redis://redis:6379/0", "False"]
