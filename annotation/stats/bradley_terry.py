"""Editor leaderboard: Bradley-Terry with ties (Davidson 1970), arena style.

Pure numpy (no Django, no scipy). The caller decides what goes in: one call per
dimension and task type, on the consensus pairs or on the raw annotator pairs.

Model. Editor ``i`` has strength ``pi_i = exp(theta_i)``; a tie parameter ``nu >= 0``
is shared by all editors. For one comparison of ``i`` with ``j``::

    P(i beats j) = pi_i / D,   P(tie) = nu * sqrt(pi_i * pi_j) / D,
    D = pi_i + pi_j + nu * sqrt(pi_i * pi_j).

``nu = 0`` is plain Bradley-Terry. ``theta`` is identified by ``sum(theta) = 0``.

Fit. Newton's method on ``(theta, log nu)``, in which the log-likelihood is concave,
with a backtracking line search, vectorised over leading batch axes: the 1,000
bootstrap fits run as one batched computation (a few ``(B, n+1, n+1)`` solves).

Regulariser. Perfect separation (an editor that only ever wins) or data without
ties push the plain MLE to infinity. :func:`davidson_fit` therefore maximises the
posterior under a weak Gaussian prior, independent for every parameter::

    theta_i ~ N(0, prior_sd**2),   log nu ~ N(0, prior_sd**2),   prior_sd = 5.

This makes the objective strictly concave, so the fit always converges to finite
numbers. The prior's precision, 1/25, is about a sixth of the information a single
even battle carries (1/4), so with real data its effect is negligible; it also
implies ``sum(theta) = 0`` at the optimum. Without any ties ``nu`` comes out tiny
rather than exactly 0. ``prior_sd=None`` gives the plain MLE (which exists only
when every split of the editors into two groups has wins both ways and there are
ties; used by the tests).

Leaderboard. Point ratings come from the fit on all battles, shown on an Elo-like
scale ``1000 + 400 * theta / ln(10)`` (``theta`` centred over the fitted editors).
Intervals are percentile bootstrap intervals (default 1,000 resamples, 95 %) that
resample *clusters* (e.g. the group a battle came from) with replacement, all
battles of a cluster together. Ranks follow LMArena: ``rank_i = 1 + the number of
editors whose interval lies strictly above i's`` (lower bound > i's upper bound),
so editors whose intervals overlap can share a rank. Editors with no battles
(named through ``editors=``) are listed with ``battles = 0`` and no rating.

Public API::

    Battle(cluster, a, b, outcome)       # outcome 1 = a wins, 0 = b wins, 0.5 = tie
    davidson_fit(wins, ties, *, prior_sd=5.0, max_iterations=100, tol=1e-10)
        -> (theta[..., n], nu[...])
    log_likelihood(theta, nu, wins, ties, *, prior_sd=None) -> float | ndarray
    elo(theta) -> ndarray                # display scale, centred
    ranks_from_intervals(lows, highs) -> list[int]
    leaderboard(battles, *, editors=None, resamples=1000, seed=0, confidence=0.95,
                prior_sd=5.0) -> Leaderboard
    Leaderboard(editors: list[EditorRating], tie_parameter, names, win_rate,
                battle_counts, resamples, confidence).as_dict()
    EditorRating(name, rating, low, high, rank, battles, wins, ties, losses)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "DEFAULT_PRIOR_SD",
    "ELO_BASE",
    "ELO_SCALE",
    "Battle",
    "EditorRating",
    "Leaderboard",
    "davidson_fit",
    "elo",
    "leaderboard",
    "leaderboard_arrays",
    "leaderboards_arrays",
    "log_likelihood",
    "ranks_from_intervals",
]

DEFAULT_PRIOR_SD = 5.0
ELO_BASE = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)  # Elo points per unit of theta

# Memory bound (bytes) for one block of the bootstrap count computation.
_BLOCK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Battle:
    """One comparison of editor ``a`` with editor ``b``.

    ``cluster`` is the bootstrap unit (hashable, e.g. the group id): resampling draws
    clusters, all battles of a cluster together. Give every battle its own cluster
    for the plain battle-level bootstrap. ``outcome``: 1 = a wins, 0 = b wins,
    0.5 = tie.
    """

    cluster: object
    a: str
    b: str
    outcome: float


@dataclass(frozen=True)
class EditorRating:
    name: str
    rating: float | None  # Elo-like scale; None without battles
    low: float | None  # bootstrap percentile interval; None without battles or resamples
    high: float | None
    rank: int | None  # LMArena rule over the intervals; None without battles
    battles: int
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class Leaderboard:
    editors: list[EditorRating]  # rated editors by rating (desc), then those without battles
    tie_parameter: float | None  # Davidson nu; None when nobody has battles
    names: list[str]  # row/column order of the matrices (= order of ``editors``)
    # (wins_ij + ties_ij / 2) / battles_ij; None where i == j or they never met
    win_rate: list[list[float | None]]
    battle_counts: list[list[int]]  # battles between i and j (symmetric, 0 on the diagonal)
    resamples: int = 0
    confidence: float = 0.95

    def as_dict(self) -> dict:
        """JSON-ready dict (plain Python numbers, lists and None)."""
        return {
            "editors": [asdict(e) for e in self.editors],
            "tie_parameter": self.tie_parameter,
            "names": list(self.names),
            "win_rate": [list(row) for row in self.win_rate],
            "battle_counts": [list(row) for row in self.battle_counts],
            "resamples": self.resamples,
            "confidence": self.confidence,
        }


# --------------------------------------------------------------------------- model


def _check_counts(wins, ties) -> tuple[np.ndarray, np.ndarray]:
    wins = np.array(wins, dtype=float)
    ties = np.array(ties, dtype=float)
    if wins.ndim < 2 or wins.shape[-1] != wins.shape[-2] or ties.shape != wins.shape:
        raise ValueError("wins and ties must both have shape (..., n, n)")
    if (
        (wins < 0).any()
        or (ties < 0).any()
        or not (np.isfinite(wins).all() and np.isfinite(ties).all())
    ):
        raise ValueError("counts must be finite and non-negative")
    if not np.allclose(ties, np.swapaxes(ties, -1, -2)):
        raise ValueError("ties must be symmetric: ties[..., i, j] == ties[..., j, i]")
    n = wins.shape[-1]
    diag = np.arange(n)
    wins[..., diag, diag] = 0.0
    ties[..., diag, diag] = 0.0
    return wins, ties


def _log_e(d: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """log(exp(d/2) + exp(-d/2) + exp(lam)), without overflow."""
    half = np.abs(d) / 2.0
    m = np.maximum(half, lam)
    return m + np.log(np.exp(half - m) + np.exp(-half - m) + np.exp(lam - m))


def _objective(theta, lam, wins, ties, inv_var):
    """Log-likelihood (+ log prior when inv_var > 0), batched; ``lam = log nu``."""
    d = theta[..., :, None] - theta[..., None, :]
    log_e = _log_e(d, lam[..., None, None])
    ll = (wins * (d / 2.0 - log_e)).sum(axis=(-1, -2))
    ll = ll + 0.5 * (ties * (lam[..., None, None] - log_e)).sum(axis=(-1, -2))
    if inv_var:
        ll = ll - 0.5 * inv_var * ((theta**2).sum(axis=-1) + lam**2)
    return ll


def log_likelihood(theta, nu, wins, ties, *, prior_sd: float | None = None):
    """Davidson log-likelihood of ``(theta, nu)`` for the counts; batched like the fit.

    With ``prior_sd`` it adds the regulariser's log density (up to a constant), i.e. it
    is the objective :func:`davidson_fit` maximises with that ``prior_sd``.
    """
    wins, ties = _check_counts(wins, ties)
    theta = np.asarray(theta, dtype=float)
    nu = np.asarray(nu, dtype=float)
    with np.errstate(divide="ignore"):
        lam = np.log(nu)
    inv_var = 0.0 if prior_sd is None else 1.0 / float(prior_sd) ** 2
    out = _objective(theta, lam, wins, ties, inv_var)
    return float(out) if np.ndim(out) == 0 else out


def davidson_fit(
    wins,
    ties,
    *,
    prior_sd: float | None = DEFAULT_PRIOR_SD,
    max_iterations: int = 100,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the Davidson model; returns ``(theta[..., n], nu[...])`` with ``sum(theta) = 0``.

    ``wins[..., i, j]`` = times ``i`` beat ``j``; ``ties[..., i, j]`` = ties between them
    (symmetric); any leading batch axes are fitted independently, in one vectorised
    Newton iteration. The diagonal is ignored. ``prior_sd`` is the regulariser (see the
    module docstring); ``None`` gives the plain MLE. Stops when every fit's Newton
    decrement ``g' H^-1 g`` is below ``tol`` or after ``max_iterations`` (with the
    prior, a handful of iterations; without it, diverging fits stop there).
    """
    wins, ties = _check_counts(wins, ties)
    batch_shape = wins.shape[:-2]
    n = wins.shape[-1]
    wins = wins.reshape((-1, n, n))
    ties = ties.reshape((-1, n, n))
    batch = wins.shape[0]
    if n == 0:
        return np.zeros(batch_shape + (0,)), np.zeros(batch_shape)

    if prior_sd is not None and not prior_sd > 0:
        raise ValueError("prior_sd must be positive or None")
    inv_var = 0.0 if prior_sd is None else 1.0 / float(prior_sd) ** 2
    games = wins + np.swapaxes(wins, -1, -2) + ties  # n_ij, symmetric
    net = wins.sum(axis=-1) - wins.sum(axis=-2)  # wins - losses per editor
    total_ties = 0.5 * ties.sum(axis=(-1, -2))
    total_games = 0.5 * games.sum(axis=(-1, -2))

    theta = np.zeros((batch, n))
    # Equal strengths: P(tie) = nu / (2 + nu); smoothed so that it is finite.
    lam = np.log((2.0 * total_ties + 1.0) / (total_games - total_ties + 1.0))
    eye = np.eye(n + 1)
    ones = np.zeros(n + 1)
    ones[:n] = 1.0
    centring = np.outer(ones, ones)  # pins the step to sum(theta) = const
    active = np.ones(batch, dtype=bool)

    for _ in range(max_iterations):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        th, lm = theta[idx], lam[idx]
        w, t, g_ = wins[idx], ties[idx], games[idx]

        d = th[:, :, None] - th[:, None, :]
        log_e = _log_e(d, lm[:, None, None])
        a = np.exp(d / 2.0 - log_e)  # P(i beats j)
        at = np.swapaxes(a, -1, -2)  # P(j beats i)
        q = np.exp(lm[:, None, None] - log_e)  # P(tie)

        grad = np.empty((idx.size, n + 1))
        grad[:, :n] = 0.5 * (net[idx] - (g_ * (a - at)).sum(axis=-1)) - inv_var * th
        grad[:, n] = total_ties[idx] - 0.5 * (g_ * q).sum(axis=(-1, -2)) - inv_var * lm

        # Negative Hessian (positive semi-definite; definite with the prior).
        h = g_ * ((a + at) / 4.0 - (a - at) ** 2 / 4.0)
        hess = np.empty((idx.size, n + 1, n + 1))
        hess[:, :n, :n] = -h
        diag = np.arange(n)
        hess[:, diag, diag] = h.sum(axis=-1)
        cross = -0.5 * (g_ * (a - at) * q).sum(axis=-1)
        hess[:, :n, n] = cross
        hess[:, n, :n] = cross
        hess[:, n, n] = 0.5 * (g_ * q * (1.0 - q)).sum(axis=(-1, -2))
        hess += inv_var * eye
        # The likelihood is flat along theta + c: adding 1 1' there makes the system
        # regular and keeps sum(step_theta) = 0 (the gradient sums to 0 over theta
        # whenever sum(theta) = 0); the tiny ridge only guards degenerate batches.
        scale = 1.0 + np.abs(hess[:, np.arange(n + 1), np.arange(n + 1)]).max(axis=-1)
        system = hess + centring + (1e-12 * scale)[:, None, None] * eye
        step = np.linalg.solve(system, grad[..., None])[..., 0]
        bad = ~np.isfinite(step).all(axis=-1)
        step[bad] = 0.0
        decrement = (grad * step).sum(axis=-1)

        # Backtracking line search (Armijo), per batch element.
        f0 = _objective(th, lm, w, t, inv_var)
        slack = 1e-12 * (1.0 + np.abs(f0))
        size = np.ones(idx.size)
        pending = decrement > 0
        for _ in range(50):
            if not pending.any():
                break
            p = np.flatnonzero(pending)
            f1 = _objective(
                th[p] + size[p, None] * step[p, :n],
                lm[p] + size[p] * step[p, n],
                w[p],
                t[p],
                inv_var,
            )
            ok = f1 >= f0[p] + 1e-4 * size[p] * decrement[p] - slack[p]
            pending[p[ok]] = False
            size[p[~ok]] *= 0.5
        size[pending] = 0.0  # no acceptable step: stop this element

        theta[idx] = th + size[:, None] * step[:, :n]
        lam[idx] = lm + size * step[:, n]
        done = (decrement <= tol) | (size == 0.0) | bad
        active[idx[done]] = False

    theta -= theta.mean(axis=-1, keepdims=True)
    return theta.reshape(batch_shape + (n,)), np.exp(lam).reshape(batch_shape)


