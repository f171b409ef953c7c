"""The tiny EditWorld editor: hashed instruction features, packing, save/load, supervised flow
matching that learns to recolour, the RL policy interface (LoRA, reference, adapters,
load_policy) and one Flow-GRPO round on it. Self-contained: solid-colour pairs made here, no
other editworld module."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from editworld.editor import (
    EDITOR_LORA_TARGETS,
    EditWorldEditorPolicy,
    TinyEditor,
    build_cached_editor,
    edit,
    embed_instructions,
    flow_matching_loss,
    instruction_features,
    pack,
    train_editor,
    unpack,
)
from rltraining.ml.policies import POLICIES, Condition, load_policy
from rltraining.ml.rewards import colour_reward
from rltraining.ml.trainer import Prompt, RLConfig, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}
SIZE = 16
# A CPU-second model: 16 px images, narrow channels, a few hundred small steps.
SMALL = dict(size=SIZE, channels=(16, 32, 32), text_buckets=128, steps=250, batch_size=16,
             lr=4e-3, warmup=20)  # fmt: skip


def colour_pairs(n, seed=0, size=SIZE):
    """Solid random-colour sources, "make it red" / "make it blue", solid recoloured targets."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        name = "red" if i % 2 == 0 else "blue"
        source = Image.new("RGB", (size, size), tuple(rng.randint(0, 255) for _ in range(3)))
        pairs.append((f"make it {name}", source, Image.new("RGB", (size, size), COLOURS[name])))
    return pairs


def distance(a, b):
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, torch_one_thread):
    """(folder, losses) of an editor trained on colour pairs, through the cache."""
    losses = []
    cache = tmp_path_factory.mktemp("editor-cache")
    folder = build_cached_editor(cache, lambda: colour_pairs(64), data_key="colours-64",
                                 on_step=lambda step, loss: losses.append(loss), **SMALL)  # fmt: skip
    return folder, losses


def policy_from(folder, seed=0, **kw):
    torch.manual_seed(seed)  # the LoRA A matrices
    return EditWorldEditorPolicy.from_pretrained(folder, **kw)


# ------------------------------------------------------------------ pieces


def test_instruction_features_are_deterministic_and_order_aware():
    a = instruction_features("Make the red square blue", 512)
    assert a == instruction_features("make the red square  blue!", 512)  # case, punctuation
    assert abs(sum(w for _, w in a) - 1) < 1e-9 and all(0 <= b < 512 for b, _ in a)
    assert a != instruction_features("make the blue square red", 512)  # bigrams differ
    bags = embed_instructions(["make it red", "", "make it red"], 64)
    assert bags.shape == (3, 64) and torch.equal(bags[0], bags[2])
    assert float(bags[1].abs().sum()) == 0.0


def test_packing_is_flux_layout_and_invertible():
    from diffusers import FluxPipeline

    images = torch.randn(2, 3, 8, 16)
    packed = pack(images)
    assert packed.shape == (2, 4 * 8, 12)
    assert torch.equal(packed, FluxPipeline._pack_latents(images, 2, 3, 8, 16))
    assert torch.equal(unpack(packed, 8, 16), images)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TinyEditor(size=SIZE, channels=(8, 16, 16), text_buckets=32).eval()
    with torch.no_grad():  # non-zero output head: the outputs depend on every weight
        model.out.weight.normal_(0, 0.1)
    folder = model.save_pretrained(tmp_path / "editor")
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == (
        "EditWorldEditor"
    )
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    loaded = TinyEditor.from_pretrained(folder)
    assert loaded.config == model.config
    x, source = torch.randn(3, 3, SIZE, SIZE), torch.randn(3, 3, SIZE, SIZE)
    text, sigma = model.embed_text(["make it red", "make it blue", "x"]), torch.rand(3)
    with torch.no_grad():
        assert torch.equal(loaded(x, sigma, source, text), model(x, sigma, source, text))


def test_default_size_is_a_few_hundred_thousand_parameters():
    count = TinyEditor().num_parameters()
    assert 200_000 <= count <= 600_000, count


