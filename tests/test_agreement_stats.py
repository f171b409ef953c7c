"""annotation.stats.agreement: hand-computed figures, the krippendorff package as reference for
alpha, and the group bootstrap. No database."""

import json
import math

import krippendorff
import numpy as np
import pytest

from annotation.stats.agreement import (
    AGREEMENT,
    ALPHA,
    TAU,
    AgreementTable,
    GroupAgreement,
    _interval,
    agreement_table,
    bootstrap,
    group_agreement,
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    pairwise_agreement,
    relation,
    summarize,
    total_coincidences,
)


def test_relation():
    assert relation(1, 2) == 1  # lower tier index = better
    assert relation(3, 2) == -1
    assert relation(2, 2) == 0


def test_pairwise_agreement_hand_example():
    # A: a > b = c      B: a > b > c
    # (a,b): better / better -> same;  (a,c): better / better -> same;
    # (b,c): tie / better -> different.  2 of 3 pairs.
    a = {"a": 1, "b": 2, "c": 2}
    b = {"a": 1, "b": 2, "c": 3}
    assert pairwise_agreement(a, b) == pytest.approx(2 / 3)
    assert pairwise_agreement(b, a) == pytest.approx(2 / 3)
    assert pairwise_agreement(a, a) == 1.0
    # Reversed order disagrees on every strict pair; the tie (b,c) of A is kept: 0 of 3.
    assert pairwise_agreement(a, {"a": 3, "b": 2, "c": 1}) == 0.0


def test_pairwise_agreement_only_common_candidates():
    # d is placed by A only: only (a,b), (a,c), (b,c) count, as above.
    a = {"a": 1, "b": 2, "c": 2, "d": 3}
    b = {"a": 1, "b": 2, "c": 3}
    assert pairwise_agreement(a, b) == pytest.approx(2 / 3)
    assert pairwise_agreement({"a": 1}, {"a": 1, "b": 2}) is None  # no common pair


def test_kendall_tau_b_hand_example_with_ties():
    # A: a = b = c (tier 1), d (tier 2)    B: b = c (tier 1), a (tier 2), d (tier 3)
    # n0 = 6 pairs. Tied in A: (a,b), (a,c), (b,c) -> n1 = 3. Tied in B: (b,c) -> n2 = 1.
    # (a,d), (b,d), (c,d): better in both -> C = 3; no discordant pair: D = 0.
    # (a,b), (a,c): tied in A only -> neither.
    # tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = 3 / sqrt(3 * 5) = 0.7745966...
    a = {"a": 1, "b": 1, "c": 1, "d": 2}
    b = {"a": 2, "b": 1, "c": 1, "d": 3}
    assert kendall_tau_b(a, b) == pytest.approx(3 / math.sqrt(15))
    assert kendall_tau_b(b, a) == pytest.approx(3 / math.sqrt(15))
    # B reversed: the same pairs become discordant.
    reversed_b = {"a": 2, "b": 3, "c": 3, "d": 1}
    assert kendall_tau_b(a, reversed_b) == pytest.approx(-3 / math.sqrt(15))


def test_kendall_tau_b_with_a_discordant_pair():
    # A: a = b, c, d (tiers 1, 1, 2, 3)    B: a, b = d, c (tiers 1, 2, 3, 2)
    # (a,b) tied in A; (a,c) C; (a,d) C; (b,c) C; (b,d) tied in B; (c,d) A better, B worse -> D.
    # C = 3, D = 1, n1 = 1, n2 = 1: tau_b = 2 / sqrt(5 * 5) = 0.4
    a = {"a": 1, "b": 1, "c": 2, "d": 3}
    b = {"a": 1, "b": 2, "c": 3, "d": 2}
    assert kendall_tau_b(a, b) == pytest.approx(0.4)


def test_kendall_tau_b_undefined_when_one_side_all_tied():
    all_tied = {"a": 1, "b": 1, "c": 1}
    assert kendall_tau_b(all_tied, {"a": 1, "b": 2, "c": 3}) is None
    assert kendall_tau_b({"a": 1, "b": 2, "c": 3}, all_tied) is None
    assert kendall_tau_b({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2, "c": 3}) == 1.0


