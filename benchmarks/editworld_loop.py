"""Does the loop learn? EditWorld knows the truth of every edit, so each stage is measured on
held-out data, with 95% intervals, on a CPU.

**Reward models** (``reward``): a fresh EditWorld bundle (``--groups`` groups of 4 candidates,
128 px, a seed no demo, fine-tune or editor ever used: held out by construction). Its preference
pairs are the truth's: on each dimension every two candidates whose truths differ by more than
``--tie-margin`` (what attentive annotators agree on; the demo's consensus pairs come from
simulated annotators who see the same truths with noise). Scored, exactly as the benchmark job
does (``benchmark/ml``: the scorers, the paper's pairwise accuracy, bootstrap intervals): the
oracle (the truth itself), pixel, random, and a tiny EditScore base (``--editscore-base``) and
its fine-tune (``--adapter``) when given. For each: the headline accuracy per dimension with its
interval, the unscored share, and the promotion gate's verdict (``rewardmodel/gate.py``: its
``overall`` accuracy minus pixel's on the same pairs, with a 95% interval over groups resampled
whole, must be above 0).

**The judge's learning curve** (``curve``): the demo's pre-trained tiny EditScore
(``editworld/judge.py``) built at each budget of ``--curve-steps`` and scored on the same pairs:
held-out accuracy against the CPU minutes of its build.

**RL** (``rl``): Flow-GRPO of the tiny EditWorld editor (``editworld_rl.py``'s set-up: the
demo's editor, prompts of its task types) on ``--train-prompts`` training prompts, for each of
``--seeds`` seeds, with the oracle reward and, when a learned reward passed the gate, with the
best one. Graded by the truth on ``--eval-prompts`` prompts it never trained on (the
deterministic ODE sampler, fixed noises): the held-out reward before and after, and the gain
with a 95% percentile-bootstrap interval over held-out prompts (each prompt's gain averaged over
the seeds: the interval says how the gain would vary over new prompts); for the learned reward
also the share of the oracle reward's gain (paired over the same prompts).

CPU minutes (user + system of this process, all threads) of each stage. One JSON object:

    .venv/bin/python benchmarks/editworld_loop.py [--stages reward,curve,rl] [--groups 120]
        [--editscore-base DIR [--adapter DIR]] [--seeds 3] [--rounds 150]
        [--train-prompts 200] [--eval-prompts 48] [--lr 1e-3] [--threads 2] [--device cpu]

``--device cuda`` runs the editor, the RL and EditScore on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from types import SimpleNamespace

import editworld_rl as rl  # benchmarks/editworld_rl.py
import numpy as np
from harness import REPO  # benchmarks/harness.py

sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BUNDLE_SEED = 9107  # no demo, fine-tune or editor build uses it
DIMENSIONS = ("prompt_following", "consistency", "overall")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default="reward,rl", help="reward, curve, rl (comma-separated)")
    parser.add_argument("--curve-steps", default="150,600,2400",
                        help="the judge's pre-training budgets for the learning curve")  # fmt: skip
    parser.add_argument("--groups", type=int, default=120, help="held-out groups (reward stage)")
    parser.add_argument("--tie-margin", type=float, default=0.05)
    parser.add_argument("--editscore-base", default=None, help="tiny EditScore folder")
    parser.add_argument("--adapter", default=None, help="its fine-tuned LoRA adapter")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--train-prompts", type=int, default=200)
    parser.add_argument("--eval-prompts", type=int, default=48)
    parser.add_argument("--eval-per", type=int, default=4, help="ODE noises per prompt")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--cache", default=None, help="editor cache (default: under VAR_DIR)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    args.stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    if not args.stages or args.stages - {"reward", "curve", "rl"}:
        parser.error("--stages: some of reward, curve, rl")
    args.curve_steps = [int(s) for s in args.curve_steps.split(",") if s.strip()]
    if args.adapter and not args.editscore_base:
        parser.error("--adapter needs --editscore-base")
    if args.seeds < 1 or args.groups < 1 or args.eval_prompts < 2:
        parser.error("--seeds, --groups >= 1 and --eval-prompts >= 2")
    return args


def cpu_minutes() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) / 60


class Stage:
    """Wall seconds and CPU minutes of a block."""

    def __init__(self, out: dict):
        self.out = out

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_minutes()
        return self

    def __exit__(self, *exc):
        self.out["seconds"] = round(time.perf_counter() - self.wall, 1)
        self.out["cpu_minutes"] = round(cpu_minutes() - self.cpu, 2)


def bootstrap_mean(values, resamples: int, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return [round(float(np.quantile(means, q)), 4) for q in (0.025, 0.975)]


def bootstrap_ratio(num, den, resamples: int, seed: int = 0) -> list[float] | None:
    """95% interval of mean(num) / mean(den) with the same prompts resampled for both."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), (resamples, len(num)))
    d = den[idx].mean(axis=1)
    if (d <= 0).mean() > 0.025:  # the oracle's gain itself is not surely positive
        return None
    ratios = num[idx].mean(axis=1) / d
    return [round(float(np.quantile(ratios, q)), 3) for q in (0.025, 0.975)]


