"""From raw rankings to trustworthy preference data: the dataset quality report
(agreement, annotators, gold, repeats, position bias, consensus, editor
leaderboard) and the consensus pairs the exports are made of.

Which rankings count where:
- votes (agreement, consensus, editor leaderboard): every ranking of a non-gold
  group that is not a repeat (late and surplus rankings are human work too);
- gold accuracy: rankings of gold groups; repeat agreement: a repeat against the
  same annotator's first ranking; position bias: every ranking.

One mechanism does the arithmetic: groups are read in chunks, the votes of a
chunk are stacked into arrays of tier indices (groups x annotators x
candidates, one array per shape and dimension) and every statistic is computed
on those arrays with numpy. The formulas live in annotation/stats.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from annotation.constants import MAX_CANDIDATES
from annotation.models import (
    Adjudication,
    Candidate,
    Dataset,
    DatasetReport,
    Group,
    Ranking,
    RankingVersion,
    Review,
    full_tiers,
)
from annotation.stats import agreement as agreement_stats
from annotation.stats.bradley_terry import leaderboards_arrays
from annotation.stats.codes import code_length, decode, ranking_code
from annotation.stats.codes import positions as code_positions
from annotation.stats.consensus import UNSETTLED, Decision, Policy, Positions, Votes, relation

# Every tier index a ranking can hold: one tier per candidate plus the unusable floor.
TIER_VALUES = tuple(range(1, MAX_CANDIDATES + 2))


@dataclass
class GroupRow:
    pk: int
    external_id: str
    instruction: str
    task_type: str
    source: str
    is_gold: bool
    gold: dict
    editors: dict[str, str] = field(default_factory=dict)  # candidate id -> editor
    images: dict[str, str] = field(default_factory=dict)  # candidate id -> storage name
    adjudicated: str | None = None  # the adjudication as a ranking code

    @property
    def candidates(self) -> list[str]:
        """The candidate axis of every array: ids in sorted order."""
        return sorted(self.editors)


@dataclass
class RankingRow:
    annotator: int
    code: str  # annotation/stats/codes.py: the current version (agreement, consensus)
    seconds: float | None
    repeat: bool
    # The first version's code: gold accuracy and self-consistency judge first answers, so a
    # revision made after seeing a group again does not change them.
    first_code: str = ""

    def __post_init__(self):
        self.first_code = self.first_code or self.code


def dataset_chunks(
    dataset: Dataset, *, chunk: int = 2000
) -> Iterator[list[tuple[GroupRow, list[RankingRow]]]]:
    """The dataset's groups with their rankings, a chunk of groups at a time, so
    memory stays flat whatever the dataset size."""
    dims = dataset.dimension_keys
    group_ids = list(
        Group.objects.filter(dataset=dataset).order_by("pk").values_list("pk", flat=True)
    )
    for start in range(0, len(group_ids), chunk):
        ids = group_ids[start : start + chunk]
        # A range of group ids, not an IN list of 2,000 (Django spends longer
        # preparing that than the database answering); rows of other datasets'
        # groups inside the range are skipped below.
        span = {"group_id__gte": ids[0], "group_id__lte": ids[-1]}
        groups = {
            pk: GroupRow(pk, *rest)
            for pk, *rest in Group.objects.filter(
                dataset=dataset, pk__gte=ids[0], pk__lte=ids[-1]
            ).values_list(
                "pk", "external_id", "instruction", "task_type", "source", "is_gold", "gold"
            )
        }
        for gid, cid, editor, image in Candidate.objects.filter(**span).values_list(
            "group_id", "external_id", "editor", "image"
        ):
            if gid in groups:
                groups[gid].editors[cid] = editor
                groups[gid].images[cid] = image
        for gid, tiers, unusable in Adjudication.objects.filter(**span).values_list(
            "group_id", "tiers", "unusable"
        ):
            if gid in groups:
                full = {d: full_tiers(tiers, unusable, d) for d in dims}
                groups[gid].adjudicated = ranking_code(full, dims, groups[gid].editors)
        rankings: dict[int, list[RankingRow]] = defaultdict(list)
        rows = (
            Ranking.objects.filter(**span)
            .order_by("group_id", "pk")
            .values_list("pk", "group_id", "annotator_id", "code", "seconds_spent", "repeat")
        )
        firsts = dict(
            RankingVersion.objects.filter(
                version=1, **{f"ranking__{key}": value for key, value in span.items()}
            ).values_list("ranking_id", "code")
        )  # fmt: skip
        for pk, gid, annotator, code, seconds, repeat in rows:
            rankings[gid].append(
                RankingRow(annotator, code, seconds, repeat, first_code=firsts.get(pk, ""))
            )
        yield [(groups[gid], rankings.get(gid, [])) for gid in ids]


# --- the votes of a chunk as arrays


@dataclass
class Block:
    """N groups that have the same number of votes (m) and of candidates (n)."""

    groups: list[GroupRow]
    annotators: np.ndarray  # N x m user ids
    tiers: dict[str, np.ndarray]  # dimension -> N x m x n tier indices
    adjudicated: dict[str, np.ndarray]  # dimension -> N x n tier indices, 0 = not adjudicated

    @property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Candidate pairs (i < j) along the candidate axis."""
        return np.triu_indices(next(iter(self.tiers.values())).shape[2], 1)

    def relations(self, dim: str) -> np.ndarray:
        """N x m x pairs: +1 if the pair's first candidate is better, -1 worse, 0 tie."""
        first, second = self.pairs
        tiers = self.tiers[dim]
        return np.sign(tiers[:, :, second] - tiers[:, :, first]).astype(np.int8)

    def votes(self, dim: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rel = self.relations(dim)
        return (rel == 1).sum(axis=1), (rel == -1).sum(axis=1), (rel == 0).sum(axis=1)

    def decisions(self, dim: str, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
        """N x pairs outcomes (1, -1, 0, UNSETTLED), adjudication overriding the
        votes, and the mask of adjudicated groups."""
        outcome = policy.decide_many(*self.votes(dim))
        adjudicated = self.adjudicated[dim]
        judged = adjudicated[:, 0] > 0
        if judged.any():
            first, second = self.pairs
            ruling = np.sign(adjudicated[:, second] - adjudicated[:, first]).astype(np.int8)
            outcome[judged] = ruling[judged]
        return outcome, judged


def vote_blocks(
    chunk: list[tuple[GroupRow, list[RankingRow]]], dims: list[str]
) -> tuple[list[Block], int]:
    """The chunk's non-gold groups with votes, stacked by shape. Returns the
    blocks and how many votes were left out because their code does not fit
    the group (cannot happen through the API; counted to stay honest)."""
    shapes: dict[tuple[int, int], list] = defaultdict(list)
    left_out = 0
    for group, rankings in chunk:
        if group.is_gold or len(group.editors) < 2:
            continue
        length = code_length(len(dims), len(group.editors))
        votes = [r for r in rankings if not r.repeat and len(r.code) == length]
        left_out += sum(not r.repeat for r in rankings) - len(votes)
        if votes:
            shapes[(len(votes), len(group.editors))].append((group, votes))
    blocks = []
    for (m, n), entries in shapes.items():
        _, tiers = decode([v.code for _, votes in entries for v in votes], len(dims), n)
        tiers = tiers.reshape(len(entries), m, len(dims), n)
        ruled = np.zeros((len(entries), len(dims), n), dtype=np.int64)  # 0: not adjudicated
        judged = [i for i, (g, _) in enumerate(entries) if g.adjudicated]
        if judged:
            _, ruled[judged] = decode([entries[i][0].adjudicated for i in judged], len(dims), n)
        blocks.append(
            Block(
                groups=[g for g, _ in entries],
                annotators=np.array([[v.annotator for v in votes] for _, votes in entries]),
                tiers={dim: tiers[:, :, d, :] for d, dim in enumerate(dims)},
                adjudicated={dim: ruled[:, d, :] for d, dim in enumerate(dims)},
            )
        )
    return blocks, left_out


# --- consensus pairs (exports use these)


@dataclass(frozen=True)
class ConsensusPair:
    group: GroupRow
    dimension: str
    decision: Decision


def consensus_pairs(dataset: Dataset, policy: Policy) -> Iterator[ConsensusPair]:
    """Every candidate pair of every non-gold group with votes, per dimension,
    settled (or not) by the policy or by an adjudication."""
    dims = dataset.dimension_keys
    for chunk in dataset_chunks(dataset):
        blocks, _ = vote_blocks(chunk, dims)
        for block in blocks:
            first, second = block.pairs
            for dim in dims:
                for_a, for_b, tie = block.votes(dim)
                outcome, judged = block.decisions(dim, policy)
                for g, group in enumerate(block.groups):
                    cands = group.candidates
                    for p, (i, j) in enumerate(zip(first.tolist(), second.tolist(), strict=True)):
                        votes = Votes(cands[i], cands[j], int(for_a[g, p]), int(for_b[g, p]), int(tie[g, p]))  # fmt: skip
                        settled = int(outcome[g, p])
                        yield ConsensusPair(
                            group,
                            dim,
                            Decision(votes, None if settled == UNSETTLED else settled, bool(judged[g])),
                        )  # fmt: skip


# --- the report


@dataclass
class _Annotator:
    rankings: int = 0
    seconds: list[float] = field(default_factory=list)
    agreement_sum: float = 0.0
    agreement_n: int = 0
    consensus_match: int = 0
    consensus_pairs: int = 0
    gold_respected: int = 0
    gold_relations: int = 0
    repeat_agreement: list[float] = field(default_factory=list)
    first_shown_wins: int = 0
    first_shown_pairs: int = 0


def gold_respected(positions: Positions, a: str, op: str, b: str) -> bool:
    r = relation(positions, a, b)
    return {">": r == 1, "=": r == 0, ">=": r >= 0}[op]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _add(people: dict[int, _Annotator], users: np.ndarray, name: str, values: np.ndarray) -> None:
    """people[u].name += the sum of values over each user u (users and values aligned)."""
    ids, inverse = np.unique(users.ravel(), return_inverse=True)
    sums = np.bincount(inverse, weights=values.ravel().astype(float), minlength=len(ids))
    if np.issubdtype(values.dtype, np.integer):
        sums = sums.round().astype(np.int64)
    for user, total in zip(ids.tolist(), sums.tolist(), strict=True):
        person = people[user]
        setattr(person, name, getattr(person, name) + total)


def _annotator_block_stats(block: Block, dim: str, people: dict[int, _Annotator]) -> None:
    """Pairwise agreement with each co-annotator, and agreement with the majority
    of the others (leave-one-out), added to each annotator's sums."""
    rel = block.relations(dim)  # N x m x p
    count, m, p = rel.shape
    if p == 0 or m < 2:
        return
    a, b = np.triu_indices(m, 1)
    same = (rel[:, a] == rel[:, b]).mean(axis=-1)  # N x annotator pairs
    pair_users = np.concatenate([block.annotators[:, a], block.annotators[:, b]], axis=1)
    _add(people, pair_users, "agreement_sum", np.concatenate([same, same], axis=1))
    _add(people, pair_users, "agreement_n", np.ones_like(pair_users))
    for_a, for_b, tie = (rel == 1).sum(axis=1), (rel == -1).sum(axis=1), (rel == 0).sum(axis=1)
    for k in range(m):
        mine = rel[:, k]  # N x p
        others = m - 1
        majority = np.full(mine.shape, UNSETTLED, dtype=np.int8)
        majority[(tie - (mine == 0)) * 2 > others] = 0
        majority[(for_a - (mine == 1)) * 2 > others] = 1
        majority[(for_b - (mine == -1)) * 2 > others] = -1
        has = majority != UNSETTLED
        users = block.annotators[:, k]
        _add(people, users, "consensus_pairs", has.sum(axis=-1))
        _add(people, users, "consensus_match", (has & (majority == mine)).sum(axis=-1))


def _battles(outcome, editors, first, second, clusters, kinds) -> tuple:
    """Battles between different editors from an (N x pairs) array of outcomes
    (1, -1, 0; UNSETTLED pairs are no battle): (cluster, a, b, outcome, task type)."""
    ea, eb = editors[:, first], editors[:, second]
    keep = (outcome != UNSETTLED) & (ea != eb)
    rows = np.nonzero(keep)[0]
    return clusters[rows], ea[keep], eb[keep], outcome[keep], kinds[rows]


def _position_bias(
    chunk: list[tuple[GroupRow, list[RankingRow]]], dims: list[str], people: dict[int, _Annotator]
) -> None:
    """Per annotator: strict pairs involving the candidate the page showed first,
    and how many of them it won, over every ranking of the chunk."""
    by_size: dict[int, list[RankingRow]] = defaultdict(list)
    for group, rankings in chunk:
        n = len(group.editors)
        by_size[n].extend(r for r in rankings if len(r.code) == code_length(len(dims), n))
    for n, rankings in by_size.items():
        first, tiers = decode([r.code for r in rankings], len(dims), n)
        known = first >= 0
        if not known.any():
            continue
        tiers, first = tiers[known], first[known]
        mine = np.take_along_axis(tiers, first[:, None, None].repeat(len(dims), axis=1), axis=2)
        users = np.array([r.annotator for r in rankings])[known]
        _add(people, users, "first_shown_wins", (tiers > mine).sum(axis=(1, 2)))
        _add(people, users, "first_shown_pairs", (tiers != mine).sum(axis=(1, 2)))


EDITOR_PAIRS = ("consensus", "raw")


@dataclass
class _Tally:
    """What the report accumulates chunk by chunk."""

    dims: list
    majority: Policy
    unanimous: Policy
    editors_on: str
    people: dict = field(default_factory=lambda: defaultdict(_Annotator))
    tables: dict = field(default_factory=lambda: defaultdict(list))
    task_types: list = field(default_factory=list)
    # dim -> [(cluster, a, b, outcome, task type) arrays], one entry per block
    battles: dict = field(default_factory=lambda: defaultdict(list))
    editor_index: dict = field(default_factory=dict)
    type_index: dict = field(default_factory=dict)
    counts: dict = field(default_factory=lambda: {
        "rankings": 0, "groups_ranked": 0, "gold_groups": 0, "repeats": 0, "left_out": 0})  # fmt: skip
    consensus: dict = field(init=False)

    def __post_init__(self):
        self.consensus = {p.name: {d: defaultdict(int) for d in self.dims}
                          for p in (self.unanimous, self.majority)}  # fmt: skip

    def add_rankings(self, group, rankings) -> None:
        """Per annotator: rankings and time, gold relations respected, repeats' agreement (the
        last two on first versions)."""
        dims, people, counts = self.dims, self.people, self.counts
        for r in rankings:
            person = people[r.annotator]
            person.rankings += 1
            if r.seconds is not None:
                person.seconds.append(r.seconds)
        counts["rankings"] += len(rankings)
        length = code_length(len(dims), len(group.editors))
        if group.is_gold:
            counts["gold_groups"] += 1
            for r in rankings:
                if len(r.first_code) != length:
                    counts["left_out"] += 1
                    continue
                mine = code_positions(r.first_code, dims, group.candidates)
                for dim, relations in (group.gold or {}).items():
                    for a, op, b in relations if dim in mine else ():
                        people[r.annotator].gold_relations += 1
                        people[r.annotator].gold_respected += gold_respected(mine[dim], a, op, b)
            return
        firsts = {r.annotator: r for r in rankings if not r.repeat and len(r.first_code) == length}
        for r in rankings:
            original = firsts.get(r.annotator) if r.repeat else None
            if r.repeat:
                counts["repeats"] += 1
                if len(r.first_code) != length:
                    counts["left_out"] += 1
                    continue
            if original is not None:
                before = code_positions(original.first_code, dims, group.candidates)
                again = code_positions(r.first_code, dims, group.candidates)
                values = [agreement_stats.pairwise_agreement(before[d], again[d]) for d in dims]
                values = [v for v in values if v is not None]
                if values:
                    people[r.annotator].repeat_agreement.append(sum(values) / len(values))

    def add_block(self, block: Block) -> None:
        """One block of groups as arrays: agreement tables, consensus tallies, editor battles."""
        self.counts["groups_ranked"] += len(block.groups)
        self.task_types.extend(g.task_type for g in block.groups)
        first, second = block.pairs
        editors = np.array([
            [self.editor_index.setdefault(g.editors[c], len(self.editor_index)) for c in g.candidates]
            for g in block.groups
        ])  # fmt: skip
        clusters = np.array([g.pk for g in block.groups])
        kinds = np.array(
            [self.type_index.setdefault(g.task_type, len(self.type_index)) for g in block.groups]
        )
        for dim in self.dims:
            self.tables[dim].append(agreement_stats.tiers_table(block.tiers[dim], TIER_VALUES))
            _annotator_block_stats(block, dim, self.people)
            for policy_ in (self.unanimous, self.majority):
                outcome, _ = block.decisions(dim, policy_)
                tally = self.consensus[policy_.name][dim]
                tally["strict"] += int(np.isin(outcome, (1, -1)).sum())
                tally["tie"] += int((outcome == 0).sum())
                tally["unsettled"] += int((outcome == UNSETTLED).sum())
                if policy_ is self.majority and self.editors_on == "consensus":
                    self.battles[dim].append(
                        _battles(outcome, editors, first, second, clusters, kinds)
                    )
            if self.editors_on == "raw":
                m = block.tiers[dim].shape[1]
                votes = block.relations(dim).transpose(1, 0, 2).reshape(-1, len(first))
                self.battles[dim].append(
                    _battles(votes, np.tile(editors, (m, 1)), first, second,
                             np.tile(clusters, m), np.tile(kinds, m))
                )  # fmt: skip


def _agreement_section(tally: _Tally, resamples: int, seed: int) -> dict:
    """One bootstrap per set of groups (all, each task type), shared by the dimensions."""
    dims = tally.dims
    agreement: dict = {dim: {"all": None, "by_task_type": {}} for dim in dims}
    if not tally.task_types:
        return agreement
    types = np.array(tally.task_types, dtype=object)
    whole = {
        dim: agreement_stats.AgreementTable.concatenate(tally.tables.pop(dim), TIER_VALUES)
        for dim in dims
    }
    subsets = [("all", None)] + [(t, types == t) for t in sorted(set(tally.task_types))]
    for label, mask in subsets:
        chosen = whole if mask is None else {d: t.subset(mask) for d, t in whole.items()}
        summaries = agreement_stats.summarize_dimensions(chosen, resamples=resamples, seed=seed)
        for dim, summary in summaries.items():
            if mask is None:
                agreement[dim]["all"] = summary.as_dict()
            else:
                agreement[dim]["by_task_type"][label] = summary.as_dict()
    return agreement


def _editor_section(tally: _Tally, resamples: int, seed: int) -> tuple[dict, dict]:
    """(boards per dimension, per dimension and task type): one joint bootstrap over groups for
    the dimensions' boards, and one per task type."""
    dims, names = tally.dims, list(tally.editor_index)
    merged = {}
    for dim in dims:
        parts = tally.battles.pop(dim, [])
        merged[dim] = [
            np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
            for i in range(5)
        ]  # cluster, a, b, outcome, task type
    boards = leaderboards_arrays(
        names, [(a, b, o, c) for c, a, b, o, _ in merged.values()], resamples=resamples, seed=seed
    )
    editors = {dim: board.as_dict() for dim, board in zip(dims, boards, strict=True)}
    editors_by_type: dict = {dim: {} for dim in dims}
    for task_type in sorted(tally.type_index):
        masks = [kind == tally.type_index[task_type] for *_, kind in merged.values()]
        if not any(m.any() for m in masks):
            continue
        boards = leaderboards_arrays(
            names,
            [(a[m], b[m], o[m], c[m]) for (c, a, b, o, _), m in zip(merged.values(), masks, strict=True)],
            resamples=resamples,
            seed=seed,
        )  # fmt: skip
        for dim, board, m in zip(dims, boards, masks, strict=True):
            if m.any():
                editors_by_type[dim][task_type] = board.as_dict()
    return editors, editors_by_type


def _annotator_rows(people: dict) -> list[dict]:
    usernames = dict(User.objects.filter(pk__in=list(people)).values_list("pk", "username"))
    return [
        {
            "annotator": usernames.get(pk, str(pk)),
            "rankings": p.rankings,
            "median_seconds": statistics.median(p.seconds) if p.seconds else None,
            "pairwise_agreement": _ratio(p.agreement_sum, p.agreement_n),
            "agreement_with_consensus": _ratio(p.consensus_match, p.consensus_pairs),
            "consensus_pairs": int(p.consensus_pairs),
            "gold_accuracy": _ratio(p.gold_respected, p.gold_relations),
            "gold_relations": p.gold_relations,
            "repeat_agreement": _ratio(sum(p.repeat_agreement), len(p.repeat_agreement)),
            "repeats": len(p.repeat_agreement),
            "first_shown_win_rate": _ratio(p.first_shown_wins, p.first_shown_pairs),
            "first_shown_pairs": p.first_shown_pairs,
        }
        for pk, p in sorted(people.items(), key=lambda item: usernames.get(item[0], ""))
    ]


def _review_counts(dataset: Dataset) -> dict:
    review = dict.fromkeys([Review.EXTRA, Review.QUEUED, Review.ADJUDICATED], 0)
    for state in (
        Group.objects.filter(dataset=dataset).exclude(review="").values_list("review", flat=True)
    ):
        review[state] = review.get(state, 0) + 1
    return {str(k): v for k, v in review.items()}


def compute_report(
    dataset: Dataset,
    *,
    resamples: int = 1000,
    seed: int = 0,
    policy: Policy | None = None,
    editors_on: str = "consensus",
) -> dict:
    """The whole quality report as JSON-ready data (see module docstring).

    The editor leaderboard is fitted on the majority consensus pairs (one battle
    per settled pair, ties as ties) or, with editors_on="raw", on every
    annotator's pairs (one battle per ranking and pair)."""
    if editors_on not in EDITOR_PAIRS:
        raise ValueError(f"editors_on must be one of {', '.join(EDITOR_PAIRS)}")
    started = time.perf_counter()
    tally = _Tally(dims=dataset.dimension_keys, majority=policy or Policy.named("majority"),
                   unanimous=Policy("unanimous"), editors_on=editors_on)  # fmt: skip
    timings: dict = defaultdict(float)
    for chunk in dataset_chunks(dataset):
        t0 = time.perf_counter()
        for group, rankings in chunk:
            tally.add_rankings(group, rankings)
        _position_bias(chunk, tally.dims, tally.people)
        blocks, left_out = vote_blocks(chunk, tally.dims)
        tally.counts["left_out"] += left_out
        timings["per_ranking"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for block in blocks:
            tally.add_block(block)
        timings["arrays"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    agreement = _agreement_section(tally, resamples, seed)
    timings["agreement_intervals"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    editors, editors_by_type = _editor_section(tally, resamples, seed)
    timings["editor_leaderboard"] = time.perf_counter() - t0
    majority, unanimous = tally.majority, tally.unanimous
    return {
        "dataset": dataset.name,
        "dimensions": tally.dims,
        **tally.counts,
        "resamples": resamples,
        "seed": seed,
        "agreement": agreement,
        "annotators": _annotator_rows(tally.people),
        "consensus": {
            "policies": {
                "unanimous": {"min_votes": unanimous.min_votes},
                "majority": {
                    "min_votes": majority.min_votes,
                    "max_tie_fraction": majority.max_tie_fraction,
                },
            },
            "pairs": {
                name: {d: {k: v for k, v in t.items() if v} for d, t in per.items()}
                for name, per in tally.consensus.items()
            },
        },
        "editors": {
            "fitted_on": (
                "majority consensus pairs" if editors_on == "consensus" else "raw annotator pairs"
            ),
            "by_dimension": editors,
            "by_dimension_and_task_type": editors_by_type,
        },
        "review": _review_counts(dataset),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }


def report_refresh(dataset: Dataset, *, force: bool = False) -> DatasetReport | None:
    """Recompute the stored report if rankings arrived since the last one (or if
    forced). Returns the report, or None when it was already up to date."""
    last = (
        Ranking.objects.filter(group__dataset=dataset).order_by("-pk").values_list("pk", flat=True)
    ).first() or 0
    current = DatasetReport.objects.filter(dataset=dataset).first()
    if current is not None and current.last_ranking_id == last and not force:
        return None
    data = compute_report(dataset)
    with transaction.atomic():
        report, _ = DatasetReport.objects.update_or_create(
            dataset=dataset,
            defaults={
                "computed_at": timezone.now(),
                "last_ranking_id": last,
                "rankings": data["rankings"],
                "seconds": data["seconds"],
                "data": data,
            },
        )
    return report
