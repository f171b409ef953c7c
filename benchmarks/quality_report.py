"""Agreement and consensus at scale: the full quality report over N rankings.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/quality_report.py [--rankings 100000]

Works in a fresh database `editloop_quality_bench` (PostgreSQL) or a temp SQLite
file. Rankings are bulk-inserted: 3 annotators per group, 4 candidates from 4
editors, 13 task types, random tiers (with ties and an occasional unusable
floor) drawn around a planted editor order so agreement is realistic. Then, in
this process, it times `compute_report` (agreement with 1,000-resample
intervals per dimension overall and per task type, annotator table, consensus
counts under both policies, editor leaderboard with 1,000 resamples), the
dashboard page and the consensus export of strict pairs, and prints JSON with
seconds and the process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import REPO, bulk_groups, fresh_database_url, proc_kib  # benchmarks/harness.py

sys.path.insert(0, str(REPO))

TASK_TYPES = [
    "subject-add", "subject-remove", "subject-replace", "color_alter", "material_alter",
    "style_change", "tone_transfer", "background_change", "extract", "ps_human",
    "text_change", "motion_change", "compose",
]  # fmt: skip
DIMENSIONS = ("prompt_following", "consistency", "overall")


def noisy_tiers(rng: random.Random, ids: list[str], quality: list[float]) -> list[list[str]]:
    """Tiers from noisy scores; scores within 0.3 of each other share a tier."""
    scored = sorted(
        ((q + rng.gauss(0, 0.6), c) for q, c in zip(quality, ids, strict=True)), reverse=True
    )
    tiers = [[scored[0][1]]]
    for (prev, _), (score, cand) in zip(scored, scored[1:], strict=False):
        if prev - score < 0.3:
            tiers[-1].append(cand)
        else:
            tiers.append([cand])
    return tiers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rankings", type=int, default=100_000)
    parser.add_argument("--annotators-per-group", type=int, default=3)
    parser.add_argument("--annotators", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="editloop-quality-"))
    os.environ.update(
        EDITLOOP_VAR_DIR=str(tmp), DEBUG="0", SECRET_KEY="benchmark-only-" + "x" * 40,
        SECURE_COOKIES="0", DATABASE_URL=fresh_database_url(os.environ.get("DATABASE_URL"), "editloop_quality_bench", tmp),
        DJANGO_SETTINGS_MODULE="config.settings",
    )  # fmt: skip
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import Role
    from accounts.services import user_create_or_update
    from annotation.models import Dataset, Ranking
    from annotation.quality import consensus_pairs, report_refresh
    from annotation.stats.codes import ranking_code
    from annotation.stats.consensus import Policy

    call_command("migrate", verbosity=0)
    rng = random.Random(0)
    started = time.perf_counter()
    k = args.annotators_per_group
    dataset = Dataset.objects.create(name="quality", overlap=k)
    n_groups = -(-args.rankings // k)
    groups = bulk_groups(
        dataset, n_groups, task_type=lambda i: TASK_TYPES[i % len(TASK_TYPES)], ranking_count=k
    )
    users = [
        user_create_or_update(username=f"a{i}", role=Role.ANNOTATOR)[0]
        for i in range(args.annotators)
    ]
    researcher, _ = user_create_or_update(username="r", role=Role.RESEARCHER)
    rows = []
    for i in range(args.rankings):
        g = groups[i // k]
        ids = [f"{g.external_id}-{c}" for c in range(4)]
        quality = [c * 0.5 for c in range(4)]  # editor-3 best on average
        tiers = {dim: noisy_tiers(rng, ids, quality) for dim in DIMENSIONS}
        shown = rng.sample(ids, len(ids))
        annotator = users[(i // k * 7 + i % k) % len(users)]
        code = ranking_code(tiers, DIMENSIONS, ids, shown[0])
        rows.append(Ranking(group=g, annotator=annotator, submission_id=uuid.uuid4(), tiers=tiers,
                            unusable={}, seconds_spent=rng.uniform(5, 60), shown_order=shown,
                            code=code))  # fmt: skip
        if len(rows) == 10000:
            Ranking.objects.bulk_create(rows)
            rows = []
    Ranking.objects.bulk_create(rows)
    if django.db.connection.vendor == "postgresql":
        with django.db.connection.cursor() as cursor:  # what autovacuum would do soon
            cursor.execute("ANALYZE")
    setup_seconds = time.perf_counter() - started

    import gc

    del rows, groups
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of the report alone
    rss_before = proc_kib(os.getpid(), "VmRSS")
    t0 = time.perf_counter()
    report = report_refresh(dataset, force=True)
    report_seconds = time.perf_counter() - t0
    rss_peak_report = proc_kib(os.getpid(), "VmHWM")

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(researcher)
    timings = []
    for _ in range(6):
        t0 = time.perf_counter()
        response = client.get(f"/annotate/{dataset.pk}/quality/")
        timings.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.status_code

    t0 = time.perf_counter()
    strict = sum(1 for p in consensus_pairs(dataset, Policy("unanimous")) if p.decision.preferred)
    consensus_seconds = time.perf_counter() - t0
    pf = report.data["agreement"]["prompt_following"]["all"]
    print(json.dumps({
        "database": django.db.connection.vendor,
        "rankings": args.rankings,
        "groups": n_groups,
        "setup_seconds": round(setup_seconds, 1),
        "report_seconds": round(report_seconds, 2),
        "report_seconds_inside": report.data["seconds"],
        "report_timings": report.data["timings"],
        "rss_mib_before_report": round(rss_before / 1024, 1),
        "peak_rss_mib_during_report": round(rss_peak_report / 1024, 1),
        "dashboard_ms": [round(t * 1000, 1) for t in timings],
        "unanimous_strict_pairs": strict,
        "unanimous_consensus_seconds": round(consensus_seconds, 2),
        "prompt_following_agreement": pf["pairwise_agreement"],
        "prompt_following_alpha": pf["krippendorff_alpha"],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
