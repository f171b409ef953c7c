"""EditWorld without the database: scenes, edits, editors and their truth, the oracle reward,
bundles, prompts and the truth as a benchmark scores file."""

import io
import json
import random
import re

import numpy as np
import pytest
from PIL import Image

from editworld import scene as sc
from editworld.dataset import (
    Prompt,
    prompt_oracle,
    prompts,
    read_truth,
    truth_by_image_hash,
    truth_scores_file,
    write_bundle,
    write_prompt_file,
)
from editworld.editors import EDITORS, add_artifact, make_candidate
from editworld.oracle import OracleReward, Truth, measure, oracle_truth, pixel_hash
from editworld.tasks import GLOBAL_TASKS, TASK_TYPES, Edit, apply, random_edit, wrong_edit

SIZE = 64


def _case(seed, task_type, size=SIZE):
    rng = random.Random(f"test:{seed}:{task_type}")
    scene = sc.random_scene(rng, size)
    return rng, scene, random_edit(rng, scene, task_type)


# ---------------------------------------------------------------------------- scenes


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_rendering_is_deterministic_at_every_size(size):
    scene = sc.random_scene(random.Random(3), size)
    first, again = np.asarray(sc.render(scene, size)), np.asarray(sc.render(scene, size))
    assert first.shape == (size, size, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    rebuilt = sc.Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
    assert rebuilt == scene and np.array_equal(np.asarray(sc.render(rebuilt, size)), first)
    other = sc.random_scene(random.Random(4), size)
    assert not np.array_equal(np.asarray(sc.render(other, size)), first)


def test_random_scenes_name_every_shape_once_and_keep_shapes_in_their_cells():
    for seed in range(50):
        scene = sc.random_scene(random.Random(seed), 128)
        assert 2 <= len(scene.shapes) <= 4
        assert len({s.colour for s in scene.shapes}) == len(scene.shapes)
        covered = np.zeros((128, 128), dtype=int)
        for shape in scene.shapes:
            mask = sc.footprint(shape, 128)
            assert mask.sum() > 40  # a visible shape
            ys, xs = np.nonzero(mask)
            col, row = shape.cell
            assert xs.min() >= col * 128 / 3 - 1 and xs.max() <= (col + 1) * 128 / 3 + 1
            assert ys.min() >= row * 128 / 3 - 1 and ys.max() <= (row + 1) * 128 / 3 + 1
            covered += mask
        assert covered.max() == 1  # shapes never overlap


def test_scene_refuses_ambiguous_or_unknown_things():
    bg = sc.Background("solid", ("cream",))
    red = sc.Shape("circle", "red", 0.17, 0.17, 0.1)
    with pytest.raises(ValueError, match="share a colour"):
        sc.Scene(bg, (red, sc.Shape("star", "red", 0.5, 0.5, 0.1)))
    with pytest.raises(ValueError, match="share a grid cell"):
        sc.Scene(bg, (red, sc.Shape("star", "blue", 0.2, 0.2, 0.1)))
    with pytest.raises(ValueError, match="unknown shape colour"):
        sc.Shape("circle", "mauve", 0.5, 0.5, 0.1)
    with pytest.raises(ValueError, match="has 2 colour"):
        sc.Background("checker", ("cream",))


# ---------------------------------------------------------------------------- edits


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_task_type_changes_its_region_and_nothing_else(task_type):
    for seed in range(8):
        _, scene, edit = _case(seed, task_type)
        assert edit.task_type == task_type and edit.is_global == (task_type in GLOBAL_TASKS)
        target = apply(scene, edit)
        assert target == edit.target(scene) and target != scene
        before = sc.render_array(scene, SIZE).astype(int)
        after = sc.render_array(target, SIZE).astype(int)
        changed = (before != after).any(axis=2)
        region = edit.region(scene, SIZE)
        assert changed.any(), edit.instruction
        assert not (changed & ~region).any(), f"{edit.instruction}: changes outside its region"
        if task_type not in GLOBAL_TASKS:
            assert not region.all()  # a local edit leaves something untouched
        if task_type in ("subject-add", "subject-remove", "subject-replace", "color_alter",
                         "motion_change", "extract"):  # fmt: skip
            assert changed.sum() >= 0.5 * region.sum(), edit.instruction
        # the edit is data: it survives a manifest's meta
        assert Edit.from_dict(json.loads(json.dumps(edit.to_dict()))) == edit


INSTRUCTION = {
    "subject-add": r"add an? \w+ \w+ (at the (top|middle|bottom) (left|middle|right)|in the centre)",
    "subject-remove": r"remove the \w+ \w+",
    "subject-replace": r"replace the \w+ \w+ with an? \w+ \w+",
    "color_alter": r"make the \w+ \w+ \w+",
    "material_alter": r"(give the \w+ \w+ an? [\w-]+ pattern|make the \w+ \w+ a plain solid colour, without its pattern)",
    "style_change": r"(turn|redraw) the picture .+",
    "tone_transfer": r"(give the picture an? .+ tone|make the picture .+)",
    "background_change": r"replace the background with an? .+",
    "extract": r"extract the \w+ \w+ on a white background",
    "motion_change": r"move the \w+ \w+ (to the left|to the right|up|down)",
}  # fmt: skip


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_instructions_are_plain_and_name_existing_shapes(task_type):
    for seed in range(6):
        _, scene, edit = _case(seed, task_type)
        parts = edit.instruction.split(" and ") if task_type == "compose" else [edit.instruction]
        for part, op in zip(parts, edit.ops, strict=True):
            if task_type != "compose":
                assert re.fullmatch(INSTRUCTION[task_type], part), part
            if op.index is not None:  # names the shape it acts on, which is unique by colour
                assert scene.shapes[op.index].name in part


def test_a_wrong_edit_does_something_else_of_the_same_kind():
    for task_type in TASK_TYPES:
        rng, scene, edit = _case(1, task_type)
        wrong = wrong_edit(rng, scene, edit)
        assert wrong.task_type == task_type and wrong.instruction != edit.instruction
        assert apply(scene, wrong) not in (apply(scene, edit), scene)


def test_random_edit_refuses_a_type_the_scene_cannot_take():
    full = sc.Scene(
        sc.Background("solid", ("cream",)),
        tuple(sc.random_shape(random.Random(c * 3 + r), (c, r), colour)
              for (c, r), colour in zip([(c, r) for r in range(3) for c in range(3)],
                                        list(sc.SHAPE_COLOURS), strict=True)),
    )  # fmt: skip
    with pytest.raises(ValueError, match="no subject-add edit"):
        random_edit(random.Random(0), full, "subject-add")  # no free cell, no unused colour
    with pytest.raises(ValueError, match="no motion_change edit"):
        random_edit(random.Random(0), full, "motion_change")


# ---------------------------------------------------------------------------- editors & truth


@pytest.fixture(scope="module")
def candidates():
    """Every editor on 3 scenes of every task type (64 px)."""
    out = []
    for seed in range(3):
        for task_type in TASK_TYPES:
            rng, scene, edit = _case(seed, task_type)
            made = {kind: make_candidate(kind, scene, edit, rng, SIZE) for kind in EDITORS}
            out.append((scene, edit, made))
    return out


def test_truth_orders_the_editors_sensibly(candidates):
    for _, edit, made in candidates:
        t = {kind: c.truth for kind, c in made.items()}
        label = f"{edit.task_type}: {edit.instruction}"
        assert t["correct"] == Truth(1.0, 1.0, 1.0, 1.0), label
        # prompt following: correct > partial > no_op (0: nothing happened)
        assert t["correct"].prompt_following > t["partial"].prompt_following > 0, label
        assert t["no_op"].prompt_following == 0.0 and t["no_op"].overall == 0.0, label
        assert t["no_op"].consistency == 1.0 and t["no_op"].quality == 1.0, label
        assert abs(t["partial"].prompt_following - made["partial"].meta["strength"]) < 0.05, label
        # over-editing: the lowest consistency of the candidates that follow the prompt
        assert t["over_edit"].prompt_following >= 0.75, label
        for kind in ("correct", "partial", "artifacts"):
            assert t["over_edit"].consistency < t[kind].consistency, (label, kind)
        # artefacts: the lowest quality of all; nothing else is taken for an artefact
        for kind in EDITORS:
            if kind != "artifacts":
                assert t["artifacts"].quality < t[kind].quality, (label, kind)
                assert t[kind].quality >= 0.75, (label, kind)
        # the wrong object: the requested change did not happen; for an extraction of another
        # shape, the whitened background is most of the requested pixels, but the named shape
        # is gone, which consistency sees
        assert t["wrong_object"].overall < t["correct"].overall, label
        if edit.task_type == "extract":
            assert t["wrong_object"].consistency < 0.9, label
        else:
            assert t["wrong_object"].prompt_following < 0.55, label
        for truth in t.values():
            assert all(0.0 <= truth.get(d) <= 1.0 for d in truth.as_dict()), label
            q = truth.quality
            expected = (min(truth.prompt_following, truth.consistency) * q) ** 0.5
            assert truth.overall == pytest.approx(expected, abs=1e-3), label


@pytest.mark.parametrize("artifact", ["noise", "blur", "blocks"])
def test_quality_falls_as_the_artefact_grows(artifact):
    _, scene, edit = _case(0, "color_alter", 128)
    target = sc.render_array(edit.target(scene), 128)
    qualities = [
        oracle_truth(
            scene, edit, Image.fromarray(add_artifact(target, artifact, s, random.Random(0)))
        ).quality  # fmt: skip
        for s in (0.2, 0.6, 1.0)
    ]
    assert 1.0 >= qualities[0] > qualities[1] > qualities[2], qualities
    assert qualities[2] < 0.5


def test_a_blend_scores_its_share_of_the_change():
    for task_type in ("color_alter", "tone_transfer", "subject-remove", "background_change"):
        rng, scene, edit = _case(2, task_type, 128)
        for alpha in (0.25, 0.5, 0.8):
            made = make_candidate("partial", scene, edit, rng, 128, strength=alpha)
            assert made.truth.prompt_following == pytest.approx(alpha, abs=0.02), task_type
            assert made.truth.consistency == 1.0 and made.truth.quality == 1.0


def test_make_candidate_checks_its_arguments():
    rng, scene, edit = _case(0, "color_alter")
    with pytest.raises(ValueError, match="unknown editor"):
        make_candidate("magic", scene, edit, rng, SIZE)
    with pytest.raises(ValueError, match="strength"):
        make_candidate("partial", scene, edit, rng, SIZE, strength=1.5)


# ---------------------------------------------------------------------------- the oracle


def test_the_oracle_reward_is_the_candidates_truth(candidates):
    plain, rich, sources, texts, images, expected = [], [], [], [], [], []
    for n, (scene, edit, made) in enumerate(candidates):
        source, target = sc.render(scene, SIZE), sc.render(edit.target(scene), SIZE)
        plain.append((f"k{n}", edit.instruction, edit.task_type, source, target))
        rich.append(Prompt(f"k{n}", edit.instruction, edit.task_type, source, target,
                           scene=scene, edit=edit, size=SIZE))  # fmt: skip
        for cand in made.values():
            sources.append(sc.render(scene, SIZE))  # another object with the same pixels
            texts.append(edit.instruction)
            images.append(cand.image)
            expected.append(cand.truth)
    for oracle in (OracleReward(rich), OracleReward(plain)):  # by scene, and by images only
        rewards = oracle(sources, texts, images)
        assert oracle.last_truths == expected
        assert rewards == [t.overall for t in expected]
    per_group = len(EDITORS)
    for g in range(len(candidates)):
        chunk = rewards[g * per_group : (g + 1) * per_group]
        correct = chunk[EDITORS.index("correct")]
        assert correct >= 0.99 and all(r < correct for i, r in enumerate(chunk) if EDITORS[i] != "correct")  # fmt: skip
    consistency = OracleReward(rich, dimension="consistency")
    assert consistency(sources[:6], texts[:6], images[:6]) == [t.consistency for t in expected[:6]]


def test_the_oracle_finds_prompts_at_other_sizes_and_refuses_unknown_ones():
    pool = prompts(6, 64, seed=3)
    oracle = OracleReward(pool)
    key, text, _, source, target = pool[1]
    # a policy working at 32 px: its source is the prompt's, resized; its output is graded at
    # 32 px against source and target rendered there (exact), so the right edit scores 1
    small_target = sc.render(pool[1].edit.target(pool[1].scene), 32)
    assert oracle([source.resize((32, 32), Image.BICUBIC)], [text], [small_target]) == [1.0]
    assert oracle([source], [text], [source]) == [0.0]
    with pytest.raises(KeyError, match="no prompt has this instruction"):
        oracle([source], ["paint it all gold"], [source])
    with pytest.raises(KeyError, match="matches none of the prompts"):
        oracle([pool[2].source], [text], [target])
    with pytest.raises(ValueError, match="one of each"):
        oracle([source], [text, text], [target])
    rebuilt = prompt_oracle(6, 64, seed=3)
    assert rebuilt([source], [text], [target]) == [1.0]


def test_measure_compares_images_of_one_size():
    _, scene, edit = _case(0, "color_alter")
    s, t = sc.render(scene, 64), sc.render(edit.target(scene), 64)
    assert measure(s, t, t) == Truth(1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="the image is"):
        measure(s, t, t.resize((32, 32)))


# ---------------------------------------------------------------------------- data on disk


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("ew") / "bundle", groups=6, candidates=4,
                        size=SIZE, seed=5, gold_every=3)  # fmt: skip


