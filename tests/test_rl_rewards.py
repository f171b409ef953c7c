"""RL reward functions (rltraining.ml.rewards) on tiny images with known values."""

import io
import math
import threading

import pytest
from PIL import Image

from rewardmodel.ml.model import ScoreItem
from rewardmodel.ml.server import make_server
from rltraining.ml.rewards import (
    EditScoreReward,
    brightness_reward,
    build_reward,
    colour_reward,
    editscore_reward,
    weighted_sum,
)


def flat(colour, size=(2, 2), mode="RGB"):
    return Image.new(mode, size, colour)


def half_and_half(left, right):
    """A 2x1 image: one pixel of each colour."""
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), left)
    image.putpixel((1, 0), right)
    return image


def call(fn, images, instruction="edit it"):
    n = len(images)
    return fn([flat((0, 0, 0))] * n, [instruction] * n, images)


# ------------------------------------------------------------------ toy rewards


def test_brightness_is_mean_luminance():
    values = call(
        brightness_reward,
        [
            flat((255, 255, 255)),
            flat((0, 0, 0)),
            flat((255, 0, 0)),  # 0.299
            flat((0, 0, 255)),  # 0.114
            half_and_half((255, 255, 255), (0, 0, 0)),  # 0.5
            flat((0, 255, 0, 0), mode="RGBA"),  # alpha dropped: 0.587
        ],
    )
    assert values == pytest.approx([1.0, 0.0, 0.299, 0.114, 0.5, 0.587])


def test_colour_reward_is_one_minus_normalised_distance():
    red = colour_reward((255, 0, 0))
    values = call(
        red,
        [
            flat((255, 0, 0)),
            flat((0, 0, 0)),  # distance 255 of 255*sqrt(3)
            half_and_half((255, 0, 0), (0, 0, 0)),  # mean distance 127.5
            flat((0, 255, 255)),  # the opposite corner of the cube
        ],
    )
    assert values == pytest.approx([1.0, 1 - 1 / math.sqrt(3), 1 - 0.5 / math.sqrt(3), 0.0])
    assert call(colour_reward((0, 0, 0)), [flat((255, 255, 255))]) == [pytest.approx(0.0)]
    for bad in [(255, 0), (256, 0, 0), (1.5, 0, 0), "red"]:
        with pytest.raises(ValueError, match="three integers"):
            colour_reward(bad)


def test_weighted_sum_adds_weighted_terms():
    fn = weighted_sum([(brightness_reward, 2.0), (colour_reward((255, 0, 0)), -1.0)])
    values = call(fn, [flat((255, 0, 0)), flat((255, 255, 255))])
    white_colour = 1 - math.sqrt(2 * 255**2) / (255 * math.sqrt(3))
    assert values == pytest.approx([2 * 0.299 - 1.0, 2.0 - white_colour])
    with pytest.raises(ValueError, match="at least one"):
        weighted_sum([])


def test_mismatched_batches_are_refused():
    with pytest.raises(ValueError, match="2 sources, 1 instructions and 2 images"):
        brightness_reward([flat(0)] * 2, ["x"], [flat(0)] * 2)


# ------------------------------------------------------------------ EditScore


class FakeScorer:
    """Scores like EditScore: overall = the number given by the instruction, or unscored; with
    ``parse_policy="reference_batch"`` an unreadable answer counts as R/2 = 5, as the EditScore
    package's batch path does (the authors' reward server), so every item is scored."""

    def __init__(self):
        self.calls = []
        self.options = []

    def score(self, items, *, k=1, **options):
        self.calls.append((list(items), k))
        self.options.append(options)
        reference = options.get("parse_policy") == "reference_batch"
        out = []
        for item in items:
            value = None if item.instruction == "unscorable" else float(item.instruction)
            value = 5.0 if value is None and reference else value
            out.append(
                {
                    "prompt_following": value,
                    "consistency": value,
                    "perceptual_quality": value,
                    "overall": value,
                    "raw": [],
                    "error": "1 of 1 passes failed: unreadable" if value is None else None,
                    "passes": 0 if value is None else k,
                }
            )
        return out


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.convert("RGB")