# ------------------------------------------------------------------ reward models


def truth_pairs(args, work: Path) -> SimpleNamespace:
    """The held-out bundle's benchmark: ``rows`` (key0, key1, task_type, dimension), the group
    of each row (``clusters``), the ``candidates`` to score and their ``truth``."""
    from benchmark.ml.scorers import Candidate
    from editworld.dataset import read_groups, read_truth, write_bundle

    bundle = write_bundle(work / "bundle", groups=args.groups, candidates=4, size=128,
                          seed=BUNDLE_SEED)  # fmt: skip
    truth = read_truth(bundle)
    rows, clusters, candidates = [], [], []
    for group in read_groups(bundle):
        source = (bundle / group["source"]).read_bytes()
        ids = [c["id"] for c in group["candidates"]]
        for c in group["candidates"]:
            edited = (bundle / c["image"]).read_bytes()
            candidates.append(Candidate(c["id"], group["instruction"], source, edited))
        for a, b in combinations(ids, 2):
            for dim in DIMENSIONS:
                diff = truth[a].get(dim) - truth[b].get(dim)
                if abs(diff) > args.tie_margin:
                    first, second = (a, b) if diff > 0 else (b, a)
                    rows.append((first, second, group["task_type"], dim))
                    clusters.append(group["id"])
    return SimpleNamespace(rows=rows, clusters=clusters, candidates=candidates, truth=truth)


def scored(scorer, candidates) -> dict:
    return {c.key: {d: getattr(s, d) for d in DIMENSIONS}
            for c, s in zip(candidates, scorer.score(candidates), strict=True)}  # fmt: skip


def accuracy(rows, scores: dict, resamples: int) -> dict:
    from benchmark.ml.metric import evaluate, pairs_from_rows

    metric = evaluate(pairs_from_rows(rows, scores), resamples=resamples)
    total = metric["n_pairs"]["total"]
    return {
        "accuracy": {d: round(metric["overall"][d], 4) for d in DIMENSIONS},
        "ci95": {d: [round(x, 4) for x in metric["ci95"]["overall"][d]] for d in DIMENSIONS},
        "unscored": round(metric["n_unscored"]["total"] / total, 4),
        "ties": round(metric["n_ties"]["total"] / total, 4),
    }


def reward_stage(args, bench: SimpleNamespace) -> dict:
    from benchmark.ml.metric import paired_difference
    from benchmark.ml.scorers import make_scorer

    rows, candidates = bench.rows, bench.candidates
    specs = {"random": {"kind": "random", "seed": 0}, "pixel": {"kind": "pixel"}}
    if args.editscore_base:
        base = {"kind": "editscore", "base": args.editscore_base, "device": args.device}
        specs["editscore base"] = base
        if args.adapter:
            specs["editscore fine-tuned"] = {**base, "adapter": args.adapter}
    out: dict = {"groups": args.groups, "pairs": len(rows), "candidates": len(candidates),
                 "bundle_seed": BUNDLE_SEED, "tie_margin": args.tie_margin, "scorers": {}}  # fmt: skip
    oracle = {k: {d: 10 * t.get(d) for d in DIMENSIONS} for k, t in bench.truth.items()}
    out["scorers"]["oracle"] = accuracy(rows, oracle, args.resamples)
    scores = {}
    for label, spec in specs.items():
        result: dict = {}
        with Stage(result):
            scores[label] = scored(make_scorer(spec), candidates)
            result.update(accuracy(rows, scores[label], args.resamples))
        out["scorers"][label] = result
    for label in ("editscore base", "editscore fine-tuned"):
        if label in scores:  # the gate's rule: paired against pixel, groups resampled whole
            paired = paired_difference(rows, scores[label], scores["pixel"], bench.clusters,
                                       resamples=args.resamples)  # fmt: skip
            low = paired["ci95"][0]
            out["scorers"][label]["against_pixel"] = {
                "difference": round(paired["difference"], 4),
                "ci95": [round(x, 4) for x in paired["ci95"]], "groups": paired["n_clusters"]}  # fmt: skip
            out["scorers"][label]["gate_passed"] = low is not None and low > 0
    return out


def curve_stage(args, bench: SimpleNamespace, work: Path) -> dict:
    """The pre-trained judge's learning curve: held-out accuracy against its CPU minutes."""
    from benchmark.ml.scorers import make_scorer
    from editworld.judge import JudgeRecipe, build_cached_judge

    points = []
    for steps in args.curve_steps:
        built: dict = {}
        with Stage(built):
            folder = build_cached_judge(work / "judges", JudgeRecipe(steps=steps))
        spec = {"kind": "editscore", "base": str(folder), "device": args.device}
        scores = scored(make_scorer(spec), bench.candidates)
        points.append({"steps": steps, "build_cpu_minutes": built["cpu_minutes"],
                       **accuracy(bench.rows, scores, args.resamples)})  # fmt: skip
    return {"groups": args.groups, "pairs": len(bench.rows), "points": points}


