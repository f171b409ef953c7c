"""/healthz: JSON, 200 when database, broker and a worker are fine; 503 naming what is down."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import WorkerHeartbeat


@pytest.fixture
def live_worker(db):
    return WorkerHeartbeat.objects.create(
        hostname="w@host", queues=["default"], seen_at=timezone.now()
    )


@pytest.fixture
def client(client, db):
    """Researchers see each check's details; the tests below read them."""
    from accounts.models import Role
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="ops", role=Role.RESEARCHER))
    return client


def test_all_up(client, live_worker):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert body["checks"]["worker"]["alive"] == [{"hostname": "w@host", "queues": ["default"]}]


def test_anonymous_sees_status_but_no_details(live_worker, settings):
    from django.test import Client

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1}
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "down": ["broker"]}


def test_broker_down_answers_503_and_names_it(client, live_worker, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1}
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"]
    assert (
        "Connection" in body["checks"]["broker"]["error"]
        or "refused" in body["checks"]["broker"]["error"]
    )


def test_filesystem_broker_with_missing_folder_is_down(client, live_worker, settings, tmp_path):
    from config.env import filesystem_broker_options

    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(tmp_path / "absent")
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["down"] == ["broker"]


def test_stale_or_missing_worker_is_down(client, db, settings):
    assert (
        client.get("/healthz").json()["checks"]["worker"]["error"] == "no worker has ever reported"
    )
    WorkerHeartbeat.objects.create(
        hostname="old@host",
        seen_at=timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS + 30),
    )
    response = client.get("/healthz")
    assert response.status_code == 503 and "worker" in response.json()["down"]
    assert response.json()["checks"]["worker"]["alive"] == []


def test_database_down_is_503_not_500(client, live_worker, monkeypatch):
    from django.db import OperationalError, connection

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        response = client.get("/healthz")
    assert response.status_code == 503
    # the worker's heartbeat is read from the database; who asks cannot be known
    # either (sessions live there), so no details
    assert response.json() == {"status": "down", "down": ["database", "worker"]}


def test_pages_and_api_answer_503_while_the_database_is_down(client, monkeypatch):
    from django.db import OperationalError, connection

    client.raise_request_exception = False  # as a real server: the response, not the exception

    def refuse(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        page = client.get("/jobs/")
        api = client.get("/api/jobs/")
    assert page.status_code == 503 and page["Retry-After"] == "5"
    assert api.status_code == 503 and api.json()["detail"].startswith("database unavailable")
