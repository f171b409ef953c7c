"""Annotation load: import N groups, then K simulated annotators loop `next` +
`rankings` over real HTTP against gunicorn, for a bounded time per level.
Prints one JSON object: import seconds, rankings per second, latency
percentiles, HTTP errors and integrity checks read back from the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/annotation_load.py [--groups 2000] [--annotators 1 8 32] [--seconds 20]

With a PostgreSQL DATABASE_URL it works in a fresh database `editloop_bench` on
that server (dropped and created); without one, in a SQLite file in a temp
folder. The annotator loop is the small `HttpAnnotator` adapter: point another
annotation server at the same workload by writing one with the same methods.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from harness import REPO, Gunicorn, fresh_database_url  # benchmarks/harness.py

sys.path.insert(0, str(REPO))


class HttpAnnotator:
    """One annotator speaking EditLoop's API over a keep-alive connection."""

    def __init__(self, base_url: str, token: str):
        parts = urlsplit(base_url)
        self.address = (parts.hostname, parts.port)
        self.conn = http.client.HTTPConnection(*self.address, timeout=30)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.reconnects = 0

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection, as browsers see
                # too. Both calls are safe to repeat: `next` returns the live lease
                # and a ranking retry carries the same submission_id.
                self.conn.close()
                self.conn = http.client.HTTPConnection(*self.address, timeout=30)
                self.reconnects += 1
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def next(self, dataset_id: int) -> tuple[int, dict | None]:
        return self._call("POST", f"/api/datasets/{dataset_id}/next/")

    def submit(self, group_id: int, body: dict) -> tuple[int, dict | None]:
        return self._call("POST", f"/api/groups/{group_id}/rankings/", body)


def random_tiers(candidate_ids: list[str], dimensions: list[str], rng: random.Random) -> dict:
    tiers = {}
    for dim in dimensions:
        ids = candidate_ids[:]
        rng.shuffle(ids)
        cuts = sorted(rng.sample(range(1, len(ids)), rng.randrange(len(ids))))
        tiers[dim] = [ids[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True)]
    return tiers


def percentiles(values: list[float]) -> dict:
    if len(values) < 2:
        return {"p50": None, "p95": None, "p99": None, "n": len(values)}
    q = statistics.quantiles(values, n=100)
    return {
        "p50": round(statistics.median(values), 2),
        "p95": round(q[94], 2),
        "p99": round(q[98], 2),
        "n": len(values),
    }


