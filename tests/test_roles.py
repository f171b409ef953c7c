"""Roles: annotators see annotation pages only; researchers see everything."""

import json
import urllib.error
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Role, User


@pytest.mark.parametrize(
    ("url", "login"),
    [
        ("/", "/login/"),
        ("/jobs/", "/login/"),
        ("/jobs/1/", "/login/"),
        ("/admin/", "/admin/login/"),
    ],
)
def test_anonymous_is_sent_to_login(client, db, url, login):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{login}?next={url}"


def test_login_page_is_public_and_styled(client, db):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"css/app.css" in response.content and b"Sign in" in response.content


def test_login_with_password_then_logout(client, researcher):
    response = client.post("/login/", {"username": "rita", "password": "correct horse battery"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/jobs/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/jobs/").status_code == 302


def test_wrong_password_is_refused(client, researcher):
    response = client.post("/login/", {"username": "rita", "password": "nope"})
    assert response.status_code == 200
    assert b"Wrong username or password" in response.content


@pytest.mark.parametrize("url", ["/jobs/", "/admin/", "/admin/jobs/job/"])
def test_annotator_gets_403_on_researcher_pages(annotator_client, url):
    assert annotator_client.get(url).status_code == 403


def test_annotator_home_shows_annotation_only(annotator_client):
    response = annotator_client.get("/")
    assert response.status_code == 200
    assert b"Annotation" in response.content and b"/jobs/" not in response.content


@pytest.mark.parametrize("url", ["/", "/jobs/", "/admin/", "/admin/jobs/job/"])
def test_researcher_sees_everything(researcher_client, url):
    assert researcher_client.get(url).status_code == 200


def test_annotator_cannot_start_or_cancel_jobs(annotator_client):
    assert annotator_client.post("/jobs/selftest/", {"steps": 2}).status_code == 403
    assert annotator_client.post("/jobs/1/cancel/").status_code == 403


def test_adduser_creates_users_with_roles_and_updates_them(db, capsys):
    call_command("adduser", "bob", "--role", "annotator", "--password", "pw-bob-123")
    bob = User.objects.get(username="bob")
    assert bob.role == Role.ANNOTATOR and not bob.is_staff and bob.check_password("pw-bob-123")
    call_command("adduser", "bob", "--role", "researcher")
    bob.refresh_from_db()
    assert bob.role == Role.RESEARCHER and bob.is_staff and bob.check_password("pw-bob-123")
    assert "updated bob (researcher)" in capsys.readouterr().out


def test_adduser_rejects_unknown_role(db):
    with pytest.raises(CommandError, match="invalid choice: 'admin'"):
        call_command("adduser", "eve", "--role", "admin")
    assert not User.objects.filter(username="eve").exists()


def _get(url, token=None):
    request = urllib.request.Request(
        url, headers={"Authorization": f"Token {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_api_tokens_over_real_http(live_server, capsys):
    call_command("adduser", "tok-res", "--role", "researcher", "--token")
    res_token = capsys.readouterr().out.strip().splitlines()[-1]
    call_command("adduser", "tok-ann", "--role", "annotator", "--token")
    ann_token = capsys.readouterr().out.strip().splitlines()[-1]

    assert _get(f"{live_server.url}/api/me/", res_token) == (
        200, {"id": User.objects.get(username="tok-res").pk, "username": "tok-res", "role": "researcher"}
    )  # fmt: skip
    assert _get(f"{live_server.url}/api/jobs/")[0] == 401
    assert _get(f"{live_server.url}/api/jobs/", "not-a-token")[0] == 401
    status, body = _get(f"{live_server.url}/api/jobs/", ann_token)
    assert status == 403 and "researchers" in body["detail"]
    status, body = _get(f"{live_server.url}/api/jobs/", res_token)
    assert status == 200 and body["count"] == 0
