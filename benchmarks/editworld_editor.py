"""Supervised training of the tiny EditWorld editor (``editworld/editor.py``) on a CPU: how long
it takes, how far the flow-matching loss falls, and whether the ODE sampler's edits move towards
the targets.

Data: ``colour`` (default, self-contained): a coloured circle or square on a plain background,
"make the <colour> <shape> <colour>" and the recoloured target; ``editworld``: EditWorld pairs of
every task type (``editworld.dataset.prompts`` when it exists, else scenes and edits from
``editworld.scene`` / ``editworld.tasks``). Held-out pairs use another seed.

Prints one JSON object: parameters, training seconds and steps per second, the loss at the start
and the end (means of the first and last 5% of steps) and a 10-point curve, the held-out
flow-matching loss before and after training, the mean absolute RGB distance (0-255) of the
held-out edits to their targets beside the sources' own distance (an editor that edits has the
first below the second), and peak RSS (VmHWM).

    .venv/bin/python benchmarks/editworld_editor.py [--data colour|editworld] [--tasks color_alter,...]
        [--pairs 512]
        [--size 32] [--steps 1000] [--batch 32] [--lr 2e-3] [--channels 32,48,64]
        [--threads 1] [--save DIR]
"""

import argparse
import json
import os
import random
import sys
import time

from harness import REPO, proc_kib  # benchmarks/harness.py

sys.path.insert(0, str(REPO))

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220),
           "yellow": (230, 210, 40), "purple": (140, 50, 170), "orange": (240, 140, 20),
           "white": (240, 240, 240), "black": (20, 20, 20)}  # fmt: skip


def colour_pairs(n: int, size: int, seed: int) -> list:
    """A circle or square recoloured on a plain background: (instruction, source, target)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        background = tuple(rng.randint(60, 200) for _ in range(3))
        before, after = rng.sample(list(COLOURS), 2)
        kind = rng.choice(["circle", "square"])
        r = rng.uniform(0.12, 0.25) * size
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        images = []
        for colour in (before, after):
            image = Image.new("RGB", (size, size), background)
            draw = ImageDraw.Draw(image)
            box = (cx - r, cy - r, cx + r, cy + r)
            (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
            images.append(image)
        out.append((f"make the {before} {kind} {after}", *images))
    return out


def editworld_pairs(n: int, size: int, seed: int, tasks: tuple[str, ...] = ()) -> list:
    """EditWorld (instruction, source, target) triples, of the task types ``tasks`` (all when
    empty)."""
    try:
        from editworld.dataset import prompts
    except ImportError:
        from editworld.scene import random_scene, render
        from editworld.tasks import random_edit

        rng = random.Random(seed)
        out = []
        while len(out) < n:
            scene = random_scene(rng, size)
            try:
                edit = random_edit(rng, scene, rng.choice(tasks) if tasks else None)
            except ValueError:
                continue
            out.append((edit.instruction, render(scene, size), render(edit.target(scene), size)))
        return out
    out, batch = [], n
    while len(out) < n:
        rows = prompts(batch, size, seed + len(out) * 7919)
        out += [(i, s, t) for _, i, task, s, t in rows if not tasks or task in tasks]
        batch *= 2
    return out[:n]


def distance(a, b) -> float:
    import numpy as np

    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", choices=["colour", "editworld"], default="colour")
    parser.add_argument("--tasks", default="", help="EditWorld task types, comma-separated")
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--held-out", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--channels", default=None, help="e.g. 32,48,64 (train_editor's default)")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="also save the editor and a grid here")
    args = parser.parse_args()

    import torch

    from editworld.editor import edit, flow_matching_loss, train_editor

    torch.set_num_threads(args.threads)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    if args.data == "colour":
        make = colour_pairs
    else:

        def make(n, size, seed):
            return editworld_pairs(n, size, seed, tasks)

    pairs = make(args.pairs, args.size, args.seed)
    held_out = make(args.held_out, args.size, args.seed + 1000)
    options = dict(size=args.size, steps=args.steps, batch_size=args.batch, lr=args.lr,
                   seed=args.seed)  # fmt: skip
    if args.channels:
        options["channels"] = tuple(int(c) for c in args.channels.split(","))
    untrained = train_editor(pairs[:1], **{**options, "steps": 0})
    loss_untrained = flow_matching_loss(untrained, held_out)
    losses = []
    began = time.perf_counter()
    model = train_editor(pairs, on_step=lambda step, loss: losses.append(loss), **options)
    seconds = time.perf_counter() - began
    edits = edit(model, [p[0] for p in held_out], [p[1] for p in held_out],
                 num_steps=args.sample_steps, seed=args.seed)  # fmt: skip
    to_target = [distance(e, p[2]) for e, p in zip(edits, held_out, strict=True)]
    to_source = [distance(e, p[1]) for e, p in zip(edits, held_out, strict=True)]
    k = max(1, len(losses) // 20)
    tenth = max(1, len(losses) // 10)
    result = {
        "data": args.data,
        "tasks": list(tasks),
        "pairs": len(pairs),
        "size": args.size,
        "steps": args.steps,
        "batch": args.batch,
        "channels": list(model.config["channels"]),
        "threads": args.threads,
        "parameters": model.num_parameters(),
        "train_seconds": round(seconds, 1),
        "steps_per_second": round(args.steps / seconds, 2) if seconds else None,
        "loss_start": sum(losses[:k]) / k if losses else None,
        "loss_end": sum(losses[-k:]) / k if losses else None,
        "loss_curve": [
            round(sum(losses[i : i + tenth]) / len(losses[i : i + tenth]), 4)
            for i in range(0, len(losses), tenth)
        ],  # fmt: skip
        "held_out_loss_untrained": loss_untrained,
        "held_out_loss": flow_matching_loss(model, held_out),
        "source_to_target": sum(distance(p[1], p[2]) for p in held_out) / len(held_out),
        "edit_to_target": sum(to_target) / len(to_target),
        "edit_to_source": sum(to_source) / len(to_source),
        "peak_rss_mib": round(proc_kib(os.getpid(), "VmHWM") / 1024, 1),
    }
    if args.save:
        from PIL import Image

        folder = model.save_pretrained(args.save)
        s = args.size
        rows = min(8, len(held_out))
        grid = Image.new("RGB", (3 * s, rows * s))
        for j in range(rows):
            for i, image in enumerate((held_out[j][1], edits[j], held_out[j][2])):
                grid.paste(image, (i * s, j * s))
        grid.save(folder / "held_out_source_edit_target.png")
        result["saved"] = str(folder)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
