"""PostgreSQL stopped and started again while annotators work (issue 9): requests meanwhile fail
cleanly (503 with Retry-After, never a 500 or a traceback), the app recovers by itself, and every
ranking acknowledged with 2xx is in the database.

It runs its own PostgreSQL cluster (initdb as the `postgres` user, a free port, fsync off) and
its own gunicorn, so the shared test server is never touched."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from annotation.synthetic import write_bundle
from tests.brokers import REPO, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
BIN = Path(sys.executable).parent
ANNOTATORS = 6


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL program: on the PATH, or where Debian's packages put it."""
    packaged = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return shutil.which(name) or (packaged[-1] if packaged else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A throwaway PostgreSQL cluster owned by the `postgres` user."""

    def __init__(self, root: Path):
        self.data, self.log, self.port = root / "pgdata", root / "server.log", _free_port()
        root.mkdir(parents=True, exist_ok=True)
        os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
        self._as_postgres(_pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres")

    def _as_postgres(self, *args) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        # -l: the server must not inherit our pipes, or reading them would wait for it to exit
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres(_pg_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def cluster():
    if not (_pg_bin("initdb") and _pg_bin("pg_ctl")) or not _has_user("postgres"):
        if os.environ.get("CI"):
            raise AssertionError("CI has PostgreSQL's initdb and pg_ctl and a postgres user")
        pytest.skip("needs PostgreSQL's initdb and pg_ctl and a postgres user")
    # Not under pytest's tmp_path: the postgres user cannot enter root's 0700 folders.
    root = Path(tempfile.mkdtemp(prefix="editloop-pg-"))
    root.chmod(0o755)
    cluster = Cluster(root)
    cluster.start()
    import psycopg

    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE editloop")
    yield cluster
    with_suppressed(cluster.stop)
    shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def with_suppressed(action) -> None:
    try:
        action()
    except subprocess.CalledProcessError:
        pass  # already stopped


def _manage(env, *args) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def site(cluster, tmp_path):
    """gunicorn on the private cluster with one dataset and ANNOTATORS annotators' tokens."""
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(DATABASE_URL=cluster.url("editloop"), EDITLOOP_VAR_DIR=str(tmp_path / "var"),
               DEBUG="0", SECRET_KEY="test-only-" + "k" * 50, SECURE_COOKIES="0",
               ALLOWED_HOSTS="127.0.0.1")  # fmt: skip
    _manage(env, "migrate")
    bundle = write_bundle(tmp_path / "bundle", groups=200, candidates=3, size=64)
    _manage(env, "import_groups", str(bundle), "--dataset", "ds", "--overlap", "3")
    tokens = []
    for i in range(ANNOTATORS):
        out = _manage(env, "adduser", f"a{i}", "--role", "annotator", "--token")
        tokens.append(out.strip().splitlines()[-1])
    _manage(env, "dataset_annotators", "ds", "--add", *[f"a{i}" for i in range(ANNOTATORS)])
    port = _free_port()
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "4", "--graceful-timeout", "2"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "database" not in (_down(base) or ["database"]), 60, "gunicorn")
        yield base, tokens, cluster
    finally:  # never leave gunicorn running, whatever failed
        web.terminate()
        web.wait(timeout=30)
    log = web.stderr.read().decode(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def _down(base: str) -> list[str] | None:
    """What /healthz says is down (no worker or broker runs here, so those always are); None
    when gunicorn does not answer."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            return json.loads(response.read())["down"]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())["down"]
    except OSError:
        return None


def _call(base, token, path, body=None):
    """(status, JSON or None, headers); status 0 when the connection itself failed."""
    request = urllib.request.Request(
        base + path, data=json.dumps(body or {}).encode(), method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, None, dict(exc.headers)
    except OSError:
        return 0, None, {}


class Annotator(threading.Thread):
    """Ranks groups like the page does: a failed submit is retried with the same submission id
    until it is answered; a 2xx is an acknowledgement."""

    def __init__(self, base, token, dataset_id, stop):
        super().__init__(daemon=True)
        self.base, self.token, self.dataset_id, self.stop = base, token, dataset_id, stop
        self.statuses: list[int] = []
        self.acknowledged: list[str] = []
        self.retry_after_missing = 0

    def _post(self, path, body=None):
        status, payload, headers = _call(self.base, self.token, path, body)
        self.statuses.append(status)
        if status == 503 and "Retry-After" not in headers:
            self.retry_after_missing += 1
        return status, payload

    def run(self):
        while not self.stop.is_set():
            status, payload = self._post(f"/api/datasets/{self.dataset_id}/next/")
            if status == 204:
                return
            if status != 200:
                time.sleep(0.1)
                continue
            group = payload["group"]
            ids = [c["id"] for c in group["candidates"]]
            body = {"submission_id": str(uuid.uuid4()), "seconds_spent": 1.0,
                    "tiers": {d: [ids] for d in ("prompt_following", "consistency", "overall")}}  # fmt: skip
            while True:
                status, _ = self._post(f"/api/groups/{group['id']}/rankings/", body)
                if status in (200, 201):
                    self.acknowledged.append(body["submission_id"])
                    break
                if status not in (0, 503):  # answered: a 409 or 400 would be a bug below
                    break
                time.sleep(0.1)
            time.sleep(0.05)


def test_a_database_restart_under_load_fails_cleanly_and_loses_nothing(site):
    base, tokens, cluster = site
    request = urllib.request.Request(base + "/api/datasets/",
                                     headers={"Authorization": f"Token {tokens[0]}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        [dataset] = json.loads(response.read())
    stop = threading.Event()
    annotators = [Annotator(base, t, dataset["id"], stop) for t in tokens]
    for a in annotators:
        a.start()
    wait_for(lambda: sum(len(a.acknowledged) for a in annotators) >= 10, 60, "rankings")

    cluster.stop()  # down for a few seconds, as during a restart or a failover
    wait_for(lambda: "database" in (_down(base) or []), 30, "healthz to say the database is down")
    wait_for(lambda: any(503 in a.statuses[-3:] for a in annotators), 30, "503s under load")
    time.sleep(2)
    cluster.start()
    before = sum(len(a.acknowledged) for a in annotators)
    wait_for(lambda: sum(len(a.acknowledged) for a in annotators) >= before + 10, 60,
             "rankings after the restart")  # fmt: skip
    stop.set()
    for a in annotators:
        a.join(timeout=30)

    statuses = [s for a in annotators for s in a.statuses]
    assert set(statuses) <= {0, 200, 201, 204, 503}, sorted(set(statuses))
    assert statuses.count(503) > 0 and 500 not in statuses
    assert sum(a.retry_after_missing for a in annotators) == 0
    acknowledged = {sid for a in annotators for sid in a.acknowledged}
    import psycopg

    with psycopg.connect(cluster.url("editloop")) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT submission_id FROM annotation_ranking")}
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT annotator_id, group_id FROM annotation_ranking"
            " WHERE NOT repeat GROUP BY 1, 2 HAVING count(*) > 1) d"
        ).fetchone()[0]
    assert acknowledged <= stored, len(acknowledged - stored)
    assert duplicates == 0
