"""Flow-GRPO sampling cost on a tiny pipeline: the SDE sampler (with per-step log-probs) versus
the plain Euler ODE sampler, in one process, on the same policy, noise and batch; then the
seconds per GRPO round of a tiny training run.

The two samplers run alternately, ``--repeats`` times each, and the medians are compared (the
ratio is the SDE's overhead: extra noise draws and the log-density, target <= 1.10). Prints one
JSON object with both timings, the ratio, the round's seconds split by phase, peak RSS (VmHWM)
and, on CUDA, peak GPU memory.

    .venv/bin/python benchmarks/rl_sampling.py [--pipeline kontext|qwen] [--batch 12]
        [--steps 20] [--repeats 7] [--device cpu|cuda] [--dtype float32|bfloat16] [--threads N]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, proc_kib  # benchmarks/harness.py

sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_policy(kind: str, folder: Path, device: str, dtype):
    from rltraining.ml import tiny
    from rltraining.ml.policies import FluxKontextPolicy, QwenImageEditPolicy

    if kind == "kontext":
        path = tiny.build_tiny_flux_kontext(folder / "kontext")
        return FluxKontextPolicy.from_pretrained(
            path, device=device, dtype=dtype, lora_r=8, auto_resize=False,
            max_sequence_length=64, height=32, width=32,
        ), 32  # fmt: skip
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit

    original = pipeline_qwenimage_edit.calculate_dimensions
    pipeline_qwenimage_edit.calculate_dimensions = lambda area, ratio: original(64 * 64, ratio)
    path = tiny.build_tiny_qwen_image_edit(folder / "qwen")
    return QwenImageEditPolicy.from_pretrained(
        path, device=device, dtype=dtype, lora_r=8, height=64, width=64, condition_area=64 * 64
    ), 64


def sampler(policy, cond, sigmas, batch, noise_level, seed):
    """One batch through ``num_steps`` transitions; noise_level 0 = the Euler ODE step."""
    import torch

    from rltraining.ml.sde import ode_step, sde_step_with_logprob

    generator = torch.Generator().manual_seed(seed)
    x = policy.initial_latents(batch, generator)
    steps = len(sigmas) - 1
    with torch.no_grad():
        for j in range(steps):
            v = policy.velocity(x, float(sigmas[j]), cond, step_index=j, num_steps=steps)
            if noise_level == 0:
                x = ode_step(v, float(sigmas[j]), float(sigmas[j + 1]), x)
            else:
                x, _, _, _ = sde_step_with_logprob(
                    v, float(sigmas[j]), float(sigmas[j + 1]), x, noise_level,
                    generator=generator, sigma_max=float(sigmas[1]),
                )  # fmt: skip
    return x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", choices=["kontext", "qwen"], default="kontext")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="GRPO rounds timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch
    from PIL import Image

    from rltraining.ml.rewards import brightness_reward
    from rltraining.ml.trainer import Prompt, RLConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    cuda = args.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory(prefix="rl-bench-") as tmp:
        torch.manual_seed(0)
        policy, size = load_policy(args.pipeline, Path(tmp), args.device, dtype)
    source = Image.new("RGB", (size, size), (90, 120, 160))
    cond = policy.encode(["make it brighter"], [source]).repeat(args.batch)
    sigmas = policy.sigmas(args.steps)
    sampler(policy, cond, sigmas, args.batch, 0.7, 0)  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = {"ode": [], "sde": []}
    for r in range(args.repeats):
        for name, noise in (("ode", 0.0), ("sde", 0.7)):
            sync()
            start = time.perf_counter()
            sampler(policy, cond, sigmas, args.batch, noise, r)
            sync()
            times[name].append(time.perf_counter() - start)
    ode, sde = statistics.median(times["ode"]), statistics.median(times["sde"])

    prompts = [Prompt(f"make picture {i} brighter", source, str(i)) for i in range(4)]
    config = RLConfig(rounds=args.rounds, num_steps=args.steps, group_size=args.batch,
                      prompts_per_round=2, micro_batch=args.batch, eval_every=10**6)  # fmt: skip
    rounds = []
    train(config, policy, brightness_reward, prompts, on_step=lambda i, m: rounds.append(m))
    print(json.dumps({
        "pipeline": args.pipeline,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "dtype": str(policy.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "batch": args.batch,
        "steps": args.steps,
        "ode_sampling_s": round(ode, 4),
        "sde_sampling_s": round(sde, 4),
        "sde_over_ode": round(sde / ode, 3),
        "runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "grpo_round": {
            "prompts": config.prompts_per_round, "group_size": config.group_size,
            "train_steps": config.train_steps, "updates": config.updates_per_round,
            "seconds_median": round(statistics.median(m["seconds"] for m in rounds), 3),
        },
        "peak_rss_mib": round(proc_kib(os.getpid(), "VmHWM") / 1024, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
