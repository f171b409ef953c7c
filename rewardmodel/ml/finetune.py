"""LoRA fine-tuning of the EditScore reward model (docs/method.md section 3).

Training data
    One :class:`Example` per conversation: the images, the prompt text and the answer the model
    must learn to write (the JSON ``{"reasoning": ..., "score": [...]}``, reasoning first).
    :func:`examples_for_candidate` makes the two conversations of one candidate (SC on
    [source, edited], PQ on [edited]) from its target scores; where the targets come from
    (human tiers, a teacher judge's reasoning kept only when it agrees with the humans) is the
    caller's business. ``examples`` may be any sequence (``len`` and indexing): a lazy one that
    reads images on access, like :class:`ExampleFile`, keeps a large set out of memory.

What :func:`finetune` does
    * loads the base model (any Qwen-VL checkpoint ``AutoModelForImageTextToText`` accepts,
      Qwen2.5-VL and Qwen3-VL tested; the processor through
      :func:`rewardmodel.ml.tiny.load_processor`, as scoring does) and wraps
      it with a new peft LoRA adapter, or continues a given one (``adapter_init``: its own rank,
      alpha, dropout and target modules are kept, the ``lora_*`` / ``target_modules`` fields
      are ignored, and the optimizer and schedule start afresh);
    * ``target_modules="all-linear"`` means every ``nn.Linear`` of the *language model*: the
      attention and MLP projections of each decoder layer. The vision tower and its merger
      (projector; in Qwen3-VL also the DeepStack mergers, see :data:`VISION_MODULE_PARTS`)
      stay frozen and unadapted, and so does the output head (``lm_head``; peft's
      own "all-linear" leaves it out too, but would adapt the vision tower). That is the usual
      Qwen-VL LoRA recipe (LLaMA-Factory freezes the vision tower by default), the judging
      skill is in the language model, and the adapter stays small and mergeable. A list may
      add names to it (``["all-linear", "lm_head"]``); any other string (a regex) or list
      goes to peft as it is, vision layers included if named;
    * builds each input as :class:`rewardmodel.ml.model.EditScore` does at scoring time: the
      same image preparation (RGB, shrunk to ``max_pixels`` with the aspect kept, in the SC
      conversation the edited image resized to the source's size, then sized as the reference
      sizes images), the chat text of :func:`rewardmodel.ml.model.chat_text` for the config's
      ``prompt_set`` (the reference's template by default: the system turn, the labelled
      images, then the prompt) up to the generation prompt. The answer tokens (the target, then
      ``<|im_end|>``) are appended *after* the tokenised prompt, so training sees the very
      token boundary generation starts from, and the loss is computed on those answer tokens
      only: labels are -100 on the system turn, the images, the prompt and the padding;
    * AdamW on the adapter parameters with gradient accumulation: the loss of one optimizer
      step is the mean over *all* answer tokens of its ``grad_accum x batch_size``
      conversations; gradient clipping (``max_grad_norm``); a linear warmup over
      ``ceil(warmup_ratio x steps)`` steps followed by a cosine (or linear, or constant)
      schedule towards 0;
    * bfloat16 weights on CUDA, float32 on CPU (``dtype="auto"``); the adapter weights
      themselves stay float32 (peft's upcast) and the loss is computed in float32;
    * every ``checkpoint_every`` optimizer steps, and when ``should_stop()`` returns true (or
      raises: a cancelled job), writes ``output_dir/checkpoint-N`` (adapter, optimizer,
      scheduler, step, RNG states; safetensors and JSON, nothing pickled) and keeps the newest
      ``keep_checkpoints``. Called again with the same ``output_dir``, examples and config, it
      resumes from the newest checkpoint and ends as the uninterrupted run would have (the
      data order is a function of the seed and the epoch; the RNG states come back); a
      finished ``output_dir`` returns its stored result at once; a different config (but for
      ``checkpoint_every``, ``keep_checkpoints``, ``gradient_checkpointing`` and the folder's
      own path) or example count for an existing ``output_dir`` is refused with ValueError;
    * reports each optimizer step through ``on_step(step, {"loss", "lr", "grad_norm", "epoch",
      "total_steps"})`` (``step`` counts from 1, ``loss`` is the step's mean answer-token
      loss, ``lr`` the rate that step used, ``grad_norm`` the norm before clipping, ``epoch``
      a float);
    * saves the final adapter with ``save_pretrained`` into ``output_dir/adapter`` (load it with
      ``EditScore.from_pretrained(base, adapter=...)``) and the result in
      ``output_dir/result.json``.

Several GPUs
    The same code runs under ``torchrun`` or ``accelerate launch``: one process per GPU, each
    holding a full copy of the base model on ``cuda:LOCAL_RANK`` (so the model must fit one GPU:
    a 7B in bf16 does; the paper's 72B needs sharding, FSDP or DeepSpeed, which this module does
    not do). The micro-batches of an optimizer step are dealt round-robin to the processes and
    the adapter gradients summed over them, so the effective batch stays
    ``batch_size x grad_accum`` whatever the number of GPUs (make ``grad_accum`` a multiple of
    it): more GPUs make each step faster, not larger. Only rank 0 calls ``on_step`` and
    ``should_stop`` (whose answer stops every rank) and writes the adapter and checkpoints;
    ``output_dir`` must be on a file system all processes share. From a shell::

        python -c "from rewardmodel.ml.finetune import FinetuneConfig; import json; print(json.dumps(
            FinetuneConfig(base_model='/models/Qwen2.5-VL-7B-Instruct', output_dir='/runs/rm1',
                           grad_accum=16).to_dict()))" > cfg.json
        torchrun --nproc_per_node 8 -m rewardmodel.ml.finetune \\
            --config cfg.json --examples examples.jsonl
        accelerate launch --multi_gpu --num_processes 8 -m rewardmodel.ml.finetune \\
            --config cfg.json --examples examples.jsonl

    ``examples.jsonl`` is what :func:`save_examples` writes (one JSON object per line with
    ``prompt``, ``target``, ``resize_to_first`` and ``images``: file paths, relative ones
    resolved against the JSONL folder). Steps and the result are printed as JSON lines. Only
    the single-process path is covered by the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcore.checkpoints import checkpoints, load_rng, save_rng, set_seed, write_checkpoint
from mlcore.distributed import Dist, load_optimizer, save_optimizer
from rewardmodel.ml import prompts

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Targets without a teacher's reasoning get a short sentence that says nothing about the image.
NEUTRAL_REASONING_SC = prompts.NEUTRAL_REASONING_SC
NEUTRAL_REASONING_PQ = prompts.NEUTRAL_REASONING_PQ
target_json = prompts.target_json

SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16")
# Fields that may change between a run and its resumption without changing what is trained.
_RESUME_FREE = frozenset(
    {"output_dir", "checkpoint_every", "keep_checkpoints", "gradient_checkpointing"}
)


@dataclass
class Example:
    """One training conversation: the images (encoded PNG/JPEG/... bytes, in prompt order), the
    prompt text that follows them in the user turn, and the answer text to learn.

    Images are prepared as :class:`rewardmodel.ml.model.EditScore` prepares them: RGB, shrunk to
    ``max_pixels``; with ``resize_to_first`` (the SC conversation) the later images are resized
    to the first one's (shrunk) size instead, as scoring does with the edited image.
    """

    images: list[bytes]
    prompt: str
    target: str
    resize_to_first: bool = False

    def __post_init__(self):
        if not isinstance(self.images, list | tuple) or not all(
            isinstance(b, bytes | bytearray) and len(b) > 0 for b in self.images
        ):
            raise ValueError("Example.images must be a list of non-empty bytes")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("Example.prompt must be a non-empty string")
        if not isinstance(self.target, str) or not self.target.strip():
            raise ValueError("Example.target must be a non-empty string")
        self.images = [bytes(b) for b in self.images]
        if not isinstance(self.resize_to_first, bool):
            raise ValueError("Example.resize_to_first must be true or false")


@dataclass
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run; defaults are the paper's (method.md section 3).

    JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`); every field is checked on creation
    and a bad value raises ``ValueError`` naming the field.

    ``max_steps`` (when set) replaces ``epochs`` as the run length. ``checkpoint_every=0`` writes
    no periodic checkpoint (one is still written when ``should_stop`` stops the run);
    ``keep_checkpoints=0`` keeps them all.
    """

    base_model: str
    output_dir: str
    adapter_init: str | None = None
    lora_r: int = 32
    lora_alpha: float = 64
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    learning_rate: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_ratio: float = 0.1
    epochs: int = 3
    batch_size: int = 1
    grad_accum: int = 8
    max_steps: int | None = None
    max_pixels: int = 512 * 512
    dtype: str = "auto"  # bf16 on GPU, fp32 on CPU
    checkpoint_every: int = 100
    seed: int = 0
    max_length: int = 2048
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    keep_checkpoints: int = 2
    gradient_checkpointing: bool = False
    # The prompt set the examples were written in (rewardmodel.ml.prompts): it decides the chat
    # layout here and is recorded with the model so that scoring uses the same.
    prompt_set: str = prompts.DEFAULT_PROMPT_SET

    def __post_init__(self):
        def fail(name: str, why: str):
            raise ValueError(f"FinetuneConfig.{name}: {why} (got {getattr(self, name)!r})")

        def integer(name: str, low: int, *, optional: bool = False):
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int):
                fail(name, "must be an integer")
            if value < low:
                fail(name, f"must be >= {low}")

        def number(name: str, low: float, high: float = math.inf, *, open_low=False):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                fail(name, "must be a number")
            if not math.isfinite(value):
                fail(name, "must be finite")
            if value < low or (open_low and value == low) or value > high:
                bounds = f"{'(' if open_low else '['}{low}, {high}]"
                fail(name, f"must lie in {bounds}")
            setattr(self, name, float(value))

        for name in ("base_model", "output_dir"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                fail(name, "must be a non-empty string")
        if self.adapter_init is not None and (
            not isinstance(self.adapter_init, str) or not self.adapter_init.strip()
        ):
            fail("adapter_init", "must be None or a non-empty string")
        if self.prompt_set not in prompts.PROMPT_SETS:
            fail("prompt_set", f"must be one of {', '.join(prompts.PROMPT_SETS)}")
        integer("lora_r", 1)
        number("lora_alpha", 0.0, open_low=True)
        number("lora_dropout", 0.0, 0.99)
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        if isinstance(self.target_modules, str):
            if not self.target_modules.strip():
                fail("target_modules", '"all-linear", a regex or a list of module names')
        elif not (
            isinstance(self.target_modules, list)
            and self.target_modules
            and all(isinstance(m, str) and m.strip() for m in self.target_modules)
        ):
            fail("target_modules", '"all-linear", a regex or a list of module names')
        number("learning_rate", 0.0, 1.0, open_low=True)
        if self.lr_schedule not in SCHEDULES:
            fail("lr_schedule", f"must be one of {', '.join(SCHEDULES)}")
        number("warmup_ratio", 0.0, 0.99)
        integer("epochs", 1)
        integer("batch_size", 1)
        integer("grad_accum", 1)
        integer("max_steps", 1, optional=True)
        integer("max_pixels", 28 * 28)
        if self.dtype not in DTYPES:
            fail("dtype", f"must be one of {', '.join(DTYPES)}")
        integer("checkpoint_every", 0)
        integer("seed", 0)
        integer("max_length", 16)
        number("weight_decay", 0.0, 1.0)
        number("max_grad_norm", 0.0)
        integer("keep_checkpoints", 0)
        if not isinstance(self.gradient_checkpointing, bool):
            fail("gradient_checkpointing", "must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        if not isinstance(data, dict):
            raise ValueError("FinetuneConfig.from_dict needs a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"FinetuneConfig: unknown field(s) {', '.join(unknown)}")
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        if missing:
            raise ValueError(f"FinetuneConfig: missing field(s) {', '.join(missing)}")
        return cls(**data)


def examples_for_candidate(
    instruction: str,
    source: bytes,
    edited: bytes,
    *,
    sc_scores: tuple[int, int],
    pq_scores: tuple[int, int],
    reasoning_sc: str | None = None,
    reasoning_pq: str | None = None,
    score_range: int = 25,
    prompt_set: str = prompts.DEFAULT_PROMPT_SET,
) -> list[Example]:
    """The SC conversation ([source, edited] + instruction -> editing success, over-editing) and
    the PQ conversation ([edited] -> naturalness, artifacts) of one candidate, with their JSON
    targets. Scores are integers in [0, score_range]; a missing reasoning becomes a short
    neutral sentence."""
    if isinstance(score_range, bool) or not isinstance(score_range, int) or score_range < 1:
        raise ValueError(f"score_range must be a positive integer (got {score_range!r})")
    for name, scores in (("sc_scores", sc_scores), ("pq_scores", pq_scores)):
        if not isinstance(scores, list | tuple) or len(scores) != 2:
            raise ValueError(f"{name} must hold two scores (got {scores!r})")
        for s in scores:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= score_range:
                raise ValueError(f"{name}: scores are integers in [0, {score_range}] (got {s!r})")
    for name, text in (("reasoning_sc", reasoning_sc), ("reasoning_pq", reasoning_pq)):
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError(f"{name} must be None or a non-empty string")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("instruction must be a non-empty string")
    sc = Example(
        images=[source, edited],
        prompt=prompts.sc_prompt(instruction, score_range, prompt_set),
        target=target_json((reasoning_sc or NEUTRAL_REASONING_SC).strip(), sc_scores),
        resize_to_first=True,
    )
    pq = Example(
        images=[edited],
        prompt=prompts.pq_prompt(score_range, prompt_set),
        target=target_json((reasoning_pq or NEUTRAL_REASONING_PQ).strip(), pq_scores),
    )
    return [sc, pq]


# --- examples on disk (for torchrun / accelerate launch) ---------------------------------------


def save_examples(examples: Sequence[Example], path: str | os.PathLike) -> Path:
    """Write ``examples`` as JSONL at ``path``; the images go to ``<stem>-images/`` beside it."""
    path = Path(path)
    image_dir = path.parent / f"{path.stem}-images"
    image_dir.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for i, example in enumerate(examples):
            names = []
            for j, data in enumerate(example.images):
                name = f"{i:07d}-{j}.img"
                (image_dir / name).write_bytes(data)
                names.append(f"{image_dir.name}/{name}")
            row = {"images": names, "prompt": example.prompt, "target": example.target}
            if example.resize_to_first:
                row["resize_to_first"] = True
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


class ExampleFile(Sequence):
    """The examples of a JSONL file written by :func:`save_examples`, images read on access."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._rows = []
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("images"), list):
                    raise ValueError(f"{self.path}:{number}: not an example row")
                self._rows.append(row)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = self._rows[index]
        images = [(self.path.parent / name).read_bytes() for name in row["images"]]
        return Example(
            images=images,
            prompt=row["prompt"],
            target=row["target"],
            resize_to_first=bool(row.get("resize_to_first", False)),
        )


# --- training ----------------------------------------------------------------------------------


def _steps_per_epoch(n_examples: int, config: FinetuneConfig) -> int:
    micro = math.ceil(n_examples / config.batch_size)
    return math.ceil(micro / config.grad_accum)


def total_steps(n_examples: int, config: FinetuneConfig) -> int:
    """Optimizer steps of a run: ``max_steps``, else ``epochs`` passes over the examples."""
    if config.max_steps is not None:
        return config.max_steps
    return _steps_per_epoch(n_examples, config) * config.epochs


def lr_factor(step: int, total: int, config: FinetuneConfig) -> float:
    """Multiplier of the learning rate at optimizer step ``step`` (0-based): a linear warmup
    over ``ceil(warmup_ratio * total)`` steps, then the schedule's decay towards 0."""
    warmup = math.ceil(config.warmup_ratio * total)
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if config.lr_schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@functools.lru_cache(maxsize=2)
def _epoch_order(n_examples: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def step_batches(step: int, n_examples: int, config: FinetuneConfig) -> list[list[int]]:
    """Example indices of the micro-batches of optimizer step ``step`` (0-based). The order is a
    function of (seed, epoch) only, so a resumed run sees the batches an uninterrupted one
    would have seen."""
    per_epoch = _steps_per_epoch(n_examples, config)
    epoch, within = divmod(step, per_epoch)
    order = _epoch_order(n_examples, config.seed, epoch)
    micro = [order[i : i + config.batch_size] for i in range(0, n_examples, config.batch_size)]
    return micro[within * config.grad_accum : (within + 1) * config.grad_accum]


def prepare_images(example: Example, max_pixels: int, family: str = "qwen2_5_vl") -> list:
    """The example's images as scoring feeds them to the processor (see :class:`Example`):
    capped at ``max_pixels`` (the paper trains at 512x512 pixels), the SC edit resized to the
    source (as the benchmark does before scoring), then sized as the reference sizes them."""
    from rewardmodel.ml.images import cap_pixels, open_image
    from rewardmodel.ml.model import sized_as_reference

    opened = [open_image(data) for data in example.images]
    if not opened:
        return []
    if not example.resize_to_first:
        return sized_as_reference([cap_pixels(image, max_pixels) for image in opened], family)
    first = cap_pixels(opened[0], max_pixels)
    rest = [im if im.size == first.size else im.resize(first.size) for im in opened[1:]]
    return sized_as_reference([first, *rest], family)


class Encoder:
    """Turns an :class:`Example` into model inputs with the loss masked to the answer."""

    def __init__(
        self,
        processor,
        *,
        max_pixels: int,
        max_length: int,
        prompt_set: str = prompts.DEFAULT_PROMPT_SET,
        family: str = "qwen2_5_vl",
    ):
        self.processor = processor
        self.prompt_set = prompts.check_prompt_set(prompt_set)
        self.family = family
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_pixels = max_pixels
        self.max_length = max_length
        self.end_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if self.end_id is None or self.end_id == self.tokenizer.unk_token_id:
            raise ValueError("the tokenizer has no <|im_end|> token")
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.end_id

    def prompt_text(self, example: Example) -> str:
        """The chat text up to the generation prompt, as ``EditScore`` builds it."""
        from rewardmodel.ml.model import chat_text

        return chat_text(
            self.processor, example.prompt, len(example.images),
            prompt_set=self.prompt_set, family=self.family,
        )  # fmt: skip

    def answer_ids(self, target: str) -> list[int]:
        ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
        return list(ids) + [self.end_id]

    def encode(self, example: Example) -> dict:
        """Input ids (prompt then answer), labels (-100 but on the answer) and the processor's
        other outputs: per-token ones (``mm_token_type_ids``, which the model needs to place
        the images' 3-D rotary positions) extended over the answer with 0, per-image ones
        (``pixel_values``, ``image_grid_thw``) as they are."""
        import torch

        images = prepare_images(example, self.max_pixels, self.family)
        encoded = self.processor(
            text=[self.prompt_text(example)], images=images or None, return_tensors="pt"
        )
        prompt_ids = encoded["input_ids"][0].tolist()
        if len(prompt_ids) >= self.max_length:
            raise ValueError(
                f"a prompt is {len(prompt_ids)} tokens long with its images, max_length is "
                f"{self.max_length}: raise max_length or lower max_pixels"
            )
        answer = self.answer_ids(example.target)
        truncated = len(prompt_ids) + len(answer) > self.max_length
        answer = answer[: self.max_length - len(prompt_ids)]
        item = {
            "input_ids": torch.tensor(prompt_ids + answer, dtype=torch.long),
            "labels": torch.tensor([IGNORE_INDEX] * len(prompt_ids) + answer, dtype=torch.long),
            "per_token": {},
            "per_image": {},
            "truncated": truncated,
        }
        for key, value in encoded.items():
            if key in ("input_ids", "attention_mask") or not isinstance(value, torch.Tensor):
                continue
            if value.dim() == 2 and value.shape == (1, len(prompt_ids)):
                tail = torch.zeros(len(answer), dtype=value.dtype)
                item["per_token"][key] = torch.cat([value[0], tail])
            elif images:
                item["per_image"][key] = value
        return item

    def collate(self, items: list[dict]) -> dict:
        """Right-pads a micro-batch (per-token extras with 0); per-image tensors are concatenated
        in order."""
        import torch

        length = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(items), length), dtype=torch.long)
        per_token = {}
        for key in {k for item in items for k in item["per_token"]}:
            dtype = next(i["per_token"][key].dtype for i in items if key in i["per_token"])
            per_token[key] = torch.zeros((len(items), length), dtype=dtype)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            input_ids[row, :n] = item["input_ids"]
            labels[row, :n] = item["labels"]
            attention[row, :n] = 1
            for key, value in item["per_token"].items():
                per_token[key][row, :n] = value
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        batch.update(per_token)
        for key in {k for item in items for k in item["per_image"]}:
            batch[key] = torch.cat([i["per_image"][key] for i in items if key in i["per_image"]])
        return batch


def answer_loss_sum(model, batch: dict):
    """Summed next-token cross-entropy over the answer tokens (labels != -100), in float32."""
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    picked = logits[:, :-1][mask].float()
    return F.cross_entropy(picked, labels[mask], reduction="sum")


# Module-name parts that mark the vision side of a Qwen-VL (and of LLaVA-style VLMs): the tower
# (``model.visual`` in Qwen2.5-VL and Qwen3-VL), its merger (projector) and Qwen3-VL's DeepStack
# mergers (``model.visual.deepstack_merger_list.N``). Both Qwen families name the language model's
# linear layers alike (``model.language_model.layers.N.{self_attn,mlp}.*_proj``).
VISION_MODULE_PARTS = (
    "visual",
    "vision_tower",
    "multi_modal_projector",
    "merger",
    "deepstack_merger_list",
)


def language_linear_modules(model) -> str:
    """The peft ``target_modules`` regex for "all-linear": every ``nn.Linear`` outside the vision
    side (:data:`VISION_MODULE_PARTS`) and the output head."""
    import torch.nn as nn

    leaves = set()
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        parts = name.split(".")
        if "lm_head" in parts or any(part in parts for part in VISION_MODULE_PARTS):
            continue
        leaves.add(parts[-1])
    if not leaves:
        raise ValueError("no linear layer found in the language model")
    alternatives = "|".join(sorted(re.escape(leaf) for leaf in leaves))
    vision = "|".join(re.escape(part) for part in VISION_MODULE_PARTS)
    return rf"^(?!.*(?:^|\.)(?:{vision})(?:\.|$)).*\.(?:{alternatives})$"


def resolve_target_modules(targets: str | list[str], model) -> str | list[str]:
    """peft ``target_modules`` for a config value: "all-linear" becomes the language-model regex
    of :func:`language_linear_modules`; a list holding "all-linear" adds its other names (say
    ``["all-linear", "lm_head"]``) to that regex; anything else goes to peft unchanged."""
    if targets == "all-linear":
        return language_linear_modules(model)
    if isinstance(targets, list) and "all-linear" in targets:
        extra = [re.escape(name) for name in targets if name != "all-linear"]
        pattern = f"(?:{language_linear_modules(model)})"
        if extra:
            pattern += rf"|(?:^(?:.*\.)?(?:{'|'.join(extra)})$)"
        return pattern
    return targets


def _torch_dtype(config: FinetuneConfig, device):
    import torch

    if config.dtype == "float32":
        return torch.float32
    if config.dtype == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _load_processor(path: str):
    """The base model's processor (``AutoProcessor``, or the torchvision-free fallback)."""
    from rewardmodel.ml import tiny

    return tiny.load_processor(path)


def _load_base(path: str, dtype, device):
    """The base VLM, straight onto its GPU (eight processes each staging a 7B model in host
    memory first would need 8 x 16 GB of RAM)."""
    from transformers import AutoModelForImageTextToText

    device_map = {"": str(device)} if device.type == "cuda" else None
    return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=device_map)


def _fingerprint(config: FinetuneConfig, n_examples: int) -> dict:
    data = {k: v for k, v in config.to_dict().items() if k not in _RESUME_FREE}
    return {"config": data, "examples": n_examples}


def _save_checkpoint(root: Path, step: int, model, optimizer, scheduler, state: dict, dist, keep):
    """The adapter, optimizer, scheduler and loop state on rank 0, every rank's RNG."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder / "adapter", save_embedding_layers=False)
        save_optimizer(optimizer, folder)
        full = {**state, "step": step, "scheduler": scheduler.state_dict()}
        (folder / "state.json").write_text(json.dumps(full, indent=1))

    return write_checkpoint(
        root, step, write, dist=dist, keep=keep, every_rank=lambda f: save_rng(f, dist.rank)
    )


def finetune(
    config: FinetuneConfig,
    examples: Sequence[Example],
    on_step: Callable[[int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Fine-tune a LoRA adapter on ``examples``; see the module docstring.

    Returns ``{"steps", "final_loss", "adapter_path", "examples", "seconds", "stopped",
    "resumed_from", "checkpoint", "truncated"}``: ``steps`` is the optimizer step reached
    (counting the steps of earlier, resumed calls), ``adapter_path`` the final adapter folder
    (``None`` when ``should_stop`` ended the call early; ``checkpoint`` then names the folder to
    resume from), ``resumed_from`` the step this call started from, ``truncated`` how many
    answers this call cut to ``max_length``.
    """
    import torch

    if not isinstance(config, FinetuneConfig):
        raise TypeError("config must be a FinetuneConfig")
    n_examples = len(examples)
    if n_examples == 0:
        raise ValueError("no training examples")
    started = time.monotonic()
    root = Path(config.output_dir)
    fingerprint = _fingerprint(config, n_examples)
    done = root / "result.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{root} holds a finished run with another config or example count: "
                "use a fresh output_dir"
            )
        return {**saved["result"], "seconds": 0.0, "resumed_from": saved["result"]["steps"]}
    found = checkpoints(root)
    resume = found[-1][1] if found else None
    if resume is not None:
        state = json.loads((resume / "state.json").read_text())
        if state.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{resume} was written with another config or example count: use a fresh "
                "output_dir (or the original config) to resume"
            )

    dist = Dist()
    try:
        return _train(
            config, examples, on_step, should_stop, dist, root, resume, fingerprint, started
        )
    finally:
        dist.close()
        if dist.device.type == "cuda":
            torch.cuda.empty_cache()


