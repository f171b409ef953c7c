"""Checkpoints both trainers write the same way: ``root/checkpoint-N`` folders written under a
temporary name and renamed into place once complete (a folder without ``state.json`` is never a
checkpoint, so a crash mid-write leaves nothing a resume could read), the oldest pruned; and the
RNG state of every rank, as safetensors + JSON (no pickle)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of ``root`` as (step, path), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and (child / "state.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = checkpoints(root)
    return found[-1][1] if found else None


def write_checkpoint(
    root: Path,
    step: int,
    write: Callable[[Path], None],
    *,
    dist,
    keep: int = 0,
    every_rank: Callable[[Path], None] | None = None,
) -> Path:
    """``root/checkpoint-{step}``: ``every_rank(folder)`` runs on every process, then
    ``write(folder)`` on rank 0, which must write ``state.json`` (last); the folder is renamed
    into place and all but the newest ``keep`` checkpoints removed (0 keeps all). Every rank
    calls it (it synchronises them)."""
    final = root / f"checkpoint-{step}"
    tmp = root / f".checkpoint-{step}.tmp"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    if every_rank is not None:
        every_rank(tmp)
        dist.barrier()
    if dist.main:
        write(tmp)
        if not (tmp / "state.json").is_file():
            raise RuntimeError(f"{tmp}: a checkpoint writer must write state.json")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        if keep:
            for _, old in checkpoints(root)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def set_seed(seed: int) -> None:
    """Python's, numpy's and torch's global generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> tuple[dict, dict]:
    import numpy as np
    import torch

    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.stack([s for s in torch.cuda.get_rng_state_all()])
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *[float(x) for x in np_state[2:]]],
    }
    return tensors, plain


def _set_rng_state(tensors: dict, plain: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available():
        states = list(tensors["cuda"])
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), int(pos), int(has_gauss), cached))


def save_rng(folder: Path, rank: int) -> None:
    from safetensors.torch import save_file

    tensors, plain = _rng_state()
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / f"rng-{rank}.safetensors")
    (folder / f"rng-{rank}.json").write_text(json.dumps(plain))


def load_rng(folder: Path, rank: int) -> None:
    from safetensors.torch import load_file

    if not (folder / f"rng-{rank}.json").is_file():  # resumed on more processes than saved
        rank = 0
    plain = json.loads((folder / f"rng-{rank}.json").read_text())
    _set_rng_state(load_file(folder / f"rng-{rank}.safetensors"), plain)
