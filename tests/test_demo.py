"""`make demo`'s server: starts on the embedded defaults (SQLite, filesystem broker),
answers /healthz with a live worker, logs users in, and stops cleanly."""

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from config.env import KNOWN_VARIABLES
from tests.brokers import wait_for

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(opener, url):
    try:
        with opener.open(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None, ""


def test_demo_starts_serves_and_stops(tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in KNOWN_VARIABLES}  # embedded defaults
    env["EDITLOOP_VAR_DIR"] = str(tmp_path)
    log = open(tmp_path / "demo.log", "w+")
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--web-workers", "1",
         "--no-loop"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    opener = urllib.request.build_opener()
    try:
        health = wait_for(
            lambda: (r := _get(opener, f"{base}/healthz"))[0] == 200 and json.loads(r[1]),
            timeout=90, what="demo /healthz to answer 200",
        )  # fmt: skip
        assert health == {"status": "ok", "down": []}

        log.seek(0)
        printed = log.read()
        password = re.search(r"Researcher researcher / (\S+)", printed).group(1)
        assert re.search(r"Annotator\s+annotator / \S+", printed)

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        status, page = _get(browser, f"{base}/login/")
        assert status == 200
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": "researcher", "password": password, "csrfmiddlewaretoken": csrf}
        )
        request = urllib.request.Request(
            f"{base}/login/", data=form.encode(), headers={"Referer": f"{base}/login/"}
        )
        with browser.open(request, timeout=10) as response:
            assert response.url == f"{base}/"
        status, detail = _get(browser, f"{base}/healthz")  # a researcher sees the details
        checks = json.loads(detail)["checks"]
        assert (
            checks["database"]["engine"] == "sqlite"
            and checks["broker"]["transport"] == "filesystem"
        )
        assert checks["worker"]["alive"][0]["queues"] == ["default", "gpu"]
        status, jobs_page = _get(browser, f"{base}/jobs/")
        assert status == 200 and "Run self-test" in jobs_page
        assert _get(browser, f"{base}/static/vendor/htmx/htmx-2.0.11.min.js")[0] == 200
        status, home = _get(browser, f"{base}/annotate/")
        assert status == 200  # (--no-loop: the EditWorld dataset comes with the loop)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            assert demo.wait(timeout=30) == 0
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
    assert _get(opener, f"{base}/healthz")[0] is None  # web server gone too
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
