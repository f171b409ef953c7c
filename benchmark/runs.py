"""Benchmark runs: a scorer scores every candidate of a dataset once (through
the score cache), then the paper's metric is computed over the pairs.

A run is a job of the job framework (kinds `benchmark.run` on the default queue
and `benchmark.run_gpu` on the gpu queue, for model scorers). The cache is keyed
by the scorer's full config and the candidate's content, so a run that crashed
resumes where it stopped and a rerun of the same scorer scores nothing again."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from benchmark.ml.metric import evaluate, paired_difference, pairs_from_rows
from benchmark.ml.scorers import Candidate, keyed_by_candidate, make_scorer
from benchmark.models import (
    BenchmarkCandidate,
    BenchmarkDataset,
    BenchmarkPair,
    BenchmarkRun,
    ScoreCache,
)
from config.model_roots import check_spec_folders
from jobs.services import job_enqueue
from media.storage import read_stored
from mlcore.options import check_options, option

GPU_SCORERS = ("editscore",)
SCORE_KEYS = ("prompt_following", "consistency", "perceptual_quality", "overall")
MAX_UNSCORED_KEPT = 500
BATCH = 16


@dataclass
class RunConfig:
    dataset_id: int = option(help="the benchmark dataset", min=1)
    scorer: dict = option(help='the scorer spec, e.g. {"kind": "random", "seed": 0}')
    label: str = option("", help="the leaderboard row's name (default: the scorer)")
    batch_size: int = option(BATCH, help="candidates scored per call", min=1, max=1024)

    def __post_init__(self):
        check_options(self)
        if len(self.label) > 200:
            raise ValueError("label must be a string of at most 200 characters")
        if not isinstance(self.scorer.get("kind"), str):
            raise ValueError(
                'scorer must be an object with a "kind", e.g. {"kind": "random", "seed": 0}'
            )
        if not all(isinstance(k, str) for k in self.scorer):
            raise ValueError("scorer option names must be strings")
        check_spec_folders(self.scorer, "scorer")
        try:
            build_scorer(self.scorer)  # checks kind and options; no network, no weights
        except NotImplementedError as exc:
            raise ValueError(str(exc)) from None


def build_scorer(spec: dict):
    """The scorer of a run: scores files only from BENCHMARK_SCORES_DIR."""
    return make_scorer(spec, scores_dir=Path(settings.BENCHMARK_SCORES_DIR))


def run_enqueue(
    *, dataset: BenchmarkDataset, scorer: dict, label: str = "", user=None
) -> BenchmarkRun:
    """Create the run and its job. Raises InvalidJobConfig with the reason. The scorer's
    cache key and full settings are filled in by the worker when the run starts: computing them
    can read a model's whole folder, which no web request (nor its transaction) should do."""
    kind = "benchmark.run_gpu" if scorer.get("kind") in GPU_SCORERS else "benchmark.run"
    with transaction.atomic():
        job = job_enqueue(
            kind=kind,
            config={"dataset_id": dataset.pk, "scorer": scorer, "label": label},
            created_by=user,
        )
        return BenchmarkRun.objects.create(
            job=job,
            dataset=dataset,
            label=label or spec_label(scorer),
            scorer=scorer,
            scorer_config=build_scorer(scorer).settings(),  # reads no model folder
            created_by=user,
        )