def test_a_bundle_is_an_import_manifest_with_the_truth_beside_it(bundle):
    from annotation.manifest import Bundle, parse_manifest

    groups, errors = parse_manifest(Bundle(bundle))
    assert errors == [] and len(groups) == 6
    truth = read_truth(bundle)
    assert len(truth) == 6 * 4
    assert [g.task_type for g in groups] == list(TASK_TYPES[:6])
    for group in groups:
        editors = [c.editor for c in group.candidates]
        assert "correct" in editors and len(set(editors)) == 4
        for cand in group.candidates:
            assert Truth.from_dict(cand.meta["truth"]) == truth[cand.id]
            assert cand.editor not in cand.id and cand.editor not in cand.image  # ids tell nothing
        scene = sc.Scene.from_dict(group.meta["editworld"]["scene"])
        edit = Edit.from_dict(group.meta["editworld"]["edit"])
        assert edit.instruction == group.instruction
        source = Image.open(bundle / group.source)
        assert np.array_equal(np.asarray(source), sc.render_array(scene, SIZE))
    assert [g.gold is not None for g in groups] == [False, False, True, False, False, True]
    gold = groups[2].gold
    for dim, relations in gold.items():
        for a, op, b in relations:
            assert op == ">" and truth[a].get(dim) - truth[b].get(dim) >= 0.25
    assert len(list((bundle / "img").glob("*.png"))) == 6 * 5
    # the same arguments write the same files
    again = write_bundle(bundle.parent / "again", groups=6, candidates=4, size=SIZE, seed=5,
                         gold_every=3)  # fmt: skip
    assert (again / "manifest.jsonl").read_text() == (bundle / "manifest.jsonl").read_text()


