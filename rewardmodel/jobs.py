"""The fine-tune job: LoRA training of EditScore on a dataset's rankings, then
(optionally) a benchmark run of the new model, queued automatically.

torch and transformers are imported inside the handler only: this module is
imported by the web process (the job registry validates configs there)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any

from django.conf import settings

from config.model_roots import check_model_folder
from mlcore.options import check_options, option
from rewardmodel.ml.prompts import PROMPT_SETS

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The paper's settings (method.md §3); the form starts from these.
PAPER_DEFAULTS = {
    "lora_r": 32,
    "lora_alpha": 64,
    "learning_rate": 1e-4,
    "warmup_ratio": 0.1,
    "epochs": 3,
    "max_pixels": 512 * 512,
}
TUNABLE = {
    "lora_r": int, "lora_alpha": int, "lora_dropout": float, "learning_rate": float,
    "warmup_ratio": float, "epochs": int, "batch_size": int, "grad_accum": int,
    "max_steps": int, "max_pixels": int, "checkpoint_every": int, "seed": int, "max_length": int,
}  # fmt: skip


def reward_models_dir() -> Path:
    return Path(settings.REWARD_MODELS_DIR)


@dataclass
class FinetuneJobConfig:
    """A fine-tune job (declared options: mlcore.options; docs/configs.md)."""

    model_name: str = option(help="the new model's name (1-100 letters, digits, '.', '_', '-')")
    base_model: str = option(help="Qwen2.5-VL / Qwen3-VL checkpoint folder on the workers")
    # What it learns from: a dataset (its rankings are snapshotted when the job starts) or an
    # existing rankings snapshot (to retrain on exactly the same data).
    dataset_id: int | None = option(None, help="learn from this dataset's rankings now", min=1)
    snapshot_id: int | None = option(None, help="or from this rankings snapshot", min=1)
    # Held-out split by group (annotation/ml/split.py): training reads the train side only. The
    # same fraction and seed give the same sides everywhere, so a benchmark exported with them
    # holds out exactly the groups this model never saw.
    held_out: float = option(0.0, help="fraction of groups held out from training (0: none)",
                             min=0, max=0.9)  # fmt: skip
    split_seed: int = option(0, help="seed of the held-out split", min=0)
    adapter_init: str | None = option(None, help="continue from this LoRA adapter folder")
    training: dict = option(
        help="FinetuneConfig overrides (lora_r, learning_rate, max_steps...)", default_factory=dict
    )
    score_range: int = option(25, help="the answers' score range R (0..R)", min=1, max=1000)
    min_votes: int = option(1, help="groups with fewer rankings are left out", min=1)
    benchmark_dataset_id: int | None = option(
        None, help="benchmark the new model on this dataset when training succeeds", min=1
    )
    benchmark_k: int = option(1, help="Avg@K of that benchmark run", min=1, max=64)
    # An `openai` scorer spec: the teacher whose reasoning is kept where it agrees
    # with the humans (rewardmodel.ml.targets.curated_reasoning).
    teacher: dict | None = option(None, help="an openai scorer spec whose reasoning is kept "
                                  "where it orders the candidates as the humans")  # fmt: skip
    # LoRA targets (FinetuneConfig.target_modules); None: "all-linear" of the language model.
    # A tiny model also needs ["all-linear", "lm_head", "embed_tokens"] to learn at all.
    target_modules: list | None = option(None, help="LoRA target modules (none: all-linear)")
    # The prompt set the model learns (rewardmodel.ml.prompts); recorded on the model.
    prompt_set: str = option("reference", help="the prompts it learns and is scored with",
                             choices=PROMPT_SETS)  # fmt: skip

    def __post_init__(self):
        check_options(self)
        if not MODEL_NAME.fullmatch(self.model_name):
            raise ValueError("model_name must be 1-100 letters, digits, '.', '_' or '-'")
        if (self.dataset_id is None) == (self.snapshot_id is None):
            raise ValueError("give exactly one of dataset_id and snapshot_id")
        if self.snapshot_id is not None and self.held_out:
            raise ValueError("a snapshot carries its own split: give held_out with a dataset only")
        if not self.base_model:
            raise ValueError("base_model must be a path to a Qwen2.5-VL checkpoint folder")
        check_model_folder(self.base_model, "base_model")
        if self.adapter_init:
            check_model_folder(self.adapter_init, "adapter_init")
        if self.teacher is not None:
            from benchmark.ml.scorers import make_scorer

            if not isinstance(self.teacher, dict) or self.teacher.get("kind") != "openai":
                raise ValueError("teacher must be an openai scorer spec (a judge that reasons)")
            make_scorer(self.teacher)  # names a bad option
        if self.target_modules is not None and (
            not isinstance(self.target_modules, list) or not self.target_modules
            or not all(isinstance(t, str) and t for t in self.target_modules)
        ):  # fmt: skip
            raise ValueError("target_modules must be a non-empty list of module names or null")
        unknown = sorted(set(self.training) - set(TUNABLE))
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        for key, kind in TUNABLE.items():
            value = self.training.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or (kind is int and not isinstance(value, int))):  # fmt: skip
                raise ValueError(
                    f"training option {key} must be {'an integer' if kind is int else 'a number'}"
                )

    def output_dir(self) -> Path:
        return reward_models_dir() / self.model_name


def training_snapshot(cfg: FinetuneJobConfig, *, user=None):
    """The rankings snapshot the job learns from: the named one, or the dataset's now."""
    from annotation.ml.split import Split
    from annotation.services import rankings_snapshot

    return rankings_snapshot(
        dataset_id=cfg.dataset_id, snapshot_id=cfg.snapshot_id, user=user,
        split=Split.optional(cfg.held_out, cfg.split_seed),
    )  # fmt: skip


