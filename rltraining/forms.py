"""Reading the RL launch form into an RL job config (plain functions over request.POST, as the
reward-model page does): every problem is a ValueError whose message the page shows.

The prompts (a dataset or an uploaded JSONL) are read by the view: an upload needs its size
checked before it is read."""

from __future__ import annotations

import dataclasses
import json
import math

from config.errors import Invalid
from mlcore.options import describe
from rewardmodel.selectors import ready_model_get, ready_models
from rltraining.ml.trainer import RLConfig


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    name: str
    kind: type  # int, float or bool; float with `optional` for ema_decay
    default: object
    optional: bool = False
    help: str = ""
    accepts: str = ""

    @property
    def default_text(self) -> str:
        return "" if self.default is None else str(self.default)


def hyperparameters() -> list[Hyperparameter]:
    """The declared scalar options of RLConfig (mlcore.options) with their defaults (the
    paper's values), help and range."""
    kinds = {"int": int, "float": float, "bool": bool}
    return [
        Hyperparameter(
            o.name,
            kinds[o.type.removesuffix(" | None")],
            o.default,
            o.optional,
            o.help,
            o.range_text,
        )  # fmt: skip
        for o in describe(RLConfig)
    ]


def form_hyperparameters(post=None) -> list[dict]:
    """Rows for the form: the posted value when re-rendering after an error, else the default."""
    rows = []
    for h in hyperparameters():
        if h.kind is bool:
            value = (h.name in post) if post is not None else h.default
        else:
            value = post.get(h.name, h.default_text) if post is not None else h.default_text
        rows.append({"name": h.name, "kind": h.kind.__name__, "default": h.default_text,
                     "optional": h.optional, "value": value, "help": h.help,
                     "accepts": h.accepts})  # fmt: skip
    return rows


def _number(kind, name: str, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise Invalid(f"{name}: {text!r} is not a valid {kind.__name__}") from None
    if kind is float and not math.isfinite(value):
        raise Invalid(f"{name}: {text!r} is not a finite number")
    return value


def parse_training(post) -> dict:
    """RLConfig overrides: every scalar field the form sent (blank: the default; a blank
    optional field: null). RLConfig itself checks the ranges when the job is queued."""
    training = {}
    for h in hyperparameters():
        if h.kind is bool:
            training[h.name] = h.name in post
            continue
        text = post.get(h.name, "").strip()
        if text:
            training[h.name] = _number(h.kind, h.name, text)
        elif h.optional and h.name in post:
            training[h.name] = None
    return training


def parse_int(post, name: str, default: int | None = None, minimum: int | None = 0) -> int | None:
    """The integer field `name` (blank: `default`); `minimum` None leaves the range to the job's
    config."""
    text = post.get(name, "").strip()
    if not text:
        return default
    value = _number(int, name, text)
    if minimum is not None and value < minimum:
        raise Invalid(f"{name} must be an integer >= {minimum}")
    return value


def parse_fraction(post, name: str) -> float:
    """A fraction in [0, 0.9] (blank: 0)."""
    text = post.get(name, "").strip()
    if not text:
        return 0.0
    value = _number(float, name, text)
    if not 0 <= value <= 0.9:
        raise Invalid(f"{name} must be a fraction between 0 and 0.9")
    return value


def parse_policy_options(post) -> dict:
    options = {
        "lora_r": parse_int(post, "lora_r", 32, minimum=1),
        "lora_alpha": parse_int(post, "lora_alpha", 64, minimum=1),
    }
    # blank height and width: each edit gets its source's aspect ratio, as in the pipelines
    for name in ("height", "width"):
        value = parse_int(post, name, None, minimum=1)
        if value is not None:
            options[name] = value
    # The rest (guidance, auto_resize, max_sequence_length, condition_area, max_area) as JSON;
    # the job config names an unknown or mistyped option.
    text = post.get("policy_json", "").strip()
    if text:
        try:
            extra = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Invalid(f"policy options: not JSON ({exc.msg})") from None
        if not isinstance(extra, dict):
            raise Invalid('policy options: a JSON object, e.g. {"guidance": "dual"}')
        options.update(extra)
    return options


def reward_choices() -> tuple[list, str]:
    """(the ready reward models, the form's default reward choice: the promoted model)."""
    models = ready_models()
    promoted = next((m for m in models if m.promoted), None)
    return models, (f"model:{promoted.pk}" if promoted else "brightness")


def _colour(text: str) -> list[int]:
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        rgb = [int(p) for p in parts]
    except ValueError:
        rgb = []
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise Invalid(f"colour target: {text!r} is not three integers in 0..255 (r, g, b)")
    return rgb


def parse_reward(post) -> tuple[dict, object | None]:
    """(the reward spec, the RewardModel it came from, if any)."""
    choice = post.get("reward", "").strip()
    if choice.startswith("model:"):
        pk = choice.removeprefix("model:")
        model = ready_model_get(pk)
        if model is None:
            raise Invalid("unknown reward model: choose a ready one from the list")
        k = parse_int(post, "k", 1, minimum=1)
        spec = {"kind": "editscore", "base": model.base, "adapter": model.adapter or None, "k": k}
        return spec, model
    if choice == "brightness":
        return {"kind": "brightness"}, None
    if choice == "colour":
        return {"kind": "colour", "target": _colour(post.get("colour_target", ""))}, None
    if choice == "json":
        text = post.get("reward_json", "").strip()
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Invalid(f"reward spec: not JSON ({exc.msg})") from None
        if not isinstance(spec, dict):
            raise Invalid('reward spec: a JSON object, e.g. {"kind": "brightness"}')
        return spec, None
    raise Invalid("choose a reward")
