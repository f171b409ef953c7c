"""Quality control: consensus policies, gold groups, repeats, position bias,
low-agreement review and adjudication, and the dataset report, on small
hand-computed examples."""

import json
import uuid

import numpy as np
import pytest
from django.utils import timezone

from annotation.models import Adjudication, Assignment, Dataset, Group, Ranking, Review
from annotation.quality import compute_report, consensus_pairs, report_refresh
from annotation.selectors import export_pairs, export_rankings
from annotation.services import (
    AdjudicationRefused,
    adjudication_submit,
    group_next_for_annotator,
    ranking_submit,
)
from annotation.stats.codes import decode, ranking_code
from annotation.stats.codes import positions as code_positions
from annotation.stats.consensus import UNSETTLED, Policy, Votes
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

DIMS = ("prompt_following", "consistency", "overall")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def same_on_every_dimension(tiers):
    return {dim: tiers for dim in DIMS}


def rank(group, user, tiers, **kwargs):
    """Rank with candidate suffixes ("c0", "c1"...) for brevity."""
    prefix = f"{group.external_id}-"
    full = {dim: [[prefix + c for c in tier] for tier in t] for dim, t in tiers.items()}
    ranking, created = ranking_submit(
        group=group, annotator=user, submission_id=uuid.uuid4(), tiers=full, **kwargs
    )
    assert created
    return ranking


# --- consensus policies (pure)


@pytest.mark.parametrize(
    ("votes", "unanimous", "majority"),
    [
        (Votes("a", "b", 3, 0, 0), 1, 1),
        (Votes("a", "b", 0, 3, 0), -1, -1),
        (Votes("a", "b", 0, 0, 3), 0, 0),
        (Votes("a", "b", 2, 0, 1), None, 1),  # 1/3 ties allowed by default majority
        (Votes("a", "b", 2, 1, 0), None, 1),
        (Votes("a", "b", 1, 1, 1), None, None),
        (Votes("a", "b", 1, 0, 2), None, 0),  # more than half tie: a tie
        (Votes("a", "b", 2, 2, 0), None, None),  # no strict majority
        (Votes("a", "b", 1, 0, 0), None, None),  # one vote settles nothing
    ],
)
def test_policies_settle_pairs_as_defined(votes, unanimous, majority):
    assert Policy("unanimous").decide(votes) == unanimous
    assert Policy("majority", max_tie_fraction=1 / 3).decide(votes) == majority


def test_majority_tie_fraction_is_a_ceiling():
    # 3 for, 0 against, 2 ties: majority, but 40% ties
    votes = Votes("a", "b", 3, 0, 2)
    assert Policy("majority", max_tie_fraction=0.4).decide(votes) == 1
    assert Policy("majority", max_tie_fraction=0.39).decide(votes) is None
    with pytest.raises(ValueError, match="unknown policy"):
        Policy("plurality")


def test_decide_many_settles_arrays_like_single_pairs():
    cases = [(3, 0, 0), (0, 3, 0), (0, 0, 3), (2, 0, 1), (1, 1, 1), (1, 0, 2), (1, 0, 0)]
    for_a, for_b, tie = (np.array(column) for column in zip(*cases, strict=True))
    majority = Policy.named("majority")
    assert majority.decide_many(for_a, for_b, tie).tolist() == [
        1,
        -1,
        0,
        1,
        UNSETTLED,
        0,
        UNSETTLED,
    ]
    assert Policy("unanimous").decide_many(for_a, for_b, tie).tolist() == [
        1, -1, 0, UNSETTLED, UNSETTLED, UNSETTLED, UNSETTLED,
    ]  # fmt: skip


