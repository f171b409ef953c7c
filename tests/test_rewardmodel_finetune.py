"""LoRA fine-tuning of EditScore (rewardmodel.ml.finetune) on the tiny random Qwen2.5-VL.

The key test teaches the tiny model the JSON answers of two candidates, then scores them through
``EditScore.from_pretrained(base, adapter=...)``: train -> save -> load -> generate -> parse ->
aggregate, all on real code. The others check the config, the targets, the loss mask, the
schedule and checkpoint / resume. No database.
"""

import io
import json
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from rewardmodel.ml import finetune as ft
from rewardmodel.ml import prompts
from rewardmodel.ml.finetune import Example, FinetuneConfig, examples_for_candidate
from rewardmodel.ml.parsing import parse_score_output
from rewardmodel.ml.scoring import aggregate
from rewardmodel.ml.tiny import load_processor

# torch on one thread and the tiny model: shared fixtures in tests/conftest.py
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return load_processor(tiny_dir)


def noise_png(seed: int, size=(56, 56)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def flat_png(size=(84, 84), colour=(128, 128, 128)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


# Two candidates with distinct taught scores (SC: [success, over-editing], PQ: [naturalness,
# artifacts], integers in [0, 25]).
CANDIDATES = [
    dict(
        instruction="make the sky red",
        source=noise_png(1),
        edited=noise_png(2),
        sc_scores=(20, 18),
        pq_scores=(22, 19),
    ),
    dict(
        instruction="add a dog",
        source=noise_png(3, (84, 84)),
        edited=flat_png(),
        sc_scores=(3, 7),
        pq_scores=(11, 5),
    ),
]


def candidate_examples(reasoning: str | None = "Ok.") -> list[Example]:
    examples = []
    for c in CANDIDATES:
        examples += examples_for_candidate(
            c["instruction"],
            c["source"],
            c["edited"],
            sc_scores=c["sc_scores"],
            pq_scores=c["pq_scores"],
            reasoning_sc=reasoning,
            reasoning_pq=reasoning,
        )
    return examples


# ---------------------------------------------------------------- config


def test_config_defaults_are_the_papers_and_round_trip_through_json():
    config = FinetuneConfig(base_model="base", output_dir="out")
    assert (config.lora_r, config.lora_alpha, config.target_modules) == (32, 64, "all-linear")
    assert (config.learning_rate, config.lr_schedule, config.warmup_ratio) == (1e-4, "cosine", 0.1)
    assert (config.epochs, config.max_pixels, config.dtype) == (3, 512 * 512, "auto")
    data = json.loads(json.dumps(config.to_dict()))
    assert FinetuneConfig.from_dict(data) == config
    listed = FinetuneConfig(base_model="b", output_dir="o", target_modules=("q_proj", "v_proj"))
    assert listed.to_dict()["target_modules"] == ["q_proj", "v_proj"]
    assert FinetuneConfig.from_dict(json.loads(json.dumps(listed.to_dict()))) == listed


@pytest.mark.parametrize(
    "field, value",
    [
        ("base_model", ""),
        ("output_dir", None),
        ("adapter_init", ""),
        ("lora_r", 0),
        ("lora_r", 8.0),
        ("lora_r", True),
        ("lora_alpha", 0),
        ("lora_dropout", 1.0),
        ("target_modules", []),
        ("target_modules", [""]),
        ("target_modules", 3),
        ("learning_rate", 0),
        ("learning_rate", float("nan")),
        ("learning_rate", "1e-4"),
        ("lr_schedule", "step"),
        ("warmup_ratio", -0.1),
        ("warmup_ratio", 1.0),
        ("epochs", 0),
        ("batch_size", 0),
        ("grad_accum", 0),
        ("max_steps", 0),
        ("max_pixels", 100),
        ("dtype", "float16"),
        ("checkpoint_every", -1),
        ("seed", -1),
        ("max_length", 8),
        ("max_grad_norm", -1.0),
        ("keep_checkpoints", -1),
        ("gradient_checkpointing", "yes"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        FinetuneConfig(**{"base_model": "b", "output_dir": "o", field: value})


def test_config_from_dict_rejects_unknown_and_missing_fields():
    with pytest.raises(ValueError, match="unknown field.*lora_rank"):
        FinetuneConfig.from_dict({"base_model": "b", "output_dir": "o", "lora_rank": 8})
    with pytest.raises(ValueError, match="missing field.*output_dir"):
        FinetuneConfig.from_dict({"base_model": "b"})


# ---------------------------------------------------------------- training targets


def test_examples_for_candidate_builds_the_sc_and_pq_conversations():
    source, edited = noise_png(1), noise_png(2)
    sc, pq = examples_for_candidate(
        "make the sky red",
        source,
        edited,
        sc_scores=(20, 18),
        pq_scores=(22, 19),
        reasoning_sc="The sky is red.",
    )
    assert sc.images == [source, edited] and sc.resize_to_first
    assert pq.images == [edited] and not pq.resize_to_first
    assert sc.prompt == prompts.sc_prompt("make the sky red", 25)
    assert pq.prompt == prompts.pq_prompt(25)
    assert sc.target == '{"reasoning": "The sky is red.", "score": [20, 18]}'  # reasoning first
    assert parse_score_output(sc.target) == ("The sky is red.", [20.0, 18.0])
    reasoning, scores = parse_score_output(pq.target)
    assert reasoning == ft.NEUTRAL_REASONING_PQ and scores == [22.0, 19.0]
    assert list(json.loads(pq.target)) == ["reasoning", "score"]

    sc10, _ = examples_for_candidate(
        "x", source, edited, sc_scores=(10, 0), pq_scores=(0, 10), score_range=10
    )
    assert sc10.prompt == prompts.sc_prompt("x", 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sc_scores=(26, 3)), "sc_scores"),
        (dict(pq_scores=(3,)), "pq_scores"),
        (dict(pq_scores=(3, -1)), "pq_scores"),
        (dict(sc_scores=(2.5, 3)), "sc_scores"),
        (dict(sc_scores=(True, 3)), "sc_scores"),
        (dict(reasoning_sc=""), "reasoning_sc"),
        (dict(score_range=0), "score_range"),
    ],
)
def test_examples_for_candidate_rejects_bad_targets(kwargs, match):
    args = dict(sc_scores=(1, 2), pq_scores=(3, 4)) | kwargs
    with pytest.raises(ValueError, match=match):
        examples_for_candidate("x", noise_png(1), noise_png(2), **args)


def test_example_checks_its_fields():
    with pytest.raises(ValueError, match="images"):
        Example(images=["not bytes"], prompt="p", target="t")
    with pytest.raises(ValueError, match="target"):
        Example(images=[], prompt="p", target=" ")


def test_tiny_tokenizer_encodes_every_target_exactly(processor):
    tokenizer = processor.tokenizer
    for example in candidate_examples(None) + candidate_examples("Ok."):
        ids = tokenizer(example.target, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == example.target
    digits = json.dumps({"reasoning": "r", "score": list(range(26))})
    assert tokenizer.decode(tokenizer(digits, add_special_tokens=False)["input_ids"]) == digits


# ---------------------------------------------------------------- inputs and loss mask


def test_loss_is_masked_to_the_answer_tokens(processor, tiny_dir):
    encoder = ft.Encoder(processor, max_pixels=512 * 512, max_length=2048)
    sc, pq = candidate_examples()[:2]
    item = encoder.encode(sc)
    # The prompt part is exactly what generation starts from (EditScore's chat text + images).
    chat = processor.apply_chat_template(
        prompts.qwen_messages(sc.prompt, 2), tokenize=False, add_generation_prompt=True
    )
    images = ft.prepare_images(sc, 512 * 512)
    expected = processor(text=[chat], images=images, return_tensors="pt")
    n_prompt = expected["input_ids"].shape[1]
    assert item["input_ids"][:n_prompt].tolist() == expected["input_ids"][0].tolist()
    assert (item["labels"][:n_prompt] == ft.IGNORE_INDEX).all()
    answer = item["labels"][n_prompt:]
    assert answer.tolist() == item["input_ids"][n_prompt:].tolist()
    assert processor.tokenizer.decode(answer) == sc.target + "<|im_end|>"
    assert torch.equal(item["per_image"]["pixel_values"], expected["pixel_values"])
    # mm_token_type_ids place the images' 3-D rotary positions: kept, and 0 over the answer.
    types = item["per_token"]["mm_token_type_ids"]
    assert types[:n_prompt].tolist() == expected["mm_token_type_ids"][0].tolist()
    assert types[n_prompt:].sum() == 0 and types[:n_prompt].sum() > 0

    other = encoder.encode(pq)
    batch = encoder.collate([item, other])
    short = len(other["input_ids"])
    assert short < len(item["input_ids"])
    assert (batch["labels"][1, short:] == ft.IGNORE_INDEX).all()  # padding
    assert (batch["attention_mask"][1, short:] == 0).all()
    assert batch["image_grid_thw"].shape[0] == 3  # SC's two images, then PQ's one
    n_answer = int((batch["labels"] != ft.IGNORE_INDEX).sum())
    assert n_answer == sum(len(processor.tokenizer(e.target)["input_ids"]) + 1 for e in (sc, pq))

    # The loss is the cross-entropy of the answer tokens only: changing the model's prediction
    # of a prompt token changes nothing.
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_dir))
    with torch.no_grad():
        loss = ft.answer_loss_sum(model, batch)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits[:, :-1]
        targets = batch["labels"][:, 1:]
        keep = targets != ft.IGNORE_INDEX
        manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)