def spec_label(spec: dict) -> str:
    """A run's default name, read by everyone who may see the leaderboard (annotators too):
    the scorer and its options, a folder or file named by its last part only, endpoints left
    out (server paths and addresses are for researchers, who see the spec itself)."""

    def shown(value) -> str | None:
        text = str(value)
        if "://" in text:
            return None
        return "…/" + text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text

    options = ",".join(
        f"{k}={v}" for k, value in spec.items() if k != "kind" and (v := shown(value)) is not None
    )
    label = f"{spec['kind']}:{options}" if options else spec["kind"]
    return label if len(label) <= 200 else label[:199] + "…"


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_benchmark(ctx) -> dict:
    cfg = RunConfig(**ctx.config)
    run = BenchmarkRun.objects.select_related("dataset").get(job_id=ctx.job_id)
    scorer = build_scorer(cfg.scorer)
    key = scorer.cache_key()
    BenchmarkRun.objects.filter(pk=run.pk).update(scorer_key=key, scorer_config=scorer.config())
    candidates = list(
        BenchmarkCandidate.objects.filter(dataset=run.dataset).values_list(
            "key", "instruction", "source", "image", "content_hash"
        )
    )
    first_of: dict[str, tuple] = {}
    for row in candidates:
        # identical content is scored once (unless scores follow ids, as in a file)
        first_of.setdefault(cache_hash(scorer.keyed_by_candidate, row[0], row[4]), row)
    cached: set[str] = set()
    for hashes in _chunks(list(first_of), 5000):
        cached.update(
            ScoreCache.objects.filter(scorer_key=key, content_hash__in=hashes).values_list(
                "content_hash", flat=True
            )
        )
    todo = [h for h in first_of if h not in cached]
    done = 0
    unscored: dict[str, dict] = {}
    for batch in _chunks(todo, cfg.batch_size):
        ctx.heartbeat()  # raises JobCancelled when a researcher cancels
        items = [
            Candidate(k, instruction, read_stored(source), read_stored(image))
            for k, instruction, source, image, _ in (first_of[h] for h in batch)
        ]
        scores = scorer.score(items)
        ScoreCache.objects.bulk_create(
            [
                ScoreCache(scorer_key=key, content_hash=h, scores=s.as_dict())
                for h, s in zip(batch, scores, strict=True)
                if s.error is None
            ],
            ignore_conflicts=True,  # a duplicate delivery of this job scored it already
        )
        for item, s in zip(items, scores, strict=True):
            if s.error is not None and len(unscored) < MAX_UNSCORED_KEPT:
                unscored[item.key] = {"error": s.error, "raw": s.raw[-4:]}
        done += len(batch)
        ctx.progress(0.95 * done / len(todo), f"scored {done} of {len(todo)} candidates")
    metric = run_metric(run.dataset, key, keyed=scorer.keyed_by_candidate)
    BenchmarkRun.objects.filter(pk=run.pk).update(scorer_key=key, metric=metric, unscored=unscored)
    ctx.progress(1.0, "done")
    return {
        "candidates": len(candidates),
        "scored_now": len(todo),
        "from_cache": len(cached),
        "overall": metric["overall"],
        "n_unscored": metric["n_unscored"],
    }


def cache_hash(keyed_by_candidate: bool, key: str, content_hash: str) -> str:
    """What a candidate's cached score is filed under, beside the scorer's key."""
    if not keyed_by_candidate:
        return content_hash
    return hashlib.sha256(f"{content_hash}\0{key}".encode()).hexdigest()


def run_metric(dataset: BenchmarkDataset, scorer_key: str, *, keyed: bool = False) -> dict:
    """The paper's metric for the dataset under the cached scores of one scorer."""
    rows = BenchmarkPair.objects.filter(dataset=dataset).values_list(
        "preferred__key", "other__key", "task_type", "dimension"
    )
    return evaluate(pairs_from_rows(rows, cached_scores(dataset, scorer_key, keyed=keyed)))


def cached_scores(dataset: BenchmarkDataset, scorer_key: str, *, keyed: bool = False) -> dict:
    """candidate key -> {dimension: score} of the dataset under one scorer's cached scores
    (absent dimensions: unscored)."""
    hashes = {
        key: cache_hash(keyed, key, content)
        for key, content in BenchmarkCandidate.objects.filter(dataset=dataset).values_list(
            "key", "content_hash"
        )
    }
    by_hash = {}
    for chunk in _chunks(list(set(hashes.values())), 5000):
        by_hash.update(
            ScoreCache.objects.filter(scorer_key=scorer_key, content_hash__in=chunk).values_list(
                "content_hash", "scores"
            )
        )
    return {k: _dims(by_hash.get(h)) for k, h in hashes.items()}


def paired_comparison(run: BenchmarkRun, against: BenchmarkRun) -> dict:
    """metric.paired_difference of two finished runs on the same dataset: `run`'s headline
    accuracy minus `against`'s, with an interval that resamples the dataset's groups (one
    source image and instruction: pairs of a group share candidates)."""
    if run.dataset_id != against.dataset_id:
        raise ValueError("a paired comparison needs two runs on the same benchmark")
    rows = list(
        BenchmarkPair.objects.filter(dataset_id=run.dataset_id).values_list(
            "preferred__key", "other__key", "task_type", "dimension",
            "preferred__source", "preferred__instruction",
        )
    )  # fmt: skip
    mine, theirs = (
        cached_scores(r.dataset, r.scorer_key, keyed=keyed_by_candidate(r.scorer))
        for r in (run, against)
    )
    return paired_difference([row[:4] for row in rows], mine, theirs, [row[4:] for row in rows])


def _dims(scores: dict | None) -> dict:
    if not scores or scores.get("error"):
        return {}
    return {k: v for k, v in scores.items() if k in SCORE_KEYS and v is not None}
