"""Davidson (Bradley-Terry with ties) leaderboard: annotation/stats/bradley_terry.py."""

import json
import math

import numpy as np
import pytest

from annotation.stats.bradley_terry import (
    ELO_SCALE,
    Battle,
    _bootstrap_counts,
    davidson_fit,
    elo,
    leaderboard,
    log_likelihood,
    ranks_from_intervals,
)


def _two(w_ab, w_ba, t):
    return np.array([[0, w_ab], [w_ba, 0]], float), np.array([[0, t], [t, 0]], float)


# Two editors: the model is saturated (three outcome probabilities, two parameters),
# so the MLE reproduces the observed frequencies, with d = theta_a - theta_b:
#   P(a) = e^{d/2}/E = w_ab/N,  P(b) = e^{-d/2}/E = w_ba/N,  P(tie) = nu/E = t/N.
# Dividing the first two: e^d = w_ab / w_ba, so d = ln(w_ab / w_ba); dividing the third
# by the first: nu = (t / w_ab) e^{d/2} = t / sqrt(w_ab * w_ba).
@pytest.mark.parametrize("w_ab, w_ba, t", [(20, 20, 10), (30, 12, 9), (5, 40, 1)])
def test_two_editors_match_closed_form(w_ab, w_ba, t):
    wins, ties = _two(w_ab, w_ba, t)
    theta, nu = davidson_fit(wins, ties, prior_sd=None)
    assert theta[0] - theta[1] == pytest.approx(math.log(w_ab / w_ba), abs=1e-9)
    assert theta.sum() == pytest.approx(0.0, abs=1e-12)
    assert nu == pytest.approx(t / math.sqrt(w_ab * w_ba), rel=1e-9)
    if w_ab == w_ba:
        assert theta == pytest.approx([0.0, 0.0], abs=1e-12)
        assert nu == pytest.approx(t / w_ab, rel=1e-9)


def test_default_prior_barely_moves_the_estimate():
    wins, ties = _two(30, 12, 9)
    theta, nu = davidson_fit(wins, ties)
    assert theta[0] - theta[1] == pytest.approx(math.log(30 / 12), abs=0.01)
    assert nu == pytest.approx(9 / math.sqrt(30 * 12), rel=0.01)


def _random_counts(rng, n, shape=()):
    wins = rng.integers(0, 15, size=shape + (n, n)).astype(float)
    upper = np.triu(rng.integers(0, 6, size=shape + (n, n)), 1).astype(float)
    return wins, upper + np.swapaxes(upper, -1, -2)


def _numeric_gradient(theta, nu, wins, ties, prior_sd, h=1e-5):
    x = np.r_[theta, math.log(nu)]

    def f(x):
        return log_likelihood(x[:-1], math.exp(x[-1]), wins, ties, prior_sd=prior_sd)

    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


@pytest.mark.parametrize("prior_sd", [None, 5.0])
def test_gradient_vanishes_at_the_optimum(prior_sd):
    wins, ties = _random_counts(np.random.default_rng(7), 5)
    theta, nu = davidson_fit(wins, ties, prior_sd=prior_sd)
    assert theta.sum() == pytest.approx(0.0, abs=1e-10)
    grad = _numeric_gradient(theta, nu, wins, ties, prior_sd)
    assert np.abs(grad).max() < 1e-5
    # ... and it is a maximum, not just a stationary point.
    best = log_likelihood(theta, nu, wins, ties, prior_sd=prior_sd)
    for direction in np.random.default_rng(1).normal(size=(10, 5)):
        direction -= direction.mean()
        moved = log_likelihood(theta + 0.05 * direction, nu, wins, ties, prior_sd=prior_sd)
        assert moved < best
    assert log_likelihood(theta, nu * 1.1, wins, ties, prior_sd=prior_sd) < best
    # Sanity check of the check: away from the optimum the gradient is clearly non-zero.
    assert np.abs(_numeric_gradient(theta * 0.8, nu, wins, ties, prior_sd)).max() > 0.1