# ------------------------------------------------------------------ RL


def rl_args(args, reward: str) -> SimpleNamespace:
    """editworld_rl's options for one run."""
    return SimpleNamespace(
        reward=reward, editscore_base=args.editscore_base, adapter=args.adapter,
        cache=args.cache, rounds=args.rounds, num_steps=8, noise=0.3, group=12,
        prompts_per_round=6, train_steps=None, lr=args.lr, beta=0.0, clip=1e-3, adv_eps=0.02,
        lora_r=8, eval_per=args.eval_per, seed=0, device=args.device, updates=2, ema=None,
    )  # fmt: skip


def rl_runs(args, reward: str) -> dict:
    """RL with ``reward`` for each seed; the held-out gains with their interval."""
    import torch

    from editworld.dataset import prompt_oracle
    from editworld.editor import EditWorldEditorPolicy

    opts = rl_args(args, reward)
    folder = rl.editor_folder(opts)
    train_spec, train_prompts = rl.prompt_pool(args.train_prompts, rl.TRAIN_SEED)
    eval_spec, eval_prompts = rl.prompt_pool(args.eval_prompts, rl.EVAL_SEED)
    oracle = prompt_oracle(eval_spec["n"], rl.SIZE, rl.EVAL_SEED)
    reward_fn = rl.training_reward(opts, train_spec)
    before = after = None
    gains, per_seed = [], []
    for seed in range(args.seeds):
        opts.seed = seed
        torch.manual_seed(seed)
        policy = EditWorldEditorPolicy.from_pretrained(folder, lora_r=opts.lora_r,
                                                       device=args.device)  # fmt: skip
        if before is None:  # LoRA starts at zero: the same editor for every seed
            before = rl.evaluate_each(policy, eval_prompts, oracle, opts)
        rl.run_rl(opts, policy, reward_fn, train_prompts)
        after = rl.evaluate_each(policy, eval_prompts, oracle, opts)
        gains.append([a - b for a, b in zip(after, before, strict=True)])
        per_seed.append({"seed": seed, "held_out_after": round(float(np.mean(after)), 4)})
    per_prompt = np.mean(gains, axis=0)  # each prompt's gain, averaged over the seeds
    return {
        "held_out_before": round(float(np.mean(before)), 4),
        "held_out_after": round(float(np.mean(before) + per_prompt.mean()), 4),
        "gain": round(float(per_prompt.mean()), 4),
        "gain_ci95": bootstrap_mean(per_prompt, args.resamples),
        "per_seed": per_seed,
        "_per_prompt": per_prompt.tolist(),
    }


def rl_stage(args, reward_models: dict | None) -> dict:
    out: dict = {"train_prompts": args.train_prompts, "eval_prompts": args.eval_prompts,
                 "eval_per_prompt": args.eval_per, "seeds": args.seeds, "rounds": args.rounds,
                 "learning_rate": args.lr}  # fmt: skip
    with Stage(oracle := {}):
        oracle.update(rl_runs(args, "oracle"))
    out["oracle"] = oracle
    passed = [label for label, r in (reward_models or {}).items() if r.get("gate_passed")]
    if not passed:
        why = ("no learned reward passed the gate" if reward_models
               else "no learned reward given (--editscore-base)")  # fmt: skip
        out["learned"] = {"skipped": why}
    else:
        best = max(passed, key=lambda label: reward_models[label]["accuracy"]["overall"])
        if best == "editscore base":
            args.adapter = None
        with Stage(learned := {"reward": best}):
            learned.update(rl_runs(args, "editscore"))
        learned["share_of_oracle_gain"] = round(learned["gain"] / oracle["gain"], 3)
        learned["share_ci95"] = bootstrap_ratio(
            learned["_per_prompt"], oracle["_per_prompt"], args.resamples
        )
        out["learned"] = learned
    for result in (out["oracle"], out["learned"]):
        result.pop("_per_prompt", None)
    return out


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result: dict = {"device": args.device, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="editworld-loop-") as tmp:
        bench = None
        if args.stages & {"reward", "curve"}:  # one held-out benchmark for both
            bench = truth_pairs(args, Path(tmp))
        if "reward" in args.stages:
            with Stage(stage := {}):
                stage.update(reward_stage(args, bench))
            result["reward_models"] = stage
        if "curve" in args.stages:
            with Stage(stage := {}):
                stage.update(curve_stage(args, bench, Path(tmp)))
            result["judge_curve"] = stage
        if "rl" in args.stages:
            scorers = result.get("reward_models", {}).get("scorers")
            learned = {k: v for k, v in (scorers or {}).items() if k.startswith("editscore")}
            with Stage(stage := {}):
                stage.update(rl_stage(args, learned or None))
            result["rl"] = stage
    print(json.dumps(result))


if __name__ == "__main__":
    main()
