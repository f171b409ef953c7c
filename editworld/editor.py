"""A tiny flow-matching image editor for EditWorld, trained on CPU, and its RL policy.

RL needs a policy that already edits somewhat: from a random network every sample of a group is
noise and GRPO has no signal. :class:`TinyEditor` is a conditional velocity network of about
half a million parameters that works directly in pixel space; :func:`train_editor` fits it to
(instruction, source, target) triples by supervised rectified flow matching in a few minutes on
a CPU; :class:`EditWorldEditorPolicy` wraps a saved one in the trainer's
:class:`rltraining.ml.policies.Policy` interface (LoRA, reference, adapters), and
:func:`rltraining.ml.policies.load_policy` finds it from the folder's ``model_index.json``
(``{"_class_name": "EditWorldEditor"}``). The weights are not shipped:
:func:`build_cached_editor` trains once and reuses a folder keyed by the training config and data.

Conventions (those of ``rltraining.ml.policies``): images are scaled to [-1, 1];
``x_sigma = (1 - sigma) * x_data + sigma * noise``, sigma from 1 to 0, and
``TinyEditor.forward`` returns the velocity ``v = noise - x_data``. Inside, its head predicts the
*edit* (x-prediction of a residual on the source): ``x_hat = source + net(...)`` and
``v = (x_sigma - x_hat) / sigma``, the velocity that ``x_hat`` implies. With a
half-million-parameter network this matters: unchanged pixels cost nothing to learn, and the
Euler step ``x' = x + (sigma' - sigma) * v`` moves towards ``x_hat``, so the last step lands on
a clean prediction, not on leftover noise (a plain v-prediction head left speckle and drifting
colours after the same training). ``prediction="v"`` builds the plain head.
:class:`TinyEditor` works on images ``(B, 3, H, W)``; the policy's
latents are those images *packed* like FLUX's: 2 x 2 pixel patches, ``(B, H/2 * W/2, 12)``,
channel ``c * 4 + dy * 2 + dx`` (``F.pixel_unshuffle``), which is also the grid the network
computes on. So ``image_seq_len = H/2 * W/2`` and :meth:`EditWorldEditorPolicy.decode` is an
unpack and a clamp: there is no VAE.

Network (a U-Net-lite, three levels): the noisy image and the source image, concatenated and
pixel-unshuffled (24 channels at H/2), a stem convolution, one FiLM residual block per level on
the way down (H/2, H/4, H/8; ``channels``), two on the way up with skip connections, and a
zero-initialised output convolution. FiLM (per-channel scale and shift after the second group
norm of each block) comes from an MLP over a sinusoidal embedding of sigma and a learned
projection of the instruction's hashed bag of features: lowercase word unigrams and bigrams
(bigrams tell "make the red square blue" from "make the blue square red") and character
trigrams of each word, hashed (BLAKE2b) into ``text_buckets`` buckets and averaged: offline,
deterministic and vocabulary-free, no tokenizer files. Images sides must be multiples of 8.

Guidance: none. The network is trained without condition dropout, so there is no classifier-
free guidance; the policy accepts ``"none"`` and ``"native"`` (the same single forward) and
refuses ``"dual"`` or a true CFG scale above 1.

Unlike the rest of ``editworld``, this module imports torch at the top: ``editworld/__init__``
must not import it (the web process never loads torch).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.loaders.peft import PeftAdapterMixin
from PIL import Image
from torch import nn

from rltraining.ml.policies import (
    ADAPTER_METADATA_KEY,
    ADAPTER_NAME,
    ADAPTER_WEIGHTS,
    Condition,
    Policy,
    register_policy,
)

CLASS_NAME = "EditWorldEditor"  # model_index.json _class_name
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TRAINING_NAME = "training.json"
FORMAT_VERSION = 1  # bump when the architecture or the features change: the cache key has it
PATCH = 2
SIGMA_FLOOR = 1e-4  # x-prediction divides by sigma: the schedule's sigmas are >= 1/num_steps
#: LoRA targets of the policy (peft matches module-name suffixes): every residual block's two
#: convolutions and its FiLM projection.
EDITOR_LORA_TARGETS = ("conv1", "conv2", "film")

# ------------------------------------------------------------------ instructions


_WORD = re.compile(r"[a-z0-9]+")


def _bucket(feature: str, buckets: int) -> int:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


@functools.lru_cache(maxsize=4096)
def instruction_features(text: str, buckets: int) -> tuple[tuple[int, float], ...]:
    """The hashed bag of an instruction: ``((bucket, weight), ...)``, weights summing to 1
    (empty for a text without words). Words and bigrams weigh 1 each, a word's character
    trigrams 0.5 together."""
    words = _WORD.findall(text.lower())
    bag: dict[int, float] = {}

    def add(feature: str, weight: float):
        b = _bucket(feature, buckets)
        bag[b] = bag.get(b, 0.0) + weight

    for word in words:
        add("w:" + word, 1.0)
        padded = f"<{word}>"
        grams = [padded[i : i + 3] for i in range(len(padded) - 2)]
        for gram in grams:
            add("c:" + gram, 0.5 / len(grams))
    for first, second in zip(words, words[1:], strict=False):
        add(f"b:{first} {second}", 1.0)
    total = sum(bag.values())
    return tuple(sorted((b, w / total) for b, w in bag.items())) if total else ()


def embed_instructions(instructions: Sequence[str], buckets: int) -> torch.Tensor:
    """``(B, buckets)`` float32 bags of :func:`instruction_features`."""
    out = torch.zeros(len(instructions), buckets)
    for i, text in enumerate(instructions):
        for b, w in instruction_features(text, buckets):
            out[i, b] = w
    return out


# ------------------------------------------------------------------ images


def image_to_tensor(image: Image.Image, size: tuple[int, int] | int | None = None) -> torch.Tensor:
    """An RGB image as ``(3, H, W)`` float32 in [-1, 1], resized (bicubic) to ``size`` =
    (width, height) or a side when given and different."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if image.size != size:
            image = image.resize(size, Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def tensor_to_images(images: torch.Tensor) -> list[Image.Image]:
    """``(B, 3, H, W)`` in [-1, 1] (clamped) to RGB images."""
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in array]