def run_finetune(ctx) -> dict:
    from benchmark.ml.scorers import Candidate
    from benchmark.runs import build_scorer, run_enqueue
    from benchmark.selectors import benchmark_dataset_get
    from media.digest import folder_sha256
    from rewardmodel.ml.finetune import FinetuneConfig, examples_for_candidate, finetune
    from rewardmodel.ml.targets import curated_reasoning, training_targets
    from rewardmodel.models import RewardModel

    cfg = FinetuneJobConfig(**ctx.config)
    model = RewardModel.objects.get(job_id=ctx.job_id)
    try:
        ctx.progress(0.01, "snapshotting the rankings")
        snapshot = training_snapshot(cfg, user=model.created_by)
        RewardModel.objects.filter(pk=model.pk).update(snapshot=snapshot)
        ctx.progress(0.02, "building the training conversations")
        teacher = build_scorer(cfg.teacher) if cfg.teacher else None
        examples, kept = [], {"groups": 0, "sc": 0, "pq": 0}
        targets = training_targets(
            snapshot.path, score_range=cfg.score_range, min_votes=cfg.min_votes
        )
        groups_seen = 0
        for _, group in groupby(targets, key=attrgetter("group")):
            group = list(group)
            groups_seen += 1
            images = {
                t.candidate: (Path(t.source).read_bytes(), Path(t.image).read_bytes())
                for t in group
            }
            reasoning = [(None, None)] * len(group)
            if teacher is not None:
                ctx.heartbeat()
                scores = teacher.score([
                    Candidate(t.candidate, t.instruction, *images[t.candidate]) for t in group
                ])  # fmt: skip
                reasoning = curated_reasoning(group, scores)
                kept["groups"] += 1
                kept["sc"] += reasoning[0][0] is not None
                kept["pq"] += reasoning[0][1] is not None
            for target, (why_sc, why_pq) in zip(group, reasoning, strict=True):
                # The original images: the SC example resizes the edited one to the source's
                # size itself (as scoring does), the PQ example keeps it as it is.
                examples += examples_for_candidate(
                    target.instruction, *images[target.candidate], sc_scores=target.sc,
                    pq_scores=target.pq, reasoning_sc=why_sc, reasoning_pq=why_pq,
                    score_range=cfg.score_range, prompt_set=cfg.prompt_set,
                )  # fmt: skip
        if not examples:
            raise ValueError(f"snapshot {snapshot.name!r} has no ranked group to train on")
        overrides: dict[str, Any] = {**PAPER_DEFAULTS, **cfg.training}
        if cfg.target_modules:
            overrides["target_modules"] = cfg.target_modules
        config = FinetuneConfig(
            base_model=cfg.base_model,
            output_dir=str(cfg.output_dir()),
            adapter_init=cfg.adapter_init,
            prompt_set=cfg.prompt_set,
            **overrides,
        )

        def on_step(step: int, metrics: dict) -> None:
            ctx.log_metrics(step, {k: float(v) for k, v in metrics.items() if v is not None})
            total = metrics.get("total_steps")
            if total:
                ctx.progress(min(0.99, step / total), f"step {step} of {total}")

        def should_stop() -> bool:
            ctx.heartbeat()  # raises JobCancelled when cancelled: the checkpoint stays
            return False

        result = finetune(config, examples, on_step=on_step, should_stop=should_stop)
    except BaseException:
        RewardModel.objects.filter(pk=model.pk).update(status=RewardModel.Status.FAILED)
        raise
    RewardModel.objects.filter(pk=model.pk).update(
        adapter=result["adapter_path"], status=RewardModel.Status.READY,
        weights_sha256=folder_sha256(result["adapter_path"]),
    )  # fmt: skip
    model.refresh_from_db()
    summary = {
        **result, "model": model.name, "examples": len(examples),
        "snapshot": {"id": snapshot.pk, "name": snapshot.name, "sha256": snapshot.sha256},
        "split": snapshot.split_text, "groups_trained_on": groups_seen,
    }  # fmt: skip
    if teacher is not None:
        summary["teacher_reasoning_kept"] = kept  # groups judged; groups whose SC/PQ kept
    if cfg.benchmark_dataset_id is not None:
        bench = benchmark_dataset_get(pk=cfg.benchmark_dataset_id)
        if bench is None:
            raise ValueError(f"there is no benchmark dataset with id {cfg.benchmark_dataset_id}")
        run = run_enqueue(
            dataset=bench, scorer=model.scorer_spec(cfg.benchmark_k), label=model.name,
            user=model.created_by,
        )  # fmt: skip
        summary["benchmark_run"] = run.pk
        # True only when the benchmark is the held-out side of this very split
        summary["benchmark_held_out"] = is_held_out_benchmark(bench, snapshot)
    return summary


