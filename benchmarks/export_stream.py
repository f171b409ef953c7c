"""Export speed and memory: N rankings streamed as JSONL over real HTTP.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/export_stream.py [--rankings 100000]

Works in a fresh database `editloop_export_bench` (PostgreSQL) or a temp SQLite
file. Rows are bulk-inserted (no images: export reads no image data). Prints
JSON: seconds and lines for `rankings` and `pairs`, and the gunicorn worker's
RSS before and at its peak (VmHWM), which stays flat if the export streams.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from harness import (  # benchmarks/harness.py
    REPO,
    Gunicorn,
    bulk_groups,
    fresh_database_url,
    proc_kib,
)

sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rankings", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="editloop-export-"))
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(
        EDITLOOP_VAR_DIR=str(tmp), DEBUG="0", SECRET_KEY="benchmark-only-" + "x" * 40,
        SECURE_COOKIES="0",
        DATABASE_URL=fresh_database_url(os.environ.get("DATABASE_URL"), "editloop_export_bench", tmp),
    )  # fmt: skip
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import Role
    from accounts.services import user_api_token, user_create_or_update
    from annotation.models import Dataset, Ranking

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    dataset = Dataset.objects.create(name="export", overlap=args.annotators)
    n_groups = -(-args.rankings // args.annotators)
    groups = bulk_groups(dataset, n_groups)
    users = [
        user_create_or_update(username=f"a{i}", role=Role.ANNOTATOR)[0]
        for i in range(args.annotators)
    ]
    rows = []
    for i in range(args.rankings):
        g = groups[i // args.annotators]
        ids = [f"{g.external_id}-{c}" for c in range(4)]
        tiers = {
            "prompt_following": [ids[:1], ids[1:3], ids[3:]],
            "consistency": [ids[:2], ids[2:]],
            "overall": [ids],
        }
        rows.append(Ranking(group=g, annotator=users[i % args.annotators], submission_id=uuid.uuid4(),
                            tiers=tiers, unusable={}, seconds_spent=10.0))  # fmt: skip
        if len(rows) == 10000:
            Ranking.objects.bulk_create(rows)
            rows = []
    Ranking.objects.bulk_create(rows)
    setup_seconds = time.perf_counter() - started
    researcher, _ = user_create_or_update(username="r", role=Role.RESEARCHER)
    token = user_api_token(user=researcher)

    with Gunicorn(env, workers=1, threads=2, extra=("--timeout", "300")) as web:
        headers = {"Authorization": f"Token {token}"}
        urllib.request.urlopen(
            urllib.request.Request(f"{web.base_url}/api/me/", headers=headers)
        ).read()
        worker = web.worker_pids()[0]
        rss_before = proc_kib(worker, "VmRSS")
        results = {}
        for fmt in ("rankings", "pairs"):
            t0 = time.perf_counter()
            request = urllib.request.Request(
                f"{web.base_url}/api/datasets/{dataset.pk}/export/?format={fmt}",
                headers=headers,
            )
            lines = 0
            with urllib.request.urlopen(request, timeout=300) as response:
                first_byte = time.perf_counter() - t0
                for _line in response:
                    lines += 1
            results[fmt] = {
                "lines": lines,
                "seconds": round(time.perf_counter() - t0, 2),
                "first_byte_seconds": round(first_byte, 3),
            }
        print(json.dumps({
            "database": django.db.connection.vendor,
            "rankings": args.rankings,
            "setup_seconds": round(setup_seconds, 1),
            "export": results,
            "worker_rss_mib_before": round(rss_before / 1024, 1),
            "worker_peak_rss_mib": round(proc_kib(worker, "VmHWM") / 1024, 1),
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