def test_group_agreement_three_annotators():
    # A: a > b = c    B: a > b > c    C: all tied
    # Agreement: (A,B) 2/3; (A,C) only (b,c) same -> 1/3; (B,C) nothing -> 0.  Sum 1, 3 pairs.
    # Tau: (A,B) = (2 - 0) / sqrt((3 - 1)(3 - 0)) = 2 / sqrt(6); (A,C), (B,C) undefined.
    a = {"a": 1, "b": 2, "c": 2}
    b = {"a": 1, "b": 2, "c": 3}
    c = {"a": 1, "b": 1, "c": 1}
    g = group_agreement([a, b, c])
    assert g.agreement_n == 3
    assert g.agreement_sum == pytest.approx(2 / 3 + 1 / 3 + 0)
    assert g.tau_n == 1
    assert g.tau_sum == pytest.approx(2 / math.sqrt(6))
    assert g.tau_undefined == 2
    # Units a: {1,1,1}; b: {2,2,1}; c: {2,3,1}; each has m = 3 values -> weight 1 / (m - 1).
    # a: o11 += 3*2/2 = 3.  b: o22 += 2*1/2 = 1, o21 = o12 += 2*1/2 = 1.
    # c: o23, o32, o21, o12, o31, o13 += 1/2 each.
    assert g.pairable_units == 3
    assert dict(g.coincidences) == pytest.approx(
        {(1, 1): 3, (2, 2): 1, (1, 2): 1.5, (2, 1): 1.5, (2, 3): 0.5, (3, 2): 0.5,
         (1, 3): 0.5, (3, 1): 0.5}
    )  # fmt: skip
    # Marginals 1: 3 + 1.5 + .5 = 5, 2: 1.5 + 1 + .5 = 3, 3: 1; n = 9 = 3 units * 3 values.
    assert sum(g.coincidences.values()) == pytest.approx(9)


def test_dataset_mean_is_over_annotator_pairs_not_groups():
    # Group 1: three identical rankings -> 3 pairs with agreement 1.
    # Group 2: two opposite rankings of two candidates -> 1 pair with agreement 0.
    # Mean over (group, annotator pair) = 3 / 4; mean of group means would be (1 + 0) / 2.
    same = {"x": 1, "y": 2}
    g1 = group_agreement([same, same, same])
    g2 = group_agreement([{"x": 1, "y": 2}, {"x": 2, "y": 1}])
    summary = summarize([g1, g2], resamples=50)
    assert summary.pairwise_agreement.value == pytest.approx(0.75)
    assert summary.pairwise_agreement.n == 4
    # Tau likewise: (3 * 1 + 1 * -1) / 4 = 0.5, not (1 - 1) / 2 = 0.
    assert summary.kendall_tau_b.value == pytest.approx(0.5)
    assert summary.kendall_tau_b.n == 4


def test_alpha_hand_example():
    # A: x=1, y=2, z=3    B: x=1, y=2, z=2.  Units x {1,1}, y {2,2}, z {3,2}, m = 2 each.
    # o11 = 2, o22 = 2, o23 = o32 = 1.  n1 = 2, n2 = 3, n3 = 1, n = 6.
    # delta2(2,3) = (3 + 1 - (3 + 1)/2)^2 = 4; delta2(1,2) = (5 - 5/2)^2 = 6.25;
    # delta2(1,3) = (6 - 3/2)^2 = 20.25.
    # sum o*delta2 = 2 * 4 = 8;  sum n_c n_k delta2 = 2 * (6*6.25 + 2*20.25 + 3*4) = 180.
    # alpha = 1 - (n - 1) * 8 / 180 = 1 - 40/180 = 7/9.
    g = group_agreement([{"x": 1, "y": 2, "z": 3}, {"x": 1, "y": 2, "z": 2}])
    assert krippendorff_alpha_ordinal(g.coincidences) == pytest.approx(7 / 9)
    reference = krippendorff.alpha(
        reliability_data=[[1, 2, 3], [1, 2, 2]], level_of_measurement="ordinal"
    )
    assert reference == pytest.approx(7 / 9)
    # The same as a V x V array in tier order.
    dense = [[2, 0, 0], [0, 2, 1], [0, 1, 0]]
    assert krippendorff_alpha_ordinal(np.array(dense)) == pytest.approx(7 / 9)