def _train(config, examples, on_step, should_stop, dist, root, resume, fingerprint, started):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from rewardmodel.ml.tiny import checkpoint_family

    n_examples = len(examples)
    total = total_steps(n_examples, config)
    per_epoch = _steps_per_epoch(n_examples, config)
    set_seed(config.seed)
    dtype = _torch_dtype(config, dist.device)
    processor = _load_processor(config.base_model)
    encoder = Encoder(
        processor, max_pixels=config.max_pixels, max_length=config.max_length,
        prompt_set=config.prompt_set,
        family=checkpoint_family(config.base_model).model_type,
    )  # fmt: skip
    base = _load_base(config.base_model, dtype, dist.device)
    if config.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if resume is not None:
        model = PeftModel.from_pretrained(base, str(resume / "adapter"), is_trainable=True)
    elif config.adapter_init:
        model = PeftModel.from_pretrained(base, config.adapter_init, is_trainable=True)
    else:
        targets = resolve_target_modules(config.target_modules, base)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, lora)
    model.to(dist.device)
    model.train()
    if dist.world > 1:  # same LoRA init on every rank (seeded above), then distinct dropout
        torch.manual_seed(config.seed + 1_000_003 * dist.rank)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the adapter has no trainable parameter")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, config)
    )
    step = 0
    last_loss = None
    if resume is not None:
        state = json.loads((resume / "state.json").read_text())
        load_optimizer(optimizer, resume, dist.device)
        scheduler.load_state_dict(state["scheduler"])
        load_rng(resume, dist.rank)
        step = int(state["step"])
        last_loss = state.get("last_loss")
    resumed_from = step
    if dist.main:
        logger.info(
            "fine-tuning %s on %d examples: %d steps (%d per epoch) from step %d, %s on %s",
            *(config.base_model, n_examples, total, per_epoch, step, dtype, dist.device),
        )

    truncated = 0
    last_saved = step if resume is not None else None
    stopped = False

    def save(at: int) -> Path:
        nonlocal last_saved
        state = {"fingerprint": fingerprint, "last_loss": last_loss, "total_steps": total}
        path = _save_checkpoint(
            root, at, model, optimizer, scheduler, state, dist, config.keep_checkpoints
        )
        last_saved = at
        return path

    while step < total:
        if should_stop is not None:
            try:
                flag = bool(should_stop()) if dist.main else False
            except BaseException:
                # A cancelled job (say): keep what this call trained, then let it propagate.
                if dist.world == 1 and step > 0 and last_saved != step:
                    save(step)
                raise
            if dist.decide(flag):
                stopped = True
                break
        batches = step_batches(step, n_examples, config)
        mine = batches[dist.rank :: dist.world]
        encoded = []
        for indices in mine:
            items = [encoder.encode(examples[i]) for i in indices]
            truncated += sum(item["truncated"] for item in items)
            encoded.append(encoder.collate(items))
        local_tokens = float(sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in encoded))
        (tokens,) = dist.sum([local_tokens])
        tokens = max(tokens, 1.0)
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = 0.0
        for batch in encoded:
            batch = {k: v.to(dist.device) for k, v in batch.items()}
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(dtype)
            loss = answer_loss_sum(model, batch)
            (loss / tokens).backward()
            loss_sum += float(loss.detach())
        dist.sum_grads(params)
        (loss_sum,) = dist.sum([loss_sum])
        max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last_loss = loss_sum / tokens
        if dist.main and on_step is not None:
            metrics = {"loss": last_loss, "lr": lr, "grad_norm": grad_norm}
            on_step(step, {**metrics, "epoch": step / per_epoch, "total_steps": total})
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total:
            save(step)

    seconds = time.monotonic() - started
    result = {
        "steps": step,
        "final_loss": last_loss,
        "adapter_path": None,
        "examples": n_examples,
        "seconds": seconds,
        "stopped": stopped,
        "resumed_from": resumed_from,
        "checkpoint": None,
        "truncated": truncated,
    }
    if stopped:
        if step > 0:
            path = save(step) if last_saved != step else root / f"checkpoint-{step}"
            result["checkpoint"] = str(path)
        return result
    adapter = root / "adapter"
    if dist.main:
        model.save_pretrained(adapter, save_embedding_layers=False)
        result["adapter_path"] = str(adapter)
        record = {"fingerprint": fingerprint, "result": {**result, "truncated": truncated}}
        (root / "result.json").write_text(json.dumps(record, indent=1))
    dist.barrier()
    result["adapter_path"] = str(adapter)
    return result


