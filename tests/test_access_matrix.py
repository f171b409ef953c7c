"""Who may do what: every URL of the project (the admin aside) x four callers, over HTTP.

Callers: ANON (not signed in), OUTSIDER (an annotator of another dataset), ANNOTATOR (an
annotator of the dataset the URL is about) and RESEARCHER. Pages are called with a session,
the API with the caller's token (GET endpoints with a session too). A refused caller of a
state-changing endpoint must leave the state unchanged; an allowed one must change it (so
the probe is known to see the effect).

Policy, as the table shows it: anonymous page requests are sent to the login page (302),
anonymous API requests get 401. Annotators get 403 on researcher pages and endpoints, and on
the annotation objects (datasets, groups, images) of datasets they are not assigned to. The
benchmark leaderboard and runs are readable by every signed-in user (and by anyone when
BENCHMARK_PUBLIC_READ is on), but only researchers start runs.

`test_the_matrix_covers_every_url` fails when a URL is added without a row here.
"""

import io
import json
import uuid
import zipfile
from dataclasses import dataclass, replace
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import Role, User
from accounts.services import user_api_token
from annotation.models import (
    Adjudication,
    Assignment,
    Candidate,
    Dataset,
    Group,
    Ranking,
    RankingVersion,
    Review,
)
from annotation.quality import report_refresh
from annotation.services import ranking_submit
from benchmark.models import (
    BenchmarkCandidate,
    BenchmarkDataset,
    BenchmarkPair,
    BenchmarkRun,
    ScoreCache,
)
from benchmark.runs import run_enqueue
from hooks.models import Webhook
from jobs.models import Job, WorkerHeartbeat
from media.storage import store_image
from rewardmodel.models import RewardModel
from rltraining.jobs import rl_enqueue
from rltraining.models import RLRun, RLSample
from tests.annotation_fixtures import make_dataset
from tests.benchmark_fixtures import png
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db

ANON, OUTSIDER, ANNOTATOR, RESEARCHER = "anonymous", "outsider", "annotator", "researcher"
ROLES = (ANON, OUTSIDER, ANNOTATOR, RESEARCHER)
DIMS = ("prompt_following", "consistency", "overall")


# ------------------------------------------------------------------ the world every row runs in


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RL_RUNS_DIR = tmp_path / "rl_runs"
    settings.BENCHMARK_PUBLIC_READ = False