def test_max_length_cuts_the_answer_and_refuses_a_prompt_that_does_not_fit(processor):
    sc = candidate_examples()[0]
    full = ft.Encoder(processor, max_pixels=512 * 512, max_length=4096).encode(sc)
    n_prompt = int((full["labels"] == ft.IGNORE_INDEX).sum())
    cut = ft.Encoder(processor, max_pixels=512 * 512, max_length=n_prompt + 3).encode(sc)
    assert cut["truncated"] and len(cut["input_ids"]) == n_prompt + 3
    with pytest.raises(ValueError, match="max_length"):
        ft.Encoder(processor, max_pixels=512 * 512, max_length=n_prompt).encode(sc)


def test_images_are_prepared_as_scoring_prepares_them():
    big, small = noise_png(5, (1024, 768)), noise_png(6, (200, 100))
    sc = Example(images=[big, small], prompt="p", target="t", resize_to_first=True)
    first, second = ft.prepare_images(sc, 512 * 512)
    # Capped at 512x512 pixels (the paper's training budget), then sized by qwen_vl_utils as
    # the reference sizes every image: the nearest multiples of 28 px.
    assert first.size == second.size == (588, 448)
    assert first.size[0] / first.size[1] == pytest.approx(1024 / 768, rel=0.02)
    pq = Example(images=[small], prompt="p", target="t")
    assert ft.prepare_images(pq, 512 * 512)[0].size == (196, 112)
    # Qwen3-VL's reference hands the processor the images as they are.
    assert ft.prepare_images(pq, 512 * 512, "qwen3_vl")[0].size == (200, 100)