def test_alpha_undefined_cases():
    # Everyone uses one tier: no expected disagreement.
    tied = group_agreement([{"a": 1, "b": 1}, {"a": 1, "b": 1}])
    assert krippendorff_alpha_ordinal(tied.coincidences) is None
    # Nothing pairable: each candidate placed by a single annotator.
    lonely = group_agreement([{"a": 1}, {"b": 2}])
    assert lonely.pairable_units == 0
    assert krippendorff_alpha_ordinal(lonely.coincidences) is None
    assert krippendorff_alpha_ordinal({}) is None


def _random_dataset(rng, gaps: bool, missing: float):
    """Random tier rankings (ties, gaps in tier numbers if asked, a share of missing
    placements) per group, and the same data as krippendorff reliability data (coders x
    units, NaN = missing)."""
    groups, columns = [], []
    for _ in range(rng.integers(3, 25)):
        coders = int(rng.integers(2, 6))
        candidates = [f"c{i}" for i in range(rng.integers(2, 7))]
        rankings = []
        for _ in range(coders):
            tiers = rng.integers(1, len(candidates) + 1, size=len(candidates))
            if not gaps:  # renumber to contiguous tiers 1..k
                tiers = np.unique(tiers, return_inverse=True)[1] + 1
            keep = rng.random(len(candidates)) >= missing
            rankings.append(
                {c: int(t) for c, t, k in zip(candidates, tiers, keep, strict=True) if k}
            )
        groups.append(rankings)
        for c in candidates:
            column = [r.get(c, np.nan) for r in rankings] + [np.nan] * (5 - coders)
            columns.append(column)
    return groups, np.array(columns, dtype=float).T


