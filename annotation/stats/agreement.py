"""Inter-annotator agreement of tier rankings, with group-bootstrap 95% intervals.

Pure stdlib + numpy: no Django import, so it runs in a report job, a notebook or a test without
settings.

Data model
----------
A ranking of one group on one dimension is ``Positions = dict[str, int]``: candidate id -> tier
index, 1 = best tier; candidates in the same tier are tied. Two rankings are compared over the
candidates both placed.

The relation of a candidate pair (a, b) under one ranking is +1 if a's tier index is lower
(a better), -1 if higher (a worse), 0 if tied (:func:`relation`).

Statistics
----------
* **Pairwise agreement** of two annotators on one group (:func:`pairwise_agreement`): over every
  unordered pair of candidates both placed, the fraction of pairs given the same relation
  (better / worse / tie). Dataset figure: mean over all (group, annotator pair), i.e. every
  annotator pair of every group counts once (NOT the mean of per-group means). An annotator
  pair with fewer than 2 common candidates has no pair to compare and does not count.
* **Kendall tau-b** (:func:`kendall_tau_b`): ``(C - D) / sqrt((n0 - n1) * (n0 - n2))`` with C / D
  the concordant / discordant candidate pairs, n0 = n(n-1)/2, n1 / n2 the pairs tied by the first /
  second annotator. Undefined (``None``) when the denominator is 0, i.e. either side ties every
  candidate (or fewer than 2 common candidates); undefined pairs are skipped and counted
  (``tau_undefined``). Dataset figure: mean over (group, annotator pair) of the defined values.
* **Krippendorff's alpha, ordinal** (:func:`krippendorff_alpha_ordinal`): units = (group,
  candidate), coders = annotators, value = tier index. Computed from the coincidence matrix
  ``o_ck = sum_u n_uc * (n_uk - [c == k]) / (m_u - 1)`` over units with m_u >= 2 values (units with
  fewer values are not pairable and dropped), marginals ``n_c = sum_k o_ck``, n = sum n_c, ordinal
  metric ``delta2(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2) ** 2`` and
  ``alpha = 1 - (n - 1) * sum o_ck delta2 / sum n_c n_k delta2``. ``None`` when the expected
  disagreement is 0 (every pairable value is the same tier) or nothing is pairable.
  It equals ``krippendorff.alpha(reliability_data, level_of_measurement="ordinal")`` (reliability
  data coders x units, NaN for missing). That package takes the sorted unique observed values as
  its value domain, so a tier index nobody used is not in it, while a value seen only in a
  non-pairable unit is (with marginal 0). Neither matters for the ordinal metric: a value with
  marginal n_g = 0 adds nothing to any ``sum_{g=c..k} n_g`` and its row / column of o and of the
  expected coincidences is 0; only the order of the values counts. Here the domain is the
  sorted set of values that have a coincidence (restricted to nonzero marginals in summaries).

Intervals
---------
Percentile bootstrap over groups (default 1,000 resamples, seeded, 2.5 / 97.5 percentiles). Each
resample draws G group indices with replacement and re-evaluates all three statistics on the
SAME indices. A statistic undefined in a resample (no annotator pair, no defined tau, zero
expected disagreement) drops that resample for that statistic only; with fewer than half the
resamples defined its interval is ``None``.

Speed
-----
Every statistic is a function of per-group sums, so a group reduces once to additive sufficient
statistics: one :class:`GroupAgreement` (:func:`group_agreement`, plain Python, the reference
implementation) or one row of an :class:`AgreementTable` (:func:`agreement_table`, vectorised
over all groups at once: use it for whole datasets). :func:`summarize` stacks a table into a
G x K matrix X and evaluates resamples in batches of ``BATCH`` as ``counts (batch x G) @ X``:
memory stays bounded and nothing loops in Python per group. Subsets (e.g. per task type) are
``table.subset(mask)``, without recomputing groups. A table holds G x V x V float64
coincidences, V = number of distinct tier values (about 17 MB for 33,000 groups and 8 tiers).

Public API
----------
::

    Positions = dict[str, int]
    relation(tier_a: int, tier_b: int) -> int
    pairwise_agreement(a: Positions, b: Positions) -> float | None   # None: < 2 common candidates
    kendall_tau_b(a: Positions, b: Positions) -> float | None        # None: undefined
    group_agreement(rankings: Sequence[Positions]) -> GroupAgreement # one group, one dimension
    agreement_table(groups: Iterable[Sequence[Positions]]) -> AgreementTable  # many, vectorised
    tiers_table(tiers: N x m x n array, values) -> AgreementTable  # complete groups, fixed domain
    AgreementTable.concatenate(tables, values) -> AgreementTable
    AgreementTable.from_groups(groups: Sequence[GroupAgreement]) -> AgreementTable
    AgreementTable.subset(index: bool mask | int array) -> AgreementTable; len(table) = groups
    total_coincidences(groups: Iterable[GroupAgreement]) -> dict[tuple[int, int], float]
    krippendorff_alpha_ordinal(coincidences: Mapping[(c, k), float] | V x V array) -> float | None
    summarize(groups: AgreementTable | Sequence[GroupAgreement], *, resamples=1000, seed=0,
              confidence=0.95) -> AgreementSummary
    bootstrap(groups, *, resamples=1000, seed=0) -> np.ndarray  # resamples x 3, NaN = undefined
    Estimate(value, low, high, n).as_dict();  AgreementSummary(...).as_dict()  # JSON-ready
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Positions = dict[str, int]

BATCH = 100  # bootstrap resamples evaluated per matrix product (bounds memory)

# Column order of the bootstrap statistics returned by bootstrap().
AGREEMENT, TAU, ALPHA = 0, 1, 2


# --- one annotator pair -------------------------------------------------------------------------


def relation(tier_a: int, tier_b: int) -> int:
    """+1 if the first candidate is better (lower tier index), -1 if worse, 0 if tied."""
    return (tier_a < tier_b) - (tier_a > tier_b)


def _compare(a: Positions, b: Positions) -> tuple[int, int, int, int, int, int]:
    """One pass over the candidate pairs both rankings placed.

    Returns (pairs, same_relation, concordant, discordant, tied_in_a, tied_in_b).
    """
    common = [c for c in a if c in b]
    va = [a[c] for c in common]
    vb = [b[c] for c in common]
    n = len(common)
    same = conc = disc = tie_a = tie_b = 0
    for i in range(n):
        ai, bi = va[i], vb[i]
        for j in range(i + 1, n):
            ra = relation(ai, va[j])
            rb = relation(bi, vb[j])
            same += ra == rb
            tie_a += ra == 0
            tie_b += rb == 0
            conc += ra * rb > 0
            disc += ra * rb < 0
    return n * (n - 1) // 2, same, conc, disc, tie_a, tie_b


def _tau_b(pairs: int, conc: int, disc: int, tie_a: int, tie_b: int) -> float | None:
    denominator = (pairs - tie_a) * (pairs - tie_b)
    if denominator == 0:
        return None
    return (conc - disc) / math.sqrt(denominator)


def pairwise_agreement(a: Positions, b: Positions) -> float | None:
    """Fraction of candidate pairs (both placed) with the same relation; None if no pair."""
    pairs, same, *_ = _compare(a, b)
    return same / pairs if pairs else None


def kendall_tau_b(a: Positions, b: Positions) -> float | None:
    """Kendall tau-b of the tier positions over the common candidates; None when undefined."""
    pairs, _, conc, disc, tie_a, tie_b = _compare(a, b)
    return _tau_b(pairs, conc, disc, tie_a, tie_b)


# --- one group ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupAgreement:
    """Additive sufficient statistics of one group on one dimension.

    agreement_sum / agreement_n: sum of the annotator pairs' agreement fractions, number of
    annotator pairs with at least one common candidate pair. tau_sum / tau_n: sum and count of
    the defined tau-b values; tau_undefined: annotator pairs whose tau-b is undefined.
    coincidences: this group's Krippendorff coincidence contributions o_ck keyed by
    (tier value c, tier value k), both orders present; pairable_units: its candidates with >= 2
    values.
    """

    agreement_sum: float = 0.0
    agreement_n: int = 0
    tau_sum: float = 0.0
    tau_n: int = 0
    tau_undefined: int = 0
    coincidences: Mapping[tuple[int, int], float] = field(default_factory=dict)
    pairable_units: int = 0


def group_agreement(rankings: Sequence[Positions]) -> GroupAgreement:
    """Sufficient statistics of all annotators' rankings of one group on one dimension."""
    rankings = list(rankings)
    agreement_sum = tau_sum = 0.0
    agreement_n = tau_n = tau_undefined = 0
    for i in range(len(rankings)):
        for j in range(i + 1, len(rankings)):
            pairs, same, conc, disc, tie_a, tie_b = _compare(rankings[i], rankings[j])
            if pairs:
                agreement_sum += same / pairs
                agreement_n += 1
            tau = _tau_b(pairs, conc, disc, tie_a, tie_b)
            if tau is None:
                tau_undefined += 1
            else:
                tau_sum += tau
                tau_n += 1

    coincidences: dict[tuple[int, int], float] = {}
    pairable = 0
    for candidate in dict.fromkeys(c for ranking in rankings for c in ranking):
        values = [ranking[candidate] for ranking in rankings if candidate in ranking]
        m = len(values)
        if m < 2:
            continue
        pairable += 1
        counts = Counter(values)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                weight = n_c * (n_k - (c == k)) / (m - 1)
                if weight:
                    coincidences[(c, k)] = coincidences.get((c, k), 0.0) + weight
    return GroupAgreement(
        agreement_sum=agreement_sum,
        agreement_n=agreement_n,
        tau_sum=tau_sum,
        tau_n=tau_n,
        tau_undefined=tau_undefined,
        coincidences=coincidences,
        pairable_units=pairable,
    )


