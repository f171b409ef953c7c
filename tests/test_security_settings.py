"""Production settings: `check --deploy` is clean under the documented environment, the secret
key comes only from the environment, and local plain-http runs keep working."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env

REPO = Path(__file__).resolve().parent.parent


def _environ(tmp_path, **overrides) -> dict:
    # Not the settings of this test process either: the browser tests set
    # DJANGO_ALLOW_ASYNC_UNSAFE for Playwright, which `check --deploy` rightly refuses.
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in env.KNOWN_VARIABLES and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    return {**clean, "EDITLOOP_VAR_DIR": str(tmp_path), **overrides}


def _production(tmp_path, **overrides) -> dict:
    """README, Configuration: what a deployment sets (HTTPS is then on by default)."""
    return _environ(
        tmp_path, DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="editloop.example", **overrides,
    )  # fmt: skip


def _manage(environ, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("extra", [{}, {"EDITLOOP_BEHIND_PROXY": "1"}, {"CACHE_URL": "redis://r"}])
def test_check_deploy_is_clean_in_production(tmp_path, extra):
    result = _manage(_production(tmp_path, **extra), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_plain_http_in_production(tmp_path):
    result = _manage(
        _production(tmp_path, EDITLOOP_HTTPS="0"), "check", "--deploy", "--fail-level", "WARNING"
    )
    assert result.returncode != 0
    for check in ("W004", "W008", "W012", "W016"):  # HSTS, redirect, session and CSRF cookies
        assert f"security.{check}" in result.stderr


def test_secret_key_is_only_read_from_the_environment_in_production(tmp_path):
    (tmp_path / "secret_key").write_text(secrets.token_urlsafe(50))  # the local-only key
    environ = _production(tmp_path)
    del environ["SECRET_KEY"]
    result = _manage(environ, "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when ALLOWED_HOSTS names other hosts" in result.stderr


SHOW = (
    "SECURE_SSL_REDIRECT SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_HSTS_SECONDS "
    "SECURE_HSTS_INCLUDE_SUBDOMAINS SECURE_HSTS_PRELOAD SECURE_PROXY_SSL_HEADER"
).split()


def _https_settings(environ) -> dict:
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'\n"
        "from django.conf import settings\n"
        f"print({{name: getattr(settings, name) for name in {SHOW!r}}})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return eval(result.stdout)  # noqa: S307 - our own repr of a dict of plain values


PLAIN_HTTP = {
    "SECURE_SSL_REDIRECT": False, "SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False,
    "SECURE_HSTS_SECONDS": 0, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": False, "SECURE_PROXY_SSL_HEADER": None,
}  # fmt: skip


def test_local_runs_stay_on_plain_http(tmp_path):
    # the defaults (DEBUG off, localhost only) and `make demo` (DEBUG on): http://127.0.0.1:8000
    assert _https_settings(_environ(tmp_path)) == PLAIN_HTTP
    assert _https_settings(_environ(tmp_path, DEBUG="1")) == PLAIN_HTTP
    # compose.yaml on localhost: DEBUG off with SECURE_COOKIES=0.
    compose = _environ(tmp_path, DEBUG="0", SECRET_KEY="k" * 50, SECURE_COOKIES="0")
    assert _https_settings(compose) == PLAIN_HTTP


def test_production_is_https_only_and_each_part_can_be_changed(tmp_path):
    assert _https_settings(_production(tmp_path)) == {
        **PLAIN_HTTP, "SECURE_SSL_REDIRECT": True, "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True, "SECURE_HSTS_SECONDS": 31536000,
    }  # fmt: skip
    tuned = _production(
        tmp_path, EDITLOOP_BEHIND_PROXY="1", SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="0", SECURE_HSTS_PRELOAD="1",
    )  # fmt: skip
    assert _https_settings(tuned) == {
        **PLAIN_HTTP, "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 3600, "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": True, "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value"),
    [("SECURE_HSTS_SECONDS", "-1"), ("EDITLOOP_HTTPS", "maybe"), ("CACHE_URL", "memcached://m"),
     ("LOGIN_FAILURE_LIMIT", "0")],
)  # fmt: skip
def test_bad_security_variables_stop_start_up(tmp_path, name, value):
    result = _manage(_environ(tmp_path, **{name: value}), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{name}=" in result.stderr


def test_cache_urls():
    assert env.parse_cache_url("CACHE_URL", "db://")["LOCATION"] == env.CACHE_TABLE
    assert env.parse_cache_url("CACHE_URL", "redis://r:6379/1") == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://r:6379/1"
    }  # fmt: skip
    assert env.parse_cache_url("CACHE_URL", "locmem://")["BACKEND"].endswith("LocMemCache")
    for bad in ("redis://", "redis://r/x", "file:///tmp", ""):
        with pytest.raises(ImproperlyConfigured, match="CACHE_URL=.*db://"):
            env.parse_cache_url("CACHE_URL", bad)


def test_debug_is_off_by_default_and_never_in_the_shipped_configurations(tmp_path):
    code = "from django.conf import settings; print(settings.DEBUG)"
    result = subprocess.run(
        [sys.executable, "-c", f"import os; os.environ['DJANGO_SETTINGS_MODULE'] = "
         f"'config.settings'; {code}"],
        cwd=REPO, env=_environ(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "False", result.stderr
    # compose.yaml turns it off explicitly; the image's command never turns it on
    assert 'DEBUG: "0"' in (REPO / "compose.yaml").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    command = dockerfile[dockerfile.index("\nCMD") :]
    assert "DEBUG" not in command
    assert "DEBUG=$${DEBUG:-1}" in (REPO / "Makefile").read_text()  # the demo, locally


def test_debug_pages_mask_passwords_inside_urls(rf, settings):
    """A traceback page (DEBUG on) lists the settings, the request's environment and the
    frames' local variables: passwords written inside URLs are masked in all three. (The
    passwords are put together at run time: the page also shows this test's source lines.)"""
    pw = {name: f"{name}-pw-" + "9" * 6 for name in ("broker", "db", "meta", "local")}
    settings.DEBUG = True
    settings.CELERY_BROKER_URL = f"redis://:{pw['broker']}@redis.internal:6379/0"
    settings.DATABASE_HINT = {"url": f"postgres://editloop:{pw['db']}@db:5432/editloop"}
    request = rf.get("/", HTTP_X_EXAMPLE=f"redis://user:{pw['meta']}@h/0")
    page = _debug_page(request, f"redis://u:{pw['local']}@cache:6379/1")
    assert "boom" in page and "redis.internal" in page  # the page is there, the hosts too
    for secret in pw.values():
        assert secret not in page
    assert "redis://:********@redis.internal" in page and "u:********@cache" in page


def _debug_page(request, url: str) -> str:
    from django.views.debug import technical_500_response

    try:
        raise RuntimeError(f"boom while reaching {url.rsplit('@', 1)[-1]}")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()
