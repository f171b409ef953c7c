"""The RL job (Flow-GRPO, `gpu` queue) and the Best-of-N job, around rltraining.ml.

torch, diffusers and transformers are imported inside the handlers only: this module is
imported by the web process (the job registry validates configs there)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from config.model_roots import check_model_folder, check_spec_folders
from mlcore.options import check_options, option

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# load_policy keyword arguments a run may set (guidance: a mode or a Guidance object's fields;
# the model-specific ones are the policies' own options).
POLICY_OPTIONS = {"lora_r": int, "lora_alpha": int, "height": int, "width": int,
                  "guidance": (str, dict), "auto_resize": bool, "max_sequence_length": int,
                  "condition_area": int, "max_area": int}  # fmt: skip


def _check_reward(spec) -> None:
    from rltraining.ml.rewards import (
        build_reward,  # numpy and Pillow only
        reward_kinds,
    )

    if not isinstance(spec, dict) or spec.get("kind") not in reward_kinds():
        raise ValueError(
            f"reward must be an object whose kind is one of {', '.join(reward_kinds())}"
        )
    build_reward(spec, load=False)  # names a bad option; loads no model


@dataclass
class RLJobConfig:
    """An RL job (declared options: mlcore.options; docs/configs.md)."""

    run_name: str = option(help="the run's name (1-100 letters, digits, '.', '_', '-')")
    policy: str = option(help="the diffusers pipeline folder on the GPU workers")
    reward: dict = option(help="the reward spec (rltraining.ml.rewards.build_reward)")
    dataset_id: int | None = option(None, help="prompts: this dataset's groups", min=1)
    prompts_file: str = option("", help="prompts: an uploaded JSONL (storage name)")
    eval_prompts: int = option(4, help="prompts held out for the evaluation gallery", min=0,
                               max=10_000)  # fmt: skip
    # Held-out split by group (annotation/ml/split.py), by prompt key (a dataset's group id):
    # those prompts are never trained on, and the evaluation draws from them. With the fraction
    # and seed of a reward model's fine-tune, the RL run is graded on the groups that model
    # never saw either.
    held_out: float = option(0.0, help="fraction of prompts held out by group (0: eval_prompts "
                             "drawn from all)", min=0, max=0.9)  # fmt: skip
    split_seed: int = option(0, help="seed of the held-out split", min=0)
    policy_options: dict = option(help="load_policy options (lora_r, guidance...)",
                                  default_factory=dict)  # fmt: skip
    training: dict = option(help="RLConfig overrides", default_factory=dict)
    # Grades the held-out samples only (never trained on): the truth where there is one (the
    # EditWorld oracle), or another reward model as a judge; charted beside the reward.
    judge: dict | None = option(None, help="a second reward spec that only grades the held-out "
                                "samples (e.g. the EditWorld truth)")  # fmt: skip
    # One torchrun process per GPU of the worker's machine: more than a machine holds is a typo.
    gpus: int = option(1, help="GPUs (torchrun processes) on the worker", min=1, max=64)

    def __post_init__(self):
        from rltraining.ml.trainer import RLConfig  # Pillow only at import time

        check_options(self)
        if not RUN_NAME.fullmatch(self.run_name):
            raise ValueError("run_name must be 1-100 letters, digits, '.', '_' or '-'")
        if not self.policy:
            raise ValueError("policy must be a diffusers pipeline folder")
        check_model_folder(self.policy, "policy")
        _check_reward(self.reward)
        check_spec_folders(self.reward, "reward")
        if self.judge is not None:
            _check_reward(self.judge)
            check_spec_folders(self.judge, "judge")
        if (self.dataset_id is None) == (not self.prompts_file):
            raise ValueError("give the prompts as exactly one of a dataset or an uploaded file")
        for key, value in self.policy_options.items():
            kind = POLICY_OPTIONS.get(key)
            if kind is None:
                raise ValueError(
                    f"unknown policy option {key!r}; known: {', '.join(POLICY_OPTIONS)}"
                )
            if kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            else:
                ok = isinstance(value, kind)
            if not ok:
                raise ValueError(f"policy option {key} has a wrong type or value: {value!r}")
        try:
            RLConfig.from_dict(self.training)
        except TypeError as exc:
            raise ValueError(f"training: {exc}") from None


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _as_prompts(rows):
    from PIL import Image

    from rltraining.ml.trainer import Prompt

    prompts = []
    for row in rows:
        with Image.open(io.BytesIO(row.source)) as img:
            prompts.append(Prompt(row.instruction, img.convert("RGB"), row.key, row.task_type))
    return prompts


def run_prompt_rows(run, cfg: RLJobConfig, seed: int):
    """(training rows, held-out rows) of a run. A dataset's prompts are read from a rankings
    snapshot taken when the run first starts and recorded on it, so a resumed run and its
    Best-of-N jobs see exactly the same prompts whatever happens to the dataset."""
    from annotation.ml.split import Split
    from media.storage import read_stored
    from rltraining.models import RLRun
    from rltraining.prompts import parse_prompt_file, snapshot_prompt_rows, split_held_out

    if cfg.dataset_id is not None:
        if run.snapshot is None:
            from annotation.services import rankings_snapshot

            run.snapshot = rankings_snapshot(dataset_id=cfg.dataset_id, user=run.created_by)
            RLRun.objects.filter(pk=run.pk).update(snapshot=run.snapshot)
        rows = snapshot_prompt_rows(run.snapshot.path)
    else:
        data = read_stored(cfg.prompts_file)
        rows = parse_prompt_file(data, Path(cfg.prompts_file).name)
        if not run.prompts_sha256:  # what the run read, for its lineage
            run.prompts_sha256 = hashlib.sha256(data).hexdigest()
            RLRun.objects.filter(pk=run.pk).update(prompts_sha256=run.prompts_sha256)
    split = Split.optional(cfg.held_out, cfg.split_seed)
    return split_held_out(rows, cfg.eval_prompts, seed, split)


class _Samples:
    """Evaluation samples into storage and RLSample rows (idempotent: a resumed run that
    evaluates a round again overwrites its rows)."""

    def __init__(self, run, held_out):
        from media.storage import store_image

        self.run, self.held_out = run, held_out
        self.sources = [store_image(row.source, f"prompt {row.key}") for row in held_out]

    def save(self, round_index, images, rewards, kind="eval", slots=None, best=None):
        """`slots`: (prompt index, sample index) of each image; by default image i is
        prompt i's only sample. `best`: {prompt index: the sample index picked}."""
        from media.storage import store_image
        from rltraining.models import RLSample

        slots = slots or [(i, 0) for i in range(len(images))]
        for (prompt, sample), image, reward in zip(slots, images, rewards, strict=True):
            row, source = self.held_out[prompt], self.sources[prompt]
            stored = store_image(_png(image), f"sample {prompt}/{sample}")
            RLSample.objects.update_or_create(
                run=self.run, kind=kind, round=round_index, prompt_index=prompt,
                sample_index=sample,
                defaults={
                    "prompt_key": row.key, "instruction": row.instruction,
                    "source": source.name, "source_thumb": source.thumb,
                    "image": stored.name, "thumb": stored.thumb,
                    "reward": None if reward is None else float(reward),  # None: unscored
                    "best": bool(best and best.get(prompt) == sample),
                },
            )  # fmt: skip