def total_coincidences(groups: Iterable[GroupAgreement]) -> dict[tuple[int, int], float]:
    """Sum of the groups' coincidence contributions."""
    total: dict[tuple[int, int], float] = {}
    for group in groups:
        for key, weight in group.coincidences.items():
            total[key] = total.get(key, 0.0) + weight
    return total


# --- many groups --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AgreementTable:
    """The :class:`GroupAgreement` statistics of G groups as arrays (row g = group g).

    coincidences has shape (G, V, V); axis positions are the tier values in ``values`` (sorted).
    """

    values: tuple[int, ...]
    agreement_sum: np.ndarray
    agreement_n: np.ndarray
    tau_sum: np.ndarray
    tau_n: np.ndarray
    tau_undefined: np.ndarray
    pairable_units: np.ndarray
    coincidences: np.ndarray

    def __len__(self) -> int:
        return len(self.agreement_sum)

    @classmethod
    def empty(cls, size: int, values: Sequence[int]) -> AgreementTable:
        v = len(values)
        return cls(
            values=tuple(values),
            agreement_sum=np.zeros(size),
            agreement_n=np.zeros(size, dtype=np.int64),
            tau_sum=np.zeros(size),
            tau_n=np.zeros(size, dtype=np.int64),
            tau_undefined=np.zeros(size, dtype=np.int64),
            pairable_units=np.zeros(size, dtype=np.int64),
            coincidences=np.zeros((size, v, v)),
        )

    @classmethod
    def from_groups(cls, groups: Sequence[GroupAgreement]) -> AgreementTable:
        groups = list(groups)
        values = sorted({value for g in groups for pair in g.coincidences for value in pair})
        table = cls.empty(len(groups), values)
        table._set_rows(enumerate(groups))
        return table

    def _set_rows(self, rows: Iterable[tuple[int, GroupAgreement]]) -> None:
        position = {value: i for i, value in enumerate(self.values)}
        for row, group in rows:
            self.agreement_sum[row] = group.agreement_sum
            self.agreement_n[row] = group.agreement_n
            self.tau_sum[row] = group.tau_sum
            self.tau_n[row] = group.tau_n
            self.tau_undefined[row] = group.tau_undefined
            self.pairable_units[row] = group.pairable_units
            for (c, k), weight in group.coincidences.items():
                self.coincidences[row, position[c], position[k]] = weight

    def subset(self, index: np.ndarray | Sequence[int] | Sequence[bool]) -> AgreementTable:
        """The rows picked by a boolean mask or an integer index array."""
        index = np.asarray(index)
        if index.dtype != bool:
            index = index.astype(np.intp)
        return AgreementTable(
            values=self.values,
            agreement_sum=self.agreement_sum[index],
            agreement_n=self.agreement_n[index],
            tau_sum=self.tau_sum[index],
            tau_n=self.tau_n[index],
            tau_undefined=self.tau_undefined[index],
            pairable_units=self.pairable_units[index],
            coincidences=self.coincidences[index],
        )

    @classmethod
    def concatenate(cls, tables: Sequence[AgreementTable], values: Sequence[int]) -> AgreementTable:
        """The rows of several tables on one value domain, in order."""
        if any(t.values != tuple(values) for t in tables):
            raise ValueError("tables to concatenate must share the value domain")
        if not tables:
            return cls.empty(0, values)
        return cls(
            values=tuple(values),
            **{
                name: np.concatenate([getattr(t, name) for t in tables])
                for name in (
                    "agreement_sum", "agreement_n", "tau_sum", "tau_n", "tau_undefined",
                    "pairable_units", "coincidences",
                )
            },
        )  # fmt: skip