def test_ranking_codes_round_trip_and_refuse_what_they_cannot_hold():
    tiers = {"pf": [["b"], ["a", "c"]], "c": [["a", "b", "c"]]}
    code = ranking_code(tiers, ["pf", "c"], ["c", "a", "b"], first_shown="c")
    assert code == "2" + "212" + "111"
    first, decoded = decode([code, "-" + "111" + "123"], 2, 3)
    assert first.tolist() == [2, -1] and decoded[1, 1].tolist() == [1, 2, 3]
    assert code_positions(code, ["pf", "c"], ["a", "b", "c"])["pf"] == {"a": 2, "b": 1, "c": 2}
    with pytest.raises(ValueError, match="exactly the group's candidates"):
        ranking_code({"pf": [["a"]]}, ["pf"], ["a", "b"])
    with pytest.raises(ValueError, match="digit"):
        decode(["-10"], 1, 2)


# --- the report on a hand-computed dataset


@pytest.fixture
def three():
    return [UserFactory(username=f"ann{i}") for i in range(1, 4)]


@pytest.fixture
def ranked(three):
    """Two groups, three candidates (editor-0..2), three annotators, K = 3.

    g0: ann1 c0 > c1 > c2, ann2 the same, ann3 c0 > c1 = c2
    g1: everyone c2 > c1 > c0
    """
    dataset = make_dataset(groups=2, candidates=3, overlap=3, annotators=three)
    g0, g1 = Group.objects.filter(dataset=dataset).order_by("pk")
    a1, a2, a3 = three
    rank(g0, a1, same_on_every_dimension([["c0"], ["c1"], ["c2"]]), seconds_spent=10)
    rank(g0, a2, same_on_every_dimension([["c0"], ["c1"], ["c2"]]), seconds_spent=20)
    rank(g0, a3, same_on_every_dimension([["c0"], ["c1", "c2"]]), seconds_spent=30)
    for user, seconds in ((a1, 30), (a2, 40), (a3, 50)):
        rank(g1, user, same_on_every_dimension([["c2"], ["c1"], ["c0"]]), seconds_spent=seconds)
    return dataset


def test_report_figures_match_hand_computation(ranked):
    report = compute_report(ranked, resamples=200)
    assert report["rankings"] == 6 and report["groups_ranked"] == 2
    pf = report["agreement"]["prompt_following"]["all"]
    # Pairs (group, annotator pair): g0: 1, 2/3, 2/3; g1: 1, 1, 1 -> mean 16/18.
    assert pf["pairwise_agreement"]["value"] == pytest.approx(16 / 18)
    assert pf["pairwise_agreement"]["n"] == 6
    low, high = pf["pairwise_agreement"]["low"], pf["pairwise_agreement"]["high"]
    assert low <= 16 / 18 <= high and low >= 2 / 3 - 1e-9 and high == pytest.approx(1.0)
    # tau-b ann1/ann3 on g0: C=2, D=0, ties in ann3 = 1 -> 2/sqrt(3*2).
    tau = (1 + 2 * (2 / 6**0.5) + 3) / 6
    assert pf["kendall_tau_b"]["value"] == pytest.approx(tau)
    assert report["agreement"]["consistency"]["by_task_type"]["color_alter"]["groups"] == 2

    people = {row["annotator"]: row for row in report["annotators"]}
    assert people["ann1"]["median_seconds"] == 20 and people["ann3"]["median_seconds"] == 40
    # Leave-one-out: ann3 disagrees with the others' majority on (c1, c2) in g0: 5 of 6
    # per dimension; ann1's others split on (c1, c2) in g0, so that pair has no majority.
    assert people["ann3"]["agreement_with_consensus"] == pytest.approx(15 / 18)
    assert people["ann1"]["agreement_with_consensus"] == 1.0
    assert people["ann1"]["consensus_pairs"] == 15
    # ann1 pairs: g0 with ann2 (1) and ann3 (2/3), g1 twice 1 -> mean over 12 values.
    assert people["ann1"]["pairwise_agreement"] == pytest.approx((1 + 2 / 3 + 1 + 1) / 4)

    pairs = report["consensus"]["pairs"]
    assert pairs["unanimous"]["overall"] == {"strict": 5, "unsettled": 1}
    assert pairs["majority"]["overall"] == {"strict": 6}
    board = report["editors"]["by_dimension"]["overall"]
    counts = board["battle_counts"]
    names = board["names"]
    assert counts[names.index("editor-0")][names.index("editor-1")] == 2