# ------------------------------------------------------------------ supervised training


def test_training_lowers_the_loss_and_the_sampler_moves_towards_the_target(trained):
    folder, losses = trained
    assert len(losses) == SMALL["steps"]
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last < 0.3 * first, (first, last)
    held_out = colour_pairs(8, seed=1)
    model = TinyEditor.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = TinyEditor(size=SIZE, channels=SMALL["channels"], text_buckets=128).eval()
    assert flow_matching_loss(model, held_out) < 0.5 * flow_matching_loss(untrained, held_out)
    # the policy's ODE sampler (packed latents, its sigmas, its velocity) lands near the target
    policy = policy_from(folder)
    cond = policy.encode([p[0] for p in held_out], [p[1] for p in held_out])
    images = policy.decode(policy.sample(cond, 10, generator=torch.Generator().manual_seed(0)))
    for (instruction, source, target), image in zip(held_out, images, strict=True):
        assert image.size == (SIZE, SIZE)
        assert distance(image, target) < 0.5 * distance(source, target), instruction
    # the same through the model-level helper
    two = held_out[:2]
    quick = edit(model, [p[0] for p in two], [p[1] for p in two], num_steps=10)
    assert all(distance(i, p[2]) < distance(p[1], p[2]) for i, p in zip(quick, two, strict=True))


def test_the_cache_trains_once_per_config(trained, tmp_path):
    folder, _ = trained
    calls = []
    again = build_cached_editor(folder.parent, lambda: calls.append(1) or colour_pairs(64),
                                data_key="colours-64", **SMALL)  # fmt: skip
    assert again == folder and calls == []  # neither trained nor asked for its data
    log = json.loads((folder / "training.json").read_text())
    assert log["pairs"] == 64 and len(log["losses"]) == SMALL["steps"] and log["seconds"] > 0
    # without a data key the data are hashed: other data or options, another folder
    tiny = {**SMALL, "steps": 2}
    a = build_cached_editor(tmp_path, lambda: colour_pairs(4), **tiny)
    assert build_cached_editor(tmp_path, lambda: colour_pairs(4), **tiny) == a
    assert build_cached_editor(tmp_path, lambda: colour_pairs(4, seed=5), **tiny) != a
    assert build_cached_editor(tmp_path, lambda: colour_pairs(4), **{**tiny, "lr": 1e-3}) != a


def test_training_accepts_editworld_tuples_and_is_deterministic():
    pairs = colour_pairs(4)
    five = [(str(i), ins, "color_alter", s, t) for i, (ins, s, t) in enumerate(pairs)]
    options = {**SMALL, "steps": 3}
    a, b = train_editor(pairs, **options), train_editor(five, **options)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


# ------------------------------------------------------------------ the RL policy


def test_load_policy_finds_the_editor_lazily(trained, monkeypatch):
    folder, _ = trained
    monkeypatch.delitem(POLICIES, "EditWorldEditor")  # as in a process that never imported it
    policy = load_policy(folder, lora_r=2)
    assert isinstance(policy, EditWorldEditorPolicy)
    assert (policy.height, policy.width, policy.image_seq_len) == (SIZE, SIZE, 64)


def test_the_policy_interface(trained):
    folder, _ = trained
    policy = policy_from(folder)
    sigmas = policy.sigmas(4)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (5,)
    assert sigmas.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    cond = policy.encode("make it red", Image.new("RGB", (40, 24), (0, 200, 0)))
    assert isinstance(cond, Condition) and len(cond) == 1
    group = cond.repeat(3)
    assert len(group) == 3 and group.source.shape == (3, 3, SIZE, SIZE)
    x = policy.initial_latents(3, torch.Generator().manual_seed(1))
    assert x.shape == (3, 64, 12) and x.dtype == torch.float32
    assert torch.equal(x, policy.initial_latents(3, torch.Generator().manual_seed(1)))
    v = policy.velocity(x, 0.75, group, step_index=1, num_steps=4)
    assert v.shape == x.shape and v.dtype == torch.float32
    with torch.no_grad():  # v = noise - x_data of the network, packed
        direct = policy.transformer(unpack(x, SIZE, SIZE), torch.full((3,), 0.75),
                                    group.source, group.text)  # fmt: skip
    torch.testing.assert_close(v, pack(direct))
    images = policy.decode(x)
    assert len(images) == 3 and images[0].size == (SIZE, SIZE) and images[0].mode == "RGB"
    assert policy.trainable_parameters() == []
    with pytest.raises(ValueError, match="no classifier-free guidance"):
        policy.guidance = "dual"
    policy.guidance = "none"