@pytest.fixture
def world(tmp_path, settings, monkeypatch):
    """Dataset `ds` (annotators anna and bob; bob ranked g0, g1 awaits adjudication) and
    `other` (annotator otto); a job, a benchmark run, a reward model, an RL run with samples."""
    users = {
        OUTSIDER: UserFactory(username="otto"),
        ANNOTATOR: UserFactory(username="anna"),
        RESEARCHER: UserFactory(username="rita", role=Role.RESEARCHER),
    }
    bob = UserFactory(username="bob")
    dataset = make_dataset("ds", groups=3, candidates=3, annotators=[users[ANNOTATOR], bob])
    other = make_dataset("other", groups=1, candidates=2, annotators=[users[OUTSIDER]])
    g0, g1, g2 = dataset.groups.order_by("pk")
    _rank(g0, bob)
    # g2 was served to anna and rita, their leases since expired: a ranking is accepted only
    # for a group one was served (late is fine)
    now = timezone.now()
    for role in (ANNOTATOR, RESEARCHER):
        Assignment.objects.create(group=g2, annotator=users[role], leased_at=now,
                                  expires_at=now - timedelta(minutes=1))  # fmt: skip
    Group.objects.filter(pk=g1.pk).update(review=Review.QUEUED)
    # g3, unranked, was skipped by anna and rita: each may reopen it
    g3 = Group.objects.create(dataset=dataset, external_id="ds-g3", instruction="i3",
                              task_type="color_alter", source=g0.source, source_thumb=g0.source)  # fmt: skip
    for c in g0.candidates.all():
        Candidate.objects.create(group=g3, external_id=f"ds-g3-{c.pk}", editor=c.editor,
                                 image=c.image, thumb=c.thumb)  # fmt: skip
    for role in (ANNOTATOR, RESEARCHER):
        Assignment.objects.create(group=g3, annotator=users[role], leased_at=now, expires_at=now,
                                  status=Assignment.Status.SKIPPED)  # fmt: skip
    report_refresh(dataset)

    bench = BenchmarkDataset.objects.create(name="bench", layout="snapshot", source_path="-")
    bench_run = run_enqueue(dataset=bench, scorer={"kind": "random", "seed": 1}, label="coin")
    rl_run = rl_enqueue(
        config={"run_name": "r1", "policy": "/models/tiny", "reward": {"kind": "brightness"},
                "dataset_id": dataset.pk},
    )  # fmt: skip
    for round_ in (0, 1):  # base and trained evaluation samples: the run can be sent
        source, image = store_image(png(30), "source"), store_image(png(90 + round_), "sample")
        sample = RLSample.objects.create(
            run=rl_run, kind=RLSample.Kind.EVAL, round=round_, prompt_index=0, sample_index=0,
            prompt_key="k0", instruction="make it red", source=source.name,
            source_thumb=source.thumb, image=image.name, thumb=image.thumb, reward=0.5,
        )  # fmt: skip
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")

    # /healthz: a live worker and a writable broker folder, so everyone gets 200.
    WorkerHeartbeat.objects.create(hostname="w@h", queues=["default"], seen_at=timezone.now())
    settings.CELERY_BROKER_URL = "filesystem://"
    broker = {k: str(tmp_path / "broker" / k) for k in ("in", "out", "processed")}
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": broker["in"], "data_folder_out": broker["out"],
        "processed_folder": broker["processed"],
    }  # fmt: skip
    for folder in broker.values():
        (tmp_path / "broker").joinpath(folder).mkdir(parents=True, exist_ok=True)
    # Report refreshes only ring a worker's bell: count the rings.
    refreshes = []
    monkeypatch.setattr(
        "annotation.quality_api.send_task", lambda task, args, **kw: refreshes.append(args)
    )
    # The reward model beats the pixel baseline on a benchmark: the gate lets it be promoted.
    model = RewardModel.objects.create(name="es", base="/m", origin="imported")
    for g in range(20):  # the gate compares on pairs: es orders 18 of 20 right, pixel 10
        win, lose = (BenchmarkCandidate.objects.create(
            dataset=bench, key=f"b{g}-{side}", instruction=f"i{g}", source=f"s{g}",
            image=f"b{g}-{side}", content_hash=f"h{g}{side}") for side in "wl")  # fmt: skip
        BenchmarkPair.objects.create(dataset=bench, row=g, preferred=win, other=lose,
                                     task_type="extract", dimension="overall")  # fmt: skip
        for label, right in (("es", g < 18), ("pixel", g % 2 == 0)):
            for side, value in (("w", 1.0), ("l", 0.0)):
                ScoreCache.objects.create(scorer_key=label, content_hash=f"h{g}{side}",
                                          scores={"overall": value if right else 1 - value})  # fmt: skip
    for label, scorer, accuracy in (
        ("es", model.scorer_spec(), 0.9),
        ("pixel", {"kind": "pixel"}, 0.5),
    ):
        BenchmarkRun.objects.create(
            job=JobFactory(), dataset=bench, label=label, scorer=scorer, scorer_key=label,
            metric={"overall": {"overall": accuracy}, "ci95": {"overall": {"overall": [accuracy - 0.05, accuracy + 0.05]}}},
        )  # fmt: skip
    return SimpleNamespace(
        users=users, tokens={r: user_api_token(user=u) for r, u in users.items()},
        dataset=dataset, other=other, g0=g0, g1=g1, g2=g2, g3=g3,
        candidate=g0.candidates.first(),
        job=JobFactory(), bench=bench, bench_run=bench_run,
        model=model,
        rl_run=rl_run, sample=sample, checkpoint=checkpoint, refreshes=refreshes,
    )  # fmt: skip