@pytest.mark.parametrize("missing", [0.0, 0.2])
@pytest.mark.parametrize("gaps", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_alpha_matches_krippendorff_package_on_random_data(seed, gaps, missing):
    rng = np.random.default_rng(seed)
    rankings, reliability = _random_dataset(rng, gaps, missing)
    reference = krippendorff.alpha(reliability_data=reliability, level_of_measurement="ordinal")
    groups = [group_agreement(r) for r in rankings]
    ours = krippendorff_alpha_ordinal(total_coincidences(groups))
    assert ours is not None
    assert abs(ours - reference) < 1e-9
    # summarize's point estimate is the same figure, from GroupAgreements or from the vectorised
    # table, and n counts the pairable units.
    pairable = int((np.sum(~np.isnan(reliability), axis=0) >= 2).sum())
    for data in (groups, agreement_table(rankings)):
        summary = summarize(data, resamples=20)
        assert abs(summary.krippendorff_alpha.value - reference) < 1e-9
        assert summary.krippendorff_alpha.n == pairable


def test_alpha_with_an_unobserved_tier_index():
    # Tier index 2 is never used (tiers 1 and 3 only). The krippendorff package's value domain
    # is the sorted unique observed values {1, 3}; ours likewise has no row for 2. For the ordinal
    # metric an unused value has marginal 0 and changes nothing, so passing the domain [1, 2, 3]
    # explicitly, or relabelling 3 -> 2, gives the same alpha.
    rankings = [
        [{"a": 1, "b": 3, "c": 3}, {"a": 1, "b": 1, "c": 3}, {"a": 3, "b": 3}],
        [{"a": 1, "b": 3}, {"a": 3, "b": 3}],
    ]
    reliability = [
        [1, 3, 3, 1, 3],
        [1, 1, 3, 3, 3],
        [3, 3, np.nan, np.nan, np.nan],
    ]
    groups = [group_agreement(r) for r in rankings]
    ours = krippendorff_alpha_ordinal(total_coincidences(groups))
    reference = krippendorff.alpha(reliability_data=reliability, level_of_measurement="ordinal")
    with_gap = krippendorff.alpha(
        reliability_data=reliability, value_domain=[1, 2, 3], level_of_measurement="ordinal"
    )
    relabelled = krippendorff.alpha(
        reliability_data=np.where(np.array(reliability) == 3, 2, reliability),
        level_of_measurement="ordinal",
    )
    assert not math.isnan(reference)
    assert abs(ours - reference) < 1e-9
    assert abs(with_gap - reference) < 1e-9
    assert abs(relabelled - reference) < 1e-9
    # A value seen only in a non-pairable unit (the package's domain has it, ours does not).
    lonely = group_agreement([{"d": 5}])
    reliability_lonely = np.column_stack([reliability, [5, np.nan, np.nan]])
    reference = krippendorff.alpha(
        reliability_data=reliability_lonely, level_of_measurement="ordinal"
    )
    assert abs(krippendorff_alpha_ordinal(total_coincidences([*groups, lonely])) - reference) < 1e-9


def _noisy_groups(rng, count, flip=0.3):
    """Three annotators rank 4 candidates; each copies the true order or swaps two."""
    groups = []
    for _ in range(count):
        rankings = []
        for _ in range(3):
            tiers = [1, 2, 2, 3]
            if rng.random() < flip:
                i, j = rng.choice(4, size=2, replace=False)
                tiers[i], tiers[j] = tiers[j], tiers[i]
            rankings.append({c: t for c, t in zip("abcd", tiers, strict=True)})
        groups.append(group_agreement(rankings))
    return groups


def test_bootstrap_deterministic_for_a_seed():
    groups = _noisy_groups(np.random.default_rng(1), 60)
    first = summarize(groups, resamples=300, seed=7)
    assert summarize(groups, resamples=300, seed=7) == first
    other = summarize(groups, resamples=300, seed=8)
    assert other.pairwise_agreement.value == first.pairwise_agreement.value
    assert (other.pairwise_agreement.low, other.pairwise_agreement.high) != (
        first.pairwise_agreement.low,
        first.pairwise_agreement.high,
    )


def test_bootstrap_interval_contains_estimate_and_shrinks_with_more_groups():
    rng = np.random.default_rng(2)
    small = summarize(_noisy_groups(rng, 30))
    large = summarize(_noisy_groups(rng, 3000))
    for name in ("pairwise_agreement", "kendall_tau_b", "krippendorff_alpha"):
        for summary in (small, large):
            estimate = getattr(summary, name)
            assert estimate.low < estimate.value < estimate.high, name
        small_width = getattr(small, name).high - getattr(small, name).low
        large_width = getattr(large, name).high - getattr(large, name).low
        assert large_width < small_width / 3, name  # ~ 1 / sqrt(100) in theory


def test_bootstrap_uses_the_same_groups_for_every_statistic():
    # Two annotators, two candidates: a group either agrees (agreement 1, tau 1) or not
    # (agreement 0, tau -1), so in any resample tau = 2 * agreement - 1 exactly when both
    # statistics see the same groups.
    agree = group_agreement([{"x": 1, "y": 2}, {"x": 1, "y": 2}])
    disagree = group_agreement([{"x": 1, "y": 2}, {"x": 2, "y": 1}])
    replicates = bootstrap([agree] * 7 + [disagree] * 5, resamples=500, seed=3)
    assert replicates.shape == (500, 3)
    assert np.unique(replicates[:, AGREEMENT]).size > 5  # really resampled
    np.testing.assert_allclose(replicates[:, TAU], 2 * replicates[:, AGREEMENT] - 1, atol=1e-12)
    assert not np.isnan(replicates[:, ALPHA]).any()


def test_summary_counts():
    # 3 groups x 3 annotators x 3 candidates; the third group's annotator C ties everything.
    full = {"a": 1, "b": 2, "c": 3}
    groups = [
        group_agreement([full, full, {"a": 1, "b": 1, "c": 2}]),
        group_agreement([full, {"a": 2, "b": 1, "c": 3}, full]),
        group_agreement([full, full, {"a": 1, "b": 1, "c": 1}]),
    ]
    summary = summarize(groups, resamples=100)
    assert summary.groups == 3
    assert summary.pairwise_agreement.n == 9  # 3 annotator pairs per group
    assert summary.kendall_tau_b.n == 7  # 2 pairs with the all-tied annotator undefined
    assert summary.tau_undefined == 2
    assert summary.krippendorff_alpha.n == 9  # (group, candidate) units with >= 2 values


def test_all_identical_groups_agree_perfectly():
    ranking = {"a": 1, "b": 2, "c": 2, "d": 3}
    groups = [group_agreement([ranking] * 3) for _ in range(40)]
    summary = summarize(groups)
    for name in ("pairwise_agreement", "kendall_tau_b", "krippendorff_alpha"):
        estimate = getattr(summary, name)
        assert (estimate.value, estimate.low, estimate.high) == (1.0, 1.0, 1.0), name
    assert summary.pairwise_agreement.n == 120


def test_undefined_statistics_and_empty_input():
    tied = {"a": 1, "b": 1}
    summary = summarize([group_agreement([tied, tied])], resamples=50)
    assert summary.pairwise_agreement.value == 1.0
    assert summary.kendall_tau_b == summary.kendall_tau_b.__class__(None, None, None, 0)
    assert summary.tau_undefined == 1
    assert summary.krippendorff_alpha.value is None  # zero expected disagreement
    assert summary.krippendorff_alpha.n == 2

    empty = summarize([], resamples=50)
    assert empty.groups == 0
    assert empty.pairwise_agreement.as_dict() == {"value": None, "low": None, "high": None, "n": 0}
    assert empty.krippendorff_alpha.value is None
    assert summarize([GroupAgreement()], resamples=10).pairwise_agreement.value is None


def test_interval_needs_half_the_resamples_defined():
    values = np.array([0.1, 0.2, np.nan, np.nan, np.nan])
    assert _interval(values, 0.95) == (None, None)
    values = np.array([0.1, 0.2, 0.3, np.nan, np.nan])
    low, high = _interval(values, 0.95)
    assert low == pytest.approx(0.1 + 0.2 * 0.025) and high == pytest.approx(0.3 - 0.2 * 0.025)


def test_as_dict_is_json_ready():
    groups = _noisy_groups(np.random.default_rng(4), 20)
    data = summarize(groups, resamples=100).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "groups", "pairwise_agreement", "kendall_tau_b", "tau_undefined", "krippendorff_alpha",
        "resamples", "confidence",
    }  # fmt: skip
    alpha = data["krippendorff_alpha"]
    assert [type(alpha[k]) for k in ("value", "low", "high", "n")] == [float, float, float, int]
    assert alpha["n"] == 80  # 20 groups x 4 candidates, each placed by 3 annotators


