"""Web process footprint: RSS of a gunicorn worker after start and after traffic,
and request latency of /login/ and /healthz. Prints one JSON object.

    .venv/bin/python benchmarks/web_footprint.py [--requests 200]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from harness import REPO, Gunicorn, proc_kib  # benchmarks/harness.py


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
    with Gunicorn(env, workers=1, threads=4, quiet=True) as web:  # /healthz is 503: no worker
        base = web.base_url
        timed_get(f"{base}/login/")
        worker = web.worker_pids()[0]
        after_start = proc_kib(worker, "VmRSS") / 1024
        latency = {"login": [], "healthz": []}
        for _ in range(args.requests):
            latency["login"].append(timed_get(f"{base}/login/"))
            latency["healthz"].append(timed_get(f"{base}/healthz"))
        result = {
            "worker_rss_mib_after_start": round(after_start, 1),
            "worker_rss_mib_after_requests": round(proc_kib(worker, "VmRSS") / 1024, 1),
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


if __name__ == "__main__":
    main()