def tiers_table(tiers: np.ndarray, values: Sequence[int]) -> AgreementTable:
    """Rows for N complete groups given as an N x annotators x candidates array of
    tier indices, on a fixed value domain (every tier index that can occur), so
    tables built chunk by chunk concatenate."""
    tiers = np.asarray(tiers, dtype=np.int64)
    table = AgreementTable.empty(len(tiers), values)
    _fill_bucket(table, np.arange(len(tiers)), tiers, np.asarray(table.values, dtype=np.int64))
    return table


def agreement_table(groups: Iterable[Sequence[Positions]]) -> AgreementTable:
    """Row g = ``group_agreement(groups[g])``, computed with numpy for all groups at once.

    Groups whose annotators all placed the same candidates (the usual case) are bucketed by
    (annotators, candidates) and evaluated as arrays; any other group goes through
    :func:`group_agreement`. Sums may differ from the per-group function in the last bits.
    """
    buckets: dict[tuple[int, int], tuple[list[int], list[list[list[int]]]]] = {}
    partial: dict[int, GroupAgreement] = {}
    size = 0
    for row, rankings in enumerate(groups):
        size += 1
        tiers = _complete_tiers(rankings)
        if tiers is None:
            partial[row] = group_agreement(rankings)
        else:
            bucket = buckets.setdefault((len(tiers), len(tiers[0])), ([], []))
            bucket[0].append(row)
            bucket[1].append(tiers)

    arrays = {
        shape: (np.asarray(rows, dtype=np.intp), np.asarray(tiers, dtype=np.int64))
        for shape, (rows, tiers) in buckets.items()
    }
    values: set[int] = {
        value for g in partial.values() for pair in g.coincidences for value in pair
    }
    for (m, n), (_, tiers) in arrays.items():
        if m >= 2 and n >= 1:
            values.update(np.unique(tiers).tolist())
    table = AgreementTable.empty(size, sorted(values))
    domain = np.asarray(table.values, dtype=np.int64)
    for rows, tiers in arrays.values():
        _fill_bucket(table, rows, tiers, domain)
    table._set_rows(partial.items())
    return table