def _rank(group, user):
    ids = list(group.candidates.values_list("external_id", flat=True))
    ranking_submit(group=group, annotator=user, submission_id=uuid.uuid4(),
                   tiers=dict.fromkeys(DIMS, [ids]))  # fmt: skip


def _annas(w) -> int:
    """Anna's ranking of g1, made for the rows that need one (the world has none of hers)."""
    anna = w.users[ANNOTATOR]
    if not Ranking.objects.filter(group=w.g1, annotator=anna).exists():
        _rank(w.g1, anna)
    return Ranking.objects.get(group=w.g1, annotator=anna).pk


def _tiers(group) -> dict:
    """A valid ranking of the group, in the tokens the API hands out."""
    tokens = list(group.candidates.values_list("token", flat=True))
    return {"tiers": dict.fromkeys(DIMS, [[t] for t in tokens])}


def _bundle() -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.jsonl", "{}\n")  # checked by the import job, not the view
    buffer.seek(0)
    buffer.name = "bundle.zip"
    return buffer


# ------------------------------------------------------------------ the matrix


@dataclass(frozen=True)
class Row:
    name: str  # the URL's name, with its namespace
    method: str
    expected: dict  # role -> status
    args: object = None  # world -> URL kwargs
    query: str = ""
    data: object = None  # world -> request body
    state: object = None  # world -> what a refused caller must leave as it is
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.name}{f' ({self.label})' if self.label else ''}"


def row(name, method, statuses, args=None, **options) -> Row:
    """statuses: (anonymous, outsider, annotator, researcher)."""
    return Row(name, method, dict(zip(ROLES, statuses, strict=True)), args, **options)


def dataset_arg(w):
    return {"dataset_id": w.dataset.pk}


def group_arg(w):
    return {"group_id": w.g0.pk}


def job_arg(w):
    return {"job_id": w.job.pk}


def rl_arg(w):
    return {"run_id": w.rl_run.pk}


def jobs(w):
    return Job.objects.count()


# Statuses for (anonymous, outsider, annotator, researcher). Researchers only: a page, a form
# (its POST redirects once done) and the API. Then what everyone signed in may read.
R_PAGE, R_POST, R_API = (302, 403, 403, 200), (302, 403, 403, 302), (401, 403, 403, 200)
SIGNED_IN_PAGE, SIGNED_IN_API = (302, 200, 200, 200), (401, 200, 200, 200)
# An annotation object of the dataset: its annotators and researchers, nobody else.
ASSIGNED_PAGE, ASSIGNED_API = (302, 403, 200, 200), (401, 403, 200, 200)

