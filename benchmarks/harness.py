"""What the benchmark scripts share: a fresh database, a gunicorn on a free
loopback port, and reading a process's memory from /proc."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent


def fresh_database_url(url: str | None, name: str, tmp: Path) -> str:
    """A new, empty database `name` on the PostgreSQL server of `url` (dropped and
    created), or a SQLite file under `tmp` when `url` is not PostgreSQL."""
    if not url or not url.startswith("postgres"):
        return f"sqlite:///{tmp / (name + '.sqlite3')}"
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(parts._replace(path=f"/{name}"))


def proc_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB, e.g. VmRSS or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Gunicorn:
    """`with Gunicorn(env, workers=4, threads=4) as web:` serves config.wsgi on
    127.0.0.1 at web.base_url until the block ends."""

    def __init__(
        self,
        env: dict,
        *,
        workers: int,
        threads: int,
        extra: tuple[str, ...] = (),
        quiet: bool = False,
    ):
        self.quiet = quiet  # drop the server's log (e.g. every expected 503)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.command = [
            str(Path(sys.executable).parent / "gunicorn"), "config.wsgi",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(threads),
            "--log-level", "warning", "--worker-tmp-dir", "/dev/shm", *extra,
        ]  # fmt: skip
        self.env = env

    def __enter__(self) -> Gunicorn:
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, stderr=subprocess.DEVNULL if self.quiet else None
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("gunicorn did not start listening")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def bulk_groups(
    dataset,
    n_groups: int,
    *,
    candidates: int = 4,
    task_type=lambda i: "color_alter",
    ranking_count: int = 0,
):
    """n_groups groups of `candidates` candidates (editor-0, editor-1, ...) written in bulk,
    without images: for benchmarks that read rankings, not pixels. Call after django.setup()."""
    from annotation.models import Candidate, Group

    groups = Group.objects.bulk_create(
        [
            Group(dataset=dataset, external_id=f"g{i}", instruction=f"instruction {i}",
                  task_type=task_type(i), source=f"images/{i}.png", source_thumb=f"thumbs/{i}.jpg",
                  ranking_count=ranking_count)
            for i in range(n_groups)
        ],
        batch_size=5000,
    )  # fmt: skip
    Candidate.objects.bulk_create(
        [Candidate(group=g, external_id=f"{g.external_id}-{c}", editor=f"editor-{c}", image="x", thumb="x")
         for g in groups for c in range(candidates)],
        batch_size=10000,
    )  # fmt: skip
    return groups
