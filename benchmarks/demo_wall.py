"""Wall time and memory of `manage.py demo` from nothing to a finished RL run.

Runs the demo as a user would (`manage.py demo`: web, worker, beat and the one-shot loop) on the
embedded defaults in a fresh var folder (so every cached build is built), and watches it: the
loop's step lines (stdout), the RL job's status (the demo's SQLite file) and the memory of the
whole process tree, sampled every half second. Stops the demo when the RL run has ended and
prints one JSON line:

    .venv/bin/python benchmarks/demo_wall.py [--var-dir DIR] [--timeout 1200]

`seconds_to_rl_done` is the figure the issue sets ("about 5 minutes on this 2-core machine");
`peak_tree_rss_mib` the largest sum of resident memory of all demo processes at one time
(shared pages counted in each process, so an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def rl_status(db: Path) -> str | None:
    """Status of the demo's RL job, None before it exists."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT status FROM jobs_job WHERE kind = 'rltraining.train' ORDER BY id LIMIT 1"
            ).fetchone()
    except sqlite3.Error:  # not migrated yet, or locked for a moment
        return None
    return row[0] if row else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", type=Path, help="default: a new temporary folder")
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    var_dir = args.var_dir or Path(tempfile.mkdtemp(prefix="editloop-demo-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["EDITLOOP_VAR_DIR"] = str(var_dir)
    port = free_port()
    started = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    steps: list[dict] = []
    summary: list[str] = []  # the loop's closing table, after its "loop finished" step

    def read_steps() -> None:  # the loop's step lines, stamped when they arrive
        for line in demo.stdout:
            if line.startswith("{"):
                steps.append({**json.loads(line), "at": round(time.monotonic() - started, 1)})
            elif (
                steps
                and steps[-1].get("step") == "loop finished"
                and line.strip()
                and not (summary and summary[-1].startswith("RL ("))
            ):  # the table, up to its last line (RL's), not the servers' own output
                summary.append(line.rstrip())

    threading.Thread(target=read_steps, daemon=True).start()
    root = psutil.Process(demo.pid)
    peak, status, rl_done = 0, None, None
    try:
        while time.monotonic() - started < args.timeout and demo.poll() is None:
            peak = max(peak, tree_rss(root))
            status = rl_status(var_dir / "editloop.sqlite3")
            if status in ("succeeded", "failed", "cancelled") and rl_done is None:
                rl_done = time.monotonic() - started
            # the loop prints its table after the RL run: wait for its last line, briefly
            if rl_done is not None and (
                (summary and summary[-1].startswith("RL ("))
                or time.monotonic() - started > rl_done + 60
            ):
                break
            time.sleep(0.5)
        elapsed = rl_done if rl_done is not None else time.monotonic() - started
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # the demo stops its children
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
    print(json.dumps({
        "rl_status": status,
        "seconds_to_rl_done": round(elapsed, 1),
        "peak_tree_rss_mib": round(peak / 2**20),
        "cpus": os.cpu_count(),
        "var_dir": str(var_dir),
        "steps": steps,
        "summary": summary,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