WEIGHT_FILES = re.compile(r".*\.safetensors(\.index\.json)?$")


def merge_adapter(base: str | os.PathLike, adapter: str | os.PathLike, out_dir) -> Path:
    """A checkpoint folder ``out_dir`` holding ``base`` with the LoRA ``adapter`` merged into
    its weights (the next fine-tune starts from it as from any base): the merged model's
    weights and config, and every other file of ``base`` (tokenizer, processor, chat template)
    as it is. Float32 on the CPU."""
    import shutil

    import torch
    from peft import PeftModel

    out_dir = Path(out_dir)
    model = _load_base(str(base), torch.float32, torch.device("cpu"))
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in Path(base).iterdir():
        if path.is_file() and not WEIGHT_FILES.fullmatch(path.name):
            shutil.copy2(path, out_dir / path.name)
    model.save_pretrained(out_dir)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rewardmodel.ml.finetune --config cfg.json --examples examples.jsonl``
    (also under ``torchrun`` / ``accelerate launch``); prints one JSON line per step and the
    result on rank 0."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rewardmodel.ml.finetune")
    parser.add_argument("--config", required=True, help="FinetuneConfig as a JSON file")
    parser.add_argument("--examples", required=True, help="JSONL written by save_examples()")
    args = parser.parse_args(argv)
    config = FinetuneConfig.from_dict(json.loads(Path(args.config).read_text()))
    examples = ExampleFile(args.examples)
    rank = int(os.environ.get("RANK", "0"))

    def report(step: int, metrics: dict) -> None:
        print(json.dumps({"step": step, **metrics}), flush=True)

    result = finetune(config, examples, on_step=report)
    if rank == 0:
        print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