def test_editscore_reward_is_overall_over_ten_with_png_items():
    scorer = FakeScorer()
    fn = editscore_reward(scorer, k=4)
    source = flat((10, 20, 30), size=(3, 2))
    edits = [flat((200, 0, 0), size=(3, 2)), flat((0, 200, 0, 128), size=(3, 2), mode="RGBA")]
    assert fn([source, source], ["7.5", "10"], edits) == pytest.approx([0.75, 1.0])
    ((items, k),) = scorer.calls
    assert k == 4
    assert all(isinstance(item, ScoreItem) for item in items)
    assert [item.instruction for item in items] == ["7.5", "10"]
    assert decode(items[1].source).tobytes() == source.tobytes()
    assert decode(items[0].edited).getpixel((0, 0)) == (200, 0, 0)
    assert decode(items[1].edited).getpixel((2, 1)) == (0, 200, 0)
    assert items[0].source is items[1].source  # a shared source is encoded once
    assert fn.unscored_count == 0 and fn.last_errors == []


def test_unscored_items_are_excluded_by_default_and_counted():
    """Default "exclude": an unscored edit gets the reward None (the trainer leaves it out of
    its group's advantages and out of the loss), never a made-up number."""
    scorer = FakeScorer()
    fn = editscore_reward(scorer)
    assert fn.unscored == "exclude"
    images = [flat(0), flat(0), flat(0)]
    assert fn(images, ["5", "unscorable", "unscorable"], images) == [0.5, None, None]
    assert scorer.options == [{}]  # the scorer's own parsing, no reference policy
    assert fn.unscored_count == 2
    assert fn.last_errors == [
        "item 1: 1 of 1 passes failed: unreadable",
        "item 2: 1 of 1 passes failed: unreadable",
    ]
    assert fn(images[:1], ["3"], images[:1]) == [pytest.approx(0.3)]
    assert fn.unscored_count == 2 and fn.last_errors == []


def test_a_fixed_unscored_reward_and_raising_still_work():
    images = [flat(0), flat(0)]
    fixed = editscore_reward(FakeScorer(), unscored=0)
    assert fixed(images, ["5", "unscorable"], images) == [0.5, 0.0]
    assert fixed.unscored_count == 1
    strict = editscore_reward(FakeScorer(), unscored=None)
    with pytest.raises(RuntimeError, match="unscored: item 0: 1 of 1 passes failed"):
        strict(images[:1], ["unscorable"], images[:1])
    assert strict.unscored_count == 1


def test_reference_mode_scores_with_the_reference_batch_parse_policy():
    """The "reference" mode reproduces the authors' reward server: the scorer is asked for the
    EditScore package's batch parsing (an unreadable answer is R/2), so every edit is scored."""
    scorer = FakeScorer()
    fn = editscore_reward(scorer, k=4, unscored="reference")
    images = [flat(0), flat(0)]
    assert fn(images, ["7", "unscorable"], images) == [pytest.approx(0.7), 0.5]
    assert scorer.options == [{"parse_policy": "reference_batch"}]
    assert scorer.calls[0][1] == 4
    assert fn.unscored_count == 0 and fn.last_errors == []

    class Broken(FakeScorer):  # a scorer that still leaves one unscored: not the reference
        def score(self, items, *, k=1, **options):
            return super().score(items, k=k)

    with pytest.raises(RuntimeError, match="unscored: item 1"):
        editscore_reward(Broken(), unscored="reference")(images, ["7", "unscorable"], images)


def test_weighted_sum_of_an_unscored_term_is_unscored():
    fn = weighted_sum([(editscore_reward(FakeScorer()), 1.0), (brightness_reward, 1.0)])
    images = [flat((255, 255, 255)), flat(0)]
    assert fn(images, ["5", "unscorable"], images) == [pytest.approx(1.5), None]


def test_editscore_reward_checks_its_scorer():
    with pytest.raises(ValueError, match="no score"):
        editscore_reward(object())
    with pytest.raises(ValueError, match="k must be"):
        editscore_reward(FakeScorer(), k=0)


# ------------------------------------------------------------------ specs


