"""Access: failed sign-ins are rate limited; API tokens can be revoked and regenerated."""

import time
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from accounts import throttle
from accounts.services import user_api_token
from tests.factories import PASSWORD, UserFactory

LOCKED = b"Too many failed sign-ins"
WRONG = b"Wrong username or password"


def _sign_in(client, username, password="wrong password", url="/login/", **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def _fail(client, username, times, **extra):
    for _ in range(times):
        response = _sign_in(client, username, **extra)
        assert response.status_code == 200 and WRONG in response.content


@pytest.mark.parametrize("username", ["rita", "nobody"])
def test_failed_sign_ins_are_refused_with_429_whether_or_not_the_user_exists(
    client, researcher, username
):
    _fail(client, username, 5)
    response = _sign_in(client, username, PASSWORD)  # even the right password, for rita
    assert response.status_code == 429
    assert LOCKED in response.content and WRONG not in response.content
    assert 0 < int(response["Retry-After"]) <= 900
    assert b"Try again in 15 minutes" in response.content
    assert client.get("/jobs/").status_code == 302  # still signed out


def test_a_lock_is_per_username_and_address(client, researcher):
    _fail(client, "rita", 5)
    assert _sign_in(client, "RITA").status_code == 429  # case does not get around it
    assert _sign_in(client, "rita", REMOTE_ADDR="10.0.0.9").status_code == 200
    assert _sign_in(client, "other").status_code == 200


def test_a_successful_sign_in_resets_the_count(client, researcher):
    _fail(client, "rita", 4)
    assert _sign_in(client, "rita", PASSWORD).status_code == 302
    client.post("/logout/")
    _fail(client, "rita", 4)
    assert _sign_in(client, "rita", PASSWORD).status_code == 302


def test_the_lock_lifts_when_the_failures_leave_the_window(client, researcher, monkeypatch):
    now = [time.time()]  # the throttle's clock only: the cache keeps real time
    monkeypatch.setattr(throttle, "time", SimpleNamespace(time=lambda: now[0]))
    _fail(client, "rita", 5)
    now[0] += 899
    response = _sign_in(client, "rita", PASSWORD)
    assert response.status_code == 429 and response["Retry-After"] == "1"
    now[0] += 1
    assert _sign_in(client, "rita", PASSWORD).status_code == 302


def test_limit_and_window_come_from_settings(client, researcher, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 60
    _fail(client, "rita", 2)
    response = _sign_in(client, "rita")
    assert response.status_code == 429 and b"Try again in 1 minute." in response.content


def test_the_sign_in_page_is_the_only_password_form(client, researcher):
    # The admin's own form sends anonymous visitors here: no way around the limit.
    response = _sign_in(client, "rita", PASSWORD, url="/admin/login/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_behind_a_proxy_the_address_is_the_one_the_proxy_appended(client, researcher, settings):
    settings.BEHIND_PROXY = True
    for forged in range(5):  # a client-chosen first entry changes nothing
        _fail(client, "rita", 1, HTTP_X_FORWARDED_FOR=f"10.9.9.{forged}, 203.0.113.7")
    assert _sign_in(client, "rita", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    assert _sign_in(client, "rita", HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


# --- API tokens


def _me(client, key):
    return client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code


def test_token_page_creates_regenerates_and_revokes(annotator_client, annotator):
    page = annotator_client.get("/account/token/")
    assert page.status_code == 200 and b"You have no API token" in page.content
    assert annotator_client.post("/account/token/", {"action": "regenerate"}).status_code == 302
    first = Token.objects.get(user=annotator).key
    assert first.encode() in annotator_client.get("/account/token/").content
    assert _me(annotator_client, first) == 200

    annotator_client.post("/account/token/", {"action": "regenerate"})
    second = Token.objects.get(user=annotator).key
    assert second != first and _me(annotator_client, first) == 401
    assert _me(annotator_client, second) == 200

    response = annotator_client.post("/account/token/", {"action": "revoke"}, follow=True)
    assert b"API token revoked" in response.content and b"You have no API token" in response.content
    assert _me(annotator_client, second) == 401
    assert annotator_client.post("/account/token/", {"action": "other"}).status_code == 400


def test_token_page_needs_a_sign_in(client, db):
    assert client.get("/account/token/")["Location"] == "/login/?next=/account/token/"


def test_revoke_token_command(client, researcher, capsys):
    key = user_api_token(user=researcher)
    call_command("revoke_token", "rita", "--regenerate")
    new = capsys.readouterr().out.strip()
    assert new != key and _me(client, key) == 401 and _me(client, new) == 200
    call_command("revoke_token", "rita")
    assert "revoked the API token of rita" in capsys.readouterr().out
    assert _me(client, new) == 401
    call_command("revoke_token", "rita")
    assert "rita had no API token" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("revoke_token", "ghost")


def test_a_researcher_revokes_another_users_token_in_the_admin(researcher_client, db):
    bot = UserFactory(username="bot")
    key = user_api_token(user=bot)
    url = f"/admin/authtoken/tokenproxy/{bot.pk}/delete/"
    assert researcher_client.post(url, {"post": "yes"}).status_code == 302
    assert not Token.objects.filter(user=bot).exists() and _me(researcher_client, key) == 401


def test_parallel_guesses_get_no_more_password_checks_than_the_limit(live_server, transactional_db):
    """40 wrong passwords at once over real HTTP, limit 5: at most 5 are checked (answered
    "wrong password"), the rest 429, none an error."""
    import http.cookiejar
    import re
    import threading
    import urllib.error
    import urllib.parse
    import urllib.request

    UserFactory(username="rita")

    def guess() -> int:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        form = opener.open(f"{live_server.url}/login/", timeout=30).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "rita",
                                       "password": "wrong"}).encode()  # fmt: skip
        barrier.wait()
        request = urllib.request.Request(f"{live_server.url}/login/", data=body,
                                         headers={"Referer": f"{live_server.url}/login/"})  # fmt: skip
        for _ in range(20):  # the test server's listen backlog is 5: a reset is not an answer
            try:
                with opener.open(request, timeout=60) as response:
                    return response.status if WRONG in response.read() else -response.status
            except urllib.error.HTTPError as refused:
                return refused.code
            except (ConnectionResetError, urllib.error.URLError) as lost:
                if isinstance(lost, urllib.error.URLError) and not isinstance(
                    lost.reason, ConnectionResetError
                ):
                    raise
                time.sleep(0.05)
        raise AssertionError("the server never answered")

    barrier = threading.Barrier(40)
    results: list[int] = []

    def run():
        try:
            results.append(guess())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(repr(exc))

    threads = [threading.Thread(target=run) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40 and set(results) <= {200, 429}, results
    assert 1 <= results.count(200) <= 5