def elo(theta) -> np.ndarray:
    """Elo-like display scale: ``1000 + 400 * theta / ln 10``, theta centred (last axis)."""
    theta = np.asarray(theta, dtype=float)
    return ELO_BASE + ELO_SCALE * (theta - theta.mean(axis=-1, keepdims=True))


def ranks_from_intervals(lows: Sequence[float], highs: Sequence[float]) -> list[int]:
    """LMArena ranks: ``1 +`` the number of others whose low bound exceeds my high bound."""
    lows = np.asarray(lows, dtype=float)
    highs = np.asarray(highs, dtype=float)
    if lows.shape != highs.shape or lows.ndim != 1:
        raise ValueError("lows and highs must be 1-d and of equal length")
    above = lows[None, :] > highs[:, None]
    return [int(r) for r in 1 + above.sum(axis=1)]


# --------------------------------------------------------------------------- leaderboard


def _bootstrap_counts(
    cluster_of: np.ndarray,
    cell_of: np.ndarray,
    weight: np.ndarray,
    n_clusters: int,
    n_cells: int,
    resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per-resample cell counts, shape (resamples, n_cells).

    The per-cluster counts form a sparse (cluster x cell) matrix X given by
    (cluster_of, cell_of, weight); each resample draws clusters with replacement,
    i.e. a multiplicity vector m, and its counts are m @ X. Done in blocks of
    resamples and clusters so that memory stays bounded.
    """
    return _bootstrap_counts_many(
        [(cluster_of, cell_of, weight, n_cells)], n_clusters, resamples, rng
    )[0]


def _bootstrap_counts_many(
    sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int]],
    n_clusters: int,
    resamples: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """:func:`_bootstrap_counts` for several sparse matrices over the same clusters:
    each block of multiplicities is drawn once and used for every matrix."""
    prepared = []
    for cluster_of, cell_of, weight, n_cells in sets:
        c_block = max(1, min(n_clusters, _BLOCK_BYTES // (8 * max(n_cells, 1))))
        order = np.argsort(cluster_of, kind="stable")
        cluster_of, cell_of, weight = cluster_of[order], cell_of[order], weight[order]
        starts = list(range(0, n_clusters, c_block))
        bounds = np.searchsorted(cluster_of, starts + [n_clusters])

        def block(k, cluster_of=cluster_of, cell_of=cell_of, weight=weight, starts=starts,
                  bounds=bounds, c_block=c_block, n_cells=n_cells) -> np.ndarray:  # fmt: skip
            c0, c1 = starts[k], min(n_clusters, starts[k] + c_block)
            s, e = bounds[k], bounds[k + 1]
            x = np.zeros((c1 - c0) * n_cells)
            np.add.at(x, (cluster_of[s:e] - c0) * n_cells + cell_of[s:e], weight[s:e])
            return x.reshape(c1 - c0, n_cells)

        # Keep X when it is small (the usual case), else rebuild its blocks per use.
        cached = [block(k) for k in range(len(starts))] if len(starts) <= 4 else None
        prepared.append((starts, block, cached, np.zeros((resamples, n_cells))))
    r_block = max(1, min(resamples, _BLOCK_BYTES // (8 * max(n_clusters, 1))))
    for r0 in range(0, resamples, r_block):
        r1 = min(resamples, r0 + r_block)
        # int32 draws are much faster; a block has < 2**31 entries (_BLOCK_BYTES).
        draws = rng.integers(0, n_clusters, size=(r1 - r0, n_clusters), dtype=np.int32)
        draws += (np.arange(r1 - r0, dtype=np.int32) * n_clusters)[:, None]
        mult = np.bincount(draws.ravel(), minlength=(r1 - r0) * n_clusters)
        mult = mult.reshape(r1 - r0, n_clusters).astype(float)
        for starts, block, cached, out in prepared:
            for k, c0 in enumerate(starts):
                x = cached[k] if cached is not None else block(k)
                out[r0:r1] += mult[:, c0 : c0 + x.shape[0]] @ x
    return [out for *_, out in prepared]


def leaderboard(
    battles: Iterable[Battle],
    *,
    editors: Iterable[str] | None = None,
    resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    prior_sd: float | None = DEFAULT_PRIOR_SD,
) -> Leaderboard:
    """Arena leaderboard from battles (see the module docstring).

    ``editors`` names editors to list even without battles. ``resamples=0`` skips the
    bootstrap: intervals and ranks are None.
    """
    if resamples < 0:
        raise ValueError("resamples must be >= 0")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie in (0, 1)")

    battles = battles if isinstance(battles, list | tuple) else list(battles)
    # Editor and cluster codes in order of first appearance, via comprehensions and
    # dict lookups (450k battles: a few tenths of a second).
    a_names = [x.a for x in battles]
    b_names = [x.b for x in battles]
    names_all = list(dict.fromkeys([*(editors or ()), *a_names, *b_names]))
    index = {name: i for i, name in enumerate(names_all)}
    cluster_keys = [x.cluster for x in battles]
    cluster_code = {key: i for i, key in enumerate(dict.fromkeys(cluster_keys))}
    n_clusters = len(cluster_code)
    a = np.array([index[x] for x in a_names], dtype=np.int64)
    b = np.array([index[x] for x in b_names], dtype=np.int64)
    cl = np.array([cluster_code[x] for x in cluster_keys], dtype=np.int64)
    outcome = np.array([x.outcome for x in battles], dtype=float)
    if (a == b).any():
        raise ValueError(f"an editor cannot battle itself: {a_names[int(np.argmax(a == b))]!r}")
    k = np.select([outcome == 1.0, outcome == 0.0, outcome == 0.5], [1, 0, 2], -1)
    if (k < 0).any():
        bad = battles[int(np.argmax(k < 0))].outcome
        raise ValueError(f"outcome must be 1, 0 or 0.5, not {bad!r}")
    return _leaderboard_coded(
        names_all, a, b, k, cl, n_clusters,
        resamples=resamples, seed=seed, confidence=confidence, prior_sd=prior_sd,
    )  # fmt: skip


def leaderboard_arrays(
    names: Sequence[str],
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
    cluster: np.ndarray,
    *,
    resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    prior_sd: float | None = DEFAULT_PRIOR_SD,
) -> Leaderboard:
    """:func:`leaderboard` for battles already held in arrays: ``a``, ``b`` index
    ``names``; ``outcome`` is +1 (a wins), -1 (b wins) or 0 (tie); ``cluster`` holds
    any integer bootstrap-unit keys. Every name is listed, with or without battles."""
    return leaderboards_arrays(
        names, [(a, b, outcome, cluster)],
        resamples=resamples, seed=seed, confidence=confidence, prior_sd=prior_sd,
    )[0]  # fmt: skip


def leaderboards_arrays(
    names: Sequence[str],
    sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    prior_sd: float | None = DEFAULT_PRIOR_SD,
) -> list[Leaderboard]:
    """One leaderboard per battle set (a, b, outcome, cluster) as in
    :func:`leaderboard_arrays`, the sets sharing one cluster space (e.g. the
    dimensions of one dataset, clusters = groups). The bootstrap draws the
    clusters of the union once per resample for every set: a joint bootstrap,
    whose intervals for each set are the usual cluster-bootstrap intervals (a
    drawn cluster without battles in a set adds nothing to it)."""
    if resamples < 0:
        raise ValueError("resamples must be >= 0")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie in (0, 1)")
    coded, keys = [], []
    for a, b, outcome, cluster in sets:
        a, b, outcome = (np.asarray(x, dtype=np.int64) for x in (a, b, outcome))
        if (a == b).any():
            raise ValueError(
                f"an editor cannot battle itself: {names[int(a[np.argmax(a == b)])]!r}"
            )
        k = np.select([outcome == 1, outcome == -1, outcome == 0], [1, 0, 2], -1)
        if (k < 0).any():
            raise ValueError("outcome must be 1, -1 or 0")
        coded.append((a, b, k))
        keys.append(np.asarray(cluster, dtype=np.int64))
    universe = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    return _leaderboards_coded(
        list(names),
        [(a, b, k, np.searchsorted(universe, key)) for (a, b, k), key in zip(coded, keys, strict=True)],
        len(universe),
        resamples=resamples, seed=seed, confidence=confidence, prior_sd=prior_sd,
    )  # fmt: skip


def _leaderboard_coded(
    names_all: list[str],
    a: np.ndarray,
    b: np.ndarray,
    k: np.ndarray,
    cl: np.ndarray,
    n_clusters: int,
    *,
    resamples: int,
    seed: int | None,
    confidence: float,
    prior_sd: float | None,
) -> Leaderboard:
    return _leaderboards_coded(
        names_all, [(a, b, k, cl)], n_clusters,
        resamples=resamples, seed=seed, confidence=confidence, prior_sd=prior_sd,
    )[0]  # fmt: skip


@dataclass
class _Counts:
    """The point fit of one battle set and what its bootstrap needs."""

    cell: np.ndarray
    wins: np.ndarray
    ties: np.ndarray
    rated: np.ndarray
    ratings: np.ndarray
    tie_parameter: float | None
    sparse: tuple | None = None  # (cluster_of, cell_of, weight, used cells)


def _leaderboards_coded(
    names_all: list[str],
    sets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    n_clusters: int,
    *,
    resamples: int,
    seed: int | None,
    confidence: float,
    prior_sd: float | None,
) -> list[Leaderboard]:
    """The fits, one shared bootstrap and the tables, from coded battles (k: 1 = a
    wins, 0 = b wins, 2 = tie; cl: cluster codes 0..n_clusters-1)."""
    n = len(names_all)
    fits = []
    for a, b, k, cl in sets:
        # Cell of each battle: winner * n + loser for a win, n*n + min * n + max for a tie.
        winner = np.where(k == 0, b, a)
        loser = np.where(k == 0, a, b)
        cell = np.where(k == 2, n * n + np.minimum(a, b) * n + np.maximum(a, b), winner * n + loser)
        counts = np.bincount(cell, minlength=2 * n * n).astype(float)
        wins = counts[: n * n].reshape(n, n)
        ties_upper = counts[n * n :].reshape(n, n)
        ties = ties_upper + ties_upper.T
        rated = np.flatnonzero((wins + wins.T + ties).sum(axis=1) > 0)
        ratings = np.full(n, np.nan)
        fit = _Counts(cell, wins, ties, rated, ratings, None)
        if rated.size:
            sub = np.ix_(rated, rated)
            theta, nu = davidson_fit(wins[sub], ties[sub], prior_sd=prior_sd)
            ratings[rated] = elo(theta)
            fit.tie_parameter = float(nu)
            # Only the cells that occur matter; pack them for the resampling.
            used, cell_compact = np.unique(cell, return_inverse=True)
            pair_keys = cl * used.size + cell_compact
            uniq, weight = np.unique(pair_keys, return_counts=True)
            fit.sparse = (uniq // used.size, uniq % used.size, weight.astype(float), used)
        fits.append(fit)

    boots: list[np.ndarray | None] = [None] * len(fits)
    resampled = [i for i, f in enumerate(fits) if f.sparse is not None] if resamples else []
    if resampled:
        counts = _bootstrap_counts_many(
            [(*fits[i].sparse[:3], fits[i].sparse[3].size) for i in resampled],
            n_clusters,
            resamples,
            np.random.default_rng(seed),
        )
        for i, boot in zip(resampled, counts, strict=True):
            boots[i] = boot
    return [
        _board(names_all, fit, boot, resamples, confidence, prior_sd)
        for fit, boot in zip(fits, boots, strict=True)
    ]


def _board(names_all, fit: _Counts, boot, resamples, confidence, prior_sd) -> Leaderboard:
    n = len(names_all)
    wins_all, ties_all, rated, ratings = fit.wins, fit.ties, fit.rated, fit.ratings
    games_all = wins_all + wins_all.T + ties_all
    per_wins = wins_all.sum(axis=1)
    per_losses = wins_all.sum(axis=0)
    per_ties = ties_all.sum(axis=1)
    per_battles = per_wins + per_losses + per_ties
    lows = np.full(n, np.nan)
    highs = np.full(n, np.nan)
    if boot is not None:
        full = np.zeros((resamples, 2 * n * n))
        full[:, fit.sparse[3]] = boot
        bw = full[:, : n * n].reshape(resamples, n, n)[:, rated][:, :, rated]
        bt = full[:, n * n :].reshape(resamples, n, n)[:, rated][:, :, rated]
        bt = bt + np.swapaxes(bt, -1, -2)
        btheta, _ = davidson_fit(bw, bt, prior_sd=prior_sd)
        alpha = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(elo(btheta), [alpha, 1.0 - alpha], axis=0)
        lows[rated] = lo
        highs[rated] = hi

    # Order: rated by rating (desc), then name; then editors without battles by name.
    rated_order = sorted(rated.tolist(), key=lambda i: (-ratings[i], str(names_all[i])))
    unrated_order = sorted(set(range(n)) - set(rated.tolist()), key=lambda i: str(names_all[i]))
    order = rated_order + unrated_order
    # Without intervals no editor can be said to clear another: no ranks.
    rank_of = (
        dict(
            zip(
                rated_order,
                ranks_from_intervals(lows[rated_order], highs[rated_order]),
                strict=True,
            )
        )
        if boot is not None
        else {}
    )

    def _num(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    entries = [
        EditorRating(
            name=names_all[i],
            rating=_num(ratings[i]),
            low=_num(lows[i]),
            high=_num(highs[i]),
            rank=rank_of.get(i),
            battles=int(per_battles[i]),
            wins=int(per_wins[i]),
            ties=int(per_ties[i]),
            losses=int(per_losses[i]),
        )
        for i in order
    ]
    win_rate: list[list[float | None]] = []
    battle_counts: list[list[int]] = []
    for i in order:
        rate_row: list[float | None] = []
        count_row: list[int] = []
        for j in order:
            g = games_all[i, j]
            count_row.append(int(g))
            if i == j or g == 0:
                rate_row.append(None)
            else:
                rate_row.append(float((wins_all[i, j] + 0.5 * ties_all[i, j]) / g))
        win_rate.append(rate_row)
        battle_counts.append(count_row)
    return Leaderboard(
        editors=entries,
        tie_parameter=fit.tie_parameter,
        names=[names_all[i] for i in order],
        win_rate=win_rate,
        battle_counts=battle_counts,
        resamples=int(resamples),
        confidence=float(confidence),
    )
