"""Hostile input: schemathesis fuzzes every operation of the OpenAPI schema over real HTTP
(pytest-django's live_server), as an annotator and as a researcher, and no answer may be a 5xx.

The schema is the one the server serves at /api/schema/. Every operation is fuzzed, none is
excluded: the state-changing ones only queue jobs or ring a worker's bell (the test broker is
in memory and no worker runs), so none starts long work. Each generated request is sent as
generated (ids are random, so mostly 404s) and once more with its ids replaced by those of real
objects, so that the fuzzed bodies and query strings reach the code behind the lookups; a POST
is sent a third time as a body the endpoint accepts with one field taken from the fuzzed body
(for POST /api/jobs/: each job kind's config with one field fuzzed), to get past the first
refusal.
"""

import dataclasses
import uuid
import zlib

import pytest
import schemathesis
from django.utils import timezone
from django.utils.module_loading import import_string
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from accounts.models import Role
from accounts.services import user_api_token
from annotation.models import Group, Review
from annotation.quality import report_refresh
from annotation.services import ranking_submit
from benchmark.models import BenchmarkDataset, BenchmarkRun
from benchmark.runs import run_enqueue
from jobs import registry
from jobs.models import WorkerHeartbeat
from tests.annotation_fixtures import make_dataset
from tests.factories import JobFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DIMS = ("prompt_following", "consistency", "overall")
# Bounded: under a minute for the whole file on two cores (each example is sent as both
# callers, with random ids, real ids, and a valid body with one fuzzed field: up to six requests).
MAX_EXAMPLES = 25


@pytest.fixture
def world(settings, tmp_path):
    """Dataset `ds` (annotators anna and bob; bob ranked g0, g1 awaits adjudication, a
    report exists), a job with metrics, a benchmark dataset and a finished run."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BENCHMARK_PUBLIC_READ = False
    anna = UserFactory(username="anna", role=Role.ANNOTATOR)
    rita = UserFactory(username="rita", role=Role.RESEARCHER)
    bob = UserFactory(username="bob")
    dataset = make_dataset("ds", groups=3, candidates=3, annotators=[anna, bob])
    g0, g1, _ = dataset.groups.order_by("pk")
    ids = list(g0.candidates.values_list("external_id", flat=True))
    ranking_submit(group=g0, annotator=bob, submission_id=uuid.uuid4(),
                   tiers=dict.fromkeys(DIMS, [ids[:1], ids[1:]]))  # fmt: skip
    Group.objects.filter(pk=g1.pk).update(review=Review.QUEUED)
    report_refresh(dataset)

    bench = BenchmarkDataset.objects.create(name="bench", layout="snapshot", source_path="-")
    run = run_enqueue(dataset=bench, scorer={"kind": "random", "seed": 1}, label="coin")
    BenchmarkRun.objects.filter(pk=run.pk).update(
        metric={"overall": {"overall": 0.5}, "ci95": {"overall": {}}, "groups": {}, "tasks": {}}
    )
    job = JobFactory()
    WorkerHeartbeat.objects.create(hostname="w@h", queues=["default"], seen_at=timezone.now())
    return {
        "tokens": {"annotator": user_api_token(user=anna), "researcher": user_api_token(user=rita)},
        "dataset_id": dataset.pk, "group_ids": [g0.pk, g1.pk], "job_id": job.pk,
        "run_id": run.pk, "bench_id": bench.pk, "candidate": g0.candidates.first().token,
        "candidate_tokens": {
            g.pk: list(g.candidates.values_list("token", flat=True)) for g in (g0, g1)
        },
    }  # fmt: skip


@pytest.fixture
def served_schema(live_server, world):
    """The schema as the server serves it, read over HTTP with the researcher's token."""
    return schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema/",
        headers={
            "Authorization": f"Token {world['tokens']['researcher']}",
            "Accept": "application/vnd.oai.openapi+json",
        },
    )


def _operations() -> list[tuple[str, str]]:
    """Every operation of the schema, known at collection time: one test each. (Not
    schemathesis' own pytest plugin: its from_fixture() fails on pytest 9.2.)"""
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return [(method.upper(), path) for path, methods in paths.items() for method in methods]


OPERATIONS = _operations()


def _real_ids(path_parameters: dict, world: dict, n: int) -> dict:
    """The path parameters with each id replaced by a real object's (n picks which group),
    and image keys by a group id or candidate token that matches the kind."""
    real = dict(path_parameters)
    for name in real:
        if name == "group_id":
            real[name] = world["group_ids"][n % 2]
        elif name == "key":
            kind = str(real.get("kind", ""))
            real[name] = (
                world["candidate"] if kind.startswith("candidate") else world["group_ids"][0]
            )
        elif name in world:
            real[name] = world[name]
    return real