def _assert_tables_equal(actual: AgreementTable, expected: AgreementTable):
    assert actual.values == expected.values
    for name in ("agreement_n", "tau_n", "tau_undefined", "pairable_units"):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), name)
    for name in ("agreement_sum", "tau_sum", "coincidences"):
        np.testing.assert_allclose(getattr(actual, name), getattr(expected, name), atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_agreement_table_matches_group_agreement(seed):
    rng = np.random.default_rng(seed)
    complete, _ = _random_dataset(rng, gaps=True, missing=0.0)  # vectorised path
    partial, _ = _random_dataset(rng, gaps=False, missing=0.3)  # per-group fallback
    edge_cases = [
        [],  # no annotator
        [{"a": 1, "b": 2}],  # one annotator: nothing pairable
        [{"a": 1}, {"a": 2}],  # one candidate: no candidate pair, tau undefined, 1 unit
        [{}, {}],  # nothing placed
        [{"a": 1, "b": 1}, {"b": 1, "a": 1}],  # all tied, other key order
        [{"a": 1, "b": 2}, {"a": 1, "c": 2}],  # same size, other candidates
    ]
    rankings = complete + edge_cases + partial
    rng.shuffle(rankings)
    table = agreement_table(iter(rankings))  # any iterable
    assert len(table) == len(rankings)
    expected = AgreementTable.from_groups([group_agreement(r) for r in rankings])
    _assert_tables_equal(table, expected)
    assert table.tau_undefined.sum() > 0 and table.agreement_n.sum() > 0


def test_table_subset_summarizes_like_the_group_list():
    rng = np.random.default_rng(5)
    rankings, _ = _random_dataset(rng, gaps=False, missing=0.0)
    groups = [group_agreement(r) for r in rankings]
    table = agreement_table(rankings)
    mask = np.arange(len(groups)) % 3 != 0
    picked = [g for g, keep in zip(groups, mask, strict=True) if keep]
    by_table = summarize(table.subset(mask), resamples=200, seed=4).as_dict()
    by_list = summarize(picked, resamples=200, seed=4).as_dict()
    assert by_table["groups"] == by_list["groups"] == mask.sum()
    for name in ("pairwise_agreement", "kendall_tau_b", "krippendorff_alpha"):
        assert by_table[name] == pytest.approx(by_list[name], abs=1e-12), name
    assert summarize(table.subset(np.flatnonzero(mask)), resamples=200, seed=4).as_dict() == (
        by_table
    )
