"""The promotion gate: a reward model becomes the default only when it beats the default, or a
named baseline, on pairs it never trained on; the verdict and its figures are on its page."""

import pytest

from annotation.models import Snapshot
from benchmark.models import BenchmarkDataset, BenchmarkRun
from rewardmodel import gate
from rewardmodel.models import RewardModel
from tests.annotation_fixtures import make_dataset
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def _metric(accuracy, low, high):
    return {"overall": {"overall": accuracy}, "ci95": {"overall": {"overall": [low, high]}}}


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
    held_bench = BenchmarkDataset.objects.create(name="held", layout="snapshot",
                                                 source_path="-", snapshot=held)  # fmt: skip
    seen_bench = BenchmarkDataset.objects.create(name="all", layout="jsonl", source_path="-")

    def model(name, **fields):
        return RewardModel.objects.create(name=name, base=f"/m/{name}", adapter=f"/a/{name}",
                                          origin="trained", snapshot=trained_on, **fields)  # fmt: skip

    def run(bench, label, metric, weights=None):
        scorer = {"kind": "editscore", "base": weights.base, "adapter": weights.adapter,
                  "k": 1} if weights else {"kind": label}  # fmt: skip
        return BenchmarkRun.objects.create(job=JobFactory(), dataset=bench, label=label,
                                           scorer=scorer, scorer_key=label, metric=metric)  # fmt: skip

    run(held_bench, "pixel", _metric(0.50, 0.45, 0.55))
    run(seen_bench, "pixel", _metric(0.50, 0.45, 0.55))
    return {"model": model, "run": run, "held": held_bench, "seen": seen_bench}


def test_a_model_without_a_held_out_result_is_refused(world):
    weak = world["model"]("weak")
    world["run"](world["seen"], "weak", _metric(0.9, 0.85, 0.95), weak)  # on data it saw
    with pytest.raises(gate.PromotionRefused, match="no finished benchmark run on pairs it never"):
        gate.promote(weak)
    weak.refresh_from_db()
    assert not weak.promoted and weak.gate["passed"] is False


def test_the_interval_must_clear_the_baseline_and_then_the_default(world):
    close = world["model"]("close")
    world["run"](world["held"], "close", _metric(0.53, 0.48, 0.58), close)
    with pytest.raises(gate.PromotionRefused, match="does not beat pixel on held: 0.530 \\[0.480"):
        gate.promote(close)
    strong = world["model"]("strong")
    world["run"](world["held"], "strong", _metric(0.70, 0.62, 0.78), strong)
    verdict = gate.promote(strong)
    strong.refresh_from_db()
    assert strong.promoted and verdict.passed and verdict.against == "pixel"
    assert strong.gate["against_accuracy"] == 0.50 and strong.gate["run"] == verdict.run
    # the next candidate must beat the default, not the baseline
    better = world["model"]("better")
    world["run"](world["held"], "better", _metric(0.75, 0.69, 0.81), better)
    with pytest.raises(gate.PromotionRefused, match="does not beat strong \\(the default\\)"):
        gate.promote(better)
    assert gate.check(better, against="pixel").passed  # a named baseline it does beat
    best = world["model"]("best")
    world["run"](world["held"], "best", _metric(0.90, 0.85, 0.95), best)
    gate.promote(best)
    assert list(RewardModel.objects.filter(promoted=True).values_list("name", flat=True)) == [
        "best"
    ]


def test_the_page_promotes_through_the_gate_and_shows_the_verdict(world, researcher_client):
    weak = world["model"]("weak", status="ready")
    world["run"](world["held"], "weak", _metric(0.30, 0.25, 0.35), weak)
    response = researcher_client.post(f"/reward-models/{weak.pk}/promote/", {"against": ""},
                                      follow=True)  # fmt: skip
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/reward-models/{weak.pk}/"
    assert "not promoted: weak does not beat pixel on held: 0.300" in html
    assert 'id="gate-verdict"' in html and "Not passed" in html
    weak.refresh_from_db()
    assert not weak.promoted
