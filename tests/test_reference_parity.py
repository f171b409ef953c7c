"""Reference parity: EditLoop's EditScore against the authors' own code, run here.

The reference is the installed ``editscore`` 0.2 package (``make install`` puts it there with
``--no-deps``), never a copy. Its ``mllm_tools/qwen25vl.py`` imports ``qwen_vl_utils``, which
imports torchvision, which cannot load beside this CPU torch; so the module is executed from its
installed file with ``qwen_vl_utils`` standing in as the package's own functions compiled from
*its* installed file (rewardmodel.ml.reference), and two CPU adaptations: the processor comes from
``rewardmodel.ml.tiny.load_processor`` (AutoProcessor needs torchvision for a video processor the
images never use) and ``BatchFeature.to("cuda")`` stays on the CPU. Everything else that runs is
the authors' code: ``EditScore.__init__`` (prompts), ``evaluate`` / ``batch_evaluate`` (passes,
seeds, retries, parsing, fallbacks, aggregation), ``Qwen25VL.prepare_input`` / ``inference``.

What is compared: the exact text handed to the processor, the processor's inputs (token ids,
pixels, image grids), the sampled answers and the final scores of a tiny Qwen2.5-VL, and, on a
corpus of messy answers, the parse policies against the two reference code paths.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import random
import sys
import types

import pytest
from PIL import Image

from rewardmodel.ml import answers, prompts, reference
from rewardmodel.ml.model import EditScore, ScoreItem
from rewardmodel.ml.parsing import parse_score_output

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# sha256 of the SC chat text for "make the sky red" and of the PQ chat text, R = 25, as
# editscore 0.2 builds them: a change of one character in the package or in our assembly fails.
SC_TEXT_SHA256 = "ce321ea071269d5ac5b3b680e00dba5d685b6a253ddc4c6aa9c5373a75621f68"
PQ_TEXT_SHA256 = "0fa1f98a200e2b04d6001dcba674147c7da630161ced6e526cd11881233a137a"


@pytest.fixture(scope="module")
def reference_backbone():
    """The reference's ``editscore.mllm_tools.qwen25vl`` module, executed from its installed
    file (see the module docstring), registered so that ``editscore.EditScore`` finds it."""
    from transformers import BatchFeature

    from rewardmodel.ml.tiny import load_processor

    with pytest.MonkeyPatch.context() as patch:
        vision = types.ModuleType("qwen_vl_utils")
        vision.process_vision_info = reference._vision_module()["process_vision_info"]
        patch.setitem(sys.modules, "qwen_vl_utils", vision)
        path = reference._source_file("editscore.mllm_tools.qwen25vl")
        spec = importlib.util.spec_from_file_location("editscore.mllm_tools.qwen25vl", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.AutoProcessor = types.SimpleNamespace(from_pretrained=load_processor)
        patch.setitem(sys.modules, "editscore.mllm_tools.qwen25vl", module)
        patch.setattr(BatchFeature, "to", lambda self, *args, **kwargs: self)
        yield module


def reference_scorer(model_dir, **options):
    """``editscore.EditScore`` with the Qwen2.5-VL backbone on ``model_dir``, recording every
    answer its backbone generates."""
    scorer = reference.package().EditScore(
        backbone="qwen25vl", model_name_or_path=str(model_dir), **options
    )
    scorer.generated = []
    inference = scorer.model.inference

    def recorded(inputs, seed=None):
        scorer.generated.append(inference(inputs, seed))
        return scorer.generated[-1]

    scorer.model.inference = recorded
    return scorer


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def images():
    # Non-square; with these, the tiny model's answers take the reference's give-up path.
    source = Image.effect_noise((120, 90), 40).convert("RGB")
    edited = Image.effect_noise((120, 90), 60).convert("RGB")
    return source, edited


# ---------------------------------------------------------------- the text handed to the processor


@pytest.mark.parametrize("score_range", [25, 10])
def test_chat_text_is_the_references_byte_for_byte(reference_backbone, tiny_dir, score_range):
    ours = EditScore.from_pretrained(tiny_dir, score_range=score_range)
    package = reference.package().EditScore(backbone="none", score_range=score_range)
    instruction = "add 10 red balloons"  # a "10" in the instruction stays as written
    expected_sc = reference_backbone.apply_chat_template(
        package.SC_prompt.replace("<instruction>", instruction), num_images=2
    )
    expected_pq = reference_backbone.apply_chat_template(package.PQ_prompt, num_images=1)
    item = ScoreItem(instruction, png(Image.new("RGB", (64, 64))), png(Image.new("RGB", (64, 64))))
    (sc_text, _), (pq_text, _) = ours._requests(item)
    assert sc_text == expected_sc
    assert pq_text == expected_pq
    assert expected_sc.startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<img1>: <|vision_start|><|image_pad|><|vision_end|>"
        "<img2>: <|vision_start|><|image_pad|><|vision_end|>You are a professional digital artist."
    )
    assert f"From scale 0 to {score_range}:" in expected_sc and "add 10 red balloons" in sc_text


def test_the_pinned_reference_text_has_not_moved(tiny_dir):
    """The texts of editscore 0.2, pinned by hash: a one-character change in the installed
    package (an upgrade) or in how EditLoop assembles them fails here."""
    ours = EditScore.from_pretrained(tiny_dir)
    sc = ours._chat_text(prompts.sc_prompt("make the sky red"), 2)
    pq = ours._chat_text(prompts.pq_prompt(), 1)
    assert hashlib.sha256(sc.encode()).hexdigest() == SC_TEXT_SHA256
    assert hashlib.sha256(pq.encode()).hexdigest() == PQ_TEXT_SHA256
    one_off = sc.replace("overediting", "over-editing", 1)
    assert hashlib.sha256(one_off.encode()).hexdigest() != SC_TEXT_SHA256


# ---------------------------------------------------------------- the processor's inputs


def test_processor_inputs_are_the_references(reference_backbone, tiny_dir, images):
    source, edited = images
    rgba = Image.effect_noise((70, 130), 30).convert("RGBA")  # transparency, portrait
    ref = reference_scorer(tiny_dir)
    ours = EditScore.from_pretrained(tiny_dir)
    for pair in ([source, edited], [source, rgba]):
        instruction = "make the sky red"
        expected = ref.model.prepare_input(
            pair, ref.SC_prompt.replace("<instruction>", instruction)
        )
        (text, sized), (pq_text, pq_sized) = ours._requests(ScoreItem(instruction, *map(png, pair)))
        got = ours.processor(text=[text], images=sized, padding=True, return_tensors="pt")
        for key in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
            assert got[key].shape == expected[key].shape, key
            assert (got[key] == expected[key]).all(), key
        # The sizes reaching the processor are process_vision_info's.
        by_reference = reference.vision_inputs(pair)
        assert [im.size for im in sized] == [im.size for im in by_reference]
        assert all(a.tobytes() == b.tobytes() for a, b in zip(sized, by_reference, strict=True))
        pq_expected = ref.model.prepare_input(pair[-1], ref.PQ_prompt)
        pq_got = ours.processor(text=[pq_text], images=pq_sized, return_tensors="pt")
        assert (pq_got["input_ids"] == pq_expected["input_ids"]).all()
        assert (pq_got["pixel_values"] == pq_expected["pixel_values"]).all()


# ---------------------------------------------------------------- generation and scores


def test_sampled_answers_and_scores_are_the_reference_evaluates(
    reference_backbone, tiny_dir, images
):
    """EditScore.evaluate with K = 2 (seed 42 + pass, two tries, then its seeded guess) against
    EditLoop's reference parse policy, one request at a time, in the reference's bfloat16. The
    random tiny model writes unreadable answers, so this also pins the give-up path."""
    source, edited = images
    ref = reference_scorer(tiny_dir, num_pass=2)
    expected = ref.evaluate([source, edited], "make the sky red")
    ours = EditScore.from_pretrained(tiny_dir, dtype="bf16")
    (got,) = ours.score(
        [ScoreItem("make the sky red", png(source), png(edited))],
        k=2, batch_size=1, parse_policy="reference",
    )  # fmt: skip
    for key in ("prompt_following", "consistency", "perceptual_quality", "overall"):
        assert got[key] == pytest.approx(float(expected[key]), abs=1e-12), key
    # Per pass the reference generates SC, PQ, then both again (the same seed, so the same
    # texts) while either is unreadable, and a third pair it ignores when it gives up.
    # EditLoop asks again only for the unreadable answer: its raw answers are the reference's
    # SC tries up to the first readable one, then the PQ tries likewise.
    generated, raw = ref.generated, list(got["raw"])
    assert len(generated) == 12
    for i in range(2):
        sc1, pq1, sc2, pq2 = generated[6 * i : 6 * i + 4]
        assert (sc1, pq1) == (sc2, pq2)  # same seed, same answer: the retry cannot help
        expected_raw = []
        for first, second in ((sc1, sc2), (pq1, pq2)):
            readable = reference.parse_answer(first, give_up=False, score_range=25) is not False
            expected_raw += [first] if readable else [first, second]
        assert raw[: len(expected_raw)] == expected_raw
        del raw[: len(expected_raw)]
    assert raw == []
    assert expected["PQ_reasoning"].startswith("guess_if_cannot_parse")


def test_k1_samples_as_the_reference(reference_backbone, tiny_dir, images):
    source, edited = images
    ref = reference_scorer(tiny_dir, num_pass=1)
    ref.evaluate([source, edited], "remove the car")
    ours = EditScore.from_pretrained(tiny_dir, dtype="bf16")
    (got,) = ours.score([ScoreItem("remove the car", png(source), png(edited))], batch_size=1)
    assert got["raw"][0] == ref.generated[0]  # the SC answer, sampled with seed 42
    greedy = ours.score(
        [ScoreItem("remove the car", png(source), png(edited))], batch_size=1, decoding="greedy"
    )[0]
    assert greedy["raw"][0] != ref.generated[0]


# ---------------------------------------------------------------- a corpus of answers

GOOD = '{"reasoning": "The sky is red.", "score": [20, 15]}'
# (answer, note). Every answer goes through all three code paths below.
CORPUS = [
    (GOOD, "clean JSON"),
    ('```json\n{"reasoning": "ok", "score": [7, 9]}\n```', "a code fence"),
    ("Sure! {'reasoning': 'fine', 'score': [3, 4]} Hope it helps.", "single quotes in prose"),
    ('{"reasoning": "He said "wow" loudly", "score": [12, 13]}', "unescaped inner quotes"),
    ('{reasoning: "bare keys", score: [5, 6]}', "bare keys"),
    ('{"reasoning": "one score", "score": 14}', "a single number"),
    ('{"reasoning": "three", "score": [1, 2, 3]}', "three scores"),
    ('{"reasoning": "big", "score": [30, 2]}', "out of range (R = 25)"),
    ('{"reasoning": "neg", "score": [-1, 2]}', "negative"),
    ("[6, 7]", "a bare list"),
    ("12", "a bare number"),
    ('{"reasoning": "cut short', "truncated, no score"),
    ("I cannot rate this image.", "a refusal"),
    ("", "empty"),
    ('{"reasoning": "fine", "score": ["8", "9"]}', "scores as strings"),
]


class CannedBackbone:
    """A backbone for the reference's EditScore that answers from a script: the SC and PQ
    answers of each (pass, try), in the order the reference asks."""

    def __init__(self, answers_by_kind):
        self.answers = {kind: list(texts) for kind, texts in answers_by_kind.items()}

    def prepare_input(self, images, prompt):
        # By the prompt, not the images: batch_evaluate hands the PQ prompt both images
        # (see test_the_batch_path_shows_the_pq_prompt_both_images).
        return "PQ" if "naturalness" in prompt else "SC"

    def inference(self, kind, seed=None):
        random.seed(seed)  # what the reference backbone's set_seed does to `random`
        texts = self.answers[kind]
        return texts.pop(0) if len(texts) > 1 else texts[0]

    def batch_inference(self, kinds, seed=None):
        return [self.inference(kind, seed) for kind in kinds]


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return EditScore.from_pretrained(tiny_dir)


def ours_with_canned(scorer, monkeypatch, answers_by_kind):
    texts = {kind: list(t) for kind, t in answers_by_kind.items()}

    def fake_generate(requests, *, sample, seed, **options):
        out = []
        for _, images in requests:
            queue = texts["SC" if len(images) == 2 else "PQ"]
            out.append(queue.pop(0) if len(queue) > 1 else queue[0])
        return out

    monkeypatch.setattr(scorer, "_generate", fake_generate)
    return scorer


@pytest.mark.parametrize(("answer", "note"), CORPUS, ids=[n for _, n in CORPUS])
def test_reference_policy_is_evaluate_on_the_corpus(loaded, monkeypatch, images, answer, note):
    """The SC answer of the corpus with a clean PQ answer: EditLoop's ``reference`` policy and
    ``EditScore.evaluate`` agree on every dimension, or both refuse (where the reference raises,
    EditLoop leaves the item unscored with the reason)."""
    script = {"SC": [answer], "PQ": ['{"reasoning": "clean", "score": [22, 18]}']}
    ref = reference.package().EditScore(backbone="none", score_range=25, num_pass=1)
    ref.model = CannedBackbone(script)
    source, edited = images
    try:
        expected = ref.evaluate([source, edited], "make the sky red")
    except Exception as exc:  # the reference stops here
        expected = exc
    ours = ours_with_canned(loaded, monkeypatch, script)
    (got,) = ours.score([ScoreItem("make the sky red", png(source), png(edited))],
                        parse_policy="reference")  # fmt: skip
    if isinstance(expected, Exception):
        assert got["overall"] is None and "the reference cannot" in got["error"], note
        return
    for key in ("prompt_following", "consistency", "perceptual_quality", "overall"):
        assert got[key] == pytest.approx(float(expected[key]), abs=1e-12), (note, key)


@pytest.mark.parametrize(("answer", "note"), CORPUS, ids=[n for _, n in CORPUS])
def test_reference_batch_policy_is_batch_evaluate_on_the_corpus(
    loaded, monkeypatch, images, answer, note
):
    """The RL reward server's path (``batch_evaluate``): the same overall score for every answer
    but the out-of-range ones, where the package writes R/2 = 12.5 on the 0-10 scale and
    EditLoop the midpoint 5.0 (a deliberate difference, docs/method.md)."""
    script = {"SC": [answer], "PQ": ['{"reasoning": "clean", "score": [22, 18]}']}
    ref = reference.package().EditScore(backbone="none", score_range=25, num_pass=1)
    ref.model = CannedBackbone(script)
    source, edited = images
    try:
        (expected,) = ref.batch_evaluate([[source, edited]], ["make the sky red"])
    except ValueError as exc:  # float("8") works; a word does not: the package raises
        pytest.fail(f"the reference raised on {note!r}: {exc}")
    ours = ours_with_canned(loaded, monkeypatch, script)
    (got,) = ours.score([ScoreItem("make the sky red", png(source), png(edited))],
                        parse_policy="reference_batch")  # fmt: skip
    sc_score = expected["SC_score"]
    if sc_score == 12.5:  # the package's slip: R/2 where 0-10 was meant
        assert got["overall"] == pytest.approx(math.sqrt(5.0 * expected["PQ_score"]))
    else:
        assert got["overall"] == pytest.approx(float(expected["O_score"]), abs=1e-12), note


# What EditLoop's own parser (the default ``unscored`` policy) reads differently from the
# reference's benchmark parser, and why: EditLoop never invents or clips a score.
INTENDED_DIFFERENCES = {
    "a single number": "an SC answer needs two scores: one number is unreadable, not a score",
    "three scores": "three scores for a two-score question are unreadable",
    "out of range (R = 25)": "a value outside [0, R] is unreadable, never used as is",
    "negative": "a value outside [0, R] is unreadable",
    "a bare number": "one number is not the two scores asked for",
    "a bare list": "no JSON object and no reasoning: the format asked for was not followed, so "
    "EditLoop asks again (the reference takes the list)",
}


@pytest.mark.parametrize(("answer", "note"), CORPUS, ids=[n for _, n in CORPUS])
def test_editloop_parser_against_the_references(answer, note):
    """parse_score_output against ``mllm_output_to_dict`` (benchmark path) and
    ``parse_vlm_output_to_dict`` (RL path): where the reference reads two in-range scores,
    EditLoop reads the same two; every other outcome is listed in INTENDED_DIFFERENCES or is
    unreadable for both."""
    try:
        ours = parse_score_output(answer, expected=2, score_range=25)[1]
    except ValueError:
        ours = None
    theirs = reference.parse_answer(answer, give_up=False, score_range=25)
    batch = reference.parse_answer_batch(answer)["score"]
    if isinstance(theirs, dict):
        values = theirs.get("score")
        values = [values] if not isinstance(values, list) else values
        numbers = [float(v) for v in values if isinstance(v, int | float | str)]
        try:
            readable = len(numbers) == 2 and all(0 <= v <= 25 for v in numbers)
        except TypeError:
            readable = False
    else:
        readable, numbers = False, None
    if note in INTENDED_DIFFERENCES:
        assert ours is None, note
        assert theirs is not False or batch, f"{note}: the reference reads nothing either"
    elif readable:
        assert ours == pytest.approx(numbers), note
    else:
        assert ours is None or ours == pytest.approx([float(v) for v in batch[:2]]), note


def test_the_reference_guess_is_drawn_from_the_pass_seed():
    """After two failed tries the reference guesses both answers with random.randint(0, R)
    right after its backbone re-seeded `random` with 42 + pass: EditLoop draws the same."""
    sc, pq = answers.reference_guess(43, 25)
    rng = random.Random(43)
    assert sc["score"] == [rng.randint(0, 25)] * 2
    assert pq["score"] == [rng.randint(0, 25)] * 2
    state = random.getstate()
    answers.reference_guess(44, 25)
    assert random.getstate() == state  # the caller's random stream is untouched


def test_the_batch_path_shows_the_pq_prompt_both_images(images):
    """A quirk of the reference's RL reward path, found by this suite: ``batch_evaluate`` builds
    the PQ request from the whole image list, so its PQ prompt ("The image is an AI-generated
    image") sees [source, edited], where ``evaluate`` (the benchmark path) shows the edit alone.
    EditLoop shows the edit alone on both paths (docs/method.md, deliberate differences)."""
    seen = []

    class Recorder(CannedBackbone):
        def prepare_input(self, images, prompt):
            seen.append(
                (
                    super().prepare_input(images, prompt),
                    len(images) if isinstance(images, list) else 1,
                )
            )
            return super().prepare_input(images, prompt)

    script = {"SC": [GOOD], "PQ": [GOOD]}
    ref = reference.package().EditScore(backbone="none", score_range=25)
    ref.model = Recorder(script)
    ref.batch_evaluate([list(images)], ["make the sky red"])
    assert seen == [("SC", 2), ("PQ", 2)]
    seen.clear()
    ref.evaluate(list(images), "make the sky red")
    assert seen == [("SC", 2), ("PQ", 1)]


def test_clean_answers_score_alike_under_every_policy(loaded, monkeypatch, images):
    """Where the answers are clean, the policies differ in nothing: EditLoop's aggregation
    (scoring.aggregate) gives what evaluate and batch_evaluate give."""
    script = {"SC": [GOOD], "PQ": ['{"reasoning": "clean", "score": [22, 18]}']}
    ref = reference.package().EditScore(backbone="none", score_range=25, num_pass=1)
    ref.model = CannedBackbone(script)
    expected = ref.evaluate(list(images), "make the sky red")
    (batch,) = ref.batch_evaluate([list(images)], ["make the sky red"])
    assert batch["O_score"] == pytest.approx(expected["overall"])
    item = ScoreItem("make the sky red", png(images[0]), png(images[1]))
    for policy in answers.PARSE_POLICIES:
        (got,) = ours_with_canned(loaded, monkeypatch, script).score([item], parse_policy=policy)
        assert got["overall"] == pytest.approx(float(expected["overall"]), abs=1e-12), policy
        assert got["perceptual_quality"] == pytest.approx(float(expected["perceptual_quality"]))


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    from rewardmodel.ml.tiny import build_tiny_editscore

    return build_tiny_editscore(tmp_path_factory.mktemp("tiny3") / "m", family="qwen3_vl")


def test_qwen3_inputs_are_the_references(qwen3_dir, images):
    """The reference's Qwen3-VL backbone imports without torchvision: run its prepare_input
    (images then text, rendered and tokenized by the processor, no system turn, no labels) and
    compare the processor inputs EditLoop builds."""
    import importlib

    from transformers import BatchFeature

    from rewardmodel.ml.tiny import load_processor

    module = importlib.import_module("editscore.mllm_tools.qwen3vl")
    backbone = object.__new__(module.Qwen3VL)  # no model needed to build inputs
    backbone.processor = load_processor(qwen3_dir)
    ours = EditScore.from_pretrained(qwen3_dir)
    package = reference.package().EditScore(backbone="none", score_range=25)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BatchFeature, "to", lambda self, *args, **kwargs: self)
        expected = backbone.prepare_input(
            list(images), package.SC_prompt.replace("<instruction>", "make the sky red")
        )
        pq_expected = backbone.prepare_input(images[1], package.PQ_prompt)
    (text, sized), (pq_text, pq_sized) = ours._requests(
        ScoreItem("make the sky red", png(images[0]), png(images[1]))
    )
    assert "<img1>" not in text and "system" not in text.split("<|im_start|>user")[0]
    for got, want in (
        (ours.processor(text=[text], images=sized, return_tensors="pt"), expected),
        (ours.processor(text=[pq_text], images=pq_sized, return_tensors="pt"), pq_expected),
    ):
        for key in ("input_ids", "pixel_values", "image_grid_thw"):
            assert got[key].shape == want[key].shape, key
            assert (got[key] == want[key]).all(), key
