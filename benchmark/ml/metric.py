"""EditReward-Bench pairwise accuracy, exactly as the EditScore paper computes it.

Pure numpy (no Django): the worker, a management command and a notebook call it alike.

The metric (docs/method.md, section 2). One row is one strict human preference pair
(k0, k1) on one dimension, k0 the preferred candidate, with a task type. Each candidate is
scored once per dimension and that score is reused in all its pairs.

- correct = 1 iff score_d(k0) > score_d(k1) *strictly*: a tie is wrong, and so is a pair
  in which either candidate has no score on d (NaN or missing: "unscored").
- task accuracy = mean of `correct` over the task's rows;
- group accuracy = unweighted mean of the accuracies of its member task types present;
- headline accuracy (per dimension) = unweighted mean over the task types present: not over
  groups, not over rows. With all 13 tasks, (3*Subject + 4*Appearance + 2*Scene +
  4*Advanced) / 13; a constant scorer gets 0.0.

Task types outside the 13 of the paper (our own annotation sets may use other names) count
as tasks in the headline and fall in the group "Other".

Also reported: accuracy with ties counted as half (tie = 0.5, unscored = 0), the numbers of
pairs, ties and unscored pairs, and a percentile bootstrap interval of every accuracy:
pairs are resampled with replacement *within* each (dimension, task type) cell, so each task
keeps its size. A resample's accuracy depends only on how many of the cell's pairs are
correct, tied or other, so the resampled counts are drawn directly as
Multinomial(n, observed proportions), the exact distribution of resampling the pairs, in
O(resamples x cells) whatever the number of pairs. Group and headline intervals come from
the same resamples (each resample's mean over its task accuracies).

API::

    TASK_GROUPS: dict[str, list[str]]   # Subject, Appearance, Scene, Advanced (paper order)
    OTHER_GROUP = "Other"
    DIMENSIONS = ("prompt_following", "consistency", "overall")

    Pairs(dimension, task_type, task_names, score0, score1)   # columnar, N pairs
        dimension: int codes into DIMENSIONS; task_type: int codes into task_names;
        score0 / score1: float scores of key0 / key1 on the pair's dimension, NaN = unscored

    pairs_from_rows(rows, scores) -> Pairs
        rows: iterable of (key0, key1, task_type, dimension), key0 human-preferred;
        scores: candidate key -> {dimension: score or None}; a missing key, a missing
        dimension, None or NaN all mean unscored.

    evaluate(pairs, *, resamples=1000, seed=0, confidence=0.95) -> dict (JSON-ready)

    paired_difference(rows, scores_a, scores_b, clusters, *, dimension="overall") -> dict
        headline(A) - headline(B) on the same pairs, with a bootstrap interval that resamples
        whole clusters (groups) and scores both on each draw: what a promotion gate needs.

`evaluate` returns (dimensions without pairs, tasks and groups without pairs are absent;
None, never NaN, where a value is undefined)::

    {
      "overall": {dim: acc},                          # headline: mean over tasks present
      "groups":  {group: {dim: acc}},                 # paper group order, then "Other"
      "tasks":   {task: {dim: acc}},                  # paper task order, then others sorted
      "tie_half": {"overall": .., "groups": .., "tasks": .., "ci95": ..},  # same shapes
      "n_pairs":    {dim: n, "total": n},
      "n_ties":     {dim: n, "total": n},             # both scored, equal scores
      "n_unscored": {dim: n, "total": n},             # either candidate without a score
      "n_per_task": {task: {dim: n}},
      "ci95": {"overall": {dim: [low, high]}, "groups": {g: {dim: [low, high]}},
               "tasks": {t: {dim: [low, high]}}},     # all empty when resamples == 0
      "confidence": 0.95, "resamples": R, "seed": s,
    }
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

TASK_GROUPS: dict[str, list[str]] = {
    "Subject": ["subject-add", "subject-remove", "subject-replace"],
    "Appearance": ["color_alter", "material_alter", "style_change", "tone_transfer"],
    "Scene": ["background_change", "extract"],
    "Advanced": ["ps_human", "text_change", "motion_change", "compose"],
}
OTHER_GROUP = "Other"
DIMENSIONS = ("prompt_following", "consistency", "overall")

_GROUP_OF = {task: group for group, tasks in TASK_GROUPS.items() for task in tasks}
_KNOWN_ORDER = {task: i for i, task in enumerate(_GROUP_OF)}
_DIMENSION_CODE = {d: i for i, d in enumerate(DIMENSIONS)}

# Outcome categories of a pair, in the order of the bootstrap's multinomial.
_CORRECT, _TIE, _WRONG, _UNSCORED = 0, 1, 2, 3


@dataclass(frozen=True)
class Pairs:
    """N preference pairs, column by column; row i prefers key0 over key1 on one dimension."""

    dimension: np.ndarray  # (N,) int codes into DIMENSIONS
    task_type: np.ndarray  # (N,) int codes into task_names
    task_names: tuple[str, ...]
    score0: np.ndarray  # (N,) float: score of the preferred candidate, NaN = unscored
    score1: np.ndarray  # (N,) float: score of the other candidate, NaN = unscored

    def __post_init__(self) -> None:
        dimension = np.asarray(self.dimension, dtype=np.int8)
        task_type = np.asarray(self.task_type, dtype=np.int32)
        score0 = np.asarray(self.score0, dtype=np.float64)
        score1 = np.asarray(self.score1, dtype=np.float64)
        names = tuple(self.task_names)
        shapes = {a.shape for a in (dimension, task_type, score0, score1)}
        if len(shapes) != 1 or dimension.ndim != 1:
            raise ValueError(f"Pairs columns must be 1-D and of one length, got {shapes}")
        if dimension.size and (dimension.min() < 0 or dimension.max() >= len(DIMENSIONS)):
            raise ValueError(f"dimension codes must index {DIMENSIONS}")
        if task_type.size and (task_type.min() < 0 or task_type.max() >= len(names)):
            raise ValueError("task_type codes must index task_names")
        if len(set(names)) != len(names):
            raise ValueError("task_names must be distinct")
        for field, value in (
            ("dimension", dimension),
            ("task_type", task_type),
            ("task_names", names),
            ("score0", score0),
            ("score1", score1),
        ):
            object.__setattr__(self, field, value)

    def __len__(self) -> int:
        return int(self.dimension.shape[0])


def pairs_from_rows(
    rows: Iterable[tuple[str, str, str, str]],
    scores: Mapping[str, Mapping[str, float | None]],
) -> Pairs:
    """Pairs from benchmark rows (key0, key1, task_type, dimension) and per-candidate scores.

    A candidate missing from `scores`, a dimension missing from its entry, None or NaN
    all leave that side of the pair unscored (NaN). Unknown dimensions are an error.
    """
    # Column by column with itemgetter: zip(*rows) would make one iterator per row,
    # and the garbage collector would walk them all, 5x slower at 1M rows.
    rows = rows if isinstance(rows, list | tuple) else list(rows)
    if not rows:
        empty = np.empty(0)
        return Pairs(empty.astype(np.int8), empty.astype(np.int32), (), empty, empty)
    if set(map(len, rows)) != {4}:
        raise ValueError("each row must be (key0, key1, task_type, dimension)")
    tasks, dims = list(map(itemgetter(2), rows)), list(map(itemgetter(3), rows))
    n = len(rows)

    unknown = set(dims) - _DIMENSION_CODE.keys()
    if unknown:
        raise ValueError(f"unknown dimension(s) {sorted(unknown)}; expected {DIMENSIONS}")
    dimension = np.fromiter(map(_DIMENSION_CODE.__getitem__, dims), np.int8, n)

    task_code = dict.fromkeys(tasks)
    for code, task in enumerate(task_code):
        task_code[task] = code
    task_type = np.fromiter(map(task_code.__getitem__, tasks), np.int32, n)

    # Two dict look-ups per side of a pair; the float dtype turns None into NaN.
    get, nothing = scores.get, {}
    score0 = np.array([get(k0, nothing).get(d) for k0, _, _, d in rows], np.float64)
    score1 = np.array([get(k1, nothing).get(d) for _, k1, _, d in rows], np.float64)
    return Pairs(dimension, task_type, tuple(task_code), score0, score1)


def _outcome_counts(pairs: Pairs) -> np.ndarray:
    """(dimension, task, outcome) counts; outcome in (correct, tie, wrong, unscored)."""
    s0, s1 = pairs.score0, pairs.score1
    # Comparisons with NaN are False, so an unscored pair starts as "wrong" (2) and the
    # isnan term moves it to "unscored" (3).
    outcome = (
        np.uint8(_WRONG) - np.uint8(2) * (s0 > s1) - (s0 == s1) + (np.isnan(s0) | np.isnan(s1))
    ).astype(np.intp)
    n_tasks = len(pairs.task_names)
    cell = pairs.dimension.astype(np.intp) * n_tasks + pairs.task_type
    counts = np.bincount(cell * 4 + outcome, minlength=len(DIMENSIONS) * n_tasks * 4)
    return counts.reshape(len(DIMENSIONS), n_tasks, 4)


def _number(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def evaluate(
    pairs: Pairs, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """Paper accuracy (headline, groups, tasks), tie-as-half accuracy, counts and
    stratified bootstrap intervals; the JSON shape is in the module docstring."""
    if resamples < 0:
        raise ValueError("resamples must be >= 0")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")

    counts = _outcome_counts(pairs)  # (D, T, 4)
    n = counts.sum(axis=2)  # (D, T)
    present = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        strict = counts[..., _CORRECT] / n
        half = (counts[..., _CORRECT] + 0.5 * counts[..., _TIE]) / n

    names = pairs.task_names
    order = sorted(
        range(len(names)),
        key=lambda t: (names[t] not in _KNOWN_ORDER, _KNOWN_ORDER.get(names[t], 0), names[t]),
    )
    group_members: dict[str, list[int]] = {}
    for t in order:
        group_members.setdefault(_GROUP_OF.get(names[t], OTHER_GROUP), []).append(t)
    dims = [d for d in range(len(DIMENSIONS)) if present[d].any()]

    def levels(acc: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Headline (..., D) and group (..., D) accuracies from task accuracies (..., D, T):
        unweighted means over the tasks present on each dimension."""
        # Sum then divide, so that tasks all at 1.0 average to exactly 1.0.
        filled = np.where(present, acc, 0.0)
        headline = filled.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
        groups = {
            group: filled[..., members].sum(axis=-1)
            / np.maximum(present[:, members].sum(axis=-1), 1)
            for group, members in group_members.items()
        }
        return headline, groups

    def shape(headline, groups, tasks, cast) -> dict:
        """Nest per-dimension values as {"overall", "groups", "tasks"}, skipping absences."""
        return {
            "overall": {DIMENSIONS[d]: cast(headline[..., d]) for d in dims},
            "groups": {
                group: {
                    DIMENSIONS[d]: cast(values[..., d])
                    for d in dims
                    if present[d, group_members[group]].any()
                }
                for group, values in groups.items()
                if present[:, group_members[group]].any()
            },
            "tasks": {
                names[t]: {DIMENSIONS[d]: cast(tasks[..., d, t]) for d in dims if present[d, t]}
                for t in order
                if present[:, t].any()
            },
        }

    result = shape(*levels(strict), strict, _number)
    tie_half = shape(*levels(half), half, _number)

    ci95 = tie_half_ci = {"overall": {}, "groups": {}, "tasks": {}}  # no resamples
    if resamples:
        rng = np.random.default_rng(seed)
        cells = np.flatnonzero(present.ravel())
        cell_n = n.ravel()[cells]
        cell_counts = counts.reshape(-1, 4)[cells]
        probabilities = (
            np.stack(
                [
                    cell_counts[:, _CORRECT],
                    cell_counts[:, _TIE],
                    cell_counts[:, _WRONG] + cell_counts[:, _UNSCORED],
                ],
                axis=1,
            )
            / cell_n[:, None]
        )
        draws = (
            rng.multinomial(cell_n, probabilities, size=(resamples, cells.size))
            if cells.size
            else np.zeros((resamples, 0, 3), np.int64)
        )
        boot_strict = np.zeros((resamples, *n.shape))
        boot_half = np.zeros((resamples, *n.shape))
        boot_strict.reshape(resamples, -1)[:, cells] = draws[..., 0] / cell_n
        boot_half.reshape(resamples, -1)[:, cells] = (draws[..., 0] + 0.5 * draws[..., 1]) / cell_n

        tail = (1 - confidence) / 2

        def interval(values: np.ndarray) -> list[float | None]:
            low, high = np.quantile(values, [tail, 1 - tail])
            return [_number(low), _number(high)]

        ci95 = shape(*levels(boot_strict), boot_strict, interval)
        tie_half_ci = shape(*levels(boot_half), boot_half, interval)

    def per_dimension(column: np.ndarray) -> dict[str, int]:
        out = {DIMENSIONS[d]: int(column[d]) for d in dims}
        out["total"] = int(column.sum())
        return out

    totals = counts.sum(axis=1)  # (D, 4)
    return {
        **result,
        "tie_half": {**tie_half, "ci95": tie_half_ci},
        "n_pairs": per_dimension(n.sum(axis=1)),
        "n_ties": per_dimension(totals[:, _TIE]),
        "n_unscored": per_dimension(totals[:, _UNSCORED]),
        "n_per_task": {
            names[t]: {DIMENSIONS[d]: int(n[d, t]) for d in dims if present[d, t]}
            for t in order
            if present[:, t].any()
        },
        "ci95": ci95,
        "confidence": confidence,
        "resamples": resamples,
        "seed": seed,
    }


