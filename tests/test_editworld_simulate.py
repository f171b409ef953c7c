"""Simulated annotators: agreement as their noise grows, ties, position bias and the unusable
floor; an EditWorld bundle through the real importer; rankings submitted over HTTP to a live
server with a real annotator token."""

import random

import pytest

from annotation.stats.agreement import group_agreement, summarize
from annotation.stats.consensus import tier_positions
from editworld.dataset import read_truth, truth_by_image_hash, write_bundle
from editworld.editors import EDITORS
from editworld.oracle import Truth
from editworld.simulate import DIMENSIONS, SimulatedAnnotator, annotate_over_http

SIZE = 64


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("ew") / "bundle", groups=24, candidates=4,
                        size=SIZE, seed=11, gold_every=8)  # fmt: skip


def _groups(bundle) -> list[dict[str, Truth]]:
    """{candidate id: truth} per group, in the bundle's order."""
    out: dict[str, dict[str, Truth]] = {}
    for cid, truth in read_truth(bundle).items():
        out.setdefault(cid.rsplit("-c", 1)[0], {})[cid] = truth
    return list(out.values())


def _agreement(annotators, groups, dimension: str) -> float:
    """Mean pairwise agreement (annotation.stats) of the annotators over the groups, each
    annotator shown the candidates in its own order, as the API does."""
    stats = []
    for g, truths in enumerate(groups):
        rankings = []
        for a, annotator in enumerate(annotators):
            order = list(truths)
            random.Random(f"{g}:{a}").shuffle(order)
            ranked = annotator.rank([truths[c] for c in order], [dimension], ids=order)
            rankings.append(tier_positions(ranked["tiers"][dimension]))
        stats.append(group_agreement(rankings))
    return summarize(stats, resamples=50).pairwise_agreement.value


def test_noise_free_annotators_agree_perfectly_and_agreement_falls_with_noise(bundle):
    groups = _groups(bundle)
    assert len(groups) == 24
    for dimension in DIMENSIONS:
        clean = [SimulatedAnnotator(f"a{i}", seed=i) for i in range(3)]
        assert _agreement(clean, groups, dimension) == 1.0
    curve = [
        _agreement(
            [SimulatedAnnotator(f"a{i}", noise=noise, seed=i) for i in range(3)], groups, "overall"
        )  # fmt: skip
        for noise in (0.0, 0.05, 0.2, 0.6)
    ]
    assert curve[0] == 1.0 and curve[0] > curve[1] > curve[2] > curve[3], curve
    assert curve[3] < 0.8


def test_ties_position_bias_and_the_unusable_floor():
    same = [Truth(0.5, 0.5, 1.0, 0.5)] * 4
    ids = ["w", "x", "y", "z"]
    assert SimulatedAnnotator("flat").rank(same, ["overall"], ids)["tiers"]["overall"] == [ids]
    biased = SimulatedAnnotator("eager", position_bias=0.3).rank(same, ["overall"], ids)
    assert biased["tiers"]["overall"] == [["w"], ["x"], ["y"], ["z"]]  # the first shown wins
    graded = [Truth(1.0, 1.0, 1.0, 1.0), Truth(0.9, 1.0, 1.0, 0.95), Truth(0.5, 1.0, 1.0, 0.7),
              Truth(0.0, 1.0, 1.0, 0.0)]  # fmt: skip
    lenient = SimulatedAnnotator("lenient", tie_tendency=0.15).rank(graded, DIMENSIONS, ids)
    assert lenient["tiers"]["prompt_following"] == [["w", "x"], ["y"], ["z"]]
    assert lenient["tiers"]["consistency"] == [ids]
    strict = SimulatedAnnotator("strict", unusable_below=0.1).rank(graded, DIMENSIONS, ids)
    assert strict["tiers"]["overall"] == [["w"], ["x"], ["y"]]
    assert strict["unusable"] == {"prompt_following": ["z"], "overall": ["z"]}
    assert SimulatedAnnotator("quality").rank(graded, ["quality"])["tiers"] == {"quality": [["0", "1", "2", "3"]]}  # fmt: skip
    with pytest.raises(ValueError, match="no truth for dimension"):
        SimulatedAnnotator("x").rank(graded, ["beauty"], ids)
    with pytest.raises(ValueError, match="ids for"):
        SimulatedAnnotator("x").rank(graded, DIMENSIONS, ids[:3])
    with pytest.raises(ValueError, match="noise must be"):
        SimulatedAnnotator("x", noise=-1)