def pack(images: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """``(B, C, H, W)`` to FLUX-style packed latents ``(B, H/p * W/p, C * p * p)``."""
    return F.pixel_unshuffle(images, patch).flatten(2).transpose(1, 2)


def unpack(latents: torch.Tensor, height: int, width: int, patch: int = PATCH) -> torch.Tensor:
    """The inverse of :func:`pack`."""
    batch, _, channels = latents.shape
    grid = latents.transpose(1, 2).reshape(batch, channels, height // patch, width // patch)
    return F.pixel_shuffle(grid, patch)


# ------------------------------------------------------------------ the network


def sigma_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of ``sigma * 1000`` (``(B,)`` -> ``(B, dim)``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device) / half)
    args = sigma.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, GroupNorm with FiLM from the condition, SiLU-conv, plus a skip."""

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class TinyEditor(nn.Module, PeftAdapterMixin):
    """The conditional velocity network (see the module docstring).

    ``forward(x, sigma, source, text)``: ``x`` noisy images and ``source`` images
    ``(B, 3, H, W)`` in [-1, 1] scale, ``sigma`` ``(B,)`` (or a float), ``text`` the
    ``(B, text_buckets)`` bags of :meth:`embed_text`; returns the velocity ``(B, 3, H, W)``.
    ``save_pretrained(folder)`` / ``from_pretrained(folder)``: ``config.json``,
    ``model.safetensors`` and ``model_index.json`` (``_class_name`` ``EditWorldEditor``).
    Peft adapters through diffusers' ``PeftAdapterMixin`` (``add_adapter``,
    ``disable_adapters``, ...), as the policies' transformers have them.
    """

    def __init__(
        self,
        *,
        size: int = 32,
        channels: Sequence[int] = (32, 64, 64),
        cond_dim: int = 128,
        sigma_dim: int = 64,
        text_dim: int = 64,
        text_buckets: int = 512,
        prediction: str = "x",
    ):
        super().__init__()
        if prediction not in ("x", "v"):
            raise ValueError(f"prediction must be 'x' or 'v', got {prediction!r}")
        if size % self.multiple:
            raise ValueError(f"size must be a multiple of {self.multiple}, got {size}")
        c0, c1, c2 = (int(c) for c in channels)
        self.config = {
            "format_version": FORMAT_VERSION,
            "size": int(size),
            "channels": [c0, c1, c2],
            "cond_dim": int(cond_dim),
            "sigma_dim": int(sigma_dim),
            "text_dim": int(text_dim),
            "text_buckets": int(text_buckets),
            "prediction": prediction,
        }
        io = 3 * PATCH * PATCH
        self.text_proj = nn.Linear(text_buckets, text_dim, bias=False)
        self.cond_mlp = nn.Sequential(
            nn.Linear(sigma_dim + text_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim)
        )
        self.stem = nn.Conv2d(2 * io, c0, 3, padding=1)
        self.enc0 = ResBlock(c0, c0, cond_dim)
        self.down0 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.enc1 = ResBlock(c1, c1, cond_dim)
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid = ResBlock(c2, c2, cond_dim)
        self.dec1 = ResBlock(c2 + c1, c1, cond_dim)
        self.dec0 = ResBlock(c1 + c0, c0, cond_dim)
        self.norm_out = nn.GroupNorm(_groups(c0), c0)
        self.out = nn.Conv2d(c0, io, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    multiple = 4 * PATCH  # two stride-2 levels below the packed grid

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def embed_text(self, instructions: Sequence[str]) -> torch.Tensor:
        return embed_instructions(list(instructions), self.config["text_buckets"])

    def _sigma(self, sigma, x) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        return sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma.reshape(x.shape[0])

    def forward(self, x, sigma, source, text) -> torch.Tensor:
        sigma = self._sigma(sigma, x)
        out = self._net(x, sigma, source, text)
        if self.config["prediction"] == "v":
            return out
        s = sigma.clamp_min(SIGMA_FLOOR).to(x.dtype)[:, None, None, None]
        return (x - (source + out)) / s

    def denoise(self, x, sigma, source, text) -> torch.Tensor:
        """The predicted clean image ``x_data``: ``source + net(...)`` for x-prediction,
        ``x - sigma * v`` for v-prediction."""
        sigma = self._sigma(sigma, x)
        out = self._net(x, sigma, source, text)
        if self.config["prediction"] == "x":
            return source + out
        return x - sigma.to(x.dtype)[:, None, None, None] * out

    def _net(self, x, sigma, source, text) -> torch.Tensor:
        emb = torch.cat(
            [sigma_embedding(sigma, self.config["sigma_dim"]).to(x.dtype), self.text_proj(text)],
            dim=1,
        )
        cond = F.silu(self.cond_mlp(emb))
        h0 = self.enc0(self.stem(F.pixel_unshuffle(torch.cat([x, source], dim=1), PATCH)), cond)
        h1 = self.enc1(self.down0(h0), cond)
        h = self.mid(self.down1(h1), cond)
        h = self.dec1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], dim=1), cond)
        h = self.dec0(torch.cat([F.interpolate(h, scale_factor=2.0), h0], dim=1), cond)
        return F.pixel_shuffle(self.out(F.silu(self.norm_out(h))), PATCH)

    def num_parameters(self) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if "lora_" not in n)

    # --- saving

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``model_index.json`` to ``folder``
        (created). The base weights only: save a LoRA with the policy's ``save_adapter``."""
        from safetensors.torch import save_file

        if getattr(self, "peft_config", None):
            raise ValueError("save the base editor before adding a LoRA adapter")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=1) + "\n")
        index = {"_class_name": CLASS_NAME, "editor": ["editworld.editor", "TinyEditor"]}
        (folder / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, device="cpu", dtype=None):
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / CONFIG_NAME).read_text())
        version = config.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"{folder}: editor format {version}, this code reads {FORMAT_VERSION}")
        model = cls(**config)
        model.load_state_dict(load_file(folder / WEIGHTS_NAME))
        return model.to(device=device, dtype=dtype).eval()