def test_every_api_path_is_fuzzed():
    assert len(OPERATIONS) >= 20 and {p for _, p in OPERATIONS} >= {"/api/me/", "/api/jobs/"}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_operation_answers_a_server_error(method, path, live_server, world, served_schema):
    operation = served_schema[path][method]
    # Valid requests (positive) and requests that break the schema (negative): wrong types,
    # missing fields, out-of-range values.
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,  # nothing written into the working tree
        derandomize=True,  # the same examples on every run: a failure is reproducible
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        generated = (dict(case.path_parameters or {}), case.body)
        n = zlib.crc32(repr(generated).encode())
        variants = [generated]
        real_ids = _real_ids(generated[0], world, n)
        if generated[0]:
            variants.append((real_ids, case.body))
        valid = _valid_body(method, path, world, real_ids, n)
        if valid is not None and isinstance(case.body, dict) and case.body:
            variants.append((real_ids, _one_field_fuzzed(valid, case.body, n)))
        for path_parameters, body in variants:
            case.path_parameters, case.body = path_parameters, body
            for role, token in world["tokens"].items():
                response = case.call(
                    base_url=live_server.url, headers={"Authorization": f"Token {token}"}
                )
                assert response.status_code < 500, (
                    f"{role}: {method} {response.request.url} -> {response.status_code}\n"
                    f"body: {body!r}\n{response.text[:2000]}"
                )
                case.validate_response(response, checks=[not_a_server_error])
        case.path_parameters, case.body = generated

    fuzz()


def _valid_body(method: str, path: str, world: dict, path_parameters: dict, n: int):
    """A body the operation accepts (for the real objects of path_parameters), or None."""
    if method != "POST":
        return None
    group_tokens = world["candidate_tokens"].get(path_parameters.get("group_id"), [])
    tiers = dict.fromkeys(DIMS, [[t] for t in group_tokens])
    if path == "/api/jobs/":
        kind = JOB_KINDS[n % len(JOB_KINDS)]  # each kind's config dataclass gets fuzzed
        return {"kind": kind, "config": _job_config(kind, world)}
    return {
        "/api/benchmark/runs/": {"dataset": "bench", "scorer": "constant", "label": "l"},
        "/api/groups/{group_id}/rankings/": {"submission_id": str(uuid.uuid4()), "tiers": tiers},
        "/api/groups/{group_id}/adjudication/": {"tiers": tiers, "note": "n"},
        "/api/datasets/{dataset_id}/snapshots/": {"name": f"s-{n}", "policy": "majority"},
    }.get(path)


def _job_config(kind: str, world: dict) -> dict:
    """A config each job kind accepts (its required fields)."""
    return {
        "annotation.export_snapshot": {"dataset_id": world["dataset_id"], "name": "snap"},
        "annotation.import": {"path": "/nowhere/upload.zip", "dataset": "imported"},
        "benchmark.run": {"dataset_id": world["bench_id"], "scorer": {"kind": "constant"}},
        "benchmark.run_gpu": {"dataset_id": world["bench_id"], "scorer": {"kind": "constant"}},
        "jobs.selftest": {"steps": 2},
        "rewardmodel.finetune": {
            "model_name": "m", "dataset_id": world["dataset_id"], "base_model": "/models/base",
        },
        "rltraining.best_of_n": {"run_id": 1},
        "rltraining.train": {
            "run_name": "r", "policy": "/models/tiny", "reward": {"kind": "brightness"},
        },
    }.get(kind, {})  # fmt: skip


def _one_field_fuzzed(valid: dict, fuzzed: dict, n: int) -> dict:
    """The valid body with one field (picked by n) taken from the fuzzed one; for a job, one
    field of the kind's config gets a fuzzed value (the config's own fields, so the
    dataclass's checks run, not the unknown-field refusal)."""
    key = sorted(fuzzed)[n % len(fuzzed)]
    if "kind" in valid and isinstance(valid.get("config"), dict):
        names = _config_fields(valid["kind"])
        if names:
            return {**valid, "config": {**valid["config"], names[n % len(names)]: fuzzed[key]}}
    return {**valid, key: fuzzed[key]}


def _config_fields(kind: str) -> list[str]:
    config = registry.get(kind).config
    return [f.name for f in dataclasses.fields(import_string(config))] if config else []


JOB_KINDS = [k.name for k in registry.all_kinds()]


WRITES = [(m, p) for m, p in OPERATIONS if m in ("POST", "PUT", "PATCH")]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_a_deeply_nested_body_is_a_400_on_every_write(method, path, live_server, world):
    """100,000 levels of JSON (200 kB) to every write operation, with real ids, as the
    researcher (who may call them all): never a 5xx; a 400 names the problem."""
    import re
    import urllib.error
    import urllib.request

    names = re.findall(r"{(\w+)}", path)
    url = path.format(**_real_ids(dict.fromkeys(names, 0), world, 0))
    request = urllib.request.Request(
        live_server.url + url, data=b"[" * 100_000 + b"]" * 100_000, method=method,
        headers={"Content-Type": "application/json",
                 "Authorization": f"Token {world['tokens']['researcher']}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as refused:
        status, body = refused.code, refused.read()
    assert status < 500, body[:500]
    # endpoints that read a body refuse it, naming why; the others (skip, cancel, next...)
    # never look at it, and a lookup may fail first (404)
    assert status != 400 or b"nested too deeply" in body, body[:300]
