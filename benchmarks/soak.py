"""Soak: 32 simulated annotators for 10 minutes against gunicorn + PostgreSQL, with a researcher
exporting and benchmark jobs running on a real worker at the same time (loopback only).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/soak.py [--annotators 32] [--seconds 600] [--groups 2000]

Set-up (not timed): a fresh database `editloop_soak` (SQLite without a PostgreSQL URL), the
annotation workload of `annotation_load.py`, and a benchmark from an EditWorld dataset ranked by
simulated annotators over HTTP (`demo.loop`). During the soak: the annotators loop `next` +
`rankings` (think time as in annotation_load), a researcher downloads the full rankings export
every 2 s, and benchmark runs (the `random` scorer, a new seed each, so nothing is cached) are
queued one after another for a `celery worker` on the filesystem broker. Prints one JSON object:
latencies, rankings per second, every 5xx (there must be none), the export and job counts and
the integrity checks read back from the database (nothing lost, nothing duplicated).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from annotation_load import integrity, percentiles, run_level  # benchmarks/annotation_load.py
from harness import REPO, Gunicorn, fresh_database_url

sys.path.insert(0, str(REPO))


def researcher_exports(base_url: str, token: str, dataset_id: int, stop: threading.Event):
    """Download the rankings export until told to stop; (latencies ms, statuses, rows)."""
    latencies, statuses, rows = [], [], 0
    url = f"{base_url}/api/datasets/{dataset_id}/export/?format=rankings"
    while not stop.is_set():
        request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                body = response.read()
                statuses.append(response.status)
                rows = body.count(b"\n")
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
        latencies.append((time.perf_counter() - started) * 1000)
        stop.wait(2.0)
    return latencies, statuses, rows


def benchmark_jobs(bench, stop: threading.Event) -> dict:
    """Queue one benchmark run after another until told to stop; their outcomes."""
    from benchmark.models import BenchmarkRun
    from benchmark.runs import run_enqueue
    from jobs.models import Job

    outcomes, seconds, seed = {}, [], 0
    while not stop.is_set():
        seed += 1
        run = run_enqueue(dataset=bench, scorer={"kind": "random", "seed": seed},
                          label=f"soak-random-{seed}")  # fmt: skip
        started = time.monotonic()
        while True:
            job = Job.objects.get(pk=BenchmarkRun.objects.get(pk=run.pk).job_id)
            if job.is_terminal:
                break
            time.sleep(0.5)
        outcomes[job.status] = outcomes.get(job.status, 0) + 1
        seconds.append(time.monotonic() - started)
    return {"runs": outcomes, "ms_per_run": percentiles([s * 1000 for s in seconds])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--groups", type=int, default=3000)  # enough for 10 minutes of 32
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--think-seconds", type=float, default=2.0)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=4)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="editloop-soak-"))
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}  # filesystem broker
    env.update(
        EDITLOOP_VAR_DIR=str(tmp),
        DATABASE_URL=fresh_database_url(os.environ.get("DATABASE_URL"), "editloop_soak", tmp),
        DEBUG="0", SECRET_KEY="soak-only-" + "x" * 50, SECURE_COOKIES="0", OMP_NUM_THREADS="1",
    )  # fmt: skip
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import Role
    from accounts.services import user_api_token, user_create_or_update
    from annotation.importer import import_groups
    from annotation.models import Dataset
    from annotation.synthetic import write_bundle
    from jobs import demo

    call_command("migrate", verbosity=0)
    bundle = write_bundle(tmp / "bundle", groups=args.groups, candidates=4, size=args.image_size)
    import_groups(bundle, dataset_name="soak", overlap=3)
    dataset = Dataset.objects.get(name="soak")
    tokens = []
    for i in range(args.annotators):
        user, _ = user_create_or_update(username=f"soak{i}", role=Role.ANNOTATOR)
        dataset.annotators.add(user)
        tokens.append(user_api_token(user=user))
    researcher, _ = user_create_or_update(username="soak-researcher", role=Role.RESEARCHER)

    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "config", "worker", "-Q",
         "default,gpu", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with Gunicorn(env, workers=args.web_workers, threads=args.web_threads) as web:
            scale = demo.Scale(groups=60)
            source, source_bundle = demo.import_dataset(scale, name="soak-bench-source")
            demo.rank_over_http(web.base_url, source, source_bundle, scale)
            bench = demo.benchmark_dataset(source, name="soak-bench")

            stop = threading.Event()
            results: dict = {}
            side = [
                threading.Thread(target=lambda: results.update(exports=researcher_exports(
                    web.base_url, user_api_token(user=researcher), dataset.pk, stop))),
                threading.Thread(target=lambda: results.update(jobs=benchmark_jobs(bench, stop))),
            ]  # fmt: skip
            for thread in side:
                thread.start()
            level, accepted = run_level(web.base_url, dataset.pk, dataset.dimension_keys,
                                        tokens, args.seconds, args.think_seconds)  # fmt: skip
            stop.set()
            for thread in side:
                thread.join()
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    export_ms, export_status, export_rows = results["exports"]
    print(json.dumps({
        "database": django.db.connection.vendor,
        "annotators": args.annotators,
        "seconds": level["seconds"],
        "rankings": level["rankings"],
        "rankings_per_second": level["rankings_per_second"],
        "next_ms": level["next_ms"],
        "submit_ms": level["submit_ms"],
        "annotator_http_errors": level["http_errors"],
        "annotator_5xx": level["http_5xx"],
        "annotator_error_samples": level["error_samples"],
        "exports": {"count": len(export_status), "ms": percentiles(export_ms),
                    "non_200": sum(s != 200 for s in export_status), "last_rows": export_rows},
        "benchmark_jobs": results["jobs"],
        "integrity": integrity(dataset, accepted),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