def test_log_likelihood_matches_direct_sum():
    wins, ties = _two(3, 2, 1)
    theta, nu = np.array([0.3, -0.3]), 0.7
    pa, pb = math.exp(0.3), math.exp(-0.3)
    den = pa + pb + nu * math.sqrt(pa * pb)
    expected = 3 * math.log(pa / den) + 2 * math.log(pb / den)
    expected += math.log(nu * math.sqrt(pa * pb) / den)
    assert log_likelihood(theta, nu, wins, ties) == pytest.approx(expected, rel=1e-12)


def test_batched_fit_equals_one_at_a_time():
    wins, ties = _random_counts(np.random.default_rng(3), 5, shape=(2, 3))
    wins[0, 1, 0, :] = 0.0  # an editor that never wins: a harder, slower element
    theta, nu = davidson_fit(wins, ties)
    assert theta.shape == (2, 3, 5) and nu.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            t1, n1 = davidson_fit(wins[i, j], ties[i, j])
            np.testing.assert_allclose(theta[i, j], t1, rtol=0, atol=1e-10)
            assert nu[i, j] == pytest.approx(float(n1), rel=1e-10)


def test_perfect_separation_stays_finite():
    # A always beats B, B always beats C, no ties at all.
    wins = np.array([[0, 10, 0], [0, 0, 10], [0, 0, 0]], float)
    ties = np.zeros((3, 3))
    theta, nu = davidson_fit(wins, ties)
    assert np.isfinite(theta).all() and np.isfinite(nu)
    assert theta[0] > theta[1] > theta[2]
    assert 0 <= nu < 0.1  # the MLE would be 0; the prior on log nu keeps it finite

    battles = [Battle(g, "A", "B", 1.0) for g in range(10)]
    board = leaderboard(battles, resamples=50)
    a, b = board.editors
    assert (a.name, b.name) == ("A", "B")
    for e in board.editors:
        assert all(math.isfinite(v) for v in (e.rating, e.low, e.high))
    assert a.rating > b.rating
    assert board.tie_parameter is not None and math.isfinite(board.tie_parameter)


def test_all_ties_stays_finite():
    battles = [Battle(g, "A", "B", 0.5) for g in range(10)]
    board = leaderboard(battles, resamples=20)
    assert [e.rating for e in board.editors] == pytest.approx([1000.0, 1000.0])
    assert math.isfinite(board.tie_parameter) and board.tie_parameter > 10


def _simulate(rng, strengths, nu, groups, pairs_per_group):
    names = [f"m{i}" for i in range(len(strengths))]
    battles = []
    for g in range(groups):
        for _ in range(pairs_per_group):
            i, j = rng.choice(len(strengths), size=2, replace=False)
            half = (strengths[i] - strengths[j]) / 2
            p = np.array([math.exp(half), math.exp(-half), nu])
            outcome = (1.0, 0.0, 0.5)[rng.choice(3, p=p / p.sum())]
            battles.append(Battle(f"group-{g}", names[i], names[j], outcome))
    return names, battles


def test_planted_strengths_are_recovered():
    strengths = np.array([1.2, 0.5, 0.0, -0.4, -1.3])
    names, battles = _simulate(np.random.default_rng(11), strengths, 0.6, 600, 5)
    board = leaderboard(battles, resamples=300, seed=4)

    assert board.names == names  # sorted by rating, strongest first
    assert [e.name for e in board.editors] == names
    true_elo = dict(zip(names, elo(strengths), strict=True))
    inside = [e.low <= true_elo[e.name] <= e.high for e in board.editors]
    assert sum(inside) >= 4
    assert board.tie_parameter == pytest.approx(0.6, abs=0.15)
    for e in board.editors:
        assert e.low < e.rating < e.high
        assert e.high - e.low < 150  # 3000 battles: intervals of tens of points
    ratings = np.array([e.rating for e in board.editors])
    assert ratings.mean() == pytest.approx(1000.0, abs=1e-6)
    # Ranks follow the interval rule.
    lows = [e.low for e in board.editors]
    highs = [e.high for e in board.editors]
    assert [e.rank for e in board.editors] == ranks_from_intervals(lows, highs)
    assert board.editors[0].rank == 1