def test_truth_by_image_hash_recognises_candidates_by_their_pixels(bundle):
    lookup = truth_by_image_hash(bundle)
    truth = read_truth(bundle)
    assert len(lookup) == len(truth)
    line = json.loads((bundle / "manifest.jsonl").read_text().splitlines()[0])
    cand = line["candidates"][0]
    # what the importer stores and the API serves: the same pixels, without the metadata
    from media.images import check_image

    served = check_image((bundle / cand["image"]).read_bytes(), "x").data
    assert lookup[pixel_hash(served)] == truth[cand["id"]]


def test_truth_scores_file_is_what_the_file_scorer_reads(bundle, tmp_path):
    from benchmark.ml.scorers import Candidate, FileScorer

    path = truth_scores_file(bundle, tmp_path / "oracle.jsonl")
    scorer = FileScorer(path)
    truth = read_truth(bundle)
    assert set(scorer.rows) == set(truth)
    cid, expected = next(iter(truth.items()))
    (score,) = scorer.score([Candidate(key=cid, instruction="", source=b"", edited=b"")])
    assert score.prompt_following == pytest.approx(10 * expected.prompt_following)
    assert score.consistency == pytest.approx(10 * expected.consistency)
    assert score.perceptual_quality == pytest.approx(10 * expected.quality)
    assert score.overall == pytest.approx(10 * expected.overall)


