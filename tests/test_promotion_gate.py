"""The promotion gate: a reward model becomes the default only when it beats the default, or a
named baseline, on pairs it never trained on; the verdict and its figures are on its page."""

import pytest

from annotation.models import Snapshot
from benchmark.models import (
    BenchmarkCandidate,
    BenchmarkDataset,
    BenchmarkPair,
    BenchmarkRun,
    ScoreCache,
)
from benchmark.runs import run_metric
from rewardmodel import gate
from rewardmodel.models import RewardModel
from tests.annotation_fixtures import make_dataset
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


GROUPS = 40


def _bench(name, **fields):
    """A benchmark of GROUPS groups, each two candidates and one overall pair (the first
    preferred), task types alternating."""
    bench = BenchmarkDataset.objects.create(name=name, source_path="-", rows=GROUPS, **fields)
    for g in range(GROUPS):
        win, lose = (BenchmarkCandidate.objects.create(
            dataset=bench, key=f"g{g}-{side}", instruction=f"edit {g}", source=f"s{g}.png",
            image=f"{g}-{side}.png", content_hash=f"{name}-{g}-{side}") for side in "wl")  # fmt: skip
        BenchmarkPair.objects.create(dataset=bench, row=g, preferred=win, other=lose,
                                     task_type=("color_alter", "extract")[g % 2],
                                     dimension="overall")  # fmt: skip
    return bench


@pytest.fixture
def world(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    dataset = make_dataset("src", groups=1, candidates=2)
    split = {"held_out": 0.25, "seed": 0}
    trained_on = Snapshot.objects.create(name="r", kind="rankings", dataset=dataset, policy={},
                                         path="-", sha256="1" * 64, rows=1, split=split)  # fmt: skip
    held = Snapshot.objects.create(name="h", kind="benchmark", dataset=dataset, policy={},
                                   path="-", sha256="2" * 64, rows=1,
                                   split={**split, "side": "held_out"})  # fmt: skip
    held_bench = _bench("held", layout="snapshot", snapshot=held)
    seen_bench = _bench("all", layout="jsonl")

    def model(name, **fields):
        return RewardModel.objects.create(name=name, base=f"/m/{name}", adapter=f"/a/{name}",
                                          origin="trained", snapshot=trained_on, **fields)  # fmt: skip

    def run(bench, label, right, weights=None):
        """A finished run that orders the pairs of the groups in `right` correctly and the
        others the wrong way round, its metric computed from its cached scores."""
        scorer = {"kind": "editscore", "base": weights.base, "adapter": weights.adapter,
                  "k": 1} if weights else {"kind": label}  # fmt: skip
        for g in range(GROUPS):
            for side, good in (("w", 1.0), ("l", 0.0)):
                value = good if g in right else 1.0 - good
                ScoreCache.objects.create(scorer_key=label, content_hash=f"{bench.name}-{g}-{side}",
                                          scores={"overall": value})  # fmt: skip
        return BenchmarkRun.objects.create(job=JobFactory(), dataset=bench, label=label,
                                           scorer=scorer, scorer_key=label,
                                           metric=run_metric(bench, label))  # fmt: skip

    half = {g for g in range(GROUPS) if g % 4 < 2}  # half of each task's groups
    run(held_bench, "pixel", half)
    run(seen_bench, "pixel", half)
    return {"model": model, "run": run, "held": held_bench, "seen": seen_bench, "half": half}


def test_a_model_without_a_held_out_result_is_refused(world):
    weak = world["model"]("weak")
    world["run"](world["seen"], "weak", set(range(GROUPS)), weak)  # on data it saw
    with pytest.raises(gate.PromotionRefused, match="no finished benchmark run on pairs it never"):
        gate.promote(weak)
    weak.refresh_from_db()
    assert not weak.promoted and weak.gate["passed"] is False


def test_a_paired_gain_must_clear_zero_against_the_baseline_and_then_the_default(world):
    half = world["half"]
    close = world["model"]("close")  # pixel's groups and one more: +0.025, within the noise
    world["run"](world["held"], "close", half | {2}, close)
    with pytest.raises(gate.PromotionRefused,
                       match=r"close does not beat pixel on held: 0.525 against 0.500, "
                             r"difference \+0.025 \[\+0.000, \+0.0[0-9]{2}\] over 40 groups"):  # fmt: skip
        gate.promote(close)
    assert close.gate["difference_interval"][0] == 0.0
    strong_groups = set(range(GROUPS)) - {0, 1, 4, 5, 8, 9, 12, 13}  # 0.800: wrong on 8 groups
    strong = world["model"]("strong")
    world["run"](world["held"], "strong", strong_groups, strong)
    verdict = gate.promote(strong)
    strong.refresh_from_db()
    assert strong.promoted and verdict.passed and verdict.against == "pixel"
    assert strong.gate["against_accuracy"] == 0.50 and strong.gate["run"] == verdict.run
    assert (
        strong.gate["difference"] == pytest.approx(0.3)
        and strong.gate["difference_interval"][0] > 0
    )
    # the next candidate must beat the default, not the baseline
    better = world["model"]("better")
    world["run"](world["held"], "better", strong_groups | {0}, better)
    with pytest.raises(gate.PromotionRefused, match="does not beat strong \\(the default\\)"):
        gate.promote(better)
    assert gate.check(better, against="pixel").passed  # a named baseline it does beat
    best = world["model"]("best")
    world["run"](world["held"], "best", set(range(GROUPS)), best)
    gate.promote(best)
    assert list(RewardModel.objects.filter(promoted=True).values_list("name", flat=True)) == [
        "best"
    ]


def test_a_higher_point_estimate_than_the_baseline_is_not_enough(world):
    """The old rule (its own interval's lower bound above the baseline's point) ignored the
    baseline's noise; paired, a model right on different groups than pixel is not promoted
    for being right on a few more of them."""
    other = world["model"]("other")
    swapped = {g for g in range(GROUPS) if g % 4 >= 2} | {0, 1, 4, 5}  # 0.600, other groups
    world["run"](world["held"], "other", swapped, other)
    verdict = gate.check(other)
    assert not verdict.passed and verdict.difference == pytest.approx(0.1)
    assert verdict.difference_interval[0] < 0 < verdict.difference_interval[1]


def test_the_page_promotes_through_the_gate_and_shows_the_verdict(world, researcher_client):
    weak = world["model"]("weak", status="ready")
    world["run"](world["held"], "weak", {g for g in world["half"] if g < 20}, weak)
    response = researcher_client.post(f"/reward-models/{weak.pk}/promote/", {"against": ""},
                                      follow=True)  # fmt: skip
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/reward-models/{weak.pk}/"
    assert "not promoted: weak does not beat pixel on held: 0.250 against 0.500" in html
    assert 'id="gate-verdict"' in html and "Not passed" in html
    weak.refresh_from_db()
    assert not weak.promoted
    # the list shows each model's held-out result, linked to its run, and its verdict
    run = BenchmarkRun.objects.get(label="weak")
    listing = researcher_client.get("/reward-models/").content.decode()
    assert f'<a href="/benchmark/runs/{run.pk}/">0.250</a>' in listing
    assert "held, held out" in listing and "not passed" in listing
