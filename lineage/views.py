"""The lineage page (and its fragment, embedded by the reward-model, benchmark-run and RL-run
pages) and its API: the same graph as JSON."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsResearcher, researcher_required
from lineage.graph import MAX_NODES, UnknownObject, lineage

KIND_LABELS = {
    "dataset": "annotation dataset", "snapshot": "snapshot", "benchmark_dataset": "benchmark",
    "reward_model": "reward model", "benchmark_run": "benchmark run", "rl_run": "RL run",
    "prompts_file": "prompts file",
}  # fmt: skip


def _graph(kind: str, pk: int):
    try:
        return lineage(kind, pk)
    except UnknownObject as exc:
        raise Http404(str(exc)) from None


@require_GET
@researcher_required
def lineage_page(request, kind: str, object_id: int):
    graph = _graph(kind, object_id)
    columns = []
    for column in graph.columns():
        shown = []
        for node in column:
            shown.append({
                **node.__dict__, "kind_label": KIND_LABELS[node.kind],
                "inputs": [(source, relation) for source, relation in graph.inputs_of(node.key)],
            })  # fmt: skip
        columns.append(shown)
    focus = graph.nodes[graph.focus]
    context = {"focus": focus, "columns": columns, "truncated": graph.truncated,
               "max_nodes": MAX_NODES, "embedded": bool(request.htmx)}  # fmt: skip
    template = "lineage/graph.html#graph" if request.htmx else "lineage/graph.html"
    return render(request, template, context)


class LineageApi(APIView):
    """GET: the lineage graph of one object (kind: one of KINDS)."""

    permission_classes = [IsResearcher]

    @extend_schema(
        summary="What an object came from and what was made from it",
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
    )
    def get(self, request, kind: str, object_id: int):
        return Response(lineage(kind, object_id).as_dict())  # UnknownObject: 404