ROWS = [
    #  URL name, method, statuses, URL kwargs; body, what a refused call must leave unchanged
    # accounts and health
    row("home", "GET", SIGNED_IN_PAGE),
    row("login", "GET", (200, 302, 302, 302)),  # signed-in users are sent on
    row("logout", "POST", (302, 302, 302, 302)),
    row("api-token", "GET", SIGNED_IN_PAGE),  # one's own token only
    row("api-token", "POST", (302, 302, 302, 302), data=lambda w: {"action": "regenerate"},
        state=lambda w: set(Token.objects.values_list("key", flat=True))),
    row("healthz", "GET", (200, 200, 200, 200)),
    row("favicon", "GET", (301, 301, 301, 301)),
    row("api-docs", "GET", SIGNED_IN_API),  # the API's documentation page
    row("webhooks", "GET", R_PAGE),
    row("webhooks", "POST", R_POST,
        data=lambda w: {"action": "create", "url": "http://127.0.0.1:9/", "events": ["job.failed"]},
        state=lambda w: Webhook.objects.count()),
    row("people", "GET", R_PAGE),
    row("people", "POST", R_POST, data=lambda w: {"username": "newbie", "role": "annotator"},
        state=lambda w: User.objects.count()),
    row("person", "GET", R_PAGE, lambda w: {"user_id": w.users[ANNOTATOR].pk}),
    row("person", "POST", R_POST, lambda w: {"user_id": w.users[ANNOTATOR].pk},
        data=lambda w: {"action": "datasets", "datasets": [w.other.pk]},
        state=lambda w: sorted(w.users[ANNOTATOR].annotation_datasets.values_list("pk", flat=True))),
    # anyone may open an invitation link; a wrong or used one says so and changes nothing
    row("invite", "GET", (200, 200, 200, 200), lambda w: {"uidb64": "MQ", "token": "set-password"}),
    row("api-me", "GET", SIGNED_IN_API),
    row("api-schema", "GET", SIGNED_IN_API),  # the OpenAPI schema of /api/
    # jobs
    row("job-list", "GET", R_PAGE),
    row("job-selftest-create", "POST", R_POST, data=lambda w: {"steps": "2"}, state=jobs),
    row("job-detail", "GET", R_PAGE, job_arg),
    row("job-cancel", "POST", R_POST, job_arg,
        state=lambda w: Job.objects.get(pk=w.job.pk).status),
    row("api-job-list", "GET", R_API),
    row("api-job-list", "POST", (401, 403, 403, 201),
        data=lambda w: {"kind": "jobs.selftest", "config": {"steps": 2}}, state=jobs),
    row("api-job-kinds", "GET", R_API),
    row("api-job-detail", "GET", R_API, job_arg),
    row("api-job-metrics", "GET", R_API, job_arg),
    row("api-job-cancel", "POST", R_API, job_arg,
        state=lambda w: Job.objects.get(pk=w.job.pk).status),
    # annotation pages
    row("annotate-home", "GET", SIGNED_IN_PAGE),
    row("annotation-import", "GET", R_PAGE),
    row("annotation-import", "POST", R_POST,
        data=lambda w: {"file": _bundle(), "dataset": "up"}, state=jobs),
    row("annotate-dataset", "GET", ASSIGNED_PAGE, dataset_arg),
    row("annotate-workspace", "GET", ASSIGNED_PAGE, dataset_arg),
    row("annotate-quality", "GET", R_PAGE, dataset_arg),
    row("annotate-quality-refresh", "POST", R_POST, dataset_arg,
        state=lambda w: len(w.refreshes)),
    row("annotate-snapshot-export", "POST", R_POST, dataset_arg,
        data=lambda w: {"name": "snap1", "policy": "majority"}, state=jobs),
    row("annotate-review", "GET", R_PAGE, dataset_arg),
    row("annotate-review-workspace", "GET", R_PAGE, dataset_arg),
    row("annotate-browse", "GET", R_PAGE, dataset_arg),
    row("annotate-browse-group", "GET", R_PAGE,
        lambda w: {"dataset_id": w.dataset.pk, "group_id": w.g0.pk}),
    row("annotate-mine", "GET", SIGNED_IN_PAGE),  # one's own work only
    row("annotate-reopen", "POST", (302, 403, 302, 302), lambda w: {"group_id": w.g3.pk},
        state=lambda w: sorted(Assignment.objects.filter(group=w.g3).values_list("status", flat=True))),
    # one's own ranking: nobody else's (a researcher adjudicates instead) is acknowledged
    row("annotate-revise", "GET", (302, 404, 200, 404), lambda w: {"ranking_id": _annas(w)}),
    row("api-ranking-revisions", "POST", (401, 404, 201, 404), lambda w: {"ranking_id": _annas(w)},
        data=lambda w: {"submission_id": str(uuid.uuid4()), **_tiers(w.g1)},
        state=lambda w: RankingVersion.objects.count()),
    row("annotate-settings", "GET", R_PAGE, dataset_arg),
    row("annotate-settings", "POST", R_POST, dataset_arg,
        data=lambda w: {"revision_window_hours": "2", "lease_ttl_seconds": "600",
                        "gold_rate": "0", "repeat_rate": "0", "repeat_gap": "5",
                        "adjudication_threshold": "0.5", "adjudication_extra_overlap": "1"},
        state=lambda w: Dataset.objects.filter(pk=w.dataset.pk)
        .values_list("revision_window_seconds", "gold_rate").get()),
    # annotation API
    row("api-dataset-list", "GET", SIGNED_IN_API),  # each sees their own datasets: below
    row("api-dataset-import", "POST", (401, 403, 403, 202),
        data=lambda w: {"file": _bundle(), "dataset": "up"}, state=jobs),
    row("api-dataset-next", "POST", ASSIGNED_API, dataset_arg,
        state=lambda w: Assignment.objects.count()),
    row("api-dataset-export", "GET", R_API, dataset_arg),
    row("api-group-skip", "POST", ASSIGNED_API, group_arg,
        state=lambda w: Assignment.objects.count()),
    row("api-group-rankings", "POST", (401, 403, 201, 201), lambda w: {"group_id": w.g2.pk},
        data=lambda w: {"submission_id": str(uuid.uuid4()), **_tiers(w.g2)},
        state=lambda w: Ranking.objects.count()),
    *(
        row("api-image", "GET", ASSIGNED_API, key, label=kind)
        for kind, key in [
            ("source", lambda w: {"kind": "source", "key": str(w.g0.pk)}),
            ("source-thumb", lambda w: {"kind": "source-thumb", "key": str(w.g0.pk)}),
            ("candidate", lambda w: {"kind": "candidate", "key": w.candidate.token}),
            ("candidate-thumb", lambda w: {"kind": "candidate-thumb", "key": w.candidate.token}),
        ]
    ),
    row("api-dataset-report", "GET", R_API, dataset_arg),
    row("api-dataset-report", "POST", (401, 403, 403, 202), dataset_arg,
        state=lambda w: len(w.refreshes)),
    row("api-dataset-adjudication", "GET", R_API, dataset_arg),
    row("api-dataset-snapshots", "GET", R_API, dataset_arg),
    row("api-dataset-snapshots", "POST", (401, 403, 403, 202), dataset_arg,
        data=lambda w: {"name": "snap1", "policy": "majority"}, state=jobs),
    row("api-group-adjudication", "POST", (401, 403, 403, 201), lambda w: {"group_id": w.g1.pk},
        data=lambda w: _tiers(w.g1), state=lambda w: Adjudication.objects.count()),
    # benchmark: read by everyone signed in, runs started by researchers
    row("benchmark:leaderboard", "GET", SIGNED_IN_PAGE),
    row("benchmark:leaderboard", "POST", R_POST,
        data=lambda w: {"dataset": w.bench.pk, "scorer": "constant"},
        state=lambda w: BenchmarkRun.objects.count()),
    row("benchmark:run-detail", "GET", SIGNED_IN_PAGE, lambda w: {"run_id": w.bench_run.pk}),
    row("benchmark:compare", "GET", SIGNED_IN_PAGE,
        query="?a={w.bench_run.pk}&b=reported:EditScore-7B"),
    row("api-benchmark-leaderboard", "GET", SIGNED_IN_API),
    row("api-benchmark-datasets", "GET", SIGNED_IN_API),
    row("api-benchmark-runs", "GET", SIGNED_IN_API),
    row("api-benchmark-runs", "POST", (401, 403, 403, 202),
        data=lambda w: {"dataset": "bench", "scorer": "constant"},
        state=lambda w: BenchmarkRun.objects.count()),
    row("api-benchmark-run", "GET", SIGNED_IN_API, lambda w: {"run_id": w.bench_run.pk}),
    # reward models
    row("rewardmodel:list", "GET", R_PAGE),
    row("rewardmodel:list", "POST", R_POST,
        data=lambda w: {"action": "register", "name": "new", "base": str(w.checkpoint)},
        state=lambda w: RewardModel.objects.count()),
    row("rewardmodel:detail", "GET", R_PAGE, lambda w: {"model_id": w.model.pk}),
    row("rewardmodel:promote", "POST", R_POST, lambda w: {"model_id": w.model.pk},
        state=lambda w: RewardModel.objects.get(pk=w.model.pk).promoted),
    # RL training
    row("rltraining:list", "GET", R_PAGE),
    row("rltraining:list", "POST", R_POST, data=lambda w: _launch(w.dataset),
        state=lambda w: RLRun.objects.count()),
    row("rltraining:detail", "GET", R_PAGE, rl_arg),
    row("rltraining:gallery", "GET", R_PAGE, rl_arg),
    row("rltraining:send", "POST", R_POST, rl_arg, data=lambda w: {"overlap": "2"},
        state=lambda w: Dataset.objects.count()),
    row("rltraining:best-of-n", "POST", R_POST, rl_arg, data=lambda w: {"n": "4"},
        state=jobs),
    row("rltraining:sample-image", "GET", R_PAGE,
        lambda w: {"sample_id": w.sample.pk, "which": "thumb"}),
    # lineage: researchers only, whatever the object
    row("lineage", "GET", R_PAGE, lambda w: {"kind": "rl_run", "object_id": w.rl_run.pk}),
    row("api-lineage", "GET", R_API, lambda w: {"kind": "reward_model", "object_id": w.model.pk}),
]  # fmt: skip


