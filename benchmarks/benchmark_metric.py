"""EditReward-Bench accuracy at scale: benchmark/ml/metric.py on 1,000,000 and 3,072 pairs.

    .venv/bin/python benchmarks/benchmark_metric.py [--pairs 1000000 3072] [--repeat 3]

Builds synthetic benchmark rows the way EditReward-Bench is made: groups of four
candidates of one task type, all six pairs of each group on each of the three dimensions,
key 0 the human-preferred candidate; a scorer gives each candidate a noisy integer score
per dimension (so ties occur) and leaves 1% of them unscored. Times `pairs_from_rows` and
`evaluate` (1,000 bootstrap resamples) separately and reads the process's peak RSS
(VmHWM, reset through /proc/self/clear_refs before each step). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from harness import REPO, proc_kib  # benchmarks/harness.py

sys.path.insert(0, str(REPO))

from benchmark.ml.metric import DIMENSIONS, TASK_GROUPS, evaluate, pairs_from_rows  # noqa: E402

TASKS = [task for tasks in TASK_GROUPS.values() for task in tasks]
PAIRS_OF_FOUR = [(a, b) for a in range(4) for b in range(a + 1, 4)]


def synthetic_bench(n_pairs: int, seed: int = 0) -> tuple[list[tuple], dict[str, dict]]:
    rng = np.random.default_rng(seed)
    per_group = len(PAIRS_OF_FOUR) * len(DIMENSIONS)
    n_groups = -(-n_pairs // per_group)
    quality = rng.normal(size=(n_groups, 4, len(DIMENSIONS)))
    noisy = np.rint(2 * (quality + rng.normal(scale=0.8, size=quality.shape)))
    noisy[rng.random(noisy.shape) < 0.01] = np.nan
    scores = {
        f"g{g}/c{c}": {
            dim: (None if np.isnan(s) else float(s))
            for dim, s in zip(DIMENSIONS, noisy[g, c], strict=True)
        }
        for g in range(n_groups)
        for c in range(4)
    }
    rows = []
    for g in range(n_groups):
        task = TASKS[g % len(TASKS)]
        for d, dim in enumerate(DIMENSIONS):
            for a, b in PAIRS_OF_FOUR:
                # The human prefers the better true quality: it goes first.
                if quality[g, a, d] < quality[g, b, d]:
                    a, b = b, a
                rows.append((f"g{g}/c{a}", f"g{g}/c{b}", task, dim))
    return rows[:n_pairs], scores


def measured(step, repeat: int) -> tuple[object, dict]:
    """Runs step() `repeat` times; best and all wall times, and peak RSS over the runs."""
    pid = os.getpid()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        reset = True
    except OSError:
        reset = False
    before = proc_kib(pid, "VmRSS")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        value = step()
        times.append(round(time.perf_counter() - start, 4))
    peak = proc_kib(pid, "VmHWM")
    return value, {
        "seconds": min(times),
        "runs": times,
        "rss_before_mib": round(before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "peak_increase_mib": round((peak - before) / 1024, 1),
        "hwm_reset": reset,
    }


def run(n_pairs: int, resamples: int, repeat: int) -> dict:
    start = time.perf_counter()
    rows, scores = synthetic_bench(n_pairs)
    build_s = round(time.perf_counter() - start, 2)
    pairs, convert = measured(lambda: pairs_from_rows(rows, scores), repeat)
    result, scoring = measured(lambda: evaluate(pairs, resamples=resamples), repeat)
    return {
        "pairs": len(pairs),
        "candidates": len(scores),
        "build_inputs_seconds": build_s,
        "pairs_from_rows": convert,
        "evaluate": scoring,
        "headline": result["overall"],
        "headline_ci95": result["ci95"]["overall"],
        "n_ties": result["n_ties"]["total"],
        "n_unscored": result["n_unscored"]["total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, nargs="+", default=[1_000_000, 3_072])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = {
        "numpy": np.__version__,
        "resamples": args.resamples,
        "runs": [run(n, args.resamples, args.repeat) for n in args.pairs],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