def test_editor_leaderboard_on_raw_pairs_and_per_task_type(ranked):
    report = compute_report(ranked, resamples=50, editors_on="raw")
    assert report["editors"]["fitted_on"] == "raw annotator pairs"
    board = report["editors"]["by_dimension"]["overall"]
    names = board["names"]
    # Every annotator's pair is a battle: 3 rankings x 2 groups between editor-0 and -1.
    assert board["battle_counts"][names.index("editor-0")][names.index("editor-1")] == 6
    by_type = report["editors"]["by_dimension_and_task_type"]["overall"]
    assert (
        list(by_type) == ["color_alter"]
        and by_type["color_alter"]["battle_counts"] == board["battle_counts"]
    )
    with pytest.raises(ValueError, match="editors_on"):
        compute_report(ranked, editors_on="votes")


def test_consensus_pairs_name_the_preferred_candidate(ranked):
    strict = [
        (p.group.external_id, p.dimension, p.decision.preferred)
        for p in consensus_pairs(ranked, Policy("unanimous"))
        if p.decision.preferred
    ]
    assert ("ds-g0", "overall", ("ds-g0-c0", "ds-g0-c1")) in strict
    assert ("ds-g1", "overall", ("ds-g1-c2", "ds-g1-c0")) in strict
    assert not any(g == "ds-g0" and pref == ("ds-g0-c1", "ds-g0-c2") for g, _, pref in strict)
    assert len(strict) == 5 * 3


def test_report_is_stored_and_refreshed_only_when_rankings_arrive(ranked, three):
    first = report_refresh(ranked)
    assert first is not None and first.rankings == 6
    assert report_refresh(ranked) is None  # nothing new
    assert report_refresh(ranked, force=True) is not None


# --- gold groups


def test_gold_groups_are_served_first_at_rate_one_and_scored(three):
    a1 = three[0]
    dataset = make_dataset(groups=3, candidates=3, overlap=1, annotators=[a1], gold_rate=1.0)
    gold = Group.objects.filter(dataset=dataset).order_by("pk").last()
    prefix = gold.external_id + "-"
    gold.is_gold = True
    gold.gold = {
        "prompt_following": [[prefix + "c0", ">", prefix + "c2"], [prefix + "c1", ">", prefix + "c2"]],
        "consistency": [[prefix + "c2", ">=", prefix + "c0"]],
    }  # fmt: skip
    gold.save()
    served = group_next_for_annotator(dataset=dataset, annotator=a1)
    assert served.group_id == gold.pk and not served.repeat
    tiers = {
        "prompt_following": [["c0"], ["c1"], ["c2"]],  # both relations respected
        "consistency": [["c0"], ["c1", "c2"]],  # c2 >= c0 violated
        "overall": [["c0", "c1", "c2"]],
    }
    rank(gold, a1, tiers)
    # Gold groups are outside the overlap count: the normal groups still come.
    served = [group_next_for_annotator(dataset=dataset, annotator=a1).group]
    rank(served[0], a1, same_on_every_dimension([["c0", "c1", "c2"]]))
    served.append(group_next_for_annotator(dataset=dataset, annotator=a1).group)
    assert {g.pk for g in served} == set(
        Group.objects.filter(dataset=dataset, is_gold=False).values_list("pk", flat=True)
    )
    report = compute_report(dataset, resamples=0)
    (row,) = report["annotators"]
    assert row["gold_accuracy"] == pytest.approx(2 / 3) and row["gold_relations"] == 3
    assert report["gold_groups"] == 1 and report["groups_ranked"] == 1


