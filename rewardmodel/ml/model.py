"""The EditScore reward model: a Qwen2.5-VL (or Qwen3-VL) that writes a short reasoning and
integer scores for an edit, run with Hugging Face transformers (``docs/method.md`` section 3).

Loading::

    scorer = EditScore.from_pretrained("Qwen/Qwen2.5-VL-7B-Instruct",          # or a local folder
                                       adapter="/models/EditScore-7B",        # peft LoRA folder
                                       device="cuda", dtype="bfloat16")
    scorer = EditScore.from_pretrained("/models/editscore-7b-merged")        # merged checkpoint

``base`` is anything ``AutoModelForImageTextToText.from_pretrained`` accepts (a Qwen2.5-VL or
Qwen3-VL checkpoint folder, a hub id when the machine is online, a merged EditScore checkpoint,
or a :func:`rewardmodel.ml.tiny.build_tiny_editscore` folder of either family); the processor is
loaded from the same place by :func:`rewardmodel.ml.tiny.load_processor` (``AutoProcessor``, or
the family's processor class made torchvision-free). Nothing here depends on the family: the
chat text always comes from the processor's own chat template, so each family gets its own
layout (what differs is tabled in :data:`rewardmodel.ml.tiny.FAMILIES`). ``adapter`` is a peft LoRA folder (the released EditScore adapters, or one written
by :mod:`rewardmodel.ml.finetune`): it is loaded with ``PeftModel.from_pretrained`` and merged
into the base once (``merge_adapter=False`` keeps it separate).

Scoring (:meth:`EditScore.score`), for every item and pass:

* the SC prompt with images [source, edited resized to the source's size] and the PQ prompt
  with [edited], laid out by :func:`rewardmodel.ml.prompts.qwen_messages` (the system turn,
  then the labelled images before the prompt text) and the processor's chat template; every image is converted to RGB and shrunk (aspect kept) to at most
  ``max_pixels`` pixels before the processor sees it;
* batched generation: left padding, the SC requests of up to ``batch_size`` items in one
  ``generate`` call, their PQ requests in another;
* ``k == 1``: greedy decoding. ``k > 1`` (Avg@K): sampling with temperature / top-p / top-k,
  ``torch.manual_seed(seed + i)`` before each ``generate`` call of pass i (so batched sampling
  draws differ from one-at-a-time draws: the random stream is shared by the batch);
* each answer is read by :func:`rewardmodel.ml.parsing.parse_score_output`; an unreadable one
  is generated again, by sampling, up to ``retries`` times (retry r of pass i is seeded with
  ``seed + r * k + i``, a seed no pass uses); after that the pass failed;
* a pass's dimensions come from :func:`rewardmodel.ml.scoring.aggregate`; an item is scored when
  every one of its K passes is, and its dimensions are the Avg@K means
  (:func:`rewardmodel.ml.scoring.average_passes`). An item with a failed pass is unscored: its
  four dimensions are None and ``error`` says "n of K passes failed: ...". Scores are never made
  up; the raw answers are always kept.

Each result is a dict: ``prompt_following``, ``consistency``, ``perceptual_quality``, ``overall``
(0-10 floats, or None when unscored), ``raw`` (every generated answer of the item, in generation
order: per pass the SC answer and its retries, then the PQ answer and its retries), ``error``
(None, or why the item is unscored) and ``passes`` (how many passes produced scores).

Backends: transformers only. vLLM (GPU only, adapter merged once and cached) is not implemented:
``backend="vllm"`` raises NotImplementedError. For throughput, run one server
(:mod:`rewardmodel.ml.server`) per GPU and spread requests with :mod:`rewardmodel.ml.client`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from rewardmodel.ml import prompts
from rewardmodel.ml.parsing import parse_score_output
from rewardmodel.ml.scoring import SCORE_KEYS, aggregate, average_passes
from rewardmodel.ml.tiny import load_processor

DEFAULT_MAX_PIXELS = 512 * 512
BACKENDS = ("transformers",)
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


@dataclass
class ScoreItem:
    """One candidate: the instruction, the source image and the edited image (encoded bytes in
    any format Pillow reads, or a PIL image)."""

    instruction: str
    source: bytes | Image.Image
    edited: bytes | Image.Image


def open_image(image: bytes | Image.Image) -> Image.Image:
    """An RGB PIL image from encoded bytes or a PIL image; ValueError when unreadable."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if not isinstance(image, bytes | bytearray | memoryview):
        raise ValueError(f"an image must be bytes or a PIL image, not {type(image).__name__}")
    try:
        with Image.open(io.BytesIO(bytes(image))) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from exc