def paired_difference(
    rows: Sequence[tuple[str, str, str, str]],
    scores_a: Mapping[str, Mapping[str, float | None]],
    scores_b: Mapping[str, Mapping[str, float | None]],
    clusters: Sequence[Hashable],
    *,
    dimension: str = "overall",
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Headline accuracy of scorer A minus that of scorer B on one dimension, on the same pairs,
    with a paired cluster bootstrap interval.

    rows are benchmark rows (key0, key1, task_type, dimension) as for :func:`pairs_from_rows`;
    clusters[i] names the unit row i was sampled with (the group: one source and instruction),
    since pairs of one group share candidates and are not independent. A resample draws whole
    clusters with replacement, within strata of their first row's task type (so every task
    keeps its number of groups), and recomputes both headlines on the same draw: what the two
    scorers share (the pairs, their difficulty) cancels, which the two separate intervals of
    :func:`evaluate` cannot see.

    Returns {"dimension", "a", "b", "difference", "ci95": [low, high] or [None, None],
    "n_pairs", "n_clusters", "confidence", "resamples", "seed"}; a, b and difference are None
    when no row is on the dimension.
    """
    if len(clusters) != len(rows):
        raise ValueError("clusters must name one cluster per row")
    if dimension not in _DIMENSION_CODE:
        raise ValueError(f"unknown dimension {dimension!r}; expected {DIMENSIONS}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    chosen = [i for i, row in enumerate(rows) if row[3] == dimension]
    empty = {"dimension": dimension, "a": None, "b": None, "difference": None,
             "ci95": [None, None], "n_pairs": len(chosen), "n_clusters": 0,
             "confidence": confidence, "resamples": resamples, "seed": seed}  # fmt: skip
    if not chosen:
        return empty
    picked = [rows[i] for i in chosen]
    pa, pb = pairs_from_rows(picked, scores_a), pairs_from_rows(picked, scores_b)
    # strict: a tie or an unscored side is wrong (NaN comparisons are False)
    correct_a = (pa.score0 > pa.score1).astype(np.float64)
    correct_b = (pb.score0 > pb.score1).astype(np.float64)

    cluster_code: dict[Hashable, int] = {}
    stratum_of: list[int] = []
    cluster = np.empty(len(chosen), np.intp)
    for j, i in enumerate(chosen):
        code = cluster_code.setdefault(clusters[i], len(cluster_code))
        if code == len(stratum_of):
            stratum_of.append(int(pa.task_type[j]))
        cluster[j] = code
    n_clusters, n_tasks = len(cluster_code), len(pa.task_names)

    def per_cluster(values: np.ndarray) -> np.ndarray:  # (clusters, tasks) sums
        flat = np.bincount(cluster * n_tasks + pa.task_type, values, n_clusters * n_tasks)
        return flat.reshape(n_clusters, n_tasks)

    sum_a, sum_b = per_cluster(correct_a), per_cluster(correct_b)
    count = per_cluster(np.ones(len(chosen)))

    def headlines(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Headline accuracies of A and B under cluster weights (..., clusters): the unweighted
        mean over the tasks present of each task's accuracy."""
        n = weights @ count
        present = n > 0
        safe = np.where(present, n, 1.0)
        tasks = np.maximum(present.sum(axis=-1), 1)
        a = np.where(present, (weights @ sum_a) / safe, 0.0).sum(axis=-1) / tasks
        b = np.where(present, (weights @ sum_b) / safe, 0.0).sum(axis=-1) / tasks
        return a, b

    a, b = headlines(np.ones(n_clusters))
    low = high = None
    if resamples:
        rng = np.random.default_rng(seed)
        weights = np.zeros((resamples, n_clusters))
        strata = np.asarray(stratum_of)
        for stratum in np.unique(strata):
            members = np.flatnonzero(strata == stratum)
            draws = rng.integers(0, members.size, size=(resamples, members.size))
            np.add.at(weights, (np.arange(resamples)[:, None], members[draws]), 1.0)
        boot_a, boot_b = headlines(weights)
        tail = (1 - confidence) / 2
        low, high = (_number(x) for x in np.quantile(boot_a - boot_b, [tail, 1 - tail]))
    return {**empty, "a": _number(float(a)), "b": _number(float(b)),
            "difference": _number(float(a - b)),
            "ci95": [low, high], "n_clusters": n_clusters}  # fmt: skip