def test_noise_reorders_and_a_seed_repeats_it():
    graded = [Truth(v, v, 1.0, v) for v in (0.9, 0.8, 0.7, 0.6)]
    runs = [SimulatedAnnotator("n", noise=0.3, seed=5).rank(graded, DIMENSIONS) for _ in range(2)]
    assert runs[0] == runs[1]

    def order(seed: int, noise: float) -> tuple:
        tiers = SimulatedAnnotator("n", noise=noise, seed=seed).rank(graded, ["overall"])["tiers"]
        return tuple(c for tier in tiers["overall"] for c in tier)

    assert {order(s, 0.0) for s in range(10)} == {("0", "1", "2", "3")}
    assert len({order(s, 0.3) for s in range(10)}) > 1


@pytest.mark.django_db
def test_a_bundle_imports_through_the_real_importer_with_the_truth_in_meta(bundle, settings, tmp_path):  # fmt: skip
    from annotation.importer import import_groups
    from annotation.models import Candidate, Group

    settings.MEDIA_ROOT = tmp_path / "media"
    summary = import_groups(bundle, dataset_name="editworld", overlap=3)
    assert (summary.groups, summary.candidates, summary.dataset_created) == (24, 96, True)
    truth = read_truth(bundle)
    candidates = Candidate.objects.filter(group__dataset__name="editworld")
    assert candidates.count() == 96
    for cand in candidates:
        assert Truth.from_dict(cand.meta["truth"]) == truth[cand.external_id]
        assert cand.editor in EDITORS
    groups = Group.objects.filter(dataset__name="editworld").order_by("pk")
    assert [g.is_gold for g in groups].count(True) == 3  # every 8th group
    first = groups.first()
    assert first.meta["editworld"]["edit"]["instruction"] == first.instruction
    assert all(g.meta["editworld"]["edit"]["task_type"] == g.task_type for g in groups)


def test_simulated_annotators_rank_over_http(live_server, transactional_db, settings, tmp_path):
    from accounts.services import user_api_token
    from annotation.importer import import_groups
    from annotation.models import Candidate, Dataset, Ranking
    from tests.factories import UserFactory

    settings.MEDIA_ROOT = tmp_path / "media"
    bundle = write_bundle(tmp_path / "bundle", groups=4, candidates=4, size=SIZE, seed=21)
    import_groups(bundle, dataset_name="ew-http", overlap=2)
    Dataset.objects.filter(name="ew-http").update(gold_rate=0, repeat_rate=0)
    dataset = Dataset.objects.get(name="ew-http")
    ann, bob, cat = (UserFactory(username=n) for n in ("sim-ann", "sim-bob", "sim-cat"))
    dataset.annotators.add(ann, bob, cat)
    lookup = truth_by_image_hash(bundle)

    url = live_server.url
    assert annotate_over_http(url, user_api_token(user=ann), "ew-http", SimulatedAnnotator("ann"), lookup) == 4  # fmt: skip
    bob_sim = SimulatedAnnotator("bob", seed=1)
    assert annotate_over_http(url, user_api_token(user=bob), dataset.pk, bob_sim, lookup, max_groups=3) == 3  # fmt: skip
    # nothing left for ann; bob has one group left
    assert annotate_over_http(url, user_api_token(user=ann), dataset.pk, SimulatedAnnotator("ann"), lookup) == 0  # fmt: skip
    rankings = Ranking.objects.filter(group__dataset=dataset)
    assert rankings.count() == 7
    assert all(r.seconds_spent and r.seconds_spent > 0 and not r.surplus for r in rankings)

    # the stored tiers (in import ids) are the truth's order, whatever order each was shown in
    truth = read_truth(bundle)
    editors = dict(Candidate.objects.filter(group__dataset=dataset).values_list("external_id", "editor"))  # fmt: skip
    for ranking in rankings:
        ids = sorted(c for c in truth if c.startswith(ranking.group.external_id + "-"))
        expected = SimulatedAnnotator("reference").rank([truth[c] for c in ids], DIMENSIONS, ids)
        for dim in DIMENSIONS:
            assert tier_positions(ranking.tiers[dim]) == tier_positions(expected["tiers"][dim]), dim
        best = ranking.tiers["overall"][0]
        assert [editors[c] for c in best] == ["correct"]
        assert sorted(ranking.shown_order) == ids

    with pytest.raises(LookupError, match="not one this user annotates"):
        annotate_over_http(url, user_api_token(user=cat), "no-such-dataset", SimulatedAnnotator("cat"), lookup)  # fmt: skip
    with pytest.raises(KeyError, match="not in the truth lookup"):
        annotate_over_http(url, user_api_token(user=cat), "ew-http", SimulatedAnnotator("cat"), {})
    assert rankings.count() == 7