# ---------------------------------------------------------------- schedule and data order


def test_schedule_warms_up_then_decays_along_a_cosine():
    config = FinetuneConfig(base_model="b", output_dir="o", warmup_ratio=0.1, max_steps=100)
    factors = [ft.lr_factor(s, 100, config) for s in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert 0 < factors[-1] < 0.01
    linear = FinetuneConfig(base_model="b", output_dir="o", lr_schedule="linear", warmup_ratio=0)
    assert ft.lr_factor(50, 100, linear) == pytest.approx(0.5)


def test_each_epoch_visits_every_example_once_in_a_seeded_order():
    config = FinetuneConfig(base_model="b", output_dir="o", batch_size=2, grad_accum=3, epochs=2)
    assert ft.total_steps(13, config) == 2 * 3  # 7 micro-batches -> 3 steps per epoch
    for epoch in range(2):
        seen = [
            i
            for step in range(3 * epoch, 3 * epoch + 3)
            for batch in ft.step_batches(step, 13, config)
            for i in batch
        ]
        assert sorted(seen) == list(range(13))
    assert ft.step_batches(0, 13, config) != ft.step_batches(3, 13, config)  # reshuffled
    assert ft.step_batches(4, 13, config) == ft.step_batches(4, 13, config)
    assert ft.total_steps(13, FinetuneConfig(base_model="b", output_dir="o", max_steps=5)) == 5


def test_all_linear_adapts_the_language_model_only(tiny_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_dir))
    targets = ft.resolve_target_modules("all-linear", base)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=targets))
    adapted = {name for name, module in model.named_modules() if hasattr(module, "lora_A")}
    layers = base.config.text_config.num_hidden_layers
    assert len(adapted) == 7 * layers  # q, k, v, o, gate, up, down of each decoder layer
    assert all(".language_model.layers." in name for name in adapted)
    assert not any("visual" in name or "lm_head" in name for name in adapted)

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_dir))
    extra = ft.resolve_target_modules(["all-linear", "lm_head"], base)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=extra))
    adapted = {name for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert len(adapted) == 7 * layers + 1 and any(n.endswith("lm_head") for n in adapted)


# ---------------------------------------------------------------- checkpoint and resume


def _resume_config(tiny_dir, out, **overrides):
    return FinetuneConfig(
        **{
            "base_model": str(tiny_dir),
            "output_dir": str(out),
            "lora_r": 4,
            "lora_alpha": 8,
            "lora_dropout": 0.2,  # random: the RNG state must come back on resume
            "learning_rate": 5e-3,
            "batch_size": 1,
            "grad_accum": 2,
            "max_steps": 6,
            "checkpoint_every": 2,
            "keep_checkpoints": 2,
            "seed": 3,
        }
        | overrides
    )


def _adapter_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_a_stopped_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(
    tiny_dir, tmp_path
):
    examples = candidate_examples()
    straight_log = []
    straight = ft.finetune(
        _resume_config(tiny_dir, tmp_path / "straight"),
        examples,
        on_step=lambda step, m: straight_log.append((step, m)),
    )
    assert straight["steps"] == 6 and not straight["stopped"] and straight["resumed_from"] == 0
    assert [s for s, _ in straight_log] == [1, 2, 3, 4, 5, 6]
    assert set(straight_log[0][1]) == {"loss", "lr", "grad_norm", "epoch", "total_steps"}
    assert straight_log[0][1]["total_steps"] == 6
    assert straight_log[0][1]["epoch"] == pytest.approx(0.5)  # 4 examples = 2 steps of 2
    lrs = [m["lr"] for _, m in straight_log]
    assert lrs[0] == pytest.approx(5e-3) and lrs[-1] < lrs[1]  # 1 warmup step, then cosine
    assert straight["final_loss"] == pytest.approx(straight_log[-1][1]["loss"])

    out = tmp_path / "stopped"
    config = _resume_config(tiny_dir, out)
    first_log = []
    first = ft.finetune(
        config,
        examples,
        on_step=lambda step, m: first_log.append((step, m)),
        should_stop=lambda: len(first_log) >= 3,
    )
    assert first["stopped"] and first["steps"] == 3 and first["adapter_path"] is None
    assert first["checkpoint"] == str(out / "checkpoint-3")
    assert [s for s, _ in ft.checkpoints(out)] == [2, 3]  # keep_checkpoints=2
    assert not (out / "adapter").exists()
    state = json.loads((out / "checkpoint-3" / "state.json").read_text())
    assert state["step"] == 3 and (out / "checkpoint-3" / "optimizer.safetensors").is_file()
    written = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert written <= {".json", ".safetensors", ".md"}  # no pickle

    second_log = []
    second = ft.finetune(config, examples, on_step=lambda step, m: second_log.append((step, m)))
    assert second["resumed_from"] == 3 and second["steps"] == 6 and not second["stopped"]
    assert [s for s, _ in second_log] == [4, 5, 6]
    resumed_losses = [m["loss"] for _, m in first_log + second_log]
    straight_losses = [m["loss"] for _, m in straight_log]
    assert resumed_losses == pytest.approx(straight_losses, rel=1e-5, abs=1e-6)
    assert [m["lr"] for _, m in second_log] == pytest.approx(lrs[3:])

    a = _adapter_tensors(tmp_path / "straight" / "adapter")
    b = _adapter_tensors(out / "adapter")
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4

    # Finished: a third call returns the stored result; another config for this folder is refused.
    again = ft.finetune(config, examples)
    assert again["steps"] == 6 and again["adapter_path"] == str(out / "adapter")
    with pytest.raises(ValueError, match="another config"):
        ft.finetune(_resume_config(tiny_dir, out, learning_rate=1e-3), examples)
    with pytest.raises(ValueError, match="another config"):
        ft.finetune(config, examples[:3])


def test_a_checkpoint_refuses_another_config(tiny_dir, tmp_path):
    examples = candidate_examples()[:2]
    config = _resume_config(tiny_dir, tmp_path / "run", grad_accum=1, max_steps=4)
    steps = []
    result = ft.finetune(
        config, examples, on_step=lambda s, m: steps.append(s), should_stop=lambda: bool(steps)
    )
    assert result["stopped"] and result["steps"] == 1 and steps == [1]
    longer = _resume_config(tiny_dir, tmp_path / "run", grad_accum=1, max_steps=5)
    with pytest.raises(ValueError, match="another config or example count"):
        ft.finetune(longer, examples)
    with pytest.raises(ValueError, match="another config or example count"):
        ft.finetune(config, examples[:1])
    # checkpoint_every only changes how often it is saved: that resumes.
    rarer = _resume_config(
        tiny_dir, tmp_path / "run", grad_accum=1, max_steps=4, checkpoint_every=0
    )
    resumed = ft.finetune(rarer, examples)
    assert resumed["resumed_from"] == 1 and resumed["steps"] == 4


def test_examples_file_and_command_line(tiny_dir, tmp_path, capsys):
    examples = candidate_examples()[:2]
    path = ft.save_examples(examples, tmp_path / "data" / "examples.jsonl")
    loaded = ft.ExampleFile(path)
    assert len(loaded) == 2 and loaded[0] == examples[0] and loaded[1] == examples[1]
    assert loaded[0].resize_to_first and not loaded[1].resize_to_first
    config = _resume_config(tiny_dir, tmp_path / "cli", max_steps=2, grad_accum=1)
    (tmp_path / "cfg.json").write_text(json.dumps(config.to_dict()))
    assert ft.main(["--config", str(tmp_path / "cfg.json"), "--examples", str(path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["step"] for line in lines[:-1]] == [1, 2]
    assert lines[-1]["result"]["adapter_path"] == str(tmp_path / "cli" / "adapter")
    assert (tmp_path / "cli" / "adapter" / "adapter_model.safetensors").is_file()


# ---------------------------------------------------------------- the key test


def test_fine_tuned_tiny_model_scores_the_taught_candidates(tiny_dir, tmp_path):
    """Teach the tiny model the JSON answers of two candidates (SC and PQ each, distinct
    scores) until greedy generation reproduces them, then score the candidates through
    EditScore with the saved adapter and get the taught scores back."""
    from rewardmodel.ml.model import EditScore, ScoreItem

    examples = candidate_examples("Ok.")
    items = [ScoreItem(c["instruction"], c["source"], c["edited"]) for c in CANDIDATES]
    expected_raw = [[examples[2 * i].target, examples[2 * i + 1].target] for i in range(2)]
    # The tiny model's width is 16 and its random output head maps a normalised state to
    # near-uniform logits: the LoRA also adapts the head and the embeddings (explicit target
    # modules), with a high learning rate and one example per step. Training is deterministic
    # on CPU; a second, shorter round continuing the adapter (adapter_init) is the safety net.
    first = FinetuneConfig(
        base_model=str(tiny_dir),
        output_dir=str(tmp_path / "round1"),
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=["all-linear", "lm_head", "embed_tokens"],
        learning_rate=1e-2,
        warmup_ratio=0.1,
        epochs=80,
        batch_size=1,
        grad_accum=1,
        checkpoint_every=0,
    )
    started = time.monotonic()
    log = []
    again = {
        "output_dir": str(tmp_path / "round2"),
        "adapter_init": str(tmp_path / "round1" / "adapter"),
        "learning_rate": 3e-3,
        "epochs": 40,
    }
    for config in (first, FinetuneConfig.from_dict(first.to_dict() | again)):
        result = ft.finetune(config, examples, on_step=lambda step, m: log.append(m["loss"]))
        assert result["steps"] == 4 * config.epochs and result["examples"] == 4
        scorer = EditScore.from_pretrained(tiny_dir, adapter=result["adapter_path"])
        scored = scorer.score(items, k=1, max_new_tokens=40)  # k=1: greedy, both items batched
        if [s["raw"] for s in scored] == expected_raw:
            break
    seconds = time.monotonic() - started
    print(
        f"fine-tune + score: {seconds:.1f} s, {len(log)} steps, loss {log[0]:.2f} -> {log[-1]:.4f}"
    )
    assert [s["raw"] for s in scored] == expected_raw  # greedy generation = the taught JSON
    tail = sum(log[-8:]) / 8  # the mean of the last steps: one step's loss is noisy
    print("loss tail", [round(x, 4) for x in log[-8:]])
    assert tail < 0.05 < log[0]
    for c, s in zip(CANDIDATES, scored, strict=True):
        assert s["error"] is None and s["passes"] == 1
        taught = aggregate(c["sc_scores"], c["pq_scores"], 25)
        for key, value in taught.items():
            assert s[key] == pytest.approx(value)
    assert scored[0]["prompt_following"] == pytest.approx(20 / 2.5)
    assert scored[1]["overall"] == pytest.approx(math.sqrt(min(3, 7) / 2.5 * 5 / 2.5))


def test_an_exception_from_should_stop_keeps_a_checkpoint(tiny_dir, tmp_path):
    """A job cancelled from inside should_stop (say) keeps what it trained."""
    examples = candidate_examples()[:2]
    config = _resume_config(tiny_dir, tmp_path / "run", grad_accum=1, max_steps=3)
    steps = []

    def cancelled():
        if len(steps) == 2:
            raise KeyboardInterrupt("cancelled")
        return False

    with pytest.raises(KeyboardInterrupt):
        ft.finetune(config, examples, on_step=lambda s, m: steps.append(s), should_stop=cancelled)
    assert [s for s, _ in ft.checkpoints(tmp_path / "run")] == [2]
    result = ft.finetune(config, examples, on_step=lambda s, m: steps.append(s))
    assert result["resumed_from"] == 2 and steps == [1, 2, 3]


def test_adapter_init_continues_an_existing_adapter(tiny_dir, tmp_path):
    examples = candidate_examples()[:2]
    first = ft.finetune(
        _resume_config(tiny_dir, tmp_path / "a", grad_accum=1, max_steps=2), examples
    )
    config = _resume_config(
        tiny_dir,
        tmp_path / "b",
        grad_accum=1,
        max_steps=1,
        lora_r=8,
        lora_dropout=0.0,
        adapter_init=first["adapter_path"],
    )
    second = ft.finetune(config, examples)
    adapter_config = json.loads((tmp_path / "b" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4  # the continued adapter's own shape, not lora_r=8
    a = _adapter_tensors(tmp_path / "a" / "adapter")
    b = _adapter_tensors(tmp_path / "b" / "adapter")
    assert a.keys() == b.keys()
    moved = [float((b[k] - a[k]).abs().max()) for k in a]
    assert 0 < max(moved) < 0.1  # one more small step from where the first run ended
    assert second["steps"] == 1