def cap_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` shrunk (aspect ratio kept) so that width * height <= max_pixels."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
    while size[0] * size[1] > max_pixels:  # floating-point slack
        size = (max(1, size[0] - 1), max(1, size[1] - 1))
    return image.resize(size, Image.Resampling.BICUBIC)


def _resolve_device(device: str):
    import torch

    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' asked for, but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device type {dev.type!r} (cpu, cuda or mps)")
    return dev


def _resolve_dtype(dtype: str | None, device):
    import torch

    if dtype is None:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if not isinstance(dtype, str) or dtype.lower() not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(set(_DTYPES))} or None, got {dtype!r}")
    return getattr(torch, _DTYPES[dtype.lower()])


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class EditScore:
    """A loaded EditScore model; build it with :meth:`from_pretrained`."""

    def __init__(
        self,
        model,
        processor,
        *,
        device,
        score_range: int = prompts.SCORE_RANGE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.model = model
        self.processor = processor
        self.device = device
        self.score_range = _positive_int("score_range", score_range)
        self.max_pixels = _positive_int("max_pixels", max_pixels, 28 * 28)
        self.processor.tokenizer.padding_side = "left"
        self._pq_text = self._chat_text(prompts.pq_prompt(self.score_range), 1)

    @classmethod
    def from_pretrained(
        cls,
        base: str | Path,
        adapter: str | Path | None = None,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        score_range: int = prompts.SCORE_RANGE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        backend: str = "transformers",
        merge_adapter: bool = True,
    ) -> EditScore:
        """Load the base VLM (``dtype`` None: bfloat16 on CUDA, float16 where bf16 is missing,
        float32 on CPU) and, if given, the LoRA ``adapter`` on top; the processor comes from
        ``base``. Arguments are checked before anything heavy is loaded."""
        if backend == "vllm":
            raise NotImplementedError(
                "the vLLM backend is not implemented: use backend='transformers' (batched "
                "generate) and scale out with one rewardmodel.ml.server per GPU"
            )
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} (or 'vllm'), got {backend!r}")
        _positive_int("score_range", score_range)
        _positive_int("max_pixels", max_pixels, 28 * 28)
        dev = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, dev)

        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(
            str(base),
            dtype=torch_dtype,
            device_map=str(dev) if dev.type == "cuda" else None,
        )
        if dev.type != "cuda":
            model = model.to(dev)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
            if merge_adapter:
                model = model.merge_and_unload()
        model.eval()
        processor = load_processor(base)
        return cls(model, processor, device=dev, score_range=score_range, max_pixels=max_pixels)

    # ------------------------------------------------------------------ inputs

    def _chat_text(self, prompt: str, n_images: int) -> str:
        messages = prompts.qwen_messages(prompt, n_images)
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def _requests(self, item: ScoreItem) -> tuple[tuple[str, list], tuple[str, list]]:
        """((SC text, [source, edited]), (PQ text, [edited])) for one item."""
        if not isinstance(item.instruction, str):
            raise ValueError("the instruction must be a string")
        source = cap_pixels(open_image(item.source), self.max_pixels)
        edited = open_image(item.edited)
        edited_sc = edited if edited.size == source.size else edited.resize(source.size)
        edited_pq = cap_pixels(edited, self.max_pixels)
        sc_text = self._chat_text(prompts.sc_prompt(item.instruction, self.score_range), 2)
        return (sc_text, [source, edited_sc]), (self._pq_text, [edited_pq])

    # ------------------------------------------------------------------ generation

    def _generate(
        self,
        requests: Sequence[tuple[str, list]],
        *,
        sample: bool,
        seed: int | None,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
    ) -> list[str]:
        """One batched ``generate`` call (left padding) for (chat text, images) requests;
        ``torch.manual_seed(seed)`` right before it when a seed is given. Returns the answers."""
        import torch

        inputs = self.processor(
            text=[text for text, _ in requests],
            images=[image for _, images in requests for image in images],
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        tokenizer = self.processor.tokenizer
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": sample}
        if sample:
            options.update(temperature=temperature, top_p=top_p, top_k=top_k)
        else:  # silence the checkpoint's sampling defaults (e.g. Qwen's temperature 0.1)
            options.update(temperature=None, top_p=None, top_k=None)
        if getattr(self.model.generation_config, "pad_token_id", None) is None:
            options["pad_token_id"] = tokenizer.pad_token_id
        if seed is not None:
            torch.manual_seed(seed)
        out = self.model.generate(**inputs, **options)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(
            new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return [t.strip() for t in texts]

    def _answer(
        self,
        requests: Sequence[tuple[str, list]],
        raws: list[list[str]],
        *,
        k: int,
        pass_index: int,
        seed: int,
        retries: int,
        gen: dict,
    ) -> list[list[float] | str]:
        """Scores for each request (or the parse error of its last attempt): the pass's
        generation, then sampled retries of the unreadable answers. Appends every answer to
        ``raws[j]``."""
        results: list[list[float] | str] = ["not generated"] * len(requests)
        todo = list(range(len(requests)))
        for attempt in range(retries + 1):
            if not todo:
                break
            if attempt == 0:
                sample, attempt_seed = k > 1, (seed + pass_index if k > 1 else None)
            else:
                sample, attempt_seed = True, seed + attempt * k + pass_index
            texts = self._generate(
                [requests[j] for j in todo], sample=sample, seed=attempt_seed, **gen
            )
            failed = []
            for j, text in zip(todo, texts, strict=True):
                raws[j].append(text)
                try:
                    _, scores = parse_score_output(text, expected=2, score_range=self.score_range)
                except ValueError as exc:
                    results[j] = str(exc)
                    failed.append(j)
                else:
                    results[j] = scores
            todo = failed
        return results

    def score(
        self,
        items: Sequence[ScoreItem],
        *,
        k: int = 1,
        temperature: float = 0.7,
        top_p: float = 0.9,
        top_k: int = 20,
        max_new_tokens: int = 512,
        seed: int = 42,
        batch_size: int = 16,
        retries: int = 2,
    ) -> list[dict]:
        """Score each item (see the module docstring); one result dict per item, in order."""
        import torch

        _positive_int("k", k)
        _positive_int("max_new_tokens", max_new_tokens)
        _positive_int("batch_size", batch_size)
        _positive_int("retries", retries, 0)
        _positive_int("top_k", top_k)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not (isinstance(temperature, int | float) and temperature > 0):
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not (isinstance(top_p, int | float) and 0 < top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
        results: list[dict] = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                results += self._score_batch(
                    items[start : start + batch_size], k=k, seed=seed, retries=retries, gen=gen
                )
        return results

    def _score_batch(
        self, items: Sequence[ScoreItem], *, k: int, seed: int, retries: int, gen: dict
    ) -> list[dict]:
        results: list[dict | None] = [None] * len(items)
        prepared: list[tuple[int, tuple, tuple]] = []
        for n, item in enumerate(items):
            try:
                sc_request, pq_request = self._requests(item)
            except ValueError as exc:
                results[n] = _unscored([], f"bad input: {exc}", 0)
            else:
                prepared.append((n, sc_request, pq_request))
        if prepared:
            raws: list[list[str]] = [[] for _ in prepared]
            passes: list[list[dict | str]] = [[] for _ in prepared]
            for i in range(k):
                sc_raws: list[list[str]] = [[] for _ in prepared]
                pq_raws: list[list[str]] = [[] for _ in prepared]
                common = dict(k=k, pass_index=i, seed=seed, retries=retries, gen=gen)
                sc = self._answer([p[1] for p in prepared], sc_raws, **common)
                pq = self._answer([p[2] for p in prepared], pq_raws, **common)
                for j in range(len(prepared)):
                    raws[j] += sc_raws[j] + pq_raws[j]
                    if isinstance(sc[j], str):
                        passes[j].append(f"pass {i + 1}: SC answer unreadable ({sc[j]})")
                    elif isinstance(pq[j], str):
                        passes[j].append(f"pass {i + 1}: PQ answer unreadable ({pq[j]})")
                    else:
                        passes[j].append(aggregate(sc[j], pq[j], self.score_range))
            for j, (n, _, _) in enumerate(prepared):
                ok = [p for p in passes[j] if isinstance(p, dict)]
                failed = [p for p in passes[j] if isinstance(p, str)]
                if failed:
                    error = f"{len(failed)} of {k} passes failed: " + "; ".join(failed)
                    results[n] = _unscored(raws[j], error, len(ok))
                else:
                    averaged = average_passes(ok)
                    results[n] = {
                        **{key: averaged[key] for key in SCORE_KEYS},
                        "raw": raws[j],
                        "error": None,
                        "passes": len(ok),
                    }
        return results  # type: ignore[return-value]


def _unscored(raw: list[str], error: str, passes: int) -> dict:
    return {**dict.fromkeys(SCORE_KEYS), "raw": raw, "error": error, "passes": passes}