def _complete_tiers(rankings: Sequence[Positions]) -> list[list[int]] | None:
    """annotators x candidates tiers if every annotator placed the same candidates, else None."""
    if not rankings:
        return None
    first = rankings[0]
    if len(set(map(len, rankings))) != 1:
        return None
    try:  # same size and every key of the first ranking present: same candidates
        return [list(first.values())] + [[r[c] for c in first] for r in rankings[1:]]
    except KeyError:
        return None


def _fill_bucket(table: AgreementTable, rows: np.ndarray, tiers: np.ndarray, domain: np.ndarray):
    """Statistics of N complete groups of m annotators x n candidates (tiers: N x m x n)."""
    count, m, n = tiers.shape
    if m < 2:
        return  # no annotator pair, nothing pairable: the row stays zero
    first, second = np.triu_indices(n, 1)  # candidate pairs
    p = len(first)
    relations = np.sign(tiers[:, :, second] - tiers[:, :, first]).astype(np.int8)  # N x m x p
    ties = (relations == 0).sum(axis=-1)  # N x m
    a, b = np.triu_indices(m, 1)  # annotator pairs
    q = len(a)
    if p:
        same = (relations[:, a] == relations[:, b]).sum(axis=-1)  # N x q
        table.agreement_sum[rows] = (same / p).sum(axis=-1)
        table.agreement_n[rows] = q
    numerator = (relations[:, a].astype(np.int64) * relations[:, b]).sum(axis=-1)  # C - D
    denominator = (p - ties[:, a]) * (p - ties[:, b])
    defined = denominator > 0
    tau = numerator / np.sqrt(np.where(defined, denominator, 1))
    table.tau_sum[rows] = np.where(defined, tau, 0.0).sum(axis=-1)
    table.tau_n[rows] = defined.sum(axis=-1)
    table.tau_undefined[rows] = q - table.tau_n[rows]

    # Coincidences: every unit has m values; each ordered annotator pair (i, j), i != j, adds
    # 1 / (m - 1) at (value_i, value_j).
    v = len(domain)
    position = np.searchsorted(domain, tiers)  # N x m x n
    i, j = np.nonzero(~np.eye(m, dtype=bool))
    cells = position[:, i] * v + position[:, j]  # N x m(m-1) x n
    cells += (np.arange(count) * v * v)[:, None, None]
    counts = np.bincount(cells.ravel(), minlength=count * v * v)
    table.coincidences[rows] = counts.reshape(count, v, v) / (m - 1)
    table.pairable_units[rows] = n


