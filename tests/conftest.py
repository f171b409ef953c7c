import os

import pytest
import redis

from accounts.models import Role
from config.celery import app as celery_app
from config.env import filesystem_broker_options
from tests.brokers import Worker, use_broker
from tests.factories import UserFactory

# An accidental model-hub call in a test fails loudly instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests build their tiny models under pytest's temporary folders and name made-up folders:
# model folders may be anywhere (for this process below, for the workers it starts here).
# tests/test_model_roots.py restricts them and checks the refusals.
os.environ.setdefault("MODELS_DIRS", "/")


@pytest.fixture(autouse=True)
def _models_anywhere(settings):
    from pathlib import Path

    settings.MODELS_DIRS = [Path("/")]


@pytest.fixture(autouse=True, scope="session")
def _in_memory_broker_by_default():
    """Messages sent by tests without a worker go nowhere: never into the local
    var/ broker, where a demo worker would run them against the wrong database."""
    with use_broker(celery_app, "memory://", {}):
        yield


@pytest.fixture
def researcher(db):
    return UserFactory(username="rita", role=Role.RESEARCHER)


@pytest.fixture
def annotator(db):
    return UserFactory(username="anna", role=Role.ANNOTATOR)


@pytest.fixture
def researcher_client(client, researcher):
    client.force_login(researcher)
    return client


@pytest.fixture
def annotator_client(client, annotator):
    client.force_login(annotator)
    return client


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Debian's chromium: `playwright install` cannot download browsers here.
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium"}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1366, "height": 1000}}


# --- real Celery workers (subprocesses) on Redis or the filesystem broker


def _redis_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis") else "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_broker():
    url = _redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {url} (CI always has one)")
    options = {"visibility_timeout": 3600}
    with use_broker(celery_app, url, options):
        celery_app.control.purge()  # leftovers of earlier runs would name other databases' jobs
        yield url


@pytest.fixture
def filesystem_broker(tmp_path):
    options = filesystem_broker_options(tmp_path)
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        os.makedirs(options[key], exist_ok=True)
    with use_broker(celery_app, "filesystem://", options):
        yield "filesystem://"


@pytest.fixture
def worker_factory(tmp_path):
    started: list[Worker] = []

    def start(broker_url: str, name: str, beat: bool = False) -> Worker:
        worker = Worker(broker_url=broker_url, var_dir=tmp_path, name=name, beat=beat)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


# --- the tiny EditScore model (torch is imported only by the tests that ask for it)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny matrices: a second OpenMP thread only adds contention (10x slower on a busy box)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """An offline tiny Qwen2.5-VL saved like a real checkpoint (read-only for tests)."""
    from rewardmodel.ml.tiny import build_tiny_editscore

    return build_tiny_editscore(tmp_path_factory.mktemp("tiny") / "editscore", seed=0)


@pytest.fixture
def page(page):
    """pytest-playwright's page, and every browser test fails on a Content-Security-Policy
    violation (chromium reports each on the console)."""
    violations = []
    page.on("console", lambda m: violations.append(f"{m.location['url']}: {m.text[:160]}") if "Content Security Policy" in m.text else None)  # fmt: skip
    yield page
    assert violations == [], violations