def test_gold_payload_looks_like_any_group(annotator_client, annotator):
    dataset = make_dataset(groups=1, annotators=[annotator], gold_rate=1.0)
    Group.objects.filter(dataset=dataset).update(is_gold=True, gold={"overall": []})
    body = annotator_client.post(f"/api/datasets/{dataset.pk}/next/").json()
    assert "gold" not in body["group"] and "is_gold" not in body["group"]
    assert set(body["group"]) == {
        "id", "instruction", "task_type", "source_url", "source_thumb_url",
        "candidates",
    }  # fmt: skip


# --- repeats and position bias


def test_repeat_comes_back_reordered_and_is_scored_not_counted(three):
    a1 = three[0]
    dataset = make_dataset(
        groups=3, candidates=3, overlap=1, annotators=[a1], repeat_rate=1.0, repeat_gap=1
    )
    first = group_next_for_annotator(dataset=dataset, annotator=a1)
    order = [c["id"] for c in _payload(first)["candidates"]]
    rank(first.group, a1, same_on_every_dimension([["c0"], ["c1"], ["c2"]]))
    second = group_next_for_annotator(dataset=dataset, annotator=a1)
    assert second.group_id != first.group_id and not second.repeat  # gap of 1 group
    rank(second.group, a1, same_on_every_dimension([["c0"], ["c1", "c2"]]))
    again = group_next_for_annotator(dataset=dataset, annotator=a1)
    assert again.group_id == first.group_id and again.repeat
    # Rotated by one: every card moves, the first is shown last.
    assert [c["id"] for c in _payload(again)["candidates"]] == order[1:] + order[:1]
    # Half-changed answer: c1 = c2 now; agreement with the first ranking 2/3.
    repeat = rank(first.group, a1, same_on_every_dimension([["c0"], ["c1", "c2"]]))
    assert repeat.repeat and not repeat.surplus
    shown_first = Ranking.objects.get(group=first.group, repeat=False).shown_order
    assert repeat.shown_order == shown_first[1:] + shown_first[:1]
    first.group.refresh_from_db()
    assert first.group.ranking_count == 1
    third = group_next_for_annotator(dataset=dataset, annotator=a1)
    assert not third.repeat and third.group_id not in (first.group_id, second.group_id)
    report = compute_report(dataset, resamples=0)
    (row,) = report["annotators"]
    assert row["repeat_agreement"] == pytest.approx(2 / 3) and row["repeats"] == 1
    assert report["repeats"] == 1 and report["groups_ranked"] == 2


def _payload(assignment):
    from annotation.api import group_payload

    return group_payload(assignment.group, assignment.annotator, repeat=assignment.repeat)


def test_skipping_a_repeat_skips_only_the_repeat(three):
    a1 = three[0]
    dataset = make_dataset(
        groups=3, candidates=2, overlap=1, annotators=[a1], repeat_rate=1.0, repeat_gap=1
    )
    for _ in range(2):
        lease = group_next_for_annotator(dataset=dataset, annotator=a1)
        rank(lease.group, a1, same_on_every_dimension([["c0"], ["c1"]]))
    again = group_next_for_annotator(dataset=dataset, annotator=a1)
    assert again.repeat
    from annotation.services import group_skip

    group_skip(group=again.group, annotator=a1)
    states = dict(
        Assignment.objects.filter(group=again.group, annotator=a1).values_list("repeat", "status")
    )
    assert states == {False: "done", True: "skipped"}