# --- Krippendorff's alpha -----------------------------------------------------------------------


def _alpha_dense(o: np.ndarray) -> np.ndarray:
    """Ordinal alpha of a stack of coincidence matrices (..., V, V); NaN where undefined.

    The value axes must be in tier order; values with marginal 0 are harmless.
    """
    n_v = o.sum(axis=-2)  # marginals n_c (o is symmetric)
    n = n_v.sum(axis=-1)
    v = n_v.shape[-1]
    cumulative = np.cumsum(n_v, axis=-1)
    before = cumulative - n_v  # sum of n_g for g < c
    index = np.arange(v)
    lo = np.minimum.outer(index, index)
    hi = np.maximum.outer(index, index)
    between = cumulative[..., hi] - before[..., lo]  # sum_{g=min..max} n_g
    delta = (between - (n_v[..., :, None] + n_v[..., None, :]) / 2) ** 2
    delta[..., index, index] = 0.0
    observed = (o * delta).sum(axis=(-2, -1))
    expected = (n_v[..., :, None] * n_v[..., None, :] * delta).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (n - 1) * observed / expected
    return np.where((expected > 0) & (n > 1), alpha, np.nan)


def krippendorff_alpha_ordinal(
    coincidences: Mapping[tuple[int, int], float] | np.ndarray,
) -> float | None:
    """Ordinal Krippendorff's alpha from summed coincidences; None when undefined.

    Takes a mapping (tier c, tier k) -> o_ck (see :func:`total_coincidences`) or a V x V array
    whose axes are already in tier order.
    """
    if isinstance(coincidences, Mapping):
        o = AgreementTable.from_groups([GroupAgreement(coincidences=coincidences)]).coincidences[0]
    else:
        o = np.asarray(coincidences, dtype=np.float64)
    if o.size == 0:
        return None
    alpha = float(_alpha_dense(o))
    return None if math.isnan(alpha) else alpha


# --- bootstrap and summary ----------------------------------------------------------------------


def _matrix(table: AgreementTable) -> tuple[np.ndarray, int]:
    """G x (4 + V(V+1)/2) additive statistics and V.

    Columns: agreement sum, n, tau sum, n, then the upper triangle (c <= k) of the coincidence
    matrix over the values with a nonzero marginal in this table (o is symmetric).
    """
    o = table.coincidences
    used = np.flatnonzero(o.sum(axis=(0, 1)) > 0)
    upper = np.triu_indices(len(used))
    triangle = o[:, used[:, None], used[None, :]][:, upper[0], upper[1]]
    scalars = np.column_stack([table.agreement_sum, table.agreement_n, table.tau_sum, table.tau_n])
    return np.hstack([scalars.reshape(len(table), 4), triangle]), len(used)


def _statistics(totals: np.ndarray, v: int) -> np.ndarray:
    """(R x K) summed statistics -> (R x 3) agreement, tau, alpha; NaN where undefined."""
    r = totals.shape[0]
    out = np.full((r, 3), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, AGREEMENT] = np.where(totals[:, 1] > 0, totals[:, 0] / totals[:, 1], np.nan)
        out[:, TAU] = np.where(totals[:, 3] > 0, totals[:, 2] / totals[:, 3], np.nan)
    if v:
        upper = np.triu_indices(v)
        o = np.zeros((r, v, v))
        o[:, upper[0], upper[1]] = totals[:, 4:]
        o[:, upper[1], upper[0]] = totals[:, 4:]
        out[:, ALPHA] = _alpha_dense(o)
    return out


def _replicate_totals(x: np.ndarray, resamples: int, seed: int) -> np.ndarray | None:
    """(resamples x K) column sums of x over bootstrap resamples of its rows; None
    when there is no row to resample."""
    g = x.shape[0]
    if g == 0:
        return None
    out = np.empty((resamples, x.shape[1]))
    rng = np.random.default_rng(seed)
    index_type = np.int32 if g < 2**31 else np.int64
    counts = np.empty((min(BATCH, resamples), g))
    for start in range(0, resamples, BATCH):
        b = min(BATCH, resamples - start)
        picks = rng.integers(0, g, size=(b, g), dtype=index_type)  # row = one resample
        for row in range(b):  # one bincount per row: its counts fit in cache
            counts[row] = np.bincount(picks[row], minlength=g)
        out[start : start + b] = counts[:b] @ x
    return out


