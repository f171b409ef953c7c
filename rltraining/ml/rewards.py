"""Reward functions for RL: plain callables ``(sources, instructions, images) -> list[float]``,
one reward per edited image (``sources[i]`` and ``instructions[i]`` are what ``images[i]`` was
made from). A reward that can fail (a judge) may give ``None`` for an image it could not score:
the trainer leaves such a sample out of its group's advantages and out of the loss.

Two families:

* toy rewards (:func:`brightness_reward`, :func:`colour_reward`, :func:`weighted_sum`) that need no
  model, so the whole RL loop can be tested, and demonstrated on a CPU, with a reward whose
  optimum is known;
* :func:`editscore_reward`, the method's reward (EditScore overall / 10, ``docs/method.md``
  section 4), around an in-process :class:`rewardmodel.ml.model.EditScore` or a
  :class:`rewardmodel.ml.client.RewardClient` talking to reward servers.

:func:`build_reward` makes any of them from a JSON-able spec, the form a training job stores.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

RewardFn = Callable[[list[Image.Image], list[str], list[Image.Image]], list[float | None]]
# What EditScoreReward does with an edit the reward model leaves unscored (besides a number, the
# fixed reward it gets, and None, raise).
UNSCORED_MODES = ("exclude", "reference")

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's "L" conversion
_MAX_RGB_DISTANCE = 255.0 * math.sqrt(3.0)


def _check_batch(sources: Sequence, instructions: Sequence, images: Sequence) -> None:
    if not len(sources) == len(instructions) == len(images):
        raise ValueError(
            f"{len(sources)} sources, {len(instructions)} instructions and {len(images)} images: "
            "one of each per edited image is needed"
        )


def _rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float64 array in 0..255; alpha is dropped, not composited."""
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def brightness_reward(
    sources: list[Image.Image], instructions: list[str], images: list[Image.Image]
) -> list[float]:
    """Mean luminance (0.299 R + 0.587 G + 0.114 B) of each image, in [0, 1]: black 0, white 1."""
    _check_batch(sources, instructions, images)
    return [float((_rgb(img) @ _LUMA).mean() / 255.0) for img in images]


def colour_reward(target: Sequence[int] = (255, 0, 0)) -> RewardFn:
    """A reward for being close to the colour ``target`` (r, g, b in 0..255): ``1 − d / d_max``
    with ``d`` the mean over pixels of the Euclidean RGB distance to the target and
    ``d_max = 255·√3`` (the cube's diagonal), so it lies in [0, 1] and is 1 for a flat image of
    exactly the target colour."""
    colour = np.array(_check_colour(target), dtype=np.float64)

    def reward(
        sources: list[Image.Image], instructions: list[str], images: list[Image.Image]
    ) -> list[float]:
        _check_batch(sources, instructions, images)
        out = []
        for img in images:
            distance = np.linalg.norm(_rgb(img) - colour, axis=-1).mean()
            out.append(float(1.0 - distance / _MAX_RGB_DISTANCE))
        return out

    reward.__name__ = f"colour_reward{tuple(int(c) for c in colour)}"
    return reward


def _check_colour(target: Any) -> list[int]:
    if (
        isinstance(target, str | bytes)
        or not isinstance(target, Sequence)
        or len(target) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in target)
    ):
        raise ValueError(f"a colour is three integers in 0..255 (r, g, b), got {target!r}")
    return list(target)


def weighted_sum(terms: Sequence[tuple[RewardFn, float]]) -> RewardFn:
    """``Σ w·fn(...)`` over ``terms`` (pairs of reward function and weight, weights may be
    negative to penalise); None (unscored) where any term gives None."""
    terms = [(fn, float(w)) for fn, w in terms]
    if not terms:
        raise ValueError("weighted_sum needs at least one (function, weight) term")
    for fn, w in terms:
        if not callable(fn) or not math.isfinite(w):
            raise ValueError(f"each term must be (callable, finite weight), got ({fn!r}, {w!r})")

    def reward(
        sources: list[Image.Image], instructions: list[str], images: list[Image.Image]
    ) -> list[float]:
        _check_batch(sources, instructions, images)
        total = [0.0] * len(images)
        for fn, w in terms:
            values = fn(sources, instructions, images)
            if len(values) != len(images):
                raise ValueError(f"{fn!r} returned {len(values)} rewards for {len(images)} images")
            # a term that could not score an image leaves the sum unscored, too
            total = [None if t is None or v is None else t + w * float(v)
                     for t, v in zip(total, values, strict=True)]  # fmt: skip
        return total

    return reward