def test_first_shown_win_rate_counts_strict_pairs_won_by_the_first_card(three):
    a1 = three[0]
    dataset = make_dataset(groups=2, candidates=3, overlap=1, annotators=[a1])
    g0, g1 = Group.objects.filter(dataset=dataset).order_by("pk")
    r0 = rank(g0, a1, same_on_every_dimension([["c0"], ["c1", "c2"]]))
    r1 = rank(g1, a1, same_on_every_dimension([["c0"], ["c1"], ["c2"]]))
    # Pin what the page showed first (the code's first character, an index into
    # the sorted candidates): c0 in g0 (wins its 2 pairs), c2 in g1 (loses 2).
    assert r0.code[1:] == "122" * 3 and r1.code[1:] == "123" * 3
    Ranking.objects.filter(pk=r0.pk).update(code="0" + r0.code[1:])
    Ranking.objects.filter(pk=r1.pk).update(code="2" + r1.code[1:])
    (row,) = compute_report(dataset, resamples=0)["annotators"]
    assert row["first_shown_pairs"] == 4 * 3
    assert row["first_shown_win_rate"] == pytest.approx(0.5)


# --- low agreement: extra overlap, then adjudication


def test_low_agreement_asks_for_one_more_ranking_then_adjudication(three, researcher):
    a1, a2, a3 = three
    dataset = make_dataset(groups=1, candidates=2, overlap=2, annotators=three)
    group = Group.objects.get(dataset=dataset)
    rank(group, a1, same_on_every_dimension([["c0"], ["c1"]]))
    rank(group, a2, same_on_every_dimension([["c1"], ["c0"]]))
    group.refresh_from_db()
    assert group.agreement == 0 and group.review == Review.EXTRA and group.extra_overlap == 1
    lease = group_next_for_annotator(dataset=dataset, annotator=a3)
    assert lease is not None and lease.group_id == group.pk  # a third ranking is wanted
    rank(group, a3, same_on_every_dimension([["c1"], ["c0"]]))
    group.refresh_from_db()
    assert group.review == Review.QUEUED and group.agreement == pytest.approx(1 / 3)
    # Majority (2 of 3) settles it already; unanimous does not, until adjudicated.
    assert not [p for p in consensus_pairs(dataset, Policy("unanimous")) if p.decision.preferred]
    adjudication_submit(
        group=group, researcher=researcher,
        tiers=same_on_every_dimension([[f"{group.external_id}-c0"], [f"{group.external_id}-c1"]]),
    )  # fmt: skip
    group.refresh_from_db()
    assert group.review == Review.ADJUDICATED and Adjudication.objects.count() == 1
    strict = [p for p in consensus_pairs(dataset, Policy("unanimous")) if p.decision.preferred]
    assert len(strict) == 3 and all(p.decision.adjudicated for p in strict)
    assert strict[0].decision.preferred == ("ds-g0-c0", "ds-g0-c1")


def test_agreeing_rankings_are_not_reviewed(three):
    dataset = make_dataset(groups=1, candidates=2, overlap=2, annotators=three)
    group = Group.objects.get(dataset=dataset)
    for user in three[:2]:
        rank(group, user, same_on_every_dimension([["c0"], ["c1"]]))
    group.refresh_from_db()
    assert group.agreement == 1 and group.review == Review.NONE and group.extra_overlap == 0
    assert group_next_for_annotator(dataset=dataset, annotator=three[2]) is None


def test_adjudicated_group_is_not_served_or_requeued(three, researcher):
    a1, a2, a3 = three
    dataset = make_dataset(groups=1, candidates=2, overlap=2, annotators=three)
    group = Group.objects.get(dataset=dataset)
    rank(group, a1, same_on_every_dimension([["c0"], ["c1"]]))
    rank(group, a2, same_on_every_dimension([["c1"], ["c0"]]))
    group.refresh_from_db()
    assert group.review == Review.EXTRA  # a third ranking is wanted...
    prefix = group.external_id
    adjudication_submit(
        group=group, researcher=researcher,
        tiers=same_on_every_dimension([[f"{prefix}-c0"], [f"{prefix}-c1"]]),
    )  # fmt: skip
    # ...but a researcher has decided: nobody is asked, and a late vote does not reopen it.
    assert group_next_for_annotator(dataset=dataset, annotator=a3) is None
    rank(group, a3, same_on_every_dimension([["c1"], ["c0"]]))
    group.refresh_from_db()
    assert group.review == Review.ADJUDICATED