def test_lora_starts_at_the_reference_and_is_all_that_trains(trained, tmp_path):
    folder, _ = trained
    policy = policy_from(folder, lora_r=4)
    params = policy.trainable_parameters()
    named = dict(policy.transformer.named_parameters())
    lora = {n for n, p in named.items() if p.requires_grad}
    assert params and lora and all("lora_" in n for n in lora)
    assert {id(p) for p in params} == {id(named[n]) for n in lora}
    assert all(n.split(".")[-4] in EDITOR_LORA_TARGETS for n in lora)  # conv1.lora_A.default.weight
    cond = policy.encode(["make it blue"] * 2, [Image.new("RGB", (SIZE, SIZE), (200, 200, 0))] * 2)
    x = policy.initial_latents(2, torch.Generator().manual_seed(0))

    def velocity():
        return policy.velocity(x, 0.5, cond, step_index=2, num_steps=4).detach()

    base = velocity()
    with policy.reference():
        assert torch.equal(velocity(), base)  # zero-initialised: exactly the base model
    with torch.no_grad():
        for name, p in policy.transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    moved = velocity()
    assert not torch.allclose(moved, base)
    with policy.reference():
        assert torch.equal(velocity(), base)
    assert all(p.requires_grad for p in params)  # reference() gives them back
    # adapters: saved, loaded into a fresh policy (config from the file), the same velocity
    policy.save_adapter(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "pytorch_lora_weights.safetensors").is_file()
    fresh = policy_from(folder, seed=1, adapter=tmp_path / "adapter")
    torch.testing.assert_close(
        fresh.velocity(x, 0.5, cond, step_index=2, num_steps=4).detach(), moved
    )
    assert policy.adapter_state_dict().keys() == fresh.adapter_state_dict().keys()
    other = policy_from(folder, seed=2, lora_r=4)
    other.load_adapter(tmp_path / "adapter" / "pytorch_lora_weights.safetensors")
    torch.testing.assert_close(
        other.velocity(x, 0.5, cond, step_index=2, num_steps=4).detach(), moved
    )


def test_one_flow_grpo_round(trained):
    folder, _ = trained
    policy = policy_from(folder, lora_r=4)
    before = {k: v.clone() for k, v in policy.adapter_state_dict().items()}
    rng = random.Random(3)
    prompts = [Prompt("make it red", Image.new("RGB", (SIZE, SIZE), tuple(rng.randint(0, 255)
                      for _ in range(3))), str(i), "color_alter") for i in range(4)]  # fmt: skip
    seen = []
    config = RLConfig(rounds=1, updates_per_round=1, num_steps=4, group_size=4,
                      prompts_per_round=2, micro_batch=2, train_steps=2, eval_every=100)  # fmt: skip
    result = train(config, policy, colour_reward((255, 0, 0)), prompts,
                   on_step=lambda r, m: seen.append(m))  # fmt: skip
    [metrics] = seen
    assert result["final_round"] == 1
    assert metrics["ratio_min"] == 1.0 and metrics["ratio_max"] == 1.0
    assert metrics["kl"] == 0.0 and metrics["clip_fraction"] == 0.0
    assert metrics["grad_norm"] > 0 and metrics["updates"] == 1.0
    assert 0.5 < metrics["reward_mean"] < 1  # the trained editor already paints it reddish
    after = policy.adapter_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
