"""A tiny EditScore pre-trained on EditWorld's truth: the base the demo's fine-tune starts from.

A random tiny Qwen2.5-VL fine-tuned on a few dozen ranked groups writes answers that mostly do
not parse (every unscored pair counts as wrong). Pre-training teaches it the reference answer
format, and what it can of the images, on a bundle of its own whose every candidate has an exact
truth: the judge's SC targets are ``[round(R * prompt_following), round(R * consistency)]`` and its PQ
targets ``[round(R * quality)] * 2`` (R = 25), written by the fine-tuning code's own
``examples_for_candidate``, trained by its ``finetune`` (a LoRA as wide as the model: every
weight can move) and merged into the base (``merge_adapter``). The bundle has its own seed: no
group of a demo, a benchmark or a fine-tune is ever among them.

:func:`build_cached_judge` builds it once per machine into a folder keyed by its recipe (like
the tiny editor, ``editworld/editor.py``), under a lock, appearing complete or not at all, with
``pretraining.json`` (recipe, seconds, losses) beside the weights. The demo runs it as a job with
a progress bar (``demo/jobs.py``).

Unlike the rest of ``editworld`` this module needs torch, transformers and peft: import it only
where they are (the worker).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT_VERSION = 1
SCORE_RANGE = 25
READY = "pretraining.json"  # written last: a folder without it is not a judge


@dataclass(frozen=True)
class JudgeRecipe:
    """What the pre-trained judge is made of; its hash names the cached folder."""

    groups: int = 150  # EditWorld groups of 4 candidates, 128 px (8 examples each)
    steps: int = 600
    learning_rate: float = 3e-3
    width: int = 64
    vocab_size: int = 1000
    seed: int = 31  # the bundle's: no demo, benchmark or fine-tune uses it

    def key(self) -> str:
        material = {"format": FORMAT_VERSION, **asdict(self)}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def truth_examples(bundle: Path) -> list:
    """Two examples (SC, PQ) per candidate of an EditWorld bundle, targets from its truth."""
    from editworld.dataset import read_groups, read_truth
    from rewardmodel.ml.finetune import examples_for_candidate

    truth, examples = read_truth(bundle), []
    for group in read_groups(bundle):
        source = (bundle / group["source"]).read_bytes()
        for candidate in group["candidates"]:
            t = truth[candidate["id"]]
            examples += examples_for_candidate(
                group["instruction"], source, (bundle / candidate["image"]).read_bytes(),
                sc_scores=(round(SCORE_RANGE * t.prompt_following),
                           round(SCORE_RANGE * t.consistency)),
                pq_scores=(round(SCORE_RANGE * t.quality),) * 2, score_range=SCORE_RANGE,
            )  # fmt: skip
    return examples


def pretrain_judge(
    recipe: JudgeRecipe, out_dir: Path, on_step: Callable[[int, dict], None] | None = None
) -> dict:
    """Build the base, pre-train it and write the merged judge into ``out_dir``; the log."""
    from editworld.dataset import prompts, write_bundle
    from rewardmodel.ml.finetune import FinetuneConfig, finetune, merge_adapter
    from rewardmodel.ml.tiny import build_tiny_editscore, judge_corpus

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="editworld-judge-") as tmp:
        work = Path(tmp)
        instructions = sorted({p.instruction for p in prompts(600, 32, seed=5)})
        base = build_tiny_editscore(work / "base", width=recipe.width,
                                    vocab_size=recipe.vocab_size,
                                    corpus=judge_corpus(instructions))  # fmt: skip
        bundle = write_bundle(work / "bundle", groups=recipe.groups, candidates=4, size=128,
                              seed=recipe.seed, prefix="judge")  # fmt: skip
        examples = truth_examples(bundle)
        config = FinetuneConfig(
            base_model=str(base), output_dir=str(work / "run"), lora_r=recipe.width,
            lora_alpha=2 * recipe.width, target_modules=["all-linear", "lm_head", "embed_tokens"],
            learning_rate=recipe.learning_rate, max_steps=recipe.steps, grad_accum=1,
            warmup_ratio=0.05, max_pixels=128 * 128, checkpoint_every=0, seed=recipe.seed,
        )  # fmt: skip
        losses: list[float] = []

        def record(step: int, metrics: dict) -> None:
            losses.append(round(float(metrics["loss"]), 4))
            if on_step is not None:
                on_step(step, metrics)

        result = finetune(config, examples, on_step=record)
        merge_adapter(base, result["adapter_path"], out_dir)
    log = {"recipe": asdict(recipe), "format": FORMAT_VERSION, "examples": len(examples),
           "seconds": round(time.perf_counter() - began, 1), "losses": losses}  # fmt: skip
    (out_dir / READY).write_text(json.dumps(log) + "\n")
    return log


def judge_folder(cache_dir: str | os.PathLike, recipe: JudgeRecipe) -> Path:
    return Path(cache_dir) / f"editworld-judge-{recipe.key()}"


def build_cached_judge(
    cache_dir: str | os.PathLike,
    recipe: JudgeRecipe | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> Path:
    """The pre-trained judge's folder under ``cache_dir``, built the first time (a lock makes
    concurrent callers build once; the folder appears complete or not at all)."""
    recipe = recipe or JudgeRecipe()
    folder = judge_folder(cache_dir, recipe)
    if (folder / READY).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / READY).is_file():  # built while we waited otherwise
            tmp = folder.parent / f".{folder.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            pretrain_judge(recipe, tmp, on_step)
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
    with contextlib.suppress(OSError):
        os.unlink(lock_path)
    return folder