def _check_options(k: Any, unscored: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if unscored is None or (isinstance(unscored, str) and unscored in UNSCORED_MODES):
        return
    number = isinstance(unscored, int | float) and not isinstance(unscored, bool)
    if not (number and math.isfinite(unscored)):
        raise ValueError(
            f"unscored must be 'exclude', 'reference', a finite number or None (raise), "
            f"got {unscored!r}"
        )


def png_bytes(image: Image.Image) -> bytes:
    """The image as RGB PNG bytes (lossless, so the scorer sees exactly the policy's pixels)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class EditScoreReward:
    """EditScore's overall score / ``scale`` for each edit (0..1 with the default 0-10 scale).

    ``scorer`` is anything with ``score(items, k=...)`` returning EditScore's result dicts: an
    in-process :class:`rewardmodel.ml.model.EditScore` or a
    :class:`rewardmodel.ml.client.RewardClient`. Items are
    :class:`rewardmodel.ml.model.ScoreItem` with PNG bytes, which both accept. ``k`` is Avg@K.

    ``unscored`` says what an item left unscored gets:

    * ``"exclude"`` (default): the reward ``None``. The trainer leaves the sample out of its
      group's mean and std and masks it out of the loss. A made-up reward (0 was the old
      default) would move the whole group's advantages for a reason unrelated to the edit.
    * ``"reference"``: reproduce the authors' RL reward server, which scores with the EditScore
      package's batch path, where an unreadable answer counts as the middle of the scale (R/2):
      the scorer is called with ``parse_policy="reference_batch"`` and its results are always
      scored; one that is not anyway raises RuntimeError.
    * a number: that fixed reward (the old behaviour, e.g. 0.0).
    * ``None``: raise RuntimeError.

    Unscored is: ``overall`` None (the reward model's answers could not be read after its
    retries; with ``reward_server``, also a server that failed, timed out, or answered too much
    or malformed JSON after the client's retries), and, as the answer cannot be trusted, a result
    that is not an object or whose ``overall`` is not a number, not finite (NaN, inf) or outside
    0..``scale``. Either way it is counted in ``unscored_count`` (over the object's life) and its
    reason is kept in ``last_errors`` (for the latest call), so the trainer can log it.
    """

    def __init__(
        self, scorer: Any, k: int = 1, *, unscored: str | float | None = "exclude",
        scale: float = 10.0,
    ):  # fmt: skip
        if not callable(getattr(scorer, "score", None)):
            raise ValueError(f"{scorer!r} has no score(items, k=...) method")
        _check_options(k, unscored)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scorer = scorer
        self.k = k
        fixed = unscored is not None and not isinstance(unscored, str)
        self.unscored = float(unscored) if fixed else unscored
        self.scale = float(scale)
        self.unscored_count = 0
        self.last_errors: list[str] = []

    def __call__(
        self, sources: list[Image.Image], instructions: list[str], images: list[Image.Image]
    ) -> list[float]:
        from rewardmodel.ml.model import ScoreItem

        _check_batch(sources, instructions, images)
        encoded: dict[int, bytes] = {}  # a group's samples share one source image

        def source_png(image: Image.Image) -> bytes:
            if id(image) not in encoded:
                encoded[id(image)] = png_bytes(image)
            return encoded[id(image)]

        items = [
            ScoreItem(instruction=text, source=source_png(src), edited=png_bytes(img))
            for src, text, img in zip(sources, instructions, images, strict=True)
        ]
        options = {"parse_policy": "reference_batch"} if self.unscored == "reference" else {}
        results = self.scorer.score(items, k=self.k, **options) if items else []
        if len(results) != len(items):
            raise RuntimeError(f"the scorer returned {len(results)} results for {len(items)} items")
        rewards, self.last_errors = [], []
        for n, result in enumerate(results):
            overall, reason = _overall(result, self.scale)
            if overall is None:
                error = f"item {n}: {reason}"
                self.unscored_count += 1
                self.last_errors.append(error)
                if self.unscored is None or self.unscored == "reference":
                    raise RuntimeError(f"the reward model left an edit unscored: {error}")
                rewards.append(None if self.unscored == "exclude" else self.unscored)
            else:
                rewards.append(overall / self.scale)
        return rewards


def _overall(result: Any, scale: float) -> tuple[float | None, str]:
    """(the overall score, "") or (None, why the result gives no usable score)."""
    if not isinstance(result, Mapping):
        return None, f"the result is {type(result).__name__}, not an object"
    overall = result.get("overall")
    if overall is None:
        return None, str(result.get("error") or "unscored")[:500]
    if isinstance(overall, bool) or not isinstance(overall, int | float):
        return None, f"overall is {type(overall).__name__}, not a number"
    overall = float(overall)
    if not math.isfinite(overall):
        return None, f"overall is {overall}"
    if not 0.0 <= overall <= scale:
        return None, f"overall {overall:g} is outside 0..{scale:g}"
    return overall, ""


def editscore_reward(
    scorer_like: Any, k: int = 1, *, unscored: str | float | None = "exclude",
    scale: float = 10.0,
) -> EditScoreReward:  # fmt: skip
    """The method's reward, EditScore overall / 10; see :class:`EditScoreReward`."""
    return EditScoreReward(scorer_like, k, unscored=unscored, scale=scale)


# ---------------------------------------------------------------------- specs

_KEYS = {
    "brightness": set(),
    "colour": {"target"},
    "weighted": {"terms"},
    "editscore": {"base", "adapter", "k", "device", "dtype", "unscored"},
    "reward_server": {"urls", "token", "token_env", "k", "timeout", "unscored"},
}
_REQUIRED = {
    "colour": {"target"},
    "weighted": {"terms"},
    "editscore": {"base"},
    "reward_server": {"urls"},
}


@dataclass(frozen=True)
class RewardKind:
    """A reward kind registered from outside the engine (:mod:`rltraining.ml.plugins`):
    ``check(spec)`` raises ValueError on a bad spec and must not load anything heavy;
    ``build(spec)`` returns the reward function (imports what it needs)."""

    keys: frozenset[str]
    required: frozenset[str]
    check: Callable[[Mapping[str, Any]], None]
    build: Callable[[Mapping[str, Any]], RewardFn]


PLUGIN_KINDS: dict[str, RewardKind] = {}


def register_reward_kind(
    kind: str,
    *,
    keys: set[str],
    required: set[str],
    check: Callable[[Mapping[str, Any]], None],
    build: Callable[[Mapping[str, Any]], RewardFn],
) -> None:
    if kind in _KEYS:
        raise ValueError(f"reward kind {kind!r} is the engine's own")
    PLUGIN_KINDS[kind] = RewardKind(frozenset(keys), frozenset(required), check, build)


def reward_kinds() -> list[str]:
    """Every reward kind a spec may name: the engine's and the plug-ins' ("color" too)."""
    from rltraining.ml.plugins import load_plugins

    load_plugins()
    return sorted({*_KEYS, "color", *PLUGIN_KINDS})


def build_reward(spec: Mapping[str, Any], *, load: bool = True) -> RewardFn | None:
    """A reward function from a JSON-able spec::

        {"kind": "brightness"}
        {"kind": "colour", "target": [255, 0, 0]}                 # "color" is accepted too
        {"kind": "weighted", "terms": [[{"kind": "brightness"}, 0.5], [spec, weight], ...]}
        {"kind": "editscore", "base": path, "adapter": path | None, "k": 1, "device": "cpu",
         "dtype": None, "unscored": "exclude"}
        {"kind": "reward_server", "urls": [...], "token": "...", "k": 1, "timeout": 120,
         "unscored": "exclude"}
        {"kind": <a plug-in's kind>, ...}    # e.g. EditWorld's "editworld_oracle"

    ``unscored``: ``"exclude"`` (default), ``"reference"``, a number or None; see
    :class:`EditScoreReward`. ``reward_server`` may name an environment variable with
    ``"token_env"`` instead of putting the token in the spec (specs are stored with jobs).
    ``editscore`` loads the model now. Unknown kinds and unknown or missing keys raise
    ValueError (a typo must not silently train against a default). ``load=False`` only checks
    the spec (what the web process does before queueing a job) and returns None for the kinds
    that need a model or a server.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a reward spec is a JSON object, got {type(spec).__name__}")
    kind = spec.get("kind")
    kind = "colour" if kind == "color" else kind
    if kind not in _KEYS and kind not in PLUGIN_KINDS and kind not in reward_kinds():
        raise ValueError(f"unknown reward kind {kind!r}: one of {reward_kinds()}")
    if kind in PLUGIN_KINDS:
        return _build_plugin(PLUGIN_KINDS[kind], kind, spec, load=load)
    keys = set(spec) - {"kind"}
    if keys - _KEYS[kind]:
        raise ValueError(f"unknown keys for reward kind {kind!r}: {sorted(keys - _KEYS[kind])}")
    if _REQUIRED.get(kind, set()) - keys:
        raise ValueError(f"reward kind {kind!r} needs {sorted(_REQUIRED[kind] - keys)}")
    unscored, k = spec.get("unscored", "exclude"), spec.get("k", 1)
    if kind in ("editscore", "reward_server"):
        _check_options(k, unscored)  # before a model is loaded

    if kind == "brightness":
        return brightness_reward
    if kind == "colour":
        return colour_reward(spec["target"])
    if kind == "weighted":
        terms = spec["terms"]
        if not isinstance(terms, list) or not all(
            isinstance(t, list | tuple) and len(t) == 2 for t in terms
        ):
            raise ValueError(
                f"weighted terms must be a list of [spec, weight] pairs, got {terms!r}"
            )
        for _, weight in terms:
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"a term's weight must be a number, got {weight!r}")
        built = [(build_reward(sub, load=load), weight) for sub, weight in terms]
        return weighted_sum(built) if load else None
    if kind == "editscore" and not isinstance(spec["base"], str):
        raise ValueError("an editscore reward's base must be a checkpoint folder path")
    if kind == "reward_server":
        if "token" in spec and "token_env" in spec:
            raise ValueError("give either token or token_env, not both")
        urls = spec["urls"]
        if isinstance(urls, str) or not isinstance(urls, list) or not urls:
            raise ValueError(f"urls must be a non-empty list of server URLs, got {urls!r}")
    if not load:
        return None
    if kind == "editscore":
        from rewardmodel.ml.model import EditScore

        scorer = EditScore.from_pretrained(
            spec["base"],
            spec.get("adapter"),
            device=spec.get("device", "cpu"),
            dtype=spec.get("dtype"),
        )
        return editscore_reward(scorer, k, unscored=unscored)
    # reward_server
    from rewardmodel.ml.client import RewardClient

    if "token_env" in spec:
        token = os.environ.get(spec["token_env"])
        if not token:
            raise ValueError(f"environment variable {spec['token_env']!r} is unset or empty")
    else:
        token = spec.get("token", "")
    # A server that fails, hangs or answers garbage leaves the request's items unscored
    # (excluded or a fixed reward, counted) rather than stopping the training. unscored=None
    # keeps it fatal, and so does "reference": the authors' client gives up after its retries
    # and their training stops (omnigen2/grpo/reward_client_edit.py returns None, which
    # train.py unpacks).
    client = RewardClient(
        spec["urls"],
        token,
        timeout=spec.get("timeout", 120),
        on_failure="raise" if unscored in (None, "reference") else "unscored",
    )
    return editscore_reward(client, k, unscored=unscored)


def _build_plugin(
    plugin: RewardKind, kind: str, spec: Mapping[str, Any], *, load: bool
) -> RewardFn | None:
    keys = set(spec) - {"kind"}
    if keys - plugin.keys:
        raise ValueError(f"unknown keys for reward kind {kind!r}: {sorted(keys - plugin.keys)}")
    if plugin.required - keys:
        raise ValueError(f"reward kind {kind!r} needs {sorted(plugin.required - keys)}")
    plugin.check(spec)
    return plugin.build(spec) if load else None