def run_rl(ctx) -> dict:
    from rltraining.ml.trainer import RLConfig
    from rltraining.models import RLRun

    cfg = RLJobConfig(**ctx.config)
    run = RLRun.objects.get(job_id=ctx.job_id)
    config = RLConfig.from_dict(cfg.training)
    ctx.progress(0.0, "loading prompts")
    train_rows, held_out = run_prompt_rows(run, cfg, config.seed)
    samples = _Samples(run, held_out)
    out = run.output_dir
    out.mkdir(parents=True, exist_ok=True)

    def on_step(round_index, metrics):
        ctx.log_metrics(round_index, {k: float(v) for k, v in metrics.items()})
        ctx.progress(
            min(1.0, round_index / config.rounds), f"round {round_index} of {config.rounds}"
        )

    def should_stop():
        ctx.heartbeat()  # raises JobCancelled: the trainer checkpoints, then stops
        return False

    if cfg.gpus == 1:
        result = _train_in_process(cfg, config, train_rows, held_out, samples, out, on_step,
                                   should_stop)  # fmt: skip
    else:
        check_devices(cfg.gpus)
        result = _train_torchrun(cfg, config, train_rows, held_out, samples, out, on_step, ctx)
    history = result.get("history", [])
    evals = [h["eval_reward_mean"] for h in history if "eval_reward_mean" in h]
    rewards = [h["reward_mean"] for h in history if "reward_mean" in h]
    return {
        "rounds": result["final_round"],
        "resumed_from": result.get("resumed_from", 0),  # > 0: continued from a checkpoint
        "adapter": str(out / "adapter"),
        "train_prompts": len(train_rows),
        "eval_prompts": len(held_out),
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "eval_reward_last": evals[-1] if evals else None,
    }


