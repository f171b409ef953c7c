"""EditScore on the tiny random Qwen2.5-VL: load, score, batch, Avg@K, LoRA adapters.

The tiny model is built once (``rewardmodel.ml.tiny``) and loaded through the same
``from_pretrained`` path a real checkpoint takes. A random model writes garbage, so its items are
unscored with the raw answers kept: the tests check exactly that, never a score.
"""

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from rewardmodel.ml import model as model_module
from rewardmodel.ml.images import cap_pixels
from rewardmodel.ml.model import EditScore, ScoreItem
from rewardmodel.ml.scoring import SCORE_KEYS
from rewardmodel.ml.tiny import build_tiny_editscore, load_processor

RESULT_KEYS = {*SCORE_KEYS, "raw", "error", "passes"}
FAST = dict(max_new_tokens=12)


# torch on one thread and the tiny model: shared fixtures in tests/conftest.py
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def scorer(tiny_dir):
    return EditScore.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def sensitive_scorer(tiny_dir):
    """The tiny model with its weights jolted: its answers then depend on the inputs (the
    freshly initialised one writes nearly the same text whatever it is shown)."""
    loaded = EditScore.from_pretrained(tiny_dir)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in loaded.model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.3)
    return loaded


def png(size, seed=0) -> bytes:
    """Gaussian noise from a seeded generator (Pillow's effect_noise draws from the C library's
    global rand(): its pixels change with what ran before and with Pillow's version)."""
    width, height = size
    pixels = np.random.default_rng(seed).normal(128, 40 + seed, (height, width, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def items():
    return [
        ScoreItem("make the sky red", png((64, 48)), png((64, 48), 1)),
        ScoreItem("add a small dog on the left of the road", png((120, 90), 2), png((60, 80), 3)),
        ScoreItem("remove the car", png((300, 300), 4), Image.new("RGB", (33, 200), "blue")),
    ]


def answer(scores, reasoning="ok") -> str:
    return json.dumps({"reasoning": reasoning, "score": scores})


# ---------------------------------------------------------------- building and loading


def test_tiny_folder_loads_like_a_checkpoint(tiny_dir, scorer):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= (
        names
    )
    assert type(scorer.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert scorer.model.dtype == torch.float32 and scorer.device.type == "cpu"
    processor = load_processor(tiny_dir)
    tokenizer = processor.tokenizer
    assert tokenizer.tokenize("a<|image_pad|>b") == ["a", "<|image_pad|>", "b"]
    assert tokenizer.padding_side == "left"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # The reference prompt set on Qwen2.5-VL: the package's own template (pinned against the
    # package itself in test_reference_parity.py).
    text = scorer._chat_text("Judge.", 2)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<img1>: <|vision_start|><|image_pad|><|vision_end|>"
        "<img2>: <|vision_start|><|image_pad|><|vision_end|>Judge.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tiny_build_is_deterministic(tiny_dir, tmp_path):
    again = build_tiny_editscore(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes()


def test_a_wider_judge_with_a_tokenizer_fitted_to_its_prompts(tiny_dir, tmp_path, items):
    """The demo's judge: width 64, a tokenizer trained on the judge's own prompts and answers
    (less than half the tokens a prompt takes with the built-in corpus), loaded and scored
    through the same code path."""
    from rewardmodel.ml.prompts import NEUTRAL_REASONING_PQ, pq_prompt, sc_prompt, target_json
    from rewardmodel.ml.tiny import judge_corpus

    instructions = ["make the red square blue", "remove the green circle"]
    folder = build_tiny_editscore(tmp_path / "wide", width=64, vocab_size=1000,
                                  corpus=judge_corpus(instructions))  # fmt: skip
    fitted, builtin = load_processor(folder).tokenizer, load_processor(tiny_dir).tokenizer
    for text in (sc_prompt("make the red square blue"), pq_prompt(),
                 target_json(NEUTRAL_REASONING_PQ, [12, 25])):  # fmt: skip
        assert len(fitted(text).input_ids) < 0.6 * len(builtin(text).input_ids)
    config = json.loads((folder / "config.json").read_text())["text_config"]
    assert (config["hidden_size"], config["num_attention_heads"]) == (64, 8)
    [result] = EditScore.from_pretrained(folder).score(items[:1], k=1)
    assert len(result["raw"]) >= 2  # it answered the SC and the PQ prompt
    with pytest.raises(ValueError, match="width must be a multiple of 8"):
        build_tiny_editscore(tmp_path / "odd", width=20)


def test_images_are_sized_as_the_reference_and_capped_only_when_asked(tiny_dir, scorer):
    big = Image.new("RGB", (2000, 1000))
    capped = cap_pixels(big, 512 * 512)
    assert capped.width * capped.height <= 512 * 512
    assert abs(capped.width / capped.height - 2) < 0.01
    assert cap_pixels(Image.new("RGB", (10, 10)), 512 * 512).size == (10, 10)
    # Default: no cap; qwen_vl_utils' sizing (multiples of 28, aspect kept), as the reference.
    assert scorer.max_pixels is None
    item = ScoreItem("x", png((1200, 800)), png((50, 70)))
    (_, sc_images), (_, pq_images) = scorer._requests(item)
    assert [im.size for im in sc_images] == [(1204, 812), (56, 56)]  # 70 rounds half to even
    assert pq_images[0].size == (56, 56)  # the PQ prompt sees the same edit as the SC prompt
    # The edit is used as given: the benchmark resizes it to the source first (as the
    # reference's evaluation does), the RL reward does not (as its reward server).
    capped_scorer = EditScore(
        scorer.model, scorer.processor, device=scorer.device, max_pixels=512 * 512
    )
    (_, sc_images), _ = capped_scorer._requests(item)
    assert sc_images[0].width * sc_images[0].height <= 512 * 512
    assert sc_images[0].width % 28 == 0 and sc_images[0].height % 28 == 0


# ---------------------------------------------------------------- scoring the random model


def test_random_model_leaves_items_unscored_with_raw_answers(scorer, items):
    results = scorer.score(items, retries=1, **FAST)
    assert len(results) == 3
    for result in results:
        assert set(result) == RESULT_KEYS
        assert all(result[key] is None for key in SCORE_KEYS)
        assert result["passes"] == 0
        assert result["error"].startswith("1 of 1 passes failed: pass 1: SC answer unreadable")
        # SC and PQ answers, each generated once and retried once: all kept.
        assert len(result["raw"]) == 4
        assert all(isinstance(text, str) for text in result["raw"])


def test_unreadable_image_is_unscored_without_sinking_the_batch(scorer, items):
    results = scorer.score([ScoreItem("x", b"not an image", png((20, 20))), items[0]], **FAST)
    assert results[0]["error"].startswith("bad input: not a readable image")
    assert results[0]["raw"] == [] and results[0]["passes"] == 0
    assert results[1]["error"].startswith("1 of 1 passes failed")


def test_batched_and_one_at_a_time_greedy_answers_are_identical(sensitive_scorer, items):
    greedy = dict(retries=0, max_new_tokens=16, decoding="greedy")
    batched = sensitive_scorer.score(items, batch_size=16, **greedy)
    alone = [sensitive_scorer.score([it], **greedy)[0] for it in items]
    assert [r["raw"] for r in batched] == [r["raw"] for r in alone]
    # The answers really depend on the inputs (so the padding really had to be right).
    assert len({r["raw"][0] for r in batched}) == 3


def test_sampling_passes_are_seeded_42_plus_i(scorer, items, monkeypatch):
    seeds = []
    real_seed = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda s: seeds.append(s) or real_seed(s))
    first = scorer.score(items[:2], k=2, retries=0, **FAST)
    assert seeds == [42, 42, 43, 43]  # pass i: SC generate, then PQ generate, each seeded
    second = scorer.score(items[:2], k=2, retries=0, **FAST)
    assert [r["raw"] for r in first] == [r["raw"] for r in second]
    assert first[0]["error"].startswith("2 of 2 passes failed")
    assert len(first[0]["raw"]) == 4  # 2 passes x (SC, PQ)
    seeds.clear()
    scorer.score(items[:1], k=1, retries=0, **FAST)
    assert seeds == [42, 42]  # K = 1 samples too, seeded 42, as the reference
    seeds.clear()
    scorer.score(items[:1], k=1, retries=0, decoding="greedy", **FAST)
    assert seeds == []  # greedy, asked for: no seed needed


# ---------------------------------------------------------------- Avg@K with scripted answers


def scripted(scorer, monkeypatch, script):
    """Replace generation by ``script(kind, instruction_or_None, sample, seed) -> text``."""
    calls = []

    def fake_generate(requests, *, sample, seed, **options):
        calls.append((len(requests), sample, seed))
        texts = []
        for text, images in requests:
            kind = "SC" if len(images) == 2 else "PQ"
            instruction = text.split("Editing instruction: ")[-1].split("<|im_end|>")[0].strip()
            texts.append(script(kind, instruction if kind == "SC" else None, sample, seed))
        return texts

    monkeypatch.setattr(scorer, "_generate", fake_generate)
    return calls


def test_avg_at_k_averages_the_passes(scorer, items, monkeypatch):
    answers = {
        ("SC", 42): [20, 10],
        ("PQ", 42): [25, 15],
        ("SC", 43): [10, 20],
        ("PQ", 43): [5, 25],
    }
    calls = scripted(scorer, monkeypatch, lambda kind, _, s, seed: answer(answers[kind, seed]))
    results = scorer.score(items[:2], k=2, batch_size=16)
    # One SC and one PQ generate call per pass, both items in each, sampled with seed 42 + i.
    assert calls == [(2, True, 42), (2, True, 42), (2, True, 43), (2, True, 43)]
    # Pass 1: PF 8, C 4, PQ 6, O sqrt(24); pass 2: PF 4, C 8, PQ 2, O sqrt(8).
    for result in results:
        assert result["error"] is None and result["passes"] == 2
        assert result["prompt_following"] == pytest.approx(6.0)
        assert result["consistency"] == pytest.approx(6.0)
        assert result["perceptual_quality"] == pytest.approx(4.0)
        assert result["overall"] == pytest.approx((math.sqrt(24) + math.sqrt(8)) / 2)
        assert len(result["raw"]) == 4


def test_k1_samples_greedy_is_explicit_and_batches_split_by_batch_size(scorer, items, monkeypatch):
    calls = scripted(scorer, monkeypatch, lambda *_: answer([25, 25]))
    results = scorer.score(items, k=1, batch_size=2)
    assert calls == [(2, True, 42), (2, True, 42), (1, True, 42), (1, True, 42)]
    calls.clear()
    scorer.score(items, k=1, batch_size=2, decoding="greedy")
    assert calls == [(2, False, None), (2, False, None), (1, False, None), (1, False, None)]
    assert [r["overall"] for r in results] == [10.0, 10.0, 10.0]
    assert all(r["passes"] == 1 and r["error"] is None for r in results)


def test_unreadable_answer_is_retried_by_sampling_then_scored(scorer, items, monkeypatch):
    def script(kind, instruction, sample, seed):
        if kind == "SC" and instruction == "remove the car" and seed == 43:
            return "I cannot tell."  # pass 2's first answer for item 3
        return answer([15, 15])

    calls = scripted(scorer, monkeypatch, script)
    results = scorer.score(items, k=2, retries=2)
    # The retry of pass i (0-based) r-th time is seeded 42 + r * K + i: here 42 + 2 + 1.
    assert (1, True, 45) in calls
    assert results[2]["error"] is None and results[2]["passes"] == 2
    assert results[2]["raw"].count("I cannot tell.") == 1 and len(results[2]["raw"]) == 5


def test_item_with_a_failed_pass_is_unscored(scorer, items, monkeypatch):
    def script(kind, instruction, sample, seed):
        if kind == "PQ" and seed in (43, 45, 47):  # pass 2 and both of its retries
            return '{"reasoning": "bad", "score": [30, 2]}'  # out of range: never clipped
        return answer([15, 15])

    calls = scripted(scorer, monkeypatch, script)
    results = scorer.score(items[:1], k=2, retries=2)
    assert [c[2] for c in calls] == [42, 42, 43, 43, 45, 47]
    result = results[0]
    assert all(result[key] is None for key in SCORE_KEYS)
    assert result["passes"] == 1
    assert result["error"].startswith("1 of 2 passes failed: pass 2: PQ answer unreadable")
    assert len(result["raw"]) == 2 + 4  # pass 1: SC, PQ; pass 2: SC, PQ x 3


# ---------------------------------------------------------------- adapters and arguments


def test_lora_adapter_changes_the_answers(tiny_dir, scorer, items, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # zero at init: the adapter would change nothing
                param.copy_(torch.randn(param.shape, generator=gen))
    peft_model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()

    adapted = EditScore.from_pretrained(tiny_dir, adapter=tmp_path / "adapter")
    assert not hasattr(adapted.model, "peft_config")  # merged into the base once
    with_adapter = adapted.score(items[:2], retries=0, **FAST)
    without = scorer.score(items[:2], retries=0, **FAST)
    assert [r["raw"] for r in with_adapter] != [r["raw"] for r in without]
    unmerged = EditScore.from_pretrained(
        tiny_dir, adapter=tmp_path / "adapter", merge_adapter=False
    )
    assert hasattr(unmerged.model, "peft_config")


def test_arguments_are_checked_before_loading(tiny_dir):
    with pytest.raises(ValueError, match="dtype"):
        EditScore.from_pretrained(tiny_dir, dtype="int8")
    with pytest.raises(ValueError, match="device"):
        EditScore.from_pretrained(tiny_dir, device="tpu")
    with pytest.raises(ValueError, match="device"):
        EditScore.from_pretrained(tiny_dir, device="not a device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            EditScore.from_pretrained(tiny_dir, device="cuda")
    with pytest.raises(ImportError, match="backend='vllm' needs the vllm"):
        EditScore.from_pretrained(tiny_dir, backend="vllm")  # no vllm on this machine
    with pytest.raises(ValueError, match="prompt_set"):
        EditScore.from_pretrained(tiny_dir, prompt_set="mine")
    with pytest.raises(ValueError, match="backend"):
        EditScore.from_pretrained(tiny_dir, backend="onnx")
    with pytest.raises(ValueError, match="score_range"):
        EditScore.from_pretrained(tiny_dir, score_range=0)


def test_dtype_argument_is_applied(tiny_dir, items):
    loaded = EditScore.from_pretrained(tiny_dir, dtype="bf16", score_range=10)
    assert loaded.model.dtype == torch.bfloat16
    assert "0 to 10" in loaded._chat_text(model_module.prompts.pq_prompt(10), 1)
    assert loaded.score(items[:1], retries=0, max_new_tokens=4)[0]["passes"] == 0


@pytest.mark.parametrize(
    "options",
    [{"k": 0}, {"batch_size": 0}, {"retries": -1}, {"temperature": 0}, {"top_p": 1.5},
     {"max_new_tokens": 0}, {"seed": "42"}, {"decoding": "beam"}, {"parse_policy": "zero"}],
)  # fmt: skip
def test_score_arguments_are_checked(scorer, items, options):
    with pytest.raises(ValueError):
        scorer.score(items[:1], **options)


def test_no_items_no_work(scorer):
    assert scorer.score([]) == []
