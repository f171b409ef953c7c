"""EditScore scoring throughput on the tiny Qwen2.5-VL: one item at a time versus batched.

Builds the tiny model (``rewardmodel.ml.tiny``) in a temporary folder, loads it through
``EditScore.from_pretrained`` like a real checkpoint, scores the same items with
``batch_size=1`` and with ``batch_size=16`` (greedy, k=1, no retries, ``max_new_tokens`` 64)
and prints one JSON object: items/s for both, their ratio, peak RSS (VmHWM) and, on CUDA, peak
GPU memory. Every item costs two generations (SC and PQ prompts).

    .venv/bin/python benchmarks/rewardmodel_throughput.py [--items 64] [--batch-size 16]
        [--device cpu|cuda] [--dtype float32|bfloat16] [--threads N]
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, proc_kib  # benchmarks/harness.py

sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_items(n: int):
    from PIL import Image

    from rewardmodel.ml.model import ScoreItem

    def png(size, sigma) -> bytes:
        out = io.BytesIO()
        Image.effect_noise(size, sigma).convert("RGB").save(out, format="PNG")
        return out.getvalue()

    instructions = [
        "make the sky red",
        "add a dog",
        "remove the car on the left",
        "turn it to snow",
    ]
    sizes = [(64, 48), (96, 96), (120, 80), (80, 120)]
    return [
        ScoreItem(instructions[i % 4], png(sizes[i % 4], 30 + i), png(sizes[(i + 1) % 4], 60 + i))
        for i in range(n)
    ]


def timed(scorer, items, **options) -> tuple[float, list[dict]]:
    import torch

    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = scorer.score(items, **options)
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from rewardmodel.ml.model import EditScore
    from rewardmodel.ml.tiny import build_tiny_editscore

    with tempfile.TemporaryDirectory(prefix="editscore-tiny-") as tmp:
        folder = build_tiny_editscore(Path(tmp) / "model")
        scorer = EditScore.from_pretrained(folder, device=args.device, dtype=args.dtype)
    items = make_items(args.items)
    options = dict(k=1, retries=0, max_new_tokens=args.max_new_tokens)
    scorer.score(items[: args.batch_size], batch_size=args.batch_size, **options)  # warm-up
    if scorer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    single_s, single = timed(scorer, items, batch_size=1, **options)
    batched_s, batched = timed(scorer, items, batch_size=args.batch_size, **options)
    result = {
        "device": str(scorer.device),
        "gpu": torch.cuda.get_device_name(scorer.device) if scorer.device.type == "cuda" else None,
        "dtype": str(scorer.model.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "items": args.items,
        "generations_per_item": 2,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "one_at_a_time_items_per_s": round(args.items / single_s, 2),
        "batched_items_per_s": round(args.items / batched_s, 2),
        "batched_over_one_at_a_time": round(single_s / batched_s, 2),
        "same_answers": [r["raw"] for r in single] == [r["raw"] for r in batched],
        "mean_answer_chars": round(sum(len(r["raw"][0]) for r in batched) / len(batched), 1),
        "peak_rss_mib": round(proc_kib(os.getpid(), "VmHWM") / 1024, 1),
        "peak_gpu_mib": (
            round(torch.cuda.max_memory_allocated(scorer.device) / 2**20, 1)
            if scorer.device.type == "cuda"
            else None
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