def _launch(dataset) -> dict:
    from rltraining.forms import form_hyperparameters

    data = {h["name"]: h["value"] for h in form_hyperparameters() if h["kind"] != "bool"}
    return data | {
        "name": "run-b", "policy": "/models/tiny", "reward": "brightness",
        "dataset": str(dataset.pk), "eval_prompts": "0", "gpus": "1",
    }  # fmt: skip


def _url_names(patterns, prefix="", namespace="") -> set[str]:
    names = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if route.startswith("admin/"):
                continue
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= _url_names(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            names.add(f"{namespace}{pattern.name}" if pattern.name else route)
    return names


def test_the_matrix_covers_every_url():
    resolved = _url_names(get_resolver().url_patterns)
    assert {r.name for r in ROWS} == resolved
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids))


def _clients(world, role, api: bool, method: str) -> list[Client]:
    """The API takes tokens (GETs are also tried with a session); pages take sessions."""
    if role == ANON:
        return [Client()]
    clients = []
    if api:
        clients.append(Client(HTTP_AUTHORIZATION=f"Token {world.tokens[role]}"))
    if not api or method == "GET":
        session = Client()
        session.force_login(world.users[role])
        clients.append(session)
    return clients


def _call(client, row, url, world):
    data = row.data(world) if row.data else {}
    if row.method == "GET":
        return client.get(url)
    multipart = not url.startswith("/api/") or "file" in data
    if multipart:
        return client.post(url, data)
    return client.post(url, json.dumps(data), content_type="application/json")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_access(world, row):
    _check(world, row)


