"""The web process never imports torch & co.; ML subpackages never import Django."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# pyarrow too: it only writes benchmark snapshots, in the worker.
HEAVY = ("torch", "transformers", "diffusers", "peft", "accelerate", "pyarrow")

PROBE = f"""
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
import django
django.setup()
import config.wsgi
from django.urls import URLPattern, URLResolver, get_resolver
from config.celery import app

def walk(resolver):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry)
        else:
            yield entry.callback  # resolving imports the view module

callbacks = list(walk(get_resolver()))
app.loader.import_default_modules()  # every tasks.py, as a worker would
loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(len(callbacks), loaded)
"""


def test_web_process_does_not_import_ml_libraries(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "EDITLOOP_VAR_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.strip().split(" ", 1)
    assert int(count) > 20  # really walked the URL tree (admin, jobs, api...)
    assert loaded == "[]"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ml_subpackages_never_import_django():
    ml_files = sorted(REPO.glob("*/ml/**/*.py")) + sorted(REPO.glob("mlcore/**/*.py"))
    assert {p.relative_to(REPO).parts[0] for p in ml_files} >= {
        "annotation",
        "benchmark",
        "rewardmodel",
        "rltraining",
    }
    # (an engine importing an app's web side is refused by the test below)
    offenders = {
        str(p.relative_to(REPO)): sorted(_imports(p) & {"django", "rest_framework", "celery"})
        for p in ml_files
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    # the shared plumbing depends on nothing of the project
    assert {p.name: sorted(_imports(p) & set(PACKAGES)) for p in REPO.glob("mlcore/*.py")
            if _imports(p) & set(PACKAGES)} == {}  # fmt: skip


APPS = (
    "accounts",
    "annotation",
    "benchmark",
    "config",
    "demo",
    "jobs",
    "rewardmodel",
    "rltraining",
)


def _project_imports(path: Path, packages=APPS) -> set[str]:
    """Full module names of ``packages`` that ``path`` imports, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in packages}


def test_ml_code_imports_only_ml_code_of_the_apps():
    """An engine (``<app>/ml/``) may use another app's engine, never its models, services or
    views: what the web side knows reaches an engine as plain data or paths."""
    offenders = {}
    for path in sorted(REPO.glob("*/ml/**/*.py")):
        bad = sorted(
            name for name in _project_imports(path) if len(name.split(".")) < 2
            or name.split(".")[1] != "ml"
        )  # fmt: skip
        if bad:
            offenders[str(path.relative_to(REPO))] = bad
    assert offenders == {}
    # the benchmark's Django-free code lives in its engine package, under this guard
    assert {p.name for p in (REPO / "benchmark" / "ml").glob("*.py")} >= {
        "scorers.py", "bench_data.py", "metric.py", "snapshot.py",
    }  # fmt: skip


def test_the_rl_engine_names_no_domain():
    """EditWorld plugs into the RL engine through an entry point (rltraining/ml/plugins.py); the
    engine neither imports it nor names one of its modules in a string."""
    named = {}
    for path in sorted((REPO / "rltraining" / "ml").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body and isinstance(node.body[0], ast.Expr)
        }  # fmt: skip
        hits = sorted(
            {name for name in _imports(path) if name == "editworld"}
            | {
                node.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings and "editworld" in node.value.lower()
            }
        )  # fmt: skip
        if hits:
            named[path.name] = hits
    assert named == {}


PACKAGES = ("accounts", "annotation", "benchmark", "demo", "editworld", "jobs", "lineage", "media",
            "mlcore", "rewardmodel", "rltraining")  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (lazy imports inside functions included; a
    `from package import module` counts as importing the module)."""
    modules = {
        _module_name(p): p
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if "migrations" not in p.parts
    }
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _project_imports(path, PACKAGES):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _component(module: str) -> str:
    """An app's engine (``<app>.ml``) is a layer of its own, below every app's web side."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[1:2] == ["ml"] else parts[0]


def test_no_import_cycles_between_apps_or_modules():
    """Apps and engines form a layered graph (config, the project's composition root, aside):
    no two apps import each other, and no two modules of the project do, even lazily."""
    graph = _import_graph()
    components: dict[str, set[str]] = {}
    for module, targets in graph.items():
        here = _component(module)
        components.setdefault(here, set()).update(
            _component(t) for t in targets if _component(t) != here
        )
    assert _cycles(components) == []
    assert _cycles(graph) == []
    # the demo sits on top: nothing in the apps imports it
    assert sorted(m for m, targets in graph.items() if any(
        t.split(".")[0] == "demo" for t in targets) and not m.startswith("demo")) == []  # fmt: skip


def test_the_graph_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_apps_reach_other_apps_through_services_selectors_or_snapshots():
    """An app reads and changes another app's data through that app's services and selectors
    (or a snapshot's files), never its models: what an app stores stays its own business.
    accounts.models is the exception: User and Role are the project's identity."""
    offenders = {}
    for module, targets in _import_graph().items():
        app = module.split(".")[0]
        bad = sorted(
            t for t in targets
            if t.endswith(".models") and t.split(".")[0] not in (app, "accounts")
        )  # fmt: skip
        if bad:
            offenders[module] = bad
    assert offenders == {}
