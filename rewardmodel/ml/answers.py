"""What an unreadable judge answer becomes: the three parse policies of a scoring pass.

Pure Python (no torch): used by :class:`rewardmodel.ml.model.EditScore` and documented in
``docs/method.md`` section 3. A *pass* is one SC answer and one PQ answer for one candidate.

``unscored`` (EditLoop's default: honest)
    EditLoop's parser (:func:`rewardmodel.ml.parsing.parse_score_output`: exactly two scores in
    [0, R]); an unreadable answer is generated again, by sampling with a seed no pass uses, up to
    ``retries`` times; then the pass fails and the candidate is unscored with its raw answers
    kept. Scores are never made up.
``reference`` (the authors' benchmark path, ``editscore.EditScore.evaluate``)
    The package's parser ``mllm_output_to_dict``; an unreadable answer is generated again with
    the *same* seed (two tries in all); after that, both the SC and the PQ answer of the pass are
    replaced by the package's random guess, drawn from Python's ``random`` seeded with
    ``seed + pass`` as the reference's ``set_seed`` leaves it (:func:`reference_guess`).
    PF = SC[0]/s, C = SC[1]/s, PQ = min(PQ)/s, O = sqrt(min(SC)/s * PQ), s = R/10, values not
    range-checked. Where the reference would crash (a score list it cannot index, a negative
    product under the root) the candidate is unscored with the reason.
``reference_batch`` (the authors' RL reward-server path, ``EditScore.batch_evaluate``)
    The package's parser ``parse_vlm_output_to_dict``, one try; an answer with no score counts
    R/2; SC = min(SC)/s and PQ = min(PQ)/s, each outside [0, 10] replaced by the midpoint 5.0;
    O = sqrt(SC * PQ). Deliberate difference: the package writes R/2 = 12.5 there, a 0-R value
    on the 0-10 scale (``docs/method.md`` lists it); the midpoint is what it means.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from rewardmodel.ml.parsing import parse_score_output
from rewardmodel.ml.scoring import SCORE_KEYS, aggregate, average_passes

PARSE_POLICIES = ("unscored", "reference", "reference_batch")
DEFAULT_PARSE_POLICY = "unscored"
REFERENCE_TRIES = 2  # EditScore.evaluate: max_tries = 2, then it gives up and guesses


def check_parse_policy(policy: str) -> str:
    if policy not in PARSE_POLICIES:
        raise ValueError(f"parse_policy must be one of {', '.join(PARSE_POLICIES)}, got {policy!r}")
    return policy


@dataclass(frozen=True)
class Attempt:
    """How attempt ``number`` (0 = the pass's own generation) of pass ``pass_index`` is made."""

    sample: bool
    seed: int | None


def attempts(
    policy: str, *, pass_index: int, k: int, seed: int, retries: int, greedy: bool
) -> list[Attempt]:
    """The generations a pass may take, in order; later ones only for still-unreadable answers."""
    first = Attempt(sample=not greedy, seed=None if greedy else seed + pass_index)
    if policy == "reference":
        return [first] * REFERENCE_TRIES  # the reference retries with the pass's own seed
    if policy == "reference_batch":
        return [first]
    # Retry r of pass i is sampled with seed + r*k + i: a seed no pass uses.
    return [first] + [Attempt(True, seed + r * k + pass_index) for r in range(1, retries + 1)]


def reader(policy: str, score_range: int) -> Callable[[str], tuple[bool, object]]:
    """``read(text) -> (readable, value)``: the parsed scores (or the reference's dict), or why
    the text is unreadable."""
    from rewardmodel.ml import reference

    if policy == "reference":

        def read(text: str) -> tuple[bool, object]:
            parsed = reference.parse_answer(text, give_up=False, score_range=score_range)
            return (parsed is not False), (parsed if parsed is not False else "unreadable")

    elif policy == "reference_batch":

        def read(text: str) -> tuple[bool, object]:
            try:
                return True, reference.parse_answer_batch(text)
            except ValueError:  # a score string float() refuses: the package would crash
                return True, {"score": [], "reasoning": ""}

    else:

        def read(text: str) -> tuple[bool, object]:
            try:
                return True, parse_score_output(text, expected=2, score_range=score_range)[1]
            except ValueError as exc:
                return False, str(exc)

    return read


def reference_guess(seed: int, score_range: int) -> tuple[dict, dict]:
    """The reference's (SC, PQ) answers when it gives up on pass ``seed - 42``: its
    ``inference`` re-seeds Python's ``random`` with the pass seed before each generation, then
    ``mllm_output_to_dict(..., give_up_parsing=True)`` draws the SC guess and then the PQ guess.
    The global ``random`` state is restored afterwards."""
    from rewardmodel.ml import reference

    saved = random.getstate()
    try:
        random.seed(seed)
        sc = reference.parse_answer("", give_up=True, score_range=score_range)
        pq = reference.parse_answer("", give_up=True, score_range=score_range)
    finally:
        random.setstate(saved)
    return sc, pq


def _numbers(value: object) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        return None
    return [float(v) for v in value]


def reference_pass(sc: dict, pq: dict, score_range: int) -> dict | str:
    """The four dimensions ``EditScore.evaluate`` computes from one pass's parsed answers, or
    why it could not (where the reference raises)."""
    sc_scores = _numbers(sc.get("score") if isinstance(sc, dict) else None)
    pq_scores = _numbers(pq.get("score") if isinstance(pq, dict) else None)
    if sc_scores is None or len(sc_scores) < 2:
        return f"the reference cannot use the SC scores {sc!r:.200}"
    if pq_scores is None:
        return f"the reference cannot use the PQ scores {pq!r:.200}"
    s = score_range / 10
    product = (min(sc_scores) / s) * (min(pq_scores) / s)
    if product < 0:
        return f"the reference cannot take the root of {product:g}"
    return {
        "prompt_following": sc_scores[0] / s,
        "consistency": sc_scores[1] / s,
        "perceptual_quality": min(pq_scores) / s,
        "overall": math.sqrt(product),
    }


def reference_batch_pass(sc: dict, pq: dict, score_range: int) -> dict:
    """``EditScore.batch_evaluate``'s pass: SC = min(SC)/s, PQ = min(PQ)/s, an empty list R/2,
    a value outside [0, 10] the midpoint 5.0, O = sqrt(SC * PQ). The batch path computes no
    separate prompt following and consistency: they are given from SC[0], SC[1] when present."""
    s = score_range / 10

    def part(answer: dict) -> tuple[float, list[float]]:
        scores = _numbers(answer.get("score")) or [score_range / 2]
        value = min(scores) / s
        return (value if 0 <= value <= 10 else 5.0), scores

    sc_value, sc_scores = part(sc)
    pq_value, _ = part(pq)
    pair = sc_scores if len(sc_scores) >= 2 else None
    return {
        "prompt_following": pair[0] / s if pair else None,
        "consistency": pair[1] / s if pair else None,
        "perceptual_quality": pq_value,
        "overall": math.sqrt(sc_value * pq_value),
    }


def combine(
    policy: str, sc: tuple[bool, object], pq: tuple[bool, object], *, seed: int, score_range: int
) -> dict | str:
    """One pass's dimensions from its final (readable, value) SC and PQ answers, or the reason
    the pass failed. ``seed`` is the pass's seed (the reference's guess is drawn from it)."""
    if policy == "reference":
        sc_value, pq_value = sc[1], pq[1]
        if not (sc[0] and pq[0]):
            sc_value, pq_value = reference_guess(seed, score_range)
        return reference_pass(sc_value, pq_value, score_range)
    if policy == "reference_batch":
        return reference_batch_pass(sc[1], pq[1], score_range)
    if not sc[0]:
        return f"SC answer unreadable ({sc[1]})"
    if not pq[0]:
        return f"PQ answer unreadable ({pq[1]})"
    return aggregate(sc[1], pq[1], score_range)


PARTS = ("SC", "PQ")


def run_passes(
    n_items: int,
    generate: Callable[[str, list[int], Attempt], list[str]],
    *,
    k: int,
    seed: int,
    retries: int,
    greedy: bool,
    policy: str,
    score_range: int,
) -> list[dict]:
    """The K passes of ``n_items`` items under ``policy``, one result dict per item
    (:func:`item_result`). ``generate(part, items, attempt)`` answers the ``part`` ("SC" or
    "PQ") requests of those item indices, sampled as ``attempt`` says (each call seeds itself,
    so the order of calls changes no answer). An item's raw answers are, per pass, its SC tries
    then its PQ tries."""
    read = reader(policy, score_range)
    raws: list[list[str]] = [[] for _ in range(n_items)]
    passes: list[list[dict | str]] = [[] for _ in range(n_items)]
    for i in range(k):
        plan = attempts(policy, pass_index=i, k=k, seed=seed, retries=retries, greedy=greedy)
        final: dict[tuple[int, str], tuple[bool, object]] = {}
        for part in PARTS:
            todo = list(range(n_items))
            for attempt in plan:
                if not todo:
                    break
                for j, text in zip(todo, generate(part, todo, attempt), strict=True):
                    raws[j].append(text)
                    final[j, part] = read(text)
                todo = [j for j in todo if not final[j, part][0]]
        for j in range(n_items):
            result = combine(policy, final[j, "SC"], final[j, "PQ"], seed=seed + i,
                             score_range=score_range)  # fmt: skip
            passes[j].append(result if isinstance(result, dict) else f"pass {i + 1}: {result}")
    return [item_result(raws[j], passes[j]) for j in range(n_items)]


def item_result(raw: list[str], passes: list[dict | str]) -> dict:
    """An item's result from its raw answers and its K passes (a dict of dimensions, or the
    reason a pass failed): the Avg@K dimensions when every pass is scored, else unscored."""
    ok = [p for p in passes if isinstance(p, dict)]
    failed = [p for p in passes if isinstance(p, str)]
    if failed or not ok:
        error = f"{len(failed)} of {len(passes)} passes failed: " + "; ".join(failed)
        return unscored(raw, error, len(ok))
    averaged = average_passes(ok)
    return {**{key: averaged[key] for key in SCORE_KEYS}, "raw": raw, "error": None,
            "passes": len(ok)}  # fmt: skip


def unscored(raw: list[str], error: str, passes: int) -> dict:
    return {**dict.fromkeys(SCORE_KEYS), "raw": raw, "error": error, "passes": passes}
