"""The leaderboard page with 50 measured runs (plus the paper's reported rows).

    .venv/bin/python benchmarks/leaderboard_page.py [--runs 50]

Works in a fresh database `editloop_leaderboard_bench` (PostgreSQL, from
DATABASE_URL) or a temp SQLite file. Each run gets a real metric (the paper's,
with 1,000-resample intervals) over 3,072 synthetic pairs. Prints JSON: the
page's server time (Django test client, warm) per request and its size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import REPO, fresh_database_url  # benchmarks/harness.py

sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="editloop-leaderboard-"))
    os.environ.update(
        EDITLOOP_VAR_DIR=str(tmp), DEBUG="0", SECRET_KEY="benchmark-only-" + "x" * 40,
        SECURE_COOKIES="0", DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=fresh_database_url(os.environ.get("DATABASE_URL"), "editloop_leaderboard_bench", tmp),
    )  # fmt: skip
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import Role
    from accounts.services import user_create_or_update
    from benchmark.ml.metric import DIMENSIONS, TASK_GROUPS, Pairs, evaluate
    from benchmark.models import BenchmarkDataset, BenchmarkRun
    from jobs.models import Job

    call_command("migrate", verbosity=0)
    dataset = BenchmarkDataset.objects.create(name="bench", layout="parquet", source_path="-")
    tasks = [t for members in TASK_GROUPS.values() for t in members]
    rng = np.random.default_rng(0)
    n = 3072
    for i in range(args.runs):
        skill = rng.uniform(0.4, 0.8)
        human = rng.normal(size=n)
        pairs = Pairs(
            dimension=rng.integers(0, len(DIMENSIONS), n),
            task_type=rng.integers(0, len(tasks), n),
            task_names=tuple(tasks),
            score0=human + rng.normal(scale=1 - skill, size=n) + 0.5,
            score1=human + rng.normal(scale=1 - skill, size=n),
        )
        job = Job.objects.create(
            kind="benchmark.run", queue="default", config={}, status="succeeded"
        )
        BenchmarkRun.objects.create(
            job=job, dataset=dataset, label=f"scorer-{i}", scorer={"kind": "random", "seed": i},
            scorer_key=f"{i:064d}", metric=evaluate(pairs),
        )  # fmt: skip
    researcher, _ = user_create_or_update(username="r", role=Role.RESEARCHER)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(researcher)
    timings, size = [], 0
    for _ in range(11):
        t0 = time.perf_counter()
        response = client.get("/benchmark/")
        timings.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
        size = len(response.content)
    warm = sorted(timings[1:])
    print(json.dumps({
        "database": django.db.connection.vendor,
        "runs": args.runs,
        "first_ms": round(timings[0], 1),
        "warm_ms_median": round(warm[len(warm) // 2], 1),
        "warm_ms_max": round(warm[-1], 1),
        "page_kib": round(size / 1024, 1),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