PUBLIC_ROWS = [r for r in ROWS if r.name.startswith(("benchmark:", "api-benchmark-"))]


@pytest.mark.parametrize("row", PUBLIC_ROWS, ids=lambda r: r.id)
def test_benchmark_public_read_opens_reads_only(world, settings, row):
    """BENCHMARK_PUBLIC_READ: anonymous visitors read the benchmark; they still start nothing."""
    settings.BENCHMARK_PUBLIC_READ = True
    anonymous = 200 if row.method == "GET" else 401 if row.name.startswith("api-") else 403
    _check(world, replace(row, expected={**row.expected, ANON: anonymous}))


def _check(world, row: Row):
    """Call the row's URL as each role; compare the statuses with the row's, and the state
    before and after each call with what the status promises."""
    url = reverse(row.name, kwargs=row.args(world) if row.args else None)
    url += row.query.format(w=world)
    api = url.startswith("/api/")
    actual, unchanged, changed = {}, [], []
    for role in ROLES:
        expected = row.expected[role]
        refused = expected in (401, 403, 404) or (role == ANON and expected == 302)
        for client in _clients(world, role, api, row.method):
            before = row.state(world) if row.state else None
            response = _call(client, row, url, world)
            actual[role] = response.status_code
            if response.status_code != expected:
                break
            if role == ANON and expected == 302:
                assert response["Location"].startswith("/login/?next="), response["Location"]
            if row.state:
                after = row.state(world)
                (unchanged if refused else changed).append((role, before, after))
    assert actual == row.expected, f"{row.method} {url}"
    assert all(before == after for _, before, after in unchanged), unchanged
    assert all(before != after for _, before, after in changed), changed


