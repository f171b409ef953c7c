"""A tiny random Qwen2.5-VL saved like a real checkpoint, for tests, benchmarks and the CPU demo.

No machine here reaches a model hub, so tests *build* the reward model's architecture at toy size
(``docs/tiny-models.md``), save it with ``save_pretrained`` and load it back through the very code
path a real checkpoint takes (:func:`load_processor`, ``from_pretrained(folder)``). The folder
holds what a Qwen2.5-VL-Instruct checkpoint holds:

* ``config.json``, ``generation_config.json``, ``model.safetensors``: a 41k-parameter
  ``Qwen2_5_VLForConditionalGeneration`` (2 text layers of width 16, a 2-block vision tower);
* ``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``: a byte-level BPE
  ``Qwen2Tokenizer`` (about 400 tokens, trained in well under a second on a built-in corpus)
  with the Qwen special tokens registered as special, ``<|im_end|>`` as EOS and
  ``<|endoftext|>`` as padding, and the Qwen2.5-VL chat template;
* ``preprocessor_config.json``: a ``Qwen2VLImageProcessor`` with a small pixel budget (4 to 64
  merged 28x28 patches, so at most 64 image tokens an image).

torch and transformers are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_pad|>",
)
TINY_VOCAB_SIZE = 400
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 64

# The Qwen2.5-VL-Instruct chat template (as shipped with the released checkpoints): a default
# system turn, <|im_start|>role ... <|im_end|>, each image as <|vision_start|><|image_pad|>
# <|vision_end|> (the processor expands <|image_pad|> to one token per merged patch).
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "the image edit instruction score reasoning success over editing naturalness artifacts "
    "original edited version scene object person background colour color red blue green white "
    "black sky car dog cat tree house add remove replace change make turn into style photo "
    "painting light shadow lighting distance blur noise watermark face hand hands looks natural "
    "unnatural perfectly completely minimal effective follows does not follow judge rules give "
    "two scores from to means is are a an of and or in on with as it its this that first second "
    "professional digital artist AI-generated images privacy concern answer single JSON object "
    "nothing else write keep short sentence list integers editing perceptual quality"
).split()


def tiny_corpus(seed: int = 0) -> list[str]:
    """About 100 short sentences and JSON answers, enough for a compact byte-level BPE that
    encodes the judge's prompts and answers in few tokens."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))) for _ in range(70)]
    for _ in range(30):
        reasoning = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 9)))
        a, b = rng.randint(0, 25), rng.randint(0, 25)
        lines.append(json.dumps({"reasoning": reasoning.capitalize() + ".", "score": [a, b]}))
    lines += [f"<img{i}>: " for i in (1, 2)]
    lines += ["You are a helpful assistant.", "system user assistant", "0 1 2 3 4 5 6 7 8 9 10 25"]
    return lines


def build_tiny_tokenizer(corpus: Iterable[str] | None = None, *, seed: int = 0):
    """A ``Qwen2Tokenizer`` (byte-level BPE) trained offline, Qwen special tokens registered."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus) if corpus is not None else tiny_corpus(seed), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    # Without this, "<|image_pad|>" is split into bytes and the VLM finds no image tokens.
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        special_tokens=True,
    )
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.padding_side = "left"
    tokenizer.chat_template = QWEN25VL_CHAT_TEMPLATE
    return tokenizer


def build_tiny_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    return Qwen2VLImageProcessorPil(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)


def build_tiny_model(tokenizer, *, seed: int = 0):
    """A random ``Qwen2_5_VLForConditionalGeneration`` sized by ``docs/tiny-models.md``."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    pad, eos = ids["<|endoftext|>"], ids["<|im_end|>"]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            rope_theta=1e6,
            bos_token_id=pad,
            eos_token_id=eos,
            pad_token_id=pad,
        ),
        vision_config=dict(
            depth=2, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16
        ),
        vocab_size=len(tokenizer),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad
    )
    return model.eval()


@functools.cache
def torchvision_free_processor_class():
    """``Qwen2_5_VLProcessor`` that builds without a video processor.

    The stock class cannot be built without torchvision: it resolves its (unused here) video
    processor class and checks every argument's class. This subclass skips the check and accepts
    ``video_processor=None``; images and text work unchanged.
    """
    from transformers import Qwen2_5_VLProcessor

    class TorchvisionFreeQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

    return TorchvisionFreeQwen2_5_VLProcessor


def _saved_chat_template(path: Path) -> str | None:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    as_json = path / "chat_template.json"
    if as_json.is_file():
        return json.loads(as_json.read_text()).get("chat_template")
    return None


def load_processor(path: str | Path):
    """The processor of a Qwen2.5-VL checkpoint folder (or hub id, when online).

    ``AutoProcessor`` when it works (torchvision installed); else the torchvision-free subclass
    built from the saved tokenizer, image processor (PIL backend) and chat template. The same
    loader serves real checkpoints and :func:`build_tiny_editscore` folders. Left padding is set
    for batched generation.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(str(path))
    except ImportError:  # torchvision missing: the video processor cannot be built
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        image_processor = AutoImageProcessor.from_pretrained(str(path))
        template = tokenizer.chat_template
        if template is None and Path(path).is_dir():
            template = _saved_chat_template(Path(path))
        processor = torchvision_free_processor_class()(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=template
        )
    if getattr(processor, "chat_template", None) is None:
        template = getattr(processor.tokenizer, "chat_template", None)
        if template is None and Path(path).is_dir():
            template = _saved_chat_template(Path(path))
        processor.chat_template = template
    processor.tokenizer.padding_side = "left"
    return processor


def build_tiny_editscore(out_dir: Path, *, seed: int = 0) -> Path:
    """Build the tiny tokenizer, image processor and Qwen2.5-VL and save them in ``out_dir``
    (created if needed) as a checkpoint folder that ``EditScore.from_pretrained(out_dir)``,
    :func:`load_processor` and ``Qwen2_5_VLForConditionalGeneration.from_pretrained`` load.
    Deterministic for a given ``seed``. Returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(seed=seed)
    image_processor = build_tiny_image_processor()
    model = build_tiny_model(tokenizer, seed=seed)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # also writes chat_template.jinja
    image_processor.save_pretrained(out_dir)
    # What a released checkpoint's preprocessor_config.json says; AutoProcessor reads it.
    config_path = out_dir / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config["processor_class"] = "Qwen2_5_VLProcessor"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out_dir
