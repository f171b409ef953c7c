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
    """Scores like EditScore: overall = the number given by the instruction, or unscored."""

    def __init__(self):
        self.calls = []

    def score(self, items, *, k=1):
        self.calls.append((list(items), k))
        out = []
        for item in items:
            value = None if item.instruction == "unscorable" else float(item.instruction)
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


def test_unscored_items_get_zero_and_are_counted():
    fn = editscore_reward(FakeScorer())
    images = [flat(0), flat(0), flat(0)]
    assert fn(images, ["5", "unscorable", "unscorable"], images) == [0.5, 0.0, 0.0]
    assert fn.unscored_count == 2
    assert fn.last_errors == [
        "item 1: 1 of 1 passes failed: unreadable",
        "item 2: 1 of 1 passes failed: unreadable",
    ]
    assert fn(images[:1], ["3"], images[:1]) == [pytest.approx(0.3)]
    assert fn.unscored_count == 2 and fn.last_errors == []
    strict = editscore_reward(FakeScorer(), unscored=None)
    with pytest.raises(RuntimeError, match="unscored: item 0: 1 of 1 passes failed"):
        strict(images[:1], ["unscorable"], images[:1])
    assert strict.unscored_count == 1


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
    assert isinstance(fn, EditScoreReward) and fn.k == 2
    assert loaded == [("/models/base", "/a", {"device": "cpu", "dtype": None})]
    assert fn([flat(0)], ["8"], [flat(0)]) == [0.8]


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
        assert got == [pytest.approx(0.6), 0.0]
        assert fn.unscored_count == 1
        ((items, k),) = scorer.calls
        assert k == 3
        assert decode(items[0].edited).getpixel((1, 1)) == (9, 9, 9)
    finally:
        server.shutdown()
        server.server_close()