def test_elo_scale():
    # 400 points = odds of 10 to 1 between two editors (without ties); centred on 1000.
    ratings = elo([math.log(10.0), 0.0])
    assert ratings[0] - ratings[1] == pytest.approx(400.0)
    assert ratings.mean() == pytest.approx(1000.0)
    assert ELO_SCALE == pytest.approx(173.7178, abs=1e-4)


def test_ranks_from_intervals():
    #            A         B         C        D
    lows = [10.0, 15.0, 0.0, 30.0]
    highs = [20.0, 25.0, 9.0, 40.0]
    # A: only D lies above (30 > 20); B: only D (30 > 25); C: A, B and D; D: nobody.
    assert ranks_from_intervals(lows, highs) == [2, 2, 4, 1]
    # Touching intervals overlap: no strict separation.
    assert ranks_from_intervals([0.0, 5.0], [5.0, 9.0]) == [1, 1]


def test_win_rate_battle_counts_and_unrated_editor():
    battles = [
        Battle(1, "A", "B", 1),
        Battle(1, "B", "A", 0),  # A wins again, listed the other way round
        Battle(2, "A", "B", 0),  # B wins
        Battle(2, "A", "B", 0.5),
        Battle(3, "C", "A", 0.5),
    ]
    board = leaderboard(battles, editors=["D", "A"], resamples=30)
    idx = {name: board.names.index(name) for name in "ABCD"}
    rate = board.win_rate
    count = board.battle_counts
    assert rate[idx["A"]][idx["B"]] == pytest.approx((2 + 0.5) / 4)
    assert rate[idx["B"]][idx["A"]] == pytest.approx((1 + 0.5) / 4)
    assert rate[idx["A"]][idx["C"]] == pytest.approx(0.5)
    assert rate[idx["C"]][idx["A"]] == pytest.approx(0.5)
    assert rate[idx["B"]][idx["C"]] is None and rate[idx["C"]][idx["B"]] is None
    assert all(rate[i][i] is None for i in range(4))
    assert all(rate[idx["D"]][j] is None and rate[j][idx["D"]] is None for j in range(4))
    assert count[idx["A"]][idx["B"]] == count[idx["B"]][idx["A"]] == 4
    assert count[idx["A"]][idx["C"]] == 1
    assert count[idx["B"]][idx["C"]] == 0 and count[idx["A"]][idx["A"]] == 0
    assert sum(count[idx["D"]]) == 0

    by_name = {e.name: e for e in board.editors}
    a, b, c, d = (by_name[x] for x in "ABCD")
    assert (a.battles, a.wins, a.ties, a.losses) == (5, 2, 2, 1)
    assert (b.battles, b.wins, b.ties, b.losses) == (4, 1, 1, 2)
    assert (c.battles, c.wins, c.ties, c.losses) == (1, 0, 1, 0)
    assert d.battles == 0 and d.rating is None and d.low is None and d.rank is None
    assert board.editors[-1].name == "D"  # editors without battles come last
    assert [e.name for e in board.editors] == board.names

    data = board.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["editors"][0]["name"] == board.editors[0].name
    assert data["resamples"] == 30


def test_no_ties_and_no_resamples():
    battles = [Battle(g, "A", "B", float(g % 3 != 0)) for g in range(30)]
    board = leaderboard(battles, resamples=0)
    a, b = board.editors
    assert a.name == "A" and a.rating - b.rating == pytest.approx(
        ELO_SCALE * math.log(20 / 10), abs=2.0
    )
    assert a.low is None and a.high is None
    assert (a.rank, b.rank) == (None, None)  # no interval clears another
    assert board.tie_parameter < 0.02  # MLE 0