def _replicates(x: np.ndarray, v: int, resamples: int, seed: int) -> np.ndarray:
    totals = _replicate_totals(x, resamples, seed)
    if totals is None:
        return np.full((resamples, 3), np.nan)
    return _statistics(totals, v)


def _as_table(groups: AgreementTable | Sequence[GroupAgreement]) -> AgreementTable:
    return groups if isinstance(groups, AgreementTable) else AgreementTable.from_groups(groups)


def bootstrap(
    groups: AgreementTable | Sequence[GroupAgreement], *, resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """(resamples x 3) bootstrap replicates of (agreement, tau-b, alpha); NaN = undefined.

    Row r evaluates all three statistics on the same resample of group indices.
    """
    x, v = _matrix(_as_table(groups))
    return _replicates(x, v, resamples, seed)


@dataclass(frozen=True)
class Estimate:
    """Point estimate with its bootstrap interval.

    n: (group, annotator pair)s for agreement, defined tau-b values for tau, pairable units for
    alpha. value is None when undefined (e.g. n == 0); low / high are None when the value is, or
    when fewer than half of the resamples were defined.
    """

    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


@dataclass(frozen=True)
class AgreementSummary:
    groups: int
    pairwise_agreement: Estimate
    kendall_tau_b: Estimate
    tau_undefined: int
    krippendorff_alpha: Estimate
    resamples: int
    confidence: float

    def as_dict(self) -> dict:
        return {
            "groups": self.groups,
            "pairwise_agreement": self.pairwise_agreement.as_dict(),
            "kendall_tau_b": self.kendall_tau_b.as_dict(),
            "tau_undefined": self.tau_undefined,
            "krippendorff_alpha": self.krippendorff_alpha.as_dict(),
            "resamples": self.resamples,
            "confidence": self.confidence,
        }


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval of the defined (non-NaN) replicates; None if fewer than half are."""
    defined = replicates[~np.isnan(replicates)]
    if defined.size == 0 or 2 * defined.size < replicates.size:
        return None, None
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high)


def summarize(
    groups: AgreementTable | Sequence[GroupAgreement],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> AgreementSummary:
    """Dataset figures of the groups (one dimension) with percentile-bootstrap intervals."""
    return summarize_dimensions(
        {"": _as_table(groups)}, resamples=resamples, seed=seed, confidence=confidence
    )[""]


def summarize_dimensions(
    tables: Mapping[str, AgreementTable],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, AgreementSummary]:
    """:func:`summarize` for several dimensions of the SAME groups (row g of every
    table is one group): one bootstrap draws the group indices once for all of
    them, which is a joint bootstrap and costs one resampling instead of one
    per dimension."""
    names = list(tables)
    if len({len(t) for t in tables.values()}) > 1:
        raise ValueError("the tables must hold the same groups")
    matrices = [_matrix(tables[name]) for name in names]
    widths = np.cumsum([0] + [x.shape[1] for x, _ in matrices])
    stacked = np.hstack([x for x, _ in matrices]) if matrices else np.zeros((0, 0))
    totals = _replicate_totals(stacked, resamples, seed)
    out = {}
    for i, name in enumerate(names):
        table, (x, v) = tables[name], matrices[i]
        point = _statistics(x.sum(axis=0, keepdims=True), v)[0]
        replicates = (
            _statistics(totals[:, widths[i] : widths[i + 1]], v)
            if totals is not None
            else np.full((resamples, 3), np.nan)
        )
        counts = (
            int(table.agreement_n.sum()),
            int(table.tau_n.sum()),
            int(table.pairable_units.sum()),
        )

        def estimate(column: int, point=point, replicates=replicates, counts=counts) -> Estimate:
            value = point[column]
            if np.isnan(value):
                return Estimate(None, None, None, counts[column])
            low, high = _interval(replicates[:, column], confidence)
            return Estimate(float(value), low, high, counts[column])

        out[name] = AgreementSummary(
            groups=len(table),
            pairwise_agreement=estimate(AGREEMENT),
            kendall_tau_b=estimate(TAU),
            tau_undefined=int(table.tau_undefined.sum()),
            krippendorff_alpha=estimate(ALPHA),
            resamples=resamples,
            confidence=confidence,
        )
    return out
