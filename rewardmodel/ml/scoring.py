"""From raw judge scores to the four 0-10 EditScore dimensions, and Avg@K over passes.

Pure Python (no torch, transformers or Django): imported by the web process through
``benchmark.ml.scorers``. See ``docs/method.md`` section 3:

* Raw scores are in [0, R] (R = the prompts' score range, 25 by default) and are divided by R/10:
  PF = SC[0] / (R/10), C = SC[1] / (R/10), PQ = min(PQ scores) / (R/10),
  overall = sqrt(min(PF, C) * PQ).
* Avg@K: the per-pass dimensions of K sampled passes are averaged key by key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SCORE_KEYS = ("prompt_following", "consistency", "perceptual_quality", "overall")


def aggregate(sc: Sequence[float], pq: Sequence[float], score_range: float = 25.0) -> dict:
    """Raw judge scores of one pass to the four 0-10 dimensions (the keys of ``SCORE_KEYS``).

    ``sc`` is the SC answer [editing success, over-editing], ``pq`` the PQ answer
    [naturalness, artifacts] (any non-empty list: its minimum counts), both on [0, score_range].
    """
    if len(sc) != 2:
        raise ValueError(f"the SC answer needs 2 scores, got {len(sc)}")
    if not pq:
        raise ValueError("the PQ answer needs at least one score")
    if isinstance(score_range, bool) or not score_range > 0:
        raise ValueError(f"score_range must be positive, got {score_range!r}")
    scale = score_range / 10
    pf = sc[0] / scale
    c = sc[1] / scale
    q = min(pq) / scale
    return {
        "prompt_following": pf,
        "consistency": c,
        "perceptual_quality": q,
        "overall": math.sqrt(min(pf, c) * q),
    }


def average_passes(passes: Sequence[dict]) -> dict:
    """Avg@K: for each key (the four score keys first, then any other seen), the mean over the
    passes that hold a number for it, or None when none does."""
    keys = list(SCORE_KEYS)
    for p in passes:
        keys += [k for k in p if k not in keys]
    result = {}
    for key in keys:
        values = [p[key] for p in passes if p.get(key) is not None]
        # fsum: exact, so the same pass scores in another order give the same mean
        # (a tie stays a tie; the benchmark counts ties as wrong).
        result[key] = math.fsum(values) / len(values) if values else None
    return result