def check_devices(gpus: int) -> None:
    """Refuse, before anything is spawned, a run asking for more GPUs than this worker sees
    (torch's device count; without CUDA, CPU processes only where RL_CPU_PROCESSES allows, up
    to the cores)."""
    import socket

    import torch
    from django.conf import settings

    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    host = socket.gethostname()
    if seen:
        if gpus > seen:
            raise ValueError(f"this run asks for {gpus} GPUs and worker {host} has {seen}")
        return
    if not settings.RL_CPU_PROCESSES:
        raise ValueError(f"this run asks for {gpus} GPUs and worker {host} has none (set "
                         "RL_CPU_PROCESSES=1 there to run that many CPU processes instead)")  # fmt: skip
    cores = os.cpu_count() or 1
    if gpus > cores:
        raise ValueError(
            f"this run asks for {gpus} CPU processes and worker {host} has {cores} cores"
        )


def _train_in_process(cfg, config, train_rows, held_out, samples, out, on_step, should_stop):
    from rltraining.ml.policies import load_policy
    from rltraining.ml.rewards import build_reward
    from rltraining.ml.trainer import train

    policy = load_policy(cfg.policy, **cfg.policy_options)
    reward = build_reward(cfg.reward)
    judge = build_reward(cfg.judge) if cfg.judge else None
    result = train(
        config, policy, reward, _as_prompts(train_rows), on_step, out / "checkpoints",
        eval_prompts=_as_prompts(held_out), on_eval=samples.save, should_stop=should_stop,
        judge_fn=judge,
    )  # fmt: skip
    policy.save_adapter(out / "adapter")
    return result


def _write_prompts(rows, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, row in enumerate(rows):
        (folder / f"{i}.img").write_bytes(row.source)
        lines.append(json.dumps({"instruction": row.instruction, "source": f"{i}.img",
                                 "key": row.key, "task_type": row.task_type}))  # fmt: skip
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "prompts.jsonl"


def _train_torchrun(cfg, config, train_rows, held_out, samples, out, on_step, ctx):
    """One process per GPU through torchrun; rank 0's JSON lines are the metrics."""
    from PIL import Image

    (out / "config.json").write_text(json.dumps(config.to_dict()))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={cfg.gpus}", "-m", "rltraining.ml.trainer",
        "--config", str(out / "config.json"), "--policy", cfg.policy,
        "--policy-options", json.dumps(cfg.policy_options), "--reward", json.dumps(cfg.reward),
        "--prompts", str(_write_prompts(train_rows, out / "prompts" / "train")), "--out", str(out),
    ]  # fmt: skip
    if held_out:
        cmd += ["--eval-prompts", str(_write_prompts(held_out, out / "prompts" / "eval"))]
    if cfg.judge:
        cmd += ["--judge", json.dumps(cfg.judge)]
    from django.conf import settings

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=settings.BASE_DIR)
    history, final = [], None
    try:
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library's own output
            if "round" in message:
                history.append({"round": message["round"], **message["metrics"]})
                on_step(message["round"], message["metrics"])
                ctx.heartbeat()
            elif "eval" in message:
                folder = out / "eval" / f"round-{message['eval']}"
                images = [Image.open(folder / f"p{i}.png") for i in range(len(held_out))]
                samples.save(message["eval"], images, message["rewards"])
            elif "result" in message:
                final = message["result"]
    except BaseException:
        proc.terminate()  # cancelled: the last checkpoint stays for a resume
        proc.wait()
        raise
    if proc.wait() != 0 or final is None:
        raise RuntimeError(f"torchrun exited with status {proc.returncode}")
    return {**final, "history": history}