# ------------------------------------------------------------------ what the lists show whom


def test_dataset_lists_show_each_annotator_their_own_datasets(world):
    def listed(role):
        client = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[role]}")
        return {d["name"] for d in client.get("/api/datasets/").json()}

    assert listed(ANNOTATOR) == {"ds"} and listed(OUTSIDER) == {"other"}
    assert listed(RESEARCHER) == {"ds", "other"}
    outsider = Client()
    outsider.force_login(world.users[OUTSIDER])
    for page in ("/", "/annotate/"):
        html = outsider.get(page).content.decode()
        assert (
            f"/annotate/{world.other.pk}/" in html and f"/annotate/{world.dataset.pk}/" not in html
        )


def test_health_details_and_api_tokens_are_shown_to_whom_they_concern(world):
    """/healthz names hosts and folders to researchers only; the token page shows one's own."""
    for role in ROLES:
        client = Client()
        if role != ANON:
            client.force_login(world.users[role])
        assert ("checks" in client.get("/healthz").json()) == (role == RESEARCHER), role
        if role != ANON:
            page = client.get("/account/token/").content.decode()
            shown = {r for r, token in world.tokens.items() if token in page}
            assert shown == {role}, role


def test_unknown_objects_are_404_for_whoever_may_reach_them(world):
    """Past the role check, a missing object is 404 for annotators and researchers alike."""
    missing = 999_999
    annotator = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[ANNOTATOR]}")
    researcher = Client()
    researcher.force_login(world.users[RESEARCHER])
    assert annotator.post(f"/api/datasets/{missing}/next/").status_code == 404
    assert annotator.post(f"/api/groups/{missing}/skip/").status_code == 404
    assert annotator.get("/api/images/candidate/no-such-token").status_code == 404
    assert annotator.get(f"/api/jobs/{missing}/").status_code == 403  # the role check first
    for url in (f"/annotate/{missing}/quality/", f"/jobs/{missing}/", f"/rl/{missing}/",
                f"/benchmark/runs/{missing}/", f"/api/datasets/{missing}/export/"):  # fmt: skip
        assert researcher.get(url).status_code == 404, url


def test_api_benchmark_rows_name_scorers_and_jobs_to_researchers_only(world, settings):
    def first_row(client):
        return client.get(f"/api/benchmark/runs/{world.bench_run.pk}/").json()

    researcher = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[RESEARCHER]}")
    annotator = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[ANNOTATOR]}")
    settings.BENCHMARK_PUBLIC_READ = True
    assert {"scorer", "job"} <= set(first_row(researcher))
    for client in (annotator, Client()):
        assert not {"scorer", "job"} & set(first_row(client))
        rows = client.get("/api/benchmark/runs/").json()
        assert rows and not any({"scorer", "job"} & set(r) for r in rows)


# ------------------------------------------------------------------ what annotators never see


@pytest.fixture
def secrets(world):
    """Dataset `ds` laden with what an annotator must not learn: editor names, candidate ids,
    meta truth, gold relations, bob's ranking of g0 and a researcher's adjudication of g1."""
    ds = world.dataset
    Dataset.objects.filter(pk=ds.pk).update(gold_rate=1.0)
    for i, candidate in enumerate(Candidate.objects.filter(group__dataset=ds)):
        candidate.editor = f"secret-editor-{i}"
        candidate.meta = {"truth": {"overall": f"secret-cand-truth-{i}"}}
        candidate.save()
    a, b, *_ = world.g0.candidates.values_list("external_id", flat=True)
    Group.objects.filter(pk=world.g0.pk).update(
        is_gold=True, gold={"overall": [[a, ">", b]]}, meta={"truth": "secret-group-truth"}
    )
    Adjudication.objects.create(
        group=world.g1, researcher=world.users[RESEARCHER], note="secret-adjudication-note",
        tiers=dict.fromkeys(DIMS, [list(world.g1.candidates.values_list("external_id", flat=True))]),
    )  # fmt: skip
    words = ["secret-", "bob", "rita", "editor", "meta", "gold", "truth", "agreement",
             "review", "consensus", "adjudicat", "annotator"]  # fmt: skip
    ids = list(Candidate.objects.filter(group__dataset=ds).values_list("external_id", flat=True))
    ids += list(Group.objects.filter(dataset=ds).values_list("external_id", flat=True))
    return SimpleNamespace(words=words, candidate_ids=ids)  # import ids: never shown


