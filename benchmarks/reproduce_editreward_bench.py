"""Reproduce the EditScore paper's EditReward-Bench accuracies with a local model.

    .venv/bin/python benchmarks/reproduce_editreward_bench.py --bench DIR --base DIR
        [--adapter DIR] [--name EditScore-7B] [--k 1 4] [--limit N] [--device auto|cpu|cuda]
        [--dtype bfloat16] [--batch-size 16] [--set KEY=VALUE ...] [--threads N] [--out FILE]

``--bench`` is the Hugging Face dataset EditScore/EditReward-Bench as downloaded (parquet files
with key, instruction, input_image, output_images, task_type, dimension; any layout
``benchmark.ml.bench_data.detect`` accepts). It is checked first (``bench_data.validate``: every
row, every image), so a broken folder fails at once with a message naming it, not hours into a
run; with ``--limit N`` only the first N pairs are read and checked.

For each K of ``--k`` (default 1 and 4: one pass, and the Avg@4 self-ensemble) the script
builds the scorer ``editscore:base=DIR,adapter=DIR,k=K,...`` with
``benchmark.ml.scorers.make_scorer`` (extra scorer options with ``--set``, e.g.
``--set decoding=greedy --set max_new_tokens=256``), scores every candidate of the bench once
(streamed, ``--batch-size`` candidates at a time, its score reused in all its pairs) and
computes the paper's metric with ``benchmark.ml.metric`` (a tie is wrong, an unscored candidate
loses its pairs; task accuracy = mean over its pairs, group = mean of its tasks, headline =
unweighted mean over the 13 tasks). The scorer is the authors' procedure by default (their
prompts, sampling on every pass with seed 42 + pass, their image sizing) and this script adds
``parse_policy=reference`` (the package's fallback on unreadable answers, under which the
published figures were made); ``--set parse_policy=unscored`` counts such a candidate wrong
instead. ``--batch-size 1`` reproduces the package's sampled answers token for token (a batch
shares one random stream); larger batches are faster and statistically the same.

The measured headline, groups and tasks are printed beside the published row ``--name`` of
``benchmark/data/published_editreward_bench.json`` (K=1) and its "<name> Avg@K" row (K>1, when
the paper has one; else the plain row, and the heading says so), with delta = measured -
published. The paper publishes headline and group figures only: task rows have no published
value. Then one JSON object (also written to ``--out``): per K the scorer config, the comparison
table, seconds, unscored candidates (a few of their errors) and the full metric (pair, tie and
unscored counts, tie-as-half accuracy, bootstrap intervals).

Exit status 2, with the reason on stderr, when the bench folder is missing or malformed, the
published row is unknown or a scorer option is refused.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from pathlib import Path

from harness import REPO  # benchmarks/harness.py

sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: a hub call fails at once

from benchmark.ml import bench_data  # noqa: E402
from benchmark.ml.metric import DIMENSIONS, TASK_GROUPS, evaluate, pairs_from_rows  # noqa: E402
from benchmark.ml.scorers import MAX_K, Candidate, make_scorer, parse_spec  # noqa: E402

PUBLISHED = REPO / "benchmark" / "data" / "published_editreward_bench.json"
HEADLINE = "Overall"  # the published file's name for the headline row
# Scorer options this script sets unless --set gives them: how the published figures were made.
REFERENCE_DEFAULTS = {"parse_policy": "reference"}
# Options with their own flag (or computed here): not through --set.
OWN_FLAGS = {"kind": "", "base": "--base", "adapter": "--adapter", "k": "--k",
             "device": "--device", "dtype": "--dtype", "batch_size": "--batch-size"}  # fmt: skip
SHORT = {"prompt_following": "PF", "consistency": "C", "overall": "O"}
UNSCORED_KEPT = 5  # unscored candidates whose error is kept in the result, per K
PROGRESS_EVERY_S = 30.0


class Refused(Exception):
    """A problem with the inputs: printed to stderr, exit status 2."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True, help="EditReward-Bench folder (parquet)")
    parser.add_argument("--base", required=True, help="Qwen2.5-VL / Qwen3-VL checkpoint folder")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder (optional)")
    parser.add_argument("--name", default=None,
                        help='published row to compare with, e.g. "EditScore-7B"')  # fmt: skip
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4], help="Avg@K passes")
    parser.add_argument("--limit", type=int, default=None, help="score the first N pairs only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: the scorer's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--set", dest="options", action="append", default=[],
                        metavar="KEY=VALUE", help="extra scorer option (repeatable)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    for k in args.k:
        if not 1 <= k <= MAX_K:
            parser.error(f"--k values must be from 1 to {MAX_K}, got {k}")
    args.k = sorted(set(args.k))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def extra_options(items: list[str]) -> dict:
    """--set KEY=VALUE items as scorer options, typed as in a scorer spec (numbers, booleans)."""
    options: dict = {}
    for item in items:
        if "=" not in item:
            raise Refused(f"--set {item!r}: expected KEY=VALUE")
        try:
            spec = parse_spec(f"editscore:{item}")
        except ValueError as exc:
            raise Refused(f"--set {item!r}: {exc}") from None
        spec.pop("kind")
        if len(spec) != 1:
            raise Refused(f"--set {item!r}: one KEY=VALUE per --set (a value holds no ',')")
        ((name, value),) = spec.items()
        if name in OWN_FLAGS:
            raise Refused(f"--set {name}=...: use {OWN_FLAGS[name] or 'the script'} instead")
        if name in options:
            raise Refused(f"--set {name} given twice")
        options[name] = value
    return options


# ---------------------------------------------------------------- published figures


def published_rows(name: str | None, ks: list[int]) -> tuple[dict, dict[int, str | None]]:
    """The published results and, per K, the name of the row to compare with (None: none)."""
    try:
        results = json.loads(PUBLISHED.read_text(encoding="utf-8"))["results"]
    except (OSError, ValueError, KeyError) as exc:
        raise Refused(f"{PUBLISHED}: unreadable published figures ({exc})") from None
    if name is None:
        return results, dict.fromkeys(ks)
    base = name.removesuffix(" Avg@4").strip()
    if base not in results and name not in results:
        known = ", ".join(n for n in results if "Avg@" not in n)
        raise Refused(f"--name {name!r} is not a published row of {PUBLISHED.name}; known: {known}")
    rows: dict[int, str | None] = {}
    for k in ks:
        ensemble = f"{base} Avg@{k}"
        rows[k] = ensemble if k > 1 and ensemble in results else base if base in results else None
    return results, rows


# ---------------------------------------------------------------- the bench


def refuse_bench(bench: Path, source, invalid: bench_data.DatasetInvalid) -> Refused:
    files = ""
    if source is not None:
        shown = [str(f) for f in source.files[:5]]
        more = len(source.files) - len(shown)
        files = f" ({', '.join(shown)}{f' and {more} more' if more > 0 else ''})"
    problems = "\n  ".join(invalid.summary(20).splitlines())
    return Refused(f"EditReward-Bench folder {bench}{files} is not usable:\n  {problems}")


def open_bench(bench: Path, limit: int | None):
    """(source, rows): the bench checked, and its first `limit` pairs (all without a limit) as
    (key0, key1, task_type, dimension). Raises Refused naming the folder and its files."""
    source = None
    try:
        source = bench_data.detect(bench)
        if limit is None:
            bench_data.validate(bench)  # every problem at once, before hours of scoring
        rows = []
        for row in bench_data.read_rows(source, check_images=limit is not None):
            rows.append((row.key[0], row.key[1], row.task_type, row.dimension))
            if limit is not None and len(rows) >= limit:
                break
        if not rows:
            raise bench_data.DatasetInvalid([f"{source.files[0]}: no rows"])
    except bench_data.DatasetInvalid as invalid:
        raise refuse_bench(bench, source, invalid) from None
    return source, rows


def candidate_batches(source, limit: int | None, size: int):
    """Every candidate of the first `limit` rows once (first appearance), `size` at a time.
    Streamed: only one batch of images is held."""
    seen: set[str] = set()
    batch: list[Candidate] = []
    for n, row in enumerate(bench_data.read_rows(source, check_images=False), 1):
        for key, image in zip(row.key, row.output_images, strict=True):
            if key in seen:
                continue
            seen.add(key)
            batch.append(Candidate(key, row.instruction, row.input_image, image))
            if len(batch) >= size:
                yield batch
                batch = []
        if limit is not None and n >= limit:
            break
    if batch:
        yield batch


# ---------------------------------------------------------------- scoring


def scorer_spec(args, k: int, extra: dict) -> dict:
    spec = {"kind": "editscore", "base": args.base, "k": k, "device": args.device,
            "batch_size": args.batch_size}  # fmt: skip
    if args.adapter:
        spec["adapter"] = args.adapter
    if args.dtype:
        spec["dtype"] = args.dtype
    return {**spec, **extra}


def build_scorer(args, k: int, extra: dict) -> tuple[object, dict]:
    """(scorer, spec): the scorer as the published figures were made, but what ``--set`` says
    otherwise."""
    spec = scorer_spec(args, k, {**REFERENCE_DEFAULTS, **extra})
    try:
        return make_scorer(spec), spec
    except (ValueError, NotImplementedError, ImportError) as exc:
        raise Refused(f"scorer {spec_text(spec)}: {exc}") from None


def spec_text(spec: dict) -> str:
    options = ",".join(f"{n}={v}" for n, v in spec.items() if n != "kind" and v is not None)
    return f"{spec['kind']}:{options}"


def score_all(scorer, source, limit: int | None, batch_size: int, k: int) -> tuple[dict, dict]:
    """(scores, stats): candidate key -> {dimension: score} (scored candidates only)."""
    scores: dict[str, dict] = {}
    unscored: dict[str, str] = {}
    done = 0
    start = last = time.perf_counter()
    for batch in candidate_batches(source, limit, batch_size):
        for candidate, score in zip(batch, scorer.score(batch), strict=True):
            if score.error is None:
                scores[candidate.key] = {d: getattr(score, d) for d in DIMENSIONS}
            else:
                unscored[candidate.key] = score.error
        done += len(batch)
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY_S:
            log(f"K={k}: {done} candidates scored in {now - start:.0f} s")
            last = now
    seconds = time.perf_counter() - start
    log(f"K={k}: {done} candidates in {seconds:.1f} s, {len(unscored)} unscored")
    stats = {
        "candidates": done,
        "unscored_candidates": len(unscored),
        "unscored_examples": [
            {"key": key, "error": error[:300]}
            for key, error in list(unscored.items())[:UNSCORED_KEPT]
        ],
        "seconds": round(seconds, 2),
        "candidates_per_s": round(done / seconds, 3) if seconds > 0 else None,
    }
    return scores, stats


def release(scorer) -> None:
    """Drop the scorer's model before the next K loads its own."""
    del scorer
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- comparison


def _cell(measured: float | None, published: float | None) -> dict:
    delta = None
    if measured is not None and published is not None:
        delta = measured - published
    return {"measured": measured, "published": published, "delta": delta}


def comparison(metric: dict, published: dict | None) -> dict:
    """Headline, groups and tasks: measured, published and delta per dimension. All 13 tasks
    and 4 groups are listed (measured None where the bench has no pair of them), then any
    other task the bench holds."""
    published = published or {}

    def level(measured: dict, figures: dict) -> dict:
        return {d: _cell(measured.get(d), figures.get(d)) for d in DIMENSIONS}

    groups = list(TASK_GROUPS) + [g for g in metric["groups"] if g not in TASK_GROUPS]
    tasks = [t for ts in TASK_GROUPS.values() for t in ts]
    tasks += [t for t in metric["tasks"] if t not in tasks]
    return {
        "headline": level(metric["overall"], published.get(HEADLINE, {})),
        "groups": {g: level(metric["groups"].get(g, {}), published.get(g, {})) for g in groups},
        "tasks": {t: level(metric["tasks"].get(t, {}), {}) for t in tasks},
    }


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def table(entry: dict) -> str:
    """The comparison of one K as text: headline, then each group followed by its tasks."""
    compared = entry["comparison"]
    row_name = entry["published_row"]
    against = f'published "{row_name}"' if row_name else "no published row (--name)"
    if row_name and entry["k"] > 1 and "Avg@" not in row_name:
        against += " (a single-pass row: the paper has no Avg@K row for it)"
    lines = [f"K={entry['k']} (Avg@{entry['k']}) against {against}; a tie is wrong"]
    width = 22
    header = f"{'':<{width}}" + "".join(f"{SHORT[d] + ' ours':>10}{'paper':>7}{'delta':>8}"
                                        for d in DIMENSIONS)  # fmt: skip
    lines.append(header)

    def line(label: str, cells: dict) -> str:
        return f"{label:<{width}}" + "".join(
            f"{_fmt(cells[d]['measured']):>10}{_fmt(cells[d]['published']):>7}"
            f"{_fmt(cells[d]['delta'], signed=True):>8}"
            for d in DIMENSIONS
        )

    lines.append(line("headline (13 tasks)", compared["headline"]))
    member_of = {t: g for g, ts in TASK_GROUPS.items() for t in ts}
    for group, cells in compared["groups"].items():
        lines.append(line(group, cells))
        for task, task_cells in compared["tasks"].items():
            if member_of.get(task, "Other") == group:
                lines.append(line(f"  {task}", task_cells))
    metric = entry["metric"]
    ci = metric["ci95"]["overall"]
    lines.append(
        "headline 95% interval: "
        + ", ".join(f"{SHORT[d]} [{_fmt(lo)}, {_fmt(hi)}]" for d, (lo, hi) in ci.items())
    )
    lines.append(
        f"pairs {metric['n_pairs']['total']}, ties {metric['n_ties']['total']}, pairs with an "
        f"unscored candidate {metric['n_unscored']['total']}; candidates "
        f"{entry['candidates']}, unscored {entry['unscored_candidates']}; "
        f"{entry['seconds']} s"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    extra = extra_options(args.options)
    published, rows_for = published_rows(args.name, args.k)
    bench = Path(args.bench)
    source, rows = open_bench(bench, args.limit)
    # Every scorer is built (options checked) before anything is scored; models load lazily.
    scorers = {k: build_scorer(args, k, extra) for k in args.k}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    candidates = len({key for row in rows for key in row[:2]})
    log(f"bench {bench}: {len(rows)} pairs, {candidates} candidates; K = {args.k}")

    results = []
    for k in args.k:
        scorer, spec = scorers.pop(k)
        scores, stats = score_all(scorer, source, args.limit, args.batch_size, k)
        config = scorer.config()
        release(scorer)
        metric = evaluate(pairs_from_rows(rows, scores))
        row_name = rows_for[k]
        entry = {
            "k": k,
            "spec": spec_text(spec),
            "scorer_config": config,
            "published_row": row_name,
            **stats,
            "comparison": comparison(metric, published.get(row_name) if row_name else None),
            "metric": metric,
        }
        print(table(entry) + "\n", flush=True)
        results.append(entry)

    return {
        "bench": str(bench.resolve()),
        "layout": source.layout,
        "split": source.split,
        "files": [str(f) for f in source.files],
        "pairs": len(rows),
        "candidates": candidates,
        "limit": args.limit,
        "base": str(Path(args.base).resolve()),
        "adapter": str(Path(args.adapter).resolve()) if args.adapter else None,
        "name": args.name,
        "published_file": str(PUBLISHED.relative_to(REPO)),
        "options": extra,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except Refused as exc:
        log(f"reproduce_editreward_bench: {exc}")
        return 2
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