def test_deterministic_for_a_seed():
    _, battles = _simulate(np.random.default_rng(2), np.array([0.3, 0.0, -0.3]), 0.5, 60, 3)
    first = leaderboard(battles, resamples=100, seed=9).as_dict()
    assert leaderboard(battles, resamples=100, seed=9).as_dict() == first
    other = leaderboard(battles, resamples=100, seed=10).as_dict()
    assert other["editors"][0]["rating"] == first["editors"][0]["rating"]
    assert other["editors"][0]["low"] != first["editors"][0]["low"]


def test_bootstrap_resamples_whole_clusters():
    # Cluster 0 holds two A-wins, cluster 1 one tie; a resample of the two clusters
    # is {0, 0}, {0, 1} or {1, 1}, so each row is 2*x0, x0 + x1 or 2*x1.
    cluster_of = np.array([0, 1])
    cell_of = np.array([0, 1])
    weight = np.array([2.0, 1.0])
    rng = np.random.default_rng(0)
    counts = _bootstrap_counts(cluster_of, cell_of, weight, 2, 2, 4000, rng)
    rows = {tuple(r) for r in counts}
    assert rows == {(4.0, 0.0), (2.0, 1.0), (0.0, 2.0)}
    share = np.mean([tuple(r) == (2.0, 1.0) for r in counts])
    assert share == pytest.approx(0.5, abs=0.05)

    # One cluster only: every resample is the data itself, the interval collapses.
    battles = [Battle("only", "A", "B", o) for o in (1, 1, 0, 0.5, 1)]
    for e in leaderboard(battles, resamples=50).editors:
        assert e.low == pytest.approx(e.rating) and e.high == pytest.approx(e.rating)


class _ScriptedRng:
    """Hands out pre-drawn cluster indices row by row, whatever the block size."""

    def __init__(self, draws):
        self.draws = draws
        self.row = 0

    def integers(self, low, high, size, dtype):
        rows = self.draws[self.row : self.row + size[0]]
        self.row += size[0]
        assert rows.shape == tuple(size)
        return rows.astype(dtype)


@pytest.mark.parametrize("block_bytes", [None, 8 * 50 * 7, 8 * 3 * 7])
def test_bootstrap_counts_match_naive_resampling(monkeypatch, block_bytes):
    import annotation.stats.bradley_terry as bt

    rng = np.random.default_rng(5)
    n_clusters, n_cells, resamples = 50, 7, 30
    cluster_of = rng.integers(0, n_clusters, size=400)
    cell_of = rng.integers(0, n_cells, size=400)
    weight = rng.integers(1, 3, size=400).astype(float)
    draws = rng.integers(0, n_clusters, size=(resamples, n_clusters))
    x = np.zeros((n_clusters, n_cells))
    np.add.at(x, (cluster_of, cell_of), weight)
    expected = x[draws].sum(axis=1)  # each resample: the drawn clusters' counts, summed

    if block_bytes is not None:  # several resample blocks and cluster blocks
        monkeypatch.setattr(bt, "_BLOCK_BYTES", block_bytes)
    counts = bt._bootstrap_counts(
        cluster_of, cell_of, weight, n_clusters, n_cells, resamples, _ScriptedRng(draws)
    )
    np.testing.assert_allclose(counts, expected)


@pytest.mark.parametrize(
    "battle, message",
    [(Battle(1, "A", "A", 1), "itself"), (Battle(1, "A", "B", 0.3), "outcome")],
)
def test_invalid_battles(battle, message):
    with pytest.raises(ValueError, match=message):
        leaderboard([battle], resamples=0)


def test_invalid_counts():
    with pytest.raises(ValueError, match="symmetric"):
        davidson_fit(np.zeros((2, 2)), np.array([[0, 1], [0, 0]]))
    with pytest.raises(ValueError, match="non-negative"):
        davidson_fit(np.array([[0, -1], [0, 0]]), np.zeros((2, 2)))