# ------------------------------------------------------------------ supervised training


def _as_triple(pair) -> tuple[str, Image.Image, Image.Image]:
    """(instruction, source, target), or EditWorld's (key, instruction, task_type, source,
    target)."""
    if len(pair) == 3:
        return pair[0], pair[1], pair[2]
    if len(pair) == 5:
        return pair[1], pair[3], pair[4]
    raise ValueError(f"a training pair is (instruction, source, target), got {len(pair)} items")


def _sample_sigmas(batch: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    if mode == "uniform":
        return torch.rand(batch, generator=generator)
    if mode == "logit_normal":
        return torch.sigmoid(torch.randn(batch, generator=generator))
    raise ValueError(f"sigma_sampling must be 'uniform' or 'logit_normal', got {mode!r}")


def train_editor(
    pairs: Iterable,
    *,
    size: int = 32,
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    channels: Sequence[int] = (32, 64, 64),
    text_buckets: int = 512,
    sigma_sampling: str = "uniform",
    prediction: str = "x",
    min_sigma: float = 0.5,
    warmup: int = 50,
    ema_decay: float | None = 0.995,
    on_step: Callable[[int, float], None] | None = None,
) -> TinyEditor:
    """Fit a fresh :class:`TinyEditor` to ``pairs`` by rectified flow matching and return it
    (in eval mode; the EMA weights when ``ema_decay``).

    ``pairs``: (instruction, source PIL, target PIL) triples, or EditWorld's 5-tuples (key,
    instruction, task_type, source, target); images are resized to ``size`` squared. Each step
    draws ``batch_size`` pairs, noise and ``sigma`` (``sigma_sampling``: uniform or
    logit-normal) and regresses ``v = noise - target`` at
    ``x = (1 - sigma) * target + sigma * noise`` given the source and the instruction.

    Loss: with the x-prediction head (``prediction="x"``, default) the v error is
    ``|x_hat - target|^2 / sigma^2``; its weight is capped at ``1 / min_sigma^2``, i.e. the loss
    is ``|x_hat - target|^2 / max(sigma, min_sigma)^2``: the v loss for sigma >= ``min_sigma``.
    The uncapped 1/sigma^2 spends the small model on fine detail at small sigma and learns the
    edit itself slowly (on recolouring pairs, 600 steps: held-out distance to the target 7.1
    with ``min_sigma`` 0.5, 12.4 with 0.2, 18.2 with 0.05, from 17.3 for the unedited source).
    With ``prediction="v"`` it is the plain v MSE.

    AdamW (lr with a linear ``warmup`` then cosine decay to 10%), gradient clipping at 1, an
    EMA of the weights (``ema_decay``, with the usual ``(1 + t) / (10 + t)`` warm-up).
    Deterministic for a seed and a thread count. ``on_step(step, loss)`` after every step
    (1-based). Cost at the defaults (524k parameters, 32 px, batch 32): about 0.17-0.25 s a step
    on one core of this 2-core machine, so about 3-4 minutes; use one torch thread (two threads
    on a busy 2-core box ran 6x slower)."""
    triples = [_as_triple(p) for p in pairs]
    if not triples:
        raise ValueError("no training pairs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyEditor(
            size=size, channels=channels, text_buckets=text_buckets, prediction=prediction
        )
    model.train()
    sources = torch.stack([image_to_tensor(s, size) for _, s, _ in triples])
    targets = torch.stack([image_to_tensor(t, size) for _, _, t in triples])
    texts = model.embed_text([i for i, _, _ in triples])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    ema = [p.detach().clone() for p in model.parameters()] if ema_decay else None
    for step in range(steps):
        index = torch.randint(len(triples), (batch_size,), generator=generator)
        x_data, source, text = targets[index], sources[index], texts[index]
        noise = torch.randn(x_data.shape, generator=generator)
        sigma = _sample_sigmas(batch_size, sigma_sampling, generator)
        s = sigma[:, None, None, None]
        x = (1 - s) * x_data + s * noise
        if model.config["prediction"] == "x":
            # = the v loss |v_hat - v|^2 where sigma >= min_sigma, bounded weight below
            error = (model.denoise(x, sigma, source, text) - x_data).pow(2).mean((1, 2, 3))
            loss = (error / sigma.clamp_min(min_sigma).pow(2)).mean()
        else:
            loss = F.mse_loss(model(x, sigma, source, text), noise - x_data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, model.parameters(), strict=True):
                    e.lerp_(p.detach(), 1 - decay)
        if on_step is not None:
            on_step(step + 1, float(loss.detach()))
    if ema is not None:
        with torch.no_grad():
            for e, p in zip(ema, model.parameters(), strict=True):
                p.copy_(e)
    return model.eval()


@torch.no_grad()
def flow_matching_loss(
    model: TinyEditor, pairs: Iterable, *, seed: int = 0, repeats: int = 4,
    min_sigma: float = 0.05,
) -> float:  # fmt: skip
    """The mean flow-matching loss ``|v_hat - v|^2`` of ``model`` on ``pairs`` with fixed noise
    and sigmas uniform in [``min_sigma``, 1] (``repeats`` draws per pair): comparable between
    models, runs and both parameterisations."""
    triples = [_as_triple(p) for p in pairs]
    size = model.config["size"]
    generator = torch.Generator().manual_seed(seed)
    sources = torch.stack([image_to_tensor(s, size) for _, s, _ in triples])
    targets = torch.stack([image_to_tensor(t, size) for _, _, t in triples])
    sources, targets = sources.repeat(repeats, 1, 1, 1), targets.repeat(repeats, 1, 1, 1)
    texts = model.embed_text([i for i, _, _ in triples]).repeat(repeats, 1)
    noise = torch.randn(targets.shape, generator=generator)
    sigma = min_sigma + (1 - min_sigma) * torch.rand(targets.shape[0], generator=generator)
    s = sigma[:, None, None, None]
    x = (1 - s) * targets + s * noise
    device, dtype = model.device, model.dtype
    v = model(x.to(device, dtype), sigma.to(device), sources.to(device, dtype),
              texts.to(device, dtype))  # fmt: skip
    return float(F.mse_loss(v.float().cpu(), noise - targets))


@torch.no_grad()
def edit(
    model: TinyEditor, instructions: Sequence[str], sources: Sequence[Image.Image], *,
    num_steps: int = 20, seed: int = 0,
) -> list[Image.Image]:  # fmt: skip
    """Edit ``sources`` by ``instructions`` with the Euler ODE sampler (``num_steps`` steps,
    noise drawn from ``seed``): a quick look at what the model does, without a policy."""
    size = model.config["size"]
    source = torch.stack([image_to_tensor(s, size) for s in sources]).to(model.device)
    text = model.embed_text(instructions).to(model.device)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(source.shape, generator=generator).to(model.device)
    sigmas = torch.linspace(1.0, 0.0, num_steps + 1)
    for i in range(num_steps):
        v = model(x, float(sigmas[i]), source, text)
        x = x + float(sigmas[i + 1] - sigmas[i]) * v
    return tensor_to_images(x)


# ------------------------------------------------------------------ the cache


def _data_digest(triples) -> str:
    digest = hashlib.sha256()
    for instruction, source, target in triples:
        digest.update(instruction.encode("utf-8") + b"\0")
        for image in (source, target):
            image = image if image.mode == "RGB" else image.convert("RGB")
            digest.update(f"{image.size}".encode())
            digest.update(image.tobytes())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    return value


def build_cached_editor(
    cache_dir: str | os.PathLike,
    pairs_fn: Callable[[], Iterable],
    *,
    data_key: str | None = None,
    **train_kw,
) -> Path:
    """A trained editor folder under ``cache_dir`` (``editworld-editor-<hash>``), trained by
    :func:`train_editor` on ``pairs_fn()`` with ``train_kw`` the first time and reused after.

    The hash covers :data:`FORMAT_VERSION`, the training options (``on_step`` aside) and the
    data: ``data_key`` when given (then ``pairs_fn`` is called only to train), else a digest of
    every instruction and image of ``pairs_fn()``. Training holds a lock file, so concurrent
    callers train once; the folder appears complete or not at all, with ``training.json``
    (options, seconds, losses, parameters) beside the weights."""
    on_step = train_kw.pop("on_step", None)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    triples = None
    if data_key is None:
        triples = [_as_triple(p) for p in pairs_fn()]
        data_key = "sha256:" + _data_digest(triples)
    material = {"format": FORMAT_VERSION, "train": _jsonable(train_kw), "data": data_key}
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir / f"editworld-editor-{key}"
    if (folder / "model_index.json").is_file():
        return folder
    with open(cache_dir / f".editworld-editor-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "model_index.json").is_file():  # trained while we waited
            return folder
        if triples is None:
            triples = [_as_triple(p) for p in pairs_fn()]
        losses: list[float] = []

        def record(step: int, loss: float):
            losses.append(loss)
            if on_step is not None:
                on_step(step, loss)

        began = time.perf_counter()
        model = train_editor(triples, on_step=record, **train_kw)
        seconds = time.perf_counter() - began
        tmp = cache_dir / f".editworld-editor-{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        log = {
            "key": material,
            "pairs": len(triples),
            "parameters": model.num_parameters(),
            "seconds": seconds,
            "losses": losses,
            "final_loss": flow_matching_loss(model, triples[:256]),
        }
        (tmp / TRAINING_NAME).write_text(json.dumps(log) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    with contextlib.suppress(OSError):
        os.unlink(cache_dir / f".editworld-editor-{key}.lock")
    return folder


# ------------------------------------------------------------------ the RL policy


@register_policy(CLASS_NAME)
class EditWorldEditorPolicy(Policy):
    """A :class:`TinyEditor` folder as an RL policy (the trainer's interface; see
    ``rltraining.ml.policies``).

    Latents are packed 2 x 2 pixel patches ``(B, H/2 * W/2, 12)`` in [-1, 1] scale;
    :meth:`sigmas` is the plain ``linspace(1, 0, num_steps + 1)`` the editor was trained for
    (no shift); the condition holds the source images ``(B, 3, H, W)`` (resized to the
    policy's size) and the instruction bags ``(B, text_buckets)``. ``height`` / ``width``
    default to the editor's training size (the network is convolutional: other multiples of 8
    run, but it saw only its own). LoRA (:data:`EDITOR_LORA_TARGETS` by default) goes on the
    residual blocks' convolutions and FiLM projections, zero-initialised. Guidance: none
    (``"native"`` means the same); ``pipe`` and ``scheduler`` are ``None``.
    """

    name = "editworld-editor"
    pipeline_class = CLASS_NAME
    default_guidance = {"scale": 1.0, "true_cfg_scale": 1.0}

    def __init__(
        self,
        editor: TinyEditor,
        *,
        height: int | None = None,
        width: int | None = None,
        guidance=None,
        lora_r: int | None = None,
        lora_alpha: float | None = None,
        lora_targets: Sequence[str] | None = None,
        adapter: str | Path | None = None,
        gradient_checkpointing: bool = False,  # accepted for the interface; nothing to save
    ):
        self.pipe = None
        self.scheduler = None
        self.transformer = editor
        size, multiple = editor.config["size"], editor.multiple
        self.height = int(height or size) // multiple * multiple
        self.width = int(width or size) // multiple * multiple
        if not self.height or not self.width:
            raise ValueError(f"height and width must be at least {multiple} pixels")
        self.guidance = guidance
        self.lora_config = None
        editor.requires_grad_(False)
        editor.eval()
        if lora_r is not None:
            self.add_lora(lora_r, lora_alpha, lora_targets)
        if adapter is not None:
            self.load_adapter(adapter)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype=None,
        lora_r: int | None = None,
        lora_alpha: float | None = None,
        lora_targets: Sequence[str] | None = None,
        adapter: str | Path | None = None,
        height: int | None = None,
        width: int | None = None,
        guidance=None,
        gradient_checkpointing: bool = False,
    ) -> EditWorldEditorPolicy:
        """Load a :meth:`TinyEditor.save_pretrained` folder (the arguments as
        :meth:`Policy.from_pretrained`'s; ``height``/``width`` default to the editor's size)."""
        editor = TinyEditor.from_pretrained(path, device=device, dtype=dtype)
        return cls(
            editor,
            height=height,
            width=width,
            guidance=guidance,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_targets=lora_targets,
            adapter=adapter,
            gradient_checkpointing=gradient_checkpointing,
        )

    @property
    def guidance(self):
        return self._guidance

    @guidance.setter
    def guidance(self, value):
        Policy.guidance.fset(self, value)
        if self._guidance.needs_negative or self._guidance.needs_uncond:
            raise ValueError(
                "the EditWorld editor has no classifier-free guidance: use 'none' (or 'native' "
                "with true_cfg_scale 1)"
            )

    @property
    def image_seq_len(self) -> int:
        return (self.height // PATCH) * (self.width // PATCH)

    def sigmas(self, num_steps: int) -> torch.Tensor:
        """``linspace(1, 0, num_steps + 1)``, float32, on the policy's device."""
        return torch.linspace(1.0, 0.0, int(num_steps) + 1, dtype=torch.float32,
                              device=self.device)  # fmt: skip

    def _encode(self, instructions, sources) -> Condition:
        size = (self.width, self.height)
        source = torch.stack([image_to_tensor(s, size) for s in sources])
        tensors = {
            "source": source.to(device=self.device, dtype=self.dtype),
            "text": self.transformer.embed_text(instructions).to(self.device, self.dtype),
        }
        return Condition(tensors, {"branches": ("cond",)})

    def initial_latents(self, n: int, generator=None) -> torch.Tensor:
        """``n`` packed standard-normal latents, float32, drawn on the generator's device."""
        shape = (int(n), self.image_seq_len, 3 * PATCH * PATCH)
        device = generator.device if generator is not None else self.device
        noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
        return noise.to(self.device)

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        return tensor_to_images(unpack(latents.detach(), self.height, self.width))

    def _forward(self, x, timestep, cond, branch):
        self._needs(cond, branch)
        images = unpack(x, self.height, self.width)
        v = self.transformer(images, timestep, cond.source.to(x.dtype), cond.text.to(x.dtype))
        return pack(v)

    # --- LoRA

    def add_lora(self, r, alpha=None, targets=None, **extra):
        super().add_lora(r, alpha, targets or EDITOR_LORA_TARGETS, **extra)

    def save_adapter(self, path: str | Path) -> Path:
        """The adapter in diffusers' LoRA file format (``pytorch_lora_weights.safetensors``,
        keys ``transformer.*``, the peft config in the metadata), which :meth:`load_adapter`
        reads."""
        from safetensors.torch import save_file

        if self.lora_config is None:
            raise ValueError("this policy has no LoRA adapter to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {
            f"transformer.{k}": v.detach().contiguous().cpu()
            for k, v in self.adapter_state_dict().items()
        }
        config = {
            f"transformer.{k}": sorted(v) if isinstance(v, set) else v
            for k, v in self.lora_config.to_dict().items()
        }
        metadata = {"format": "pt", ADAPTER_METADATA_KEY: json.dumps(config, sort_keys=True)}
        save_file(state, path / ADAPTER_WEIGHTS, metadata=metadata)
        return path


__all__ = [
    "ADAPTER_NAME",
    "CLASS_NAME",
    "EDITOR_LORA_TARGETS",
    "EditWorldEditorPolicy",
    "TinyEditor",
    "build_cached_editor",
    "edit",
    "embed_instructions",
    "flow_matching_loss",
    "instruction_features",
    "pack",
    "train_editor",
    "unpack",
]