def test_build_reward_toy_kinds():
    images = [flat((255, 0, 0))]
    assert build_reward({"kind": "brightness"}) is brightness_reward
    assert call(build_reward({"kind": "colour", "target": [255, 0, 0]}), images) == [1.0]
    assert call(build_reward({"kind": "color", "target": [0, 0, 0]}), images) == [
        pytest.approx(1 - 1 / math.sqrt(3))
    ]
    spec = {
        "kind": "weighted",
        "terms": [[{"kind": "brightness"}, 0.5], [{"kind": "brightness"}, 1]],
    }
    assert call(build_reward(spec), images) == [pytest.approx(1.5 * 0.299)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "aesthetic"}, "unknown reward kind 'aesthetic'"),
        ({}, "unknown reward kind None"),
        ([1], "JSON object"),
        ({"kind": "brightness", "target": [1, 2, 3]}, r"unknown keys .*'target'"),
        ({"kind": "colour"}, r"needs \['target'\]"),
        ({"kind": "colour", "target": [300, 0, 0]}, "three integers"),
        ({"kind": "weighted", "terms": [{"kind": "brightness"}]}, r"\[spec, weight\] pairs"),
        ({"kind": "weighted", "terms": [[{"kind": "brightness"}, "1"]]}, "must be a number"),
        ({"kind": "weighted", "terms": [[{"kind": "nope"}, 1]]}, "unknown reward kind 'nope'"),
        ({"kind": "editscore"}, r"needs \['base'\]"),
        ({"kind": "editscore", "base": "/nowhere", "k": 0}, "k must be"),
        ({"kind": "editscore", "base": "/nowhere", "unscored": "low"}, "unscored must be"),
        ({"kind": "editscore", "base": "/nowhere", "unscored": True}, "unscored must be"),
        ({"kind": "editscore", "base": "/nowhere", "unscored": float("nan")}, "unscored must be"),
        ({"kind": "reward_server", "urls": "http://x"}, "non-empty list"),
        ({"kind": "reward_server", "urls": ["ftp://x"], "token": "t"}, "not an http"),
        ({"kind": "reward_server", "urls": ["http://x"], "token_env": "HELPER_A_UNSET"}, "unset"),
    ],
)
def test_build_reward_errors(spec, message, monkeypatch):
    monkeypatch.delenv("HELPER_A_UNSET", raising=False)
    with pytest.raises(ValueError, match=message):
        build_reward(spec)


def test_build_reward_editscore_loads_the_model(monkeypatch):
    from rewardmodel.ml import model

    loaded = []

    def fake_from_pretrained(base, adapter=None, **options):
        loaded.append((base, adapter, options))
        return FakeScorer()

    monkeypatch.setattr(model.EditScore, "from_pretrained", staticmethod(fake_from_pretrained))
    fn = build_reward({"kind": "editscore", "base": "/models/base", "adapter": "/a", "k": 2})
    assert isinstance(fn, EditScoreReward) and fn.k == 2 and fn.unscored == "exclude"
    assert loaded == [("/models/base", "/a", {"device": "cpu", "dtype": None})]
    assert fn([flat(0)], ["8"], [flat(0)]) == [0.8]
    for unscored in ("reference", 0.0, None):  # the option goes through the spec
        spec = {"kind": "editscore", "base": "/b", "unscored": unscored}
        assert build_reward(spec).unscored == unscored
        assert build_reward(spec, load=False) is None


def test_build_reward_server_scores_through_a_real_server(monkeypatch):
    scorer = FakeScorer()
    server = make_server(scorer, token="s3cret", host="127.0.0.1", port=0, batch_wait=0.0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        monkeypatch.setenv("HELPER_A_TOKEN", "s3cret")
        spec = {"kind": "reward_server", "urls": [server.url], "token_env": "HELPER_A_TOKEN"}
        fn = build_reward({**spec, "k": 3})
        source = flat((1, 2, 3))
        got = fn([source, source], ["6", "unscorable"], [flat((9, 9, 9)), flat(0)])
        assert got == [pytest.approx(0.6), None]
        assert fn.unscored_count == 1
        ((items, k),) = scorer.calls
        assert k == 3
        assert decode(items[0].edited).getpixel((1, 1)) == (9, 9, 9)
        # "reference": the parse policy travels through the client and the server
        reference = build_reward({**spec, "unscored": "reference"})
        got = reference([source, source], ["6", "unscorable"], [flat((9, 9, 9)), flat(0)])
        assert got == [pytest.approx(0.6), 0.5]
        assert scorer.options[-1] == {"parse_policy": "reference_batch"}
    finally:
        server.shutdown()
        server.server_close()


def test_reward_server_failures_are_fatal_only_when_asked(monkeypatch):
    """A failed request leaves its items unscored (then excluded, or the fixed reward), except
    with unscored=None and "reference": the authors' client gives up and their training stops."""
    from rewardmodel.ml import client

    made = []

    class FakeClient(FakeScorer):
        def __init__(self, urls, token, **options):
            super().__init__()
            made.append(options["on_failure"])

    monkeypatch.setattr(client, "RewardClient", FakeClient)
    spec = {"kind": "reward_server", "urls": ["http://x"], "token": "t"}
    for unscored in ("exclude", 0.0, None, "reference"):
        build_reward({**spec, "unscored": unscored})
    build_reward(spec)
    assert made == ["unscored", "unscored", "raise", "raise", "unscored"]
