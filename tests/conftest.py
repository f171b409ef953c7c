import os

import pytest

from accounts.models import Role
from config.celery import app as celery_app
from tests.brokers import use_broker
from tests.factories import UserFactory

# An accidental model-hub call in a test fails loudly instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