def test_only_flagged_groups_can_be_adjudicated(three, researcher):
    dataset = make_dataset(groups=2, candidates=2, overlap=2, annotators=three)
    calm, gold = Group.objects.filter(dataset=dataset).order_by("pk")
    Group.objects.filter(pk=gold.pk).update(is_gold=True, review=Review.QUEUED)
    tiers = same_on_every_dimension([[f"{calm.external_id}-c0"], [f"{calm.external_id}-c1"]])
    with pytest.raises(AdjudicationRefused, match="not flagged"):
        adjudication_submit(group=calm, researcher=researcher, tiers=tiers)
    gold.refresh_from_db()
    tiers = same_on_every_dimension([[f"{gold.external_id}-c0"], [f"{gold.external_id}-c1"]])
    with pytest.raises(AdjudicationRefused, match="gold"):
        adjudication_submit(group=gold, researcher=researcher, tiers=tiers)
    assert Adjudication.objects.count() == 0


def test_repeat_gap_counts_rankings_in_the_order_they_were_stored(three):
    """A group leased first but ranked last (a late submit) is the most recent."""
    a1 = three[0]
    dataset = make_dataset(groups=3, candidates=2, overlap=1, annotators=[a1], repeat_gap=1)
    lease = group_next_for_annotator(dataset=dataset, annotator=a1)  # leased first...
    other = Group.objects.filter(dataset=dataset).exclude(pk=lease.group_id).order_by("pk")[0]
    rank(other, a1, same_on_every_dimension([["c0"], ["c1"]]))
    rank(lease.group, a1, same_on_every_dimension([["c0"], ["c1"]]))  # ...ranked last
    Dataset.objects.filter(pk=dataset.pk).update(repeat_rate=1.0)
    dataset.refresh_from_db()
    again = group_next_for_annotator(dataset=dataset, annotator=a1)
    assert again.repeat and again.group_id == other.pk


def test_raw_exports_flag_repeats_and_gold(three):
    a1 = three[0]
    dataset = make_dataset(groups=3, candidates=2, overlap=1, annotators=[a1], repeat_gap=1)
    g0, g1, g2 = Group.objects.filter(dataset=dataset).order_by("pk")
    Group.objects.filter(pk=g2.pk).update(is_gold=True)
    for g in (g0, g1, g2):
        rank(g, a1, same_on_every_dimension([["c0"], ["c1"]]))
    Assignment.objects.create(group=g0, annotator=a1, repeat=True, status="leased",
                              leased_at=timezone.now(), expires_at=timezone.now())  # fmt: skip
    rank(g0, a1, same_on_every_dimension([["c1"], ["c0"]]))
    rows = [json.loads(x) for x in export_rankings(dataset)]
    flags = {(r["group_id"], r["repeat"], r["gold"]) for r in rows}
    assert flags == {("ds-g0", False, False), ("ds-g0", True, False), ("ds-g1", False, False), ("ds-g2", False, True)}  # fmt: skip
    pairs = [json.loads(x) for chunk in export_pairs(dataset) for x in chunk.splitlines()]
    assert sum(p["repeat"] for p in pairs) == 3 and sum(p["gold"] for p in pairs) == 3


def test_dimension_keys_are_fixed_once_rankings_exist(three):
    from django.core.exceptions import ValidationError

    dataset = make_dataset(groups=1, candidates=2, overlap=1, annotators=three[:1])
    dataset.dimensions[0]["label"] = "Follows the prompt"  # labels and rubrics may change
    dataset.full_clean()
    rank(Group.objects.get(dataset=dataset), three[0], same_on_every_dimension([["c0"], ["c1"]]))
    dataset.dimensions = list(reversed(dataset.dimensions))
    with pytest.raises(ValidationError, match="dimension keys and their order are fixed"):
        dataset.full_clean()
