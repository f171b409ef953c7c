"""What a training loop needs to run under ``torchrun`` and to checkpoint without pickle: the
process group (:class:`Dist`, trivial in a single process) and the optimizer state as
safetensors + JSON. Shared by the reward-model fine-tuning and the RL trainer; no Django."""

from __future__ import annotations

import json
import os
from pathlib import Path


class Dist:
    """Rank, world size and the collectives finetune needs; trivial in a single process."""

    def __init__(self):
        import torch

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.owns_group = False
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
                self.owns_group = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_grads(self, params) -> None:
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1).float() for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def decide(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        if self.world == 1:
            return flag
        return bool(self.sum([1.0 if (flag and self.main) else 0.0])[0])

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def save_optimizer(optimizer, folder: Path) -> None:
    """The optimizer state as safetensors (tensors) + JSON (the rest): no pickle."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, plain = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            name = f"{index}.{key}"
            if hasattr(value, "contiguous"):
                tensors[name] = value.detach().contiguous().cpu()
            else:
                plain[name] = value
    save_file(tensors, folder / "optimizer.safetensors")
    meta = {"param_groups": state["param_groups"], "plain": plain}
    (folder / "optimizer.json").write_text(json.dumps(meta))


def load_optimizer(optimizer, folder: Path, device) -> None:
    from safetensors.torch import load_file

    meta = json.loads((folder / "optimizer.json").read_text())
    state: dict[int, dict] = {}
    for name, value in load_file(folder / "optimizer.safetensors", device=str(device)).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["plain"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for group in meta["param_groups"]:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