def is_held_out_benchmark(bench, snapshot) -> bool:
    """Whether `bench` holds exactly the groups the split of `snapshot` kept out of training."""
    theirs = bench.snapshot.split if bench.snapshot_id else {}
    ours = snapshot.split or {}
    return bool(ours) and theirs.get("side") == "held_out" and (
        theirs.get("held_out"), theirs.get("seed", 0)) == (ours["held_out"], ours.get("seed", 0))  # fmt: skip


def finetune_enqueue(*, config: dict, user=None):
    """Reserve the model name and queue the job; InvalidJobConfig names the problem."""
    from annotation.selectors import snapshot_get
    from jobs.registry import InvalidJobConfig
    from jobs.services import job_enqueue_for
    from rewardmodel.models import RewardModel

    def make(job):
        clean = job.config
        if RewardModel.objects.filter(name=clean["model_name"]).exists():
            raise InvalidJobConfig(f"a reward model named {clean['model_name']!r} exists already")
        snapshot = clean["snapshot_id"]
        if snapshot is not None and not snapshot_get(pk=snapshot, kind="rankings"):
            raise InvalidJobConfig(f"there is no rankings snapshot with id {snapshot}")
        return RewardModel.objects.create(
            name=clean["model_name"], base=clean["base_model"], origin=RewardModel.Origin.TRAINED,
            status=RewardModel.Status.TRAINING, job=job, created_by=user,
            prompt_set=clean["prompt_set"],
        )  # fmt: skip

    return job_enqueue_for(kind="rewardmodel.finetune", config=config, created_by=user, make=make)
