"""The demo's one job of its own: pre-training the tiny EditScore judge on EditWorld's truth
(editworld/judge.py), once per installation, on the worker with a progress bar, while the
simulated annotators rank. torch is imported by the handler only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from mlcore.options import check_options, option

KIND = "demo.pretrain_judge"


@dataclass
class JudgeJobConfig:
    """Pre-train the tiny EditScore judge (declared options: mlcore.options; docs/configs.md)."""

    groups: int = option(150, help="EditWorld groups it learns from (4 candidates each)", min=1,
                         max=100_000)  # fmt: skip
    steps: int = option(600, help="optimizer steps", min=1, max=1_000_000)

    def __post_init__(self):
        check_options(self)

    def recipe(self):
        from editworld.judge import JudgeRecipe  # no torch at import time

        return JudgeRecipe(groups=self.groups, steps=self.steps)


def judges_dir() -> Path:
    return Path(settings.VAR_DIR) / "demo" / "judges"


def run_pretrain_judge(ctx) -> dict:
    from editworld.judge import build_cached_judge

    recipe = JudgeJobConfig(**ctx.config).recipe()

    def on_step(step: int, metrics: dict) -> None:
        loss = metrics["loss"]
        ctx.progress(step / recipe.steps, f"step {step} of {recipe.steps}, loss {loss:.3f}")
        ctx.heartbeat()

    ctx.progress(0.0, "building the base and its EditWorld examples")
    folder = build_cached_judge(judges_dir(), recipe, on_step=on_step)
    return {"folder": str(folder)}