def rl_enqueue(*, config: dict, user=None, reward_model=None):
    """Reserve the run name and queue the job; InvalidJobConfig names the problem.
    `reward_model`: the registered model the reward spec was made from (its lineage)."""
    from jobs.registry import InvalidJobConfig
    from jobs.services import job_enqueue_for
    from rltraining.models import RLRun

    def make(job):
        clean = job.config
        if RLRun.objects.filter(name=clean["run_name"]).exists():
            raise InvalidJobConfig(f"an RL run named {clean['run_name']!r} exists already")
        return RLRun.objects.create(
            name=clean["run_name"], job=job, policy=clean["policy"], reward=clean["reward"],
            dataset_id=clean["dataset_id"], prompts_file=clean["prompts_file"], created_by=user,
            reward_model=reward_model,
        )  # fmt: skip

    return job_enqueue_for(kind="rltraining.train", config=config, created_by=user, make=make)


# ------------------------------------------------------------------ Best-of-N


@dataclass
class BestOfNConfig:
    run_id: int = option(help="the RL run whose held-out prompts are sampled", min=1)
    n: int = option(16, help="samples per prompt; the reward keeps the best", min=2, max=64)
    trained: bool = option(True, help="the run's trained adapter (false: the base policy)")
    noise_level: float | None = option(
        None, help="SDE noise (none: the run's; 0 would give N equal samples)", min=0,
        min_exclusive=True,
    )  # fmt: skip

    def __post_init__(self):
        check_options(self)


def run_best_of_n(ctx) -> dict:
    """N SDE samples per held-out prompt, all scored by the run's reward, the best kept
    (the paper's Best-of-16 with EditScore). Reports what picking the best gains over a single
    sample (its first sample)."""
    from rltraining.ml.policies import load_policy
    from rltraining.ml.rewards import build_reward
    from rltraining.ml.trainer import RLConfig, sample_images
    from rltraining.models import RLRun

    cfg = BestOfNConfig(**ctx.config)
    run = RLRun.objects.select_related("job").get(pk=cfg.run_id)
    run_cfg = RLJobConfig(**run.job.config)
    config = RLConfig.from_dict(run_cfg.training)
    _, held_out = run_prompt_rows(run, run_cfg, config.seed)
    if not held_out:
        raise ValueError(f"run {run.name} holds no prompt out for evaluation")
    options = {k: v for k, v in run_cfg.policy_options.items() if k not in ("lora_r", "lora_alpha")}
    adapter = run.output_dir / "adapter"
    if cfg.trained and not adapter.is_dir():
        raise ValueError(f"run {run.name} has no trained adapter yet")
    policy = load_policy(run_cfg.policy, adapter=adapter if cfg.trained else None, **options)
    reward = build_reward(run_cfg.reward)
    samples = _Samples(run, held_out)
    round_index = (
        run.job.result.get("rounds", config.rounds) if cfg.trained and run.job.result else 0
    )
    noise = cfg.noise_level if cfg.noise_level is not None else config.noise_level
    best, firsts, all_rewards = [], [], []
    for index, row in enumerate(_as_prompts(held_out)):
        ctx.heartbeat()
        ctx.progress(index / len(held_out), f"prompt {index + 1} of {len(held_out)}")
        [images] = sample_images(policy, [row], num_steps=config.num_steps, noise_level=noise,
                                 seed=config.seed + 1 + index, per_prompt=cfg.n)  # fmt: skip
        rewards = [
            None if r is None else float(r)  # None: the reward could not score it
            for r in reward([row.source] * cfg.n, [row.instruction] * cfg.n, images)
        ]
        scored = [j for j in range(cfg.n) if rewards[j] is not None]
        pick = max(scored, key=rewards.__getitem__) if scored else None
        samples.save(round_index, images, rewards, kind="best_of_n",
                     slots=[(index, j) for j in range(cfg.n)], best={index: pick})  # fmt: skip
        if scored:
            best.append(rewards[pick])
        if rewards[0] is not None:
            firsts.append(rewards[0])
        all_rewards += [rewards[j] for j in scored]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "n": cfg.n, "prompts": len(held_out), "trained": cfg.trained, "round": round_index,
        "best_reward_mean": mean(best), "single_sample_reward_mean": mean(firsts),
        "all_samples_reward_mean": mean(all_rewards),
    }  # fmt: skip


def best_of_n_enqueue(*, run, n: int, trained: bool = True, user=None):
    from jobs.services import job_enqueue

    return job_enqueue(
        kind="rltraining.best_of_n", config={"run_id": run.pk, "n": n, "trained": trained},
        created_by=user,
    )  # fmt: skip
