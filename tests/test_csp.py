"""The Content-Security-Policy: on every page and API answer, enforced by the browser (an
inline style or script is refused), and the pages keep to it (every browser test fails on a
violation: tests/conftest.py's `page`)."""

import os

import pytest

from config.csp import POLICY

pytestmark = pytest.mark.django_db
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright runs an event loop


def test_pages_and_api_answers_carry_the_policy(client, researcher_client):
    for response in (client.get("/login/"), researcher_client.get("/benchmark/"),
                     researcher_client.get("/api/jobs/"), researcher_client.get("/api/docs/")):  # fmt: skip
        assert response["Content-Security-Policy"] == POLICY
    assert "script-src 'self';" in POLICY and "style-src 'self';" in POLICY
    assert "unsafe" not in POLICY


def test_debug_error_pages_stay_readable(client, settings):
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/no-such-page/").headers
    settings.DEBUG = False
    assert client.get("/no-such-page/")["Content-Security-Policy"] == POLICY


def test_the_browser_refuses_inline_script_and_style(browser, live_server):
    page = browser.new_page()  # not the checked `page`: this one is meant to violate
    seen = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)  # fmt: skip
    page.goto(f"{live_server.url}/login/")
    page.evaluate("""() => {
        document.body.setAttribute('style', 'background: red');
        const s = document.createElement('script');
        s.textContent = 'window.ran = true';
        document.body.append(s);
    }""")
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.ran === undefined")
    assert any("inline style" in m for m in seen) and any("inline script" in m for m in seen)
    page.close()
