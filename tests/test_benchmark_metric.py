"""EditReward-Bench pairwise accuracy: benchmark/ml/metric.py (docs/method.md, section 2)."""

import itertools
import json
import math

import numpy as np
import pytest

from benchmark.ml.metric import (
    DIMENSIONS,
    OTHER_GROUP,
    TASK_GROUPS,
    Pairs,
    evaluate,
    paired_difference,
    pairs_from_rows,
)

ALL_TASKS = [task for tasks in TASK_GROUPS.values() for task in tasks]


class Bench:
    """Rows and scores built outcome by outcome: every pair gets two fresh candidates."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []
        self.scores: dict[str, dict[str, float | None]] = {}
        self._ids = itertools.count()

    def add(self, task, dim, *, correct=0, wrong=0, tie=0, unscored=0):
        for outcome, count in (("c", correct), ("w", wrong), ("t", tie), ("u", unscored)):
            for _ in range(count):
                k0, k1 = f"k{next(self._ids)}", f"k{next(self._ids)}"
                s0, s1 = {"c": (2.0, 1.0), "w": (1.0, 2.0), "t": (3.0, 3.0), "u": (5.0, None)}[
                    outcome
                ]
                self.scores[k0] = {dim: s0}
                self.scores[k1] = {dim: s1}
                self.rows.append((k0, k1, task, dim))
        return self

    def evaluate(self, **kwargs):
        return evaluate(pairs_from_rows(self.rows, self.scores), **kwargs)


# Published EditScore-7B group figures (Subject, Appearance, Scene, Advanced) and headline.
EDITSCORE_7B = {
    "prompt_following": ((0.590, 0.573, 0.744, 0.536), 0.592),
    "consistency": ((0.585, 0.612, 0.735, 0.503), 0.591),
    "overall": ((0.740, 0.663, 0.789, 0.529), 0.659),
}
# Offsets that spread a group's tasks around its mean (summing to zero per group), and
# unequal sizes, so that only the unweighted mean over tasks gives the published figure.
OFFSETS = {2: (-0.05, 0.05), 3: (-0.04, 0.0, 0.04), 4: (-0.06, -0.02, 0.02, 0.06)}
SIZES = (1000, 3000, 2000, 4000)


@pytest.mark.parametrize("dim", DIMENSIONS)
def test_paper_group_figures_give_the_published_headline(dim):
    group_values, published = EDITSCORE_7B[dim]
    bench = Bench()
    for (_group, tasks), value in zip(TASK_GROUPS.items(), group_values, strict=True):
        for task, offset, size in zip(tasks, OFFSETS[len(tasks)], SIZES, strict=False):
            correct = round((value + offset) * size)
            bench.add(task, dim, correct=correct, wrong=size - correct)
    result = bench.evaluate(resamples=0)

    for group, value in zip(TASK_GROUPS, group_values, strict=True):
        assert result["groups"][group][dim] == pytest.approx(value, abs=1e-12)
    subject, appearance, scene, advanced = group_values
    expected = (3 * subject + 4 * appearance + 2 * scene + 4 * advanced) / 13
    assert result["overall"][dim] == pytest.approx(expected, abs=1e-12)
    assert round(result["overall"][dim], 3) == published
    assert result["tasks"]["subject-add"][dim] == pytest.approx(group_values[0] - 0.04)
    assert list(result["overall"]) == [dim]  # the other dimensions have no pairs: absent


def test_constant_scorer_gets_zero_and_every_pair_is_a_tie():
    bench = Bench()
    for task, dim in itertools.product(ALL_TASKS, DIMENSIONS):
        bench.add(task, dim, correct=3, wrong=1)
    for entry in bench.scores.values():
        for dim in entry:
            entry[dim] = 7.0
    result = bench.evaluate(resamples=200)

    n = 13 * 4
    assert result["n_pairs"] == {**{d: n for d in DIMENSIONS}, "total": 3 * n}
    assert result["n_ties"] == result["n_pairs"]
    assert result["n_unscored"] == {**{d: 0 for d in DIMENSIONS}, "total": 0}
    assert result["overall"] == {d: 0.0 for d in DIMENSIONS}
    assert result["groups"] == {g: {d: 0.0 for d in DIMENSIONS} for g in TASK_GROUPS}
    assert result["tasks"] == {t: {d: 0.0 for d in DIMENSIONS} for t in ALL_TASKS}
    assert result["tie_half"]["overall"] == {d: 0.5 for d in DIMENSIONS}
    assert result["tie_half"]["tasks"]["extract"] == {d: 0.5 for d in DIMENSIONS}
    assert result["ci95"]["overall"] == {d: [0.0, 0.0] for d in DIMENSIONS}
    assert result["tie_half"]["ci95"]["overall"] == {d: [0.5, 0.5] for d in DIMENSIONS}


def test_scorer_reproducing_the_human_order_gets_one_with_scores_reused():
    # Groups of four candidates ranked a > b > c > d on every dimension: all 6 pairs per
    # group and dimension, each candidate scored once and reused in 3 pairs per dimension.
    rows, scores = [], {}
    for g, task in enumerate(ALL_TASKS):
        ranked = [f"{task}/{g}/{c}" for c in "abcd"]
        for rank, key in enumerate(ranked):
            scores[key] = {d: 10.0 - rank for d in DIMENSIONS}
        for dim in DIMENSIONS:
            rows += [(k0, k1, task, dim) for k0, k1 in itertools.combinations(ranked, 2)]
    pairs = pairs_from_rows(rows, scores)
    result = evaluate(pairs, resamples=100)

    assert len(pairs) == 13 * 3 * 6
    assert result["overall"] == {d: 1.0 for d in DIMENSIONS}
    assert result["groups"] == {g: {d: 1.0 for d in DIMENSIONS} for g in TASK_GROUPS}
    assert result["ci95"]["overall"] == {d: [1.0, 1.0] for d in DIMENSIONS}
    assert result["n_per_task"]["compose"] == {d: 6 for d in DIMENSIONS}

    # Reversing the scorer gets zero; the preferred side really is key 0.
    reversed_scores = {k: {d: -s for d, s in v.items()} for k, v in scores.items()}
    assert evaluate(pairs_from_rows(rows, reversed_scores))["overall"] == {
        d: 0.0 for d in DIMENSIONS
    }


def test_missing_and_null_scores_are_unscored_and_wrong():
    rows = [
        ("a", "b", "extract", "overall"),  # correct
        ("a", "missing", "extract", "overall"),  # key1 not scored at all
        ("none", "b", "extract", "overall"),  # key0 scored None
        ("nan", "b", "extract", "overall"),  # key0 scored NaN
        ("nan", "none", "extract", "overall"),  # both unscored: not a tie
        ("b", "b2", "extract", "overall"),  # tie
        ("a", "b", "extract", "consistency"),  # b has no consistency score
        ("a", "b2", "extract", "consistency"),  # correct
    ]
    scores = {
        "a": {"overall": 3, "consistency": 2},
        "b": {"overall": 1},
        "b2": {"overall": 1, "consistency": 1},
        "none": {"overall": None},
        "nan": {"overall": float("nan")},
    }
    result = evaluate(pairs_from_rows(rows, scores), resamples=50)

    assert result["n_pairs"] == {"consistency": 2, "overall": 6, "total": 8}
    assert result["n_unscored"] == {"consistency": 1, "overall": 4, "total": 5}
    assert result["n_ties"] == {"consistency": 0, "overall": 1, "total": 1}
    assert result["tasks"]["extract"] == {"consistency": 0.5, "overall": 1 / 6}
    # Ties are worth half, unscored pairs nothing: (1 + 0.5) / 6.
    assert result["tie_half"]["tasks"]["extract"] == {"consistency": 0.5, "overall": 0.25}
    assert "prompt_following" not in result["overall"]
    json.dumps(result, allow_nan=False)


def test_ties_count_as_half_only_in_tie_half():
    result = Bench().add("tone_transfer", "overall", correct=2, tie=2, wrong=1).evaluate()
    assert result["overall"] == {"overall": pytest.approx(0.4)}
    assert result["tie_half"]["overall"] == {"overall": pytest.approx(0.6)}
    assert result["tie_half"]["groups"] == {"Appearance": {"overall": pytest.approx(0.6)}}
    assert result["n_ties"]["overall"] == 2


def test_headline_is_the_mean_over_tasks_not_rows_nor_groups():
    bench = Bench()
    bench.add("subject-add", "overall", correct=10)  # 1.0 on 10 rows
    bench.add("subject-remove", "overall", wrong=90)  # 0.0 on 90 rows
    bench.add("subject-replace", "overall", correct=1, wrong=4)  # 0.2 on 5 rows
    bench.add("extract", "overall", correct=100)  # 1.0 on 100 rows
    result = bench.evaluate(resamples=0)

    assert result["groups"]["Subject"]["overall"] == pytest.approx(1.2 / 3)
    assert result["groups"]["Scene"]["overall"] == 1.0
    assert result["overall"]["overall"] == pytest.approx(2.2 / 4)  # mean over 4 tasks: 0.55
    # Not the mean over rows (111 / 205 = 0.541) nor over groups ((0.4 + 1) / 2 = 0.7).
    assert result["overall"]["overall"] != pytest.approx(111 / 205, abs=1e-3)
    assert result["overall"]["overall"] != pytest.approx(0.7, abs=1e-3)
    assert result["ci95"] == {"overall": {}, "groups": {}, "tasks": {}}


def test_unknown_task_type_is_an_other_task_in_the_headline():
    bench = Bench()
    bench.add("zz_custom", "consistency", wrong=3)
    bench.add("aa_custom", "consistency", correct=1, wrong=1)
    bench.add("subject-add", "consistency", correct=5)
    result = bench.evaluate()

    assert list(result["tasks"]) == ["subject-add", "aa_custom", "zz_custom"]
    assert list(result["groups"]) == ["Subject", OTHER_GROUP]
    assert result["groups"][OTHER_GROUP] == {"consistency": 0.25}
    assert result["overall"] == {"consistency": pytest.approx(1.5 / 3)}


def test_bootstrap_is_deterministic_per_seed_and_contains_the_estimate():
    bench = Bench()
    for i, task in enumerate(ALL_TASKS + ["custom"]):
        for j, dim in enumerate(DIMENSIONS):
            bench.add(task, dim, correct=20 + i + j, wrong=15 - i % 5, tie=i % 3, unscored=j)
    bench.add("text_change", "overall", correct=40)  # text_change/overall: all correct
    pairs = pairs_from_rows(bench.rows, bench.scores)

    first = evaluate(pairs, seed=3)
    assert evaluate(pairs, seed=3) == first
    assert evaluate(pairs, seed=4)["ci95"] != first["ci95"]
    assert first["resamples"] == 1000 and first["seed"] == 3

    leaves = [(first["overall"], first["ci95"]["overall"])] + [
        (first[kind][name], first["ci95"][kind][name])
        for kind in ("groups", "tasks")
        for name in first[kind]
    ]
    checked = 0
    for points, intervals in leaves:
        for dim, value in points.items():
            low, high = intervals[dim]
            assert low <= value <= high
            assert high - low < 0.5
            checked += 1
    assert checked == 3 + 5 * 3 + 14 * 3


def test_all_correct_task_has_a_zero_width_interval():
    bench = Bench()
    bench.add("ps_human", "overall", correct=25)
    bench.add("compose", "overall", correct=15, wrong=10)
    result = bench.evaluate()
    assert result["ci95"]["tasks"]["ps_human"]["overall"] == [1.0, 1.0]
    low, high = result["ci95"]["tasks"]["compose"]["overall"]
    assert low < 0.6 < high and high - low > 0.2
    # The group and headline intervals move only through compose: half its width.
    g_low, g_high = result["ci95"]["groups"]["Advanced"]["overall"]
    assert (g_low, g_high) == pytest.approx(((1 + low) / 2, (1 + high) / 2))


def test_single_task_interval_is_the_binomial_one_around_its_accuracy():
    # Stratified resampling keeps the task's 1,000 pairs: sd = sqrt(0.7 * 0.3 / 1000).
    result = Bench().add("color_alter", "prompt_following", correct=700, wrong=300).evaluate()
    low, high = result["ci95"]["overall"]["prompt_following"]
    half_width = 1.96 * math.sqrt(0.7 * 0.3 / 1000)
    assert low == pytest.approx(0.7 - half_width, abs=0.006)
    assert high == pytest.approx(0.7 + half_width, abs=0.006)
    assert result["ci95"]["tasks"]["color_alter"] == result["ci95"]["overall"]


def test_count_bootstrap_matches_resampling_the_pairs_within_tasks():
    # Brute force: resample each task's pairs with replacement, keeping its size.
    sizes = {"subject-add": (3, 4, 2, 1), "extract": (120, 60, 15, 5)}  # c, w, tie, unscored
    bench = Bench()
    for task, (c, w, t, u) in sizes.items():
        bench.add(task, "overall", correct=c, wrong=w, tie=t, unscored=u)
    result = bench.evaluate(resamples=4000, seed=1)

    rng = np.random.default_rng(123)
    values = {task: np.repeat([1.0, 0.0, 0.0, 0.0], counts) for task, counts in sizes.items()}
    boot = {
        task: np.array([rng.choice(v, size=v.size, replace=True).mean() for _ in range(4000)])
        for task, v in values.items()
    }
    headline = (boot["subject-add"] + boot["extract"]) / 2
    expected = np.quantile(headline, [0.025, 0.975])
    assert result["ci95"]["overall"]["overall"] == pytest.approx(expected, abs=0.02)
    small = np.quantile(boot["subject-add"], [0.025, 0.975])
    assert result["ci95"]["tasks"]["subject-add"]["overall"] == pytest.approx(small, abs=0.101)


def test_output_is_strict_json_and_validates_its_inputs():
    bench = Bench().add("background_change", "overall", correct=1)
    json.dumps(bench.evaluate(), allow_nan=False)
    with pytest.raises(ValueError, match="unknown dimension"):
        pairs_from_rows([("a", "b", "extract", "quality")], {})
    with pytest.raises(ValueError, match="one length"):
        Pairs(np.zeros(2), np.zeros(2), ("extract",), np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="task_names"):
        Pairs(np.zeros(1), np.ones(1), ("extract",), np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="confidence"):
        bench.evaluate(confidence=1.0)
    empty = evaluate(pairs_from_rows([], {}))
    assert empty["overall"] == {} and empty["n_pairs"] == {"total": 0}


# --- paired_difference: A minus B on the same pairs, groups resampled whole ---------------


def _paired_world(groups=40, tasks=("color_alter", "subject-add"), per_group=3):
    """`groups` groups of `per_group` overall pairs each (key a0 preferred over b0 ...), task
    types alternating; returns rows and their clusters (the group)."""
    rows, clusters = [], []
    for g in range(groups):
        for p in range(per_group):
            rows.append((f"g{g}-p{p}-win", f"g{g}-p{p}-lose", tasks[g % len(tasks)], "overall"))
            clusters.append(f"g{g}")
    return rows, clusters


def _right_on(rows, which):
    """Scores that get rows[i] right exactly where which(i) is true (and tie nowhere)."""
    scores = {}
    for i, (win, lose, _, _) in enumerate(rows):
        good = which(i)
        scores[win], scores[lose] = (
            {"overall": 1.0 if good else 0.0},
            {"overall": 0.0 if good else 1.0},
        )
    return scores


def test_paired_difference_of_a_scorer_with_itself_is_exactly_zero():
    rows, clusters = _paired_world()
    scores = _right_on(rows, lambda i: i % 3 != 0)
    out = paired_difference(rows, scores, scores, clusters, resamples=300)
    assert out["difference"] == 0.0 and out["ci95"] == [0.0, 0.0]
    assert out["a"] == out["b"] == pytest.approx(2 / 3)
    assert out["n_pairs"] == 120 and out["n_clusters"] == 40


def test_pairing_resolves_a_small_gain_the_separate_intervals_cannot():
    """B is right on 60% of the groups; A on those and 4 groups more. Apart, their intervals
    overlap; paired, the four groups A gains are all that varies, so the interval is above 0."""
    rows, clusters = _paired_world(groups=60)
    b = _right_on(rows, lambda i: (i // 3) % 5 < 3)
    a = _right_on(rows, lambda i: (i // 3) % 5 < 3 or (i // 3) in (3, 4, 8, 9))
    out = paired_difference(rows, a, b, clusters, resamples=2000, seed=1)
    assert out["difference"] == pytest.approx(out["a"] - out["b"]) and out["difference"] > 0
    assert out["ci95"][0] > 0
    apart = [evaluate(pairs_from_rows(rows, s), resamples=2000)["ci95"]["overall"]["overall"]
             for s in (a, b)]  # fmt: skip
    assert apart[0][0] < apart[1][1]  # the separate intervals overlap


def test_pairs_of_one_group_are_resampled_together():
    """Three identical pairs a group carry the information of one: the interval is as wide as
    with one pair a group, and wider than if every pair were its own cluster."""
    rows3, clusters3 = _paired_world(groups=30, per_group=3)
    rows1, clusters1 = _paired_world(groups=30, per_group=1)

    def pattern(i, per):  # a group is right or wrong whole
        return (i // per) % 4 < 2  # half the groups of each task

    a3, a1 = _right_on(rows3, lambda i: pattern(i, 3)), _right_on(rows1, lambda i: pattern(i, 1))
    zero3 = _right_on(rows3, lambda i: False)
    zero1 = _right_on(rows1, lambda i: False)
    grouped = paired_difference(rows3, a3, zero3, clusters3, resamples=2000)["ci95"]
    single = paired_difference(rows1, a1, zero1, clusters1, resamples=2000)["ci95"]
    loose = paired_difference(rows3, a3, zero3, list(range(len(rows3))), resamples=2000)["ci95"]
    assert grouped == pytest.approx(single, abs=0.02)
    assert grouped[1] - grouped[0] > 1.4 * (loose[1] - loose[0])


def test_paired_headline_is_the_paper_headline_and_ties_are_wrong():
    rows, clusters = _paired_world(groups=12, tasks=("color_alter", "subject-add", "extract"))
    a = _right_on(rows, lambda i: i % 4 != 0)
    b = {key: {"overall": 0.5} for row in rows for key in row[:2]}  # all ties: 0
    b[rows[0][0]] = {}  # unscored: wrong as well
    out = paired_difference(rows, a, b, clusters, resamples=0)
    assert out["a"] == pytest.approx(
        evaluate(pairs_from_rows(rows, a), resamples=0)["overall"]["overall"]
    )
    assert out["b"] == 0.0 and out["ci95"] == [None, None]


def test_paired_difference_checks_its_inputs_and_an_absent_dimension():
    rows, clusters = _paired_world(groups=4)
    scores = _right_on(rows, lambda i: True)
    with pytest.raises(ValueError, match="one cluster per row"):
        paired_difference(rows, scores, scores, clusters[:-1])
    with pytest.raises(ValueError, match="unknown dimension"):
        paired_difference(rows, scores, scores, clusters, dimension="beauty")
    none = paired_difference(rows, scores, scores, clusters, dimension="consistency")
    assert none["difference"] is None and none["n_pairs"] == 0
    json.dumps(none, allow_nan=False)
