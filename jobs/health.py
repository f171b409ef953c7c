"""/healthz: is the database up, is the broker reachable, is a worker alive?

Always JSON; 200 when everything is fine, 503 naming what is down. It never
raises: each check catches its own failure and reports it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import OperationalError, connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CHECK_SECONDS = 2  # the longest one broker check may wait for an answer


PROBE_SECONDS = 1  # the longest the database's write probe may wait


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            if connection.vendor == "sqlite" and not connection.in_atomic_block:
                blocked = _sqlite_write_blocked(cursor)
                if blocked:
                    return {"ok": False, "engine": "sqlite", "error": blocked}
        return {"ok": True, "engine": connection.vendor}
    except Exception as exc:
        return {"ok": False, "engine": connection.vendor, "error": _short(exc)}


def _sqlite_write_blocked(cursor) -> str | None:
    """SQLite answers reads while one writer holds the only write lock, and every other write
    waits for it: take the write lock (and give it back at once) with a short timeout."""
    cursor.execute("PRAGMA busy_timeout")
    before = cursor.fetchone()[0]
    cursor.execute(f"PRAGMA busy_timeout = {PROBE_SECONDS * 1000}")
    try:
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("ROLLBACK")
    except OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return (f"alive but blocked: a write waited more than {PROBE_SECONDS} s for the "
                    "database's write lock (a long transaction holds it)")  # fmt: skip
        raise
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {int(before)}")
    return None


def check_broker() -> dict:
    url = settings.CELERY_BROKER_URL
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if url == "filesystem://":
        folders = [
            options["data_folder_in"],
            options["data_folder_out"],
            options["processed_folder"],
        ]
        missing = [f for f in folders if not (os.path.isdir(f) and os.access(f, os.W_OK))]
        if missing:
            return {"ok": False, "transport": "filesystem", "error": f"not writable: {missing}"}
        return {"ok": True, "transport": "filesystem"}
    from kombu import Connection

    # A hung Redis (it accepts connections, answers nothing) must not hold /healthz for the
    # broker's own socket timeout (10 s in production): a load balancer polls this page.
    options = {
        **options,
        **{
            key: min(options.get(key) or CHECK_SECONDS, CHECK_SECONDS)
            for key in ("socket_connect_timeout", "socket_timeout")
        },
    }
    try:
        with Connection(url, transport_options=options, connect_timeout=CHECK_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_SECONDS)
            conn.default_channel.client.ping()
        return {"ok": True, "transport": "redis"}
    except Exception as exc:
        return {"ok": False, "transport": "redis", "error": _short(exc)}


def check_worker() -> dict:
    from jobs.models import WorkerHeartbeat

    try:
        last = WorkerHeartbeat.objects.order_by("-seen_at").first()
    except Exception as exc:
        return {"ok": False, "error": f"unknown, database unavailable: {_short(exc)}"}
    if last is None:
        return {"ok": False, "error": "no worker has ever reported"}
    age = (timezone.now() - last.seen_at).total_seconds()
    alive = WorkerHeartbeat.objects.filter(
        seen_at__gte=timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
    ).values_list("hostname", "queues")
    result = {
        "ok": age <= settings.WORKER_STALE_SECONDS,
        "last_heartbeat": last.seen_at.isoformat(),
        "age_seconds": round(age, 1),
        "alive": [{"hostname": h, "queues": q} for h, q in alive],
    }
    if not result["ok"]:
        result["error"] = f"last worker heartbeat {age:.0f}s ago"
    return result


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


@never_cache
@login_not_required
@require_GET
def healthz(request):
    """Anyone (a load balancer) sees the status and what is down; researchers also
    see the details: error texts name hosts, users and folders."""
    checks = {"database": check_database(), "broker": check_broker(), "worker": check_worker()}
    down = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "down" if down else "ok", "down": down}
    if _may_see_details(request):
        body["checks"] = checks
    return JsonResponse(body, status=503 if down else 200)


def _may_see_details(request) -> bool:
    from accounts.permissions import is_researcher

    try:
        return is_researcher(request.user)
    except Exception:  # the session store is the database, which may be down
        return False