def run_level(base_url, dataset_id, dimensions, tokens, seconds, think):
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    next_ms, submit_ms, errors, accepted = [], [], [], []

    def annotator(token, seed):
        client = HttpAnnotator(base_url, token)
        rng = random.Random(seed)
        if think:  # people do not all press "start" in the same millisecond
            time.sleep(rng.uniform(0, think))
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            status, body = client.next(dataset_id)
            t1 = time.perf_counter()
            with lock:
                next_ms.append((t1 - t0) * 1000)
            if status == 204:
                return
            if status != 200:
                with lock:
                    errors.append(("next", status))
                continue
            group = body["group"]
            ids = [c["id"] for c in group["candidates"]]
            sid = str(uuid.uuid4())
            payload = {
                "submission_id": sid,
                "tiers": random_tiers(ids, dimensions, rng),
                "seconds_spent": 1.0,
            }
            t2 = time.perf_counter()
            status, _ = client.submit(group["id"], payload)
            t3 = time.perf_counter()
            with lock:
                submit_ms.append((t3 - t2) * 1000)
                if status == 201:
                    accepted.append(sid)
                else:
                    errors.append(("submit", status))
            if think:  # a person looks at the images before the next group
                time.sleep(rng.uniform(0.5 * think, 1.5 * think))

    started = time.monotonic()
    threads = [threading.Thread(target=annotator, args=(t, i)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {
        "annotators": len(tokens),
        "seconds": round(elapsed, 1),
        "rankings": len(accepted),
        "rankings_per_second": round(len(accepted) / elapsed, 1),
        "next_ms": percentiles(next_ms),
        "submit_ms": percentiles(submit_ms),
        "http_errors": len(errors),
        "http_5xx": sum(1 for _, status in errors if status >= 500),
        "error_samples": errors[:5],
    }, accepted


def integrity(dataset, accepted: list[str]) -> dict:
    """Read back from the database. Repeats (a group served again to measure an annotator's
    consistency, stored with repeat=True) are a second ranking of one (annotator, group) by
    design and never a vote, so the checks count votes only."""
    from django.db.models import Count, F, Q

    from annotation.models import Group, Ranking

    over_k = (
        Group.objects.filter(dataset=dataset, is_gold=False)  # gold goes to everyone
        .annotate(n=Count("rankings", filter=Q(rankings__surplus=False, rankings__repeat=False)))
        .filter(n__gt=dataset.overlap + F("extra_overlap"))  # extra: disagreement asked more
        .count()
    )
    duplicates = (
        Ranking.objects.filter(group__dataset=dataset, repeat=False)
        .values("annotator", "group")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )
    stored = set(
        str(s)
        for s in Ranking.objects.filter(submission_id__in=accepted).values_list(
            "submission_id", flat=True
        )
    )
    counter_drift = (
        Group.objects.filter(dataset=dataset)
        .annotate(n=Count("rankings", filter=Q(rankings__surplus=False, rankings__repeat=False)))
        .exclude(ranking_count=F("n"))
        .count()
    )
    return {
        "groups_over_k": over_k,
        "duplicate_annotator_group": duplicates,
        "acknowledged_missing": len(set(accepted) - stored),
        "ranking_count_drift": counter_drift,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--annotators", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument(
        "--think-seconds", type=float, default=2.0,
        help="mean pause after each submit (people take 10-60 s per group); 0 = closed loop",
    )  # fmt: skip
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="editloop-load-"))
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(
        EDITLOOP_VAR_DIR=str(tmp),
        DATABASE_URL=fresh_database_url(os.environ.get("DATABASE_URL"), "editloop_bench", tmp),
    )
    env["DEBUG"] = "0"
    env["SECRET_KEY"] = "benchmark-only-" + "x" * 40
    env["SECURE_COOKIES"] = "0"
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import Role
    from accounts.services import user_api_token, user_create_or_update
    from annotation.importer import import_groups
    from annotation.models import Assignment, Dataset, Group, Ranking
    from annotation.synthetic import write_bundle

    call_command("migrate", verbosity=0)
    bundle = (
        Path(tempfile.gettempdir())
        / f"editloop-bundle-{args.groups}x{args.candidates}-{args.image_size}"
    )
    if not (bundle / "manifest.jsonl").exists():
        write_bundle(bundle, groups=args.groups, candidates=args.candidates, size=args.image_size)
    summary = import_groups(bundle, dataset_name="load", overlap=args.overlap)
    # The import leaves hundreds of MB of image writes in the page cache; their
    # writeback would stall PostgreSQL's WAL flushes during the first level.
    sync_started = time.perf_counter()
    os.sync()
    sync_seconds = time.perf_counter() - sync_started
    dataset = Dataset.objects.get(name="load")
    tokens = []
    for i in range(max(args.annotators)):
        user, _ = user_create_or_update(username=f"load{i}", role=Role.ANNOTATOR)
        dataset.annotators.add(user)
        tokens.append(user_api_token(user=user))

    access_log = os.environ.get("LOAD_ACCESS_LOG")  # optional: per-request server times
    extra = (
        ("--access-logfile", access_log, "--access-logformat", "%(t)s %(U)s %(s)s %(M)s")
        if access_log
        else ()
    )
    with Gunicorn(env, workers=args.web_workers, threads=args.web_threads, extra=extra) as web:
        base = web.base_url

        # Every gunicorn thread imports and opens its database connection before timing.
        def warm(token):
            client = HttpAnnotator(base, token)
            for _ in range(10):
                client._call("GET", "/api/datasets/")
                client.conn.close()

        warmers = [
            threading.Thread(target=warm, args=(t,))
            for t in tokens[: args.web_workers * args.web_threads]
        ]
        for t in warmers:
            t.start()
        for t in warmers:
            t.join()
        time.sleep(1)
        levels = []
        for k in args.annotators:
            Ranking.objects.filter(group__dataset=dataset).delete()
            Assignment.objects.filter(group__dataset=dataset).delete()
            Group.objects.filter(dataset=dataset).update(ranking_count=0)
            level, accepted = run_level(
                base,
                dataset.pk,
                dataset.dimension_keys,
                tokens[:k],
                args.seconds,
                args.think_seconds,
            )
            level["integrity"] = integrity(dataset, accepted)
            levels.append(level)
        print(json.dumps({
            "database": django.db.connection.vendor,
            "groups": args.groups,
            "candidates_per_group": args.candidates,
            "image_size": args.image_size,
            "import_seconds": summary.seconds,
            "sync_after_import_seconds": round(sync_seconds, 1),
            "web": f"gunicorn {args.web_workers} workers x {args.web_threads} threads",
            "think_seconds": args.think_seconds,
            "levels": levels,
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
