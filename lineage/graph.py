"""The lineage graph of one object: everything it came from (upstream, transitively) and
everything made from it (downstream, transitively), with content hashes.

Edges always point from an input to what was made from it:

    dataset ──snapshot──> snapshot ──imported as──> benchmark dataset ──scored in──> benchmark run
                          snapshot ──trained──> reward model ──scored in──> benchmark run
                          snapshot ──prompts of──> RL run <──reward of── reward model
                          RL run ──samples sent to──> dataset (a review dataset: the loop closes)

A reward model is linked to the benchmark runs that scored with its weights (the same base and
adapter folders), whoever queued them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field

from django.urls import reverse

from annotation import selectors as annotation
from benchmark import selectors as benchmark
from config.errors import NotFound
from rewardmodel import selectors as rewardmodel
from rltraining import selectors as rltraining

KINDS = ("dataset", "snapshot", "benchmark_dataset", "reward_model", "benchmark_run", "rl_run")


@dataclass(frozen=True)
class PromptsFile:
    """An RL run's uploaded prompts: a node of the graph (no row of its own; its run's id)."""

    pk: int
    name: str
    sha256: str


MAX_NODES = 200  # a lineage larger than this is cut (and says so)


@dataclass(frozen=True)
class Node:
    key: str  # "<kind>:<id>"
    kind: str
    id: int  # the row's id (a prompts file: its run's)
    label: str
    sha256: str = ""  # the content hash that pins it ("" where it has none)
    hash_of: str = ""  # what the hash covers
    url: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relation: str


@dataclass
class Graph:
    focus: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    truncated: bool = False

    def as_dict(self) -> dict:
        return {
            "focus": self.focus,
            "nodes": [asdict(n) for n in self.nodes.values()],
            "edges": [asdict(e) for e in self.edges],
            "truncated": self.truncated,
        }

    def columns(self) -> list[list[Node]]:
        """Nodes by depth (the longest chain of inputs before them): a left-to-right layout."""
        inputs: dict[str, list[str]] = {key: [] for key in self.nodes}
        for edge in self.edges:
            inputs[edge.target].append(edge.source)
        depth: dict[str, int] = {}

        def depth_of(key: str, seen: frozenset = frozenset()) -> int:
            if key not in depth:
                parents = [p for p in inputs[key] if p not in seen]
                depth[key] = 1 + max((depth_of(p, seen | {key}) for p in parents), default=-1)
            return depth[key]

        out: list[list[Node]] = []
        for key, node in self.nodes.items():
            d = depth_of(key)
            out.extend([] for _ in range(d + 1 - len(out)))
            out[d].append(node)
        return out

    def inputs_of(self, key: str) -> list[tuple[Node, str]]:
        return [(self.nodes[e.source], e.relation) for e in self.edges if e.target == key]


class UnknownObject(NotFound):
    pass


# --- one object of each kind: its node, its inputs and its outputs


def _load(kind: str, pk: int):
    getter = {
        "dataset": lambda: annotation.dataset_get(pk=pk),
        "snapshot": lambda: annotation.snapshot_get_any(pk),
        "benchmark_dataset": lambda: benchmark.benchmark_dataset_get(pk=pk),
        "reward_model": lambda: rewardmodel.model_get(pk),
        "benchmark_run": lambda: benchmark.run_get(pk),
        "rl_run": lambda: rltraining.run_get(pk),
    }.get(kind)
    obj = getter() if getter else None
    if obj is None:
        raise UnknownObject(f"no {kind.replace('_', ' ')} with id {pk}")
    return obj


def _node(kind: str, obj) -> Node:
    key = f"{kind}:{obj.pk}"
    if kind == "dataset":
        return Node(key, kind, obj.pk, obj.name, url=reverse("annotate-quality", args=[obj.pk]))
    if kind == "prompts_file":
        return Node(key, kind, obj.pk, obj.name.rpartition("/")[2], obj.sha256,
                    "the file's bytes" if obj.sha256 else "", detail="uploaded prompts")  # fmt: skip
    if kind == "snapshot":
        return Node(key, kind, obj.pk, obj.name, obj.sha256, "its files (rows and images)",
                    detail=f"{obj.get_kind_display()}, {obj.rows} rows")  # fmt: skip
    if kind == "benchmark_dataset":
        return Node(key, kind, obj.pk, obj.name, url=reverse("benchmark:leaderboard"),
                    detail=f"{obj.layout}, {obj.rows} pairs")  # fmt: skip
    if kind == "reward_model":
        return Node(key, kind, obj.pk, obj.name, obj.weights_sha256,
                    "its adapter's files" if obj.weights_sha256 else "",
                    url=reverse("rewardmodel:detail", args=[obj.pk]),
                    detail=f"{obj.get_origin_display()}, {obj.status}")  # fmt: skip
    if kind == "benchmark_run":
        overall, _ = benchmark.headline(obj)
        shown = f"overall {overall:.3f}" if isinstance(overall, int | float) else obj.job.status
        return Node(key, kind, obj.pk, obj.label, obj.scorer_key, "the scorer's full settings",
                    url=reverse("benchmark:run-detail", args=[obj.pk]), detail=shown)  # fmt: skip
    return Node(key, kind, obj.pk, obj.name, url=reverse("rltraining:detail", args=[obj.pk]),
                detail=f"RL run, {obj.job.status}")  # fmt: skip


def _inputs(kind: str, obj) -> list[tuple[str, object, str]]:
    """(kind, object, relation) of what `obj` was made from."""
    if kind == "dataset":
        return [("rl_run", r, "samples sent to") for r in rltraining.runs_reviewed_in(obj.pk)]
    if kind == "snapshot":
        return [("dataset", obj.dataset, "snapshot")] if obj.dataset_id else []
    if kind == "benchmark_dataset":
        return [("snapshot", obj.snapshot, "imported as")] if obj.snapshot_id else []
    if kind == "reward_model":
        return [("snapshot", obj.snapshot, "trained")] if obj.snapshot_id else []
    if kind == "prompts_file":
        return []
    if kind == "benchmark_run":
        out = [("benchmark_dataset", obj.dataset, "scored in")]
        if obj.scorer.get("kind") == "editscore":
            weights = {"base": obj.scorer.get("base", ""), "adapter": obj.scorer.get("adapter", "")}
            out += [
                ("reward_model", m, "scored in") for m in rewardmodel.models_of_weights(**weights)
            ]
        return out
    # rl_run
    out = []
    if obj.snapshot_id:
        out.append(("snapshot", obj.snapshot, "prompts of"))
    elif obj.dataset_id:
        out.append(("dataset", obj.dataset, "prompts of"))
    elif obj.prompts_file:
        file = PromptsFile(obj.pk, obj.prompts_file, obj.prompts_sha256)
        out.append(("prompts_file", file, "prompts of"))
    if obj.reward_model_id:
        out.append(("reward_model", obj.reward_model, "reward of"))
    return out


def _outputs(kind: str, obj) -> list[tuple[str, object, str]]:
    """(kind, object, relation) of what was made from `obj`."""
    if kind == "dataset":
        return [("snapshot", s, "snapshot") for s in annotation.snapshots_of_dataset(obj.pk)] + [
            ("rl_run", r, "prompts of") for r in rltraining.runs_prompted_by_dataset(obj.pk)
        ]
    if kind == "snapshot":
        return (
            [("benchmark_dataset", b, "imported as")
             for b in benchmark.benchmark_datasets_of_snapshot(obj.pk)]
            + [("reward_model", m, "trained") for m in rewardmodel.models_of_snapshot(obj.pk)]
            + [("rl_run", r, "prompts of") for r in rltraining.runs_of_snapshot(obj.pk)]
        )  # fmt: skip
    if kind == "benchmark_dataset":
        return [
            ("benchmark_run", r, "scored in") for r in benchmark.runs_of_benchmark_dataset(obj.pk)
        ]
    if kind == "reward_model":
        runs = benchmark.runs_of_weights(base=obj.base, adapter=obj.adapter)
        return [("benchmark_run", r, "scored in") for r in runs] + [
            ("rl_run", r, "reward of") for r in rltraining.runs_of_reward_model(obj.pk)
        ]
    if kind == "rl_run":
        return [("dataset", obj.review_dataset, "samples sent to")] if obj.review_dataset_id else []
    return []


def lineage(kind: str, pk: int) -> Graph:
    """The graph around one object; UnknownObject when there is none."""
    if kind not in KINDS:
        raise UnknownObject(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    obj = _load(kind, pk)
    focus = _node(kind, obj)
    graph = Graph(focus=focus.key, nodes={focus.key: focus})
    edges: set[tuple[str, str, str]] = set()
    # Upstream and downstream separately: "made from the same snapshot" is not lineage.
    for step, upstream in ((_inputs, True), (_outputs, False)):
        queue = deque([(kind, obj)])
        seen = {focus.key}
        while queue:
            here_kind, here = queue.popleft()
            here_key = f"{here_kind}:{here.pk}"
            for other_kind, other, relation in step(here_kind, here):
                node = graph.nodes.get(f"{other_kind}:{other.pk}") or _node(other_kind, other)
                if node.key not in graph.nodes and len(graph.nodes) >= MAX_NODES:
                    graph.truncated = True
                    continue
                graph.nodes[node.key] = node
                edges.add(
                    (node.key, here_key, relation) if upstream else (here_key, node.key, relation)
                )
                if node.key not in seen:
                    seen.add(node.key)
                    queue.append((other_kind, other))
    graph.edges = [Edge(*e) for e in sorted(edges)]
    return graph