def _assert_hidden(text: str, secrets, *, keys=True):
    """keys=False for HTML, whose prose and markup may use the words themselves."""
    lowered = text.lower()
    for candidate_id in secrets.candidate_ids:
        assert candidate_id.lower() not in lowered, candidate_id
    for word in secrets.words if keys else [w for w in secrets.words if w.endswith("-")]:
        assert word not in lowered, word
    if not keys:
        assert "bob" not in lowered


GROUP_KEYS = {"id", "instruction", "task_type", "source_url", "source_thumb_url",
              "candidates"}  # fmt: skip


def test_annotator_payloads_hide_editors_truth_gold_and_other_votes(world, secrets):
    anna = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[ANNOTATOR]}")
    ds = world.dataset.pk
    _assert_hidden(anna.get("/api/datasets/").content.decode(), secrets)

    served = []
    for _ in range(2):  # g0 first (gold, served to everyone), then g1 (bob and rita decided)
        response = anna.post(f"/api/datasets/{ds}/next/")
        assert response.status_code == 200
        _assert_hidden(response.content.decode(), secrets)
        group = response.json()["group"]
        served.append(group["id"])
        assert set(group) == GROUP_KEYS
        assert all(set(c) == {"id", "image_url", "thumb_url"} for c in group["candidates"])
        session = Client()
        session.force_login(world.users[ANNOTATOR])
        for page in (f"/annotate/{ds}/", f"/annotate/{ds}/workspace/"):
            _assert_hidden(session.get(page).content.decode(), secrets, keys=False)

        tokens = [c["id"] for c in group["candidates"]]
        tiers = {"tiers": dict.fromkeys(DIMS, [tokens[:1], tokens[1:]])}
        submitted = anna.post(
            f"/api/groups/{group['id']}/rankings/",
            {"submission_id": str(uuid.uuid4()), **tiers},
            content_type="application/json",
        )
        assert submitted.status_code == 201
        _assert_hidden(submitted.content.decode(), secrets)
        assert submitted.json()["tiers"] == tiers["tiers"]  # in the tokens she placed
        again = anna.post(f"/api/groups/{group['id']}/rankings/", {"submission_id": str(
            uuid.uuid4()), **tiers}, content_type="application/json")  # fmt: skip
        assert again.status_code == 409
        _assert_hidden(again.content.decode(), secrets)
    assert served == [world.g0.pk, world.g1.pk]
    for url in (f"/api/datasets/{ds}/export/", f"/api/datasets/{ds}/report/",
                f"/api/datasets/{ds}/adjudication/", f"/api/datasets/{ds}/snapshots/"):  # fmt: skip
        assert anna.get(url).status_code == 403, url
    images = anna.get(f"/api/images/candidate/{world.candidate.token}")
    assert images.status_code == 200 and "secret" not in str(images.headers).lower()


def test_refused_rankings_name_candidates_by_the_tokens_annotators_know(world, secrets):
    anna = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[ANNOTATOR]}")
    group = anna.post(f"/api/datasets/{world.dataset.pk}/next/").json()["group"]
    tokens = [c["id"] for c in group["candidates"]]
    for tiers in ([tokens[:1]], [tokens[:1], tokens]):  # one not placed; one placed twice
        response = anna.post(
            f"/api/groups/{group['id']}/rankings/",
            {"submission_id": str(uuid.uuid4()), "tiers": dict.fromkeys(DIMS, tiers)},
            content_type="application/json",
        )
        assert response.status_code == 400
        _assert_hidden(response.content.decode(), secrets)