def test_write_bundle_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="editors must be"):
        write_bundle(tmp_path, groups=1, editors=["correct", "genius"])
    with pytest.raises(ValueError, match="2 to 8 candidates"):
        write_bundle(tmp_path, groups=1, candidates=9)
    with pytest.raises(ValueError, match="task types"):
        write_bundle(tmp_path, groups=1, task_types=["ps_human"])
    small = write_bundle(tmp_path / "b", groups=2, candidates=3, size=SIZE,
                         editors=["partial", "no_op"], task_types=["color_alter"])  # fmt: skip
    rows = [json.loads(x) for x in (small / "truth.jsonl").read_text().splitlines()]
    assert {r["editor"] for r in rows} <= {"partial", "no_op"} and len(rows) == 6
    assert {r["task_type"] for r in rows} == {"color_alter"}


def test_prompts_are_deterministic_and_usable_as_plain_tuples(tmp_path):
    from rltraining.prompts import parse_prompt_file

    few, more = prompts(5, 48, seed=9), prompts(12, 48, seed=9)
    assert [(p.key, p.instruction) for p in few] == [(p.key, p.instruction) for p in more[:5]]
    assert [pixel_hash(p.source) for p in few] == [pixel_hash(p.source) for p in more[:5]]
    key, instruction, task_type, source, target = few[0]
    assert (key, task_type) == ("ew9-0", TASK_TYPES[0]) and source.size == (48, 48)
    assert isinstance(few[0], tuple) and len(few[0]) == 5
    assert few[0].scene is not None and few[0].edit.instruction == instruction
    only = prompts(4, 48, seed=9, task_types=["tone_transfer"])
    assert {p.task_type for p in only} == {"tone_transfer"}
    rows = parse_prompt_file(write_prompt_file(tmp_path / "p.jsonl", 5, 48, seed=9).read_bytes())
    assert [(r.key, r.instruction, r.task_type) for r in rows] == [
        (p.key, p.instruction, p.task_type) for p in few
    ]
    oracle = OracleReward(few)
    decoded = Image.open(io.BytesIO(rows[0].source))
    assert oracle([decoded], [rows[0].instruction], [few[0].target]) == [1.0]
