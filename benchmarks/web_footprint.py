"""Web process footprint: RSS of a gunicorn worker after start and after traffic,
and request latency of /login/ and /healthz. Prints one JSON object.

    .venv/bin/python benchmarks/web_footprint.py [--requests 200]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def timed_get(url: str) -> float:
    start = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=10).read()
    except urllib.error.HTTPError as err:  # /healthz is 503 without a worker; still a full answer
        err.read()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    var = tempfile.mkdtemp(prefix="editloop-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["EDITLOOP_VAR_DIR"] = var
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gunicorn = Path(sys.executable).parent / "gunicorn"
    master = subprocess.Popen(
        [str(gunicorn), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"],
        cwd=REPO, env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                timed_get(f"{base}/login/")
                break
            except OSError:
                time.sleep(0.1)
        worker = children(master.pid)[0]
        after_start = rss_mib(worker)
        latency = {"login": [], "healthz": []}
        for _ in range(args.requests):
            latency["login"].append(timed_get(f"{base}/login/"))
            latency["healthz"].append(timed_get(f"{base}/healthz"))
        result = {
            "worker_rss_mib_after_start": round(after_start, 1),
            "worker_rss_mib_after_requests": round(rss_mib(worker), 1),
            "requests_per_path": args.requests,
            **{
                f"{name}_ms_{q}": round(v, 2)
                for name, values in latency.items()
                for q, v in (
                    ("p50", statistics.median(values)),
                    ("p99", statistics.quantiles(values, n=100)[98]),
                )
            },
        }
        print(json.dumps(result))
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=20)


if __name__ == "__main__":
    main()
