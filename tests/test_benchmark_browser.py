"""The leaderboard in a real browser: sorting by a column (this installation's runs and the
paper's rows sorted apart), the switches, comparing two rows, and nothing clipped at 1280 px."""

import os

import numpy as np
import pytest

from accounts.models import Role
from benchmark.ml.metric import DIMENSIONS, Pairs, evaluate
from benchmark.models import BenchmarkDataset, BenchmarkRun
from jobs.models import Job
from tests.factories import PASSWORD, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _run(dataset, label, accuracy_shift, seed):
    rng = np.random.default_rng(seed)
    n = 300
    human = rng.normal(size=n)
    pairs = Pairs(
        dimension=rng.integers(0, len(DIMENSIONS), n),
        task_type=rng.integers(0, 2, n),
        task_names=("subject-add", "extract"),
        score0=human + accuracy_shift,
        score1=human + rng.normal(size=n),
    )
    job = Job.objects.create(kind="benchmark.run", queue="default", config={}, status="succeeded")
    return BenchmarkRun.objects.create(
        job=job, dataset=dataset, label=label, scorer={"kind": "random", "seed": seed},
        scorer_key=f"{seed:064d}", metric=evaluate(pairs, resamples=100),
    )  # fmt: skip


@pytest.fixture
def board(transactional_db):
    dataset = BenchmarkDataset.objects.create(name="mini", layout="jsonl", source_path="-")
    weak = _run(dataset, "weak", -0.5, 1)
    strong = _run(dataset, "strong", 2.0, 2)
    UserFactory(username="rita", role=Role.RESEARCHER)
    return weak, strong


def test_sort_by_column_and_compare_two_rows(page, live_server, board):
    weak, strong = board
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.url}/login/?next=/benchmark/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#leaderboard")
    labels = lambda: page.eval_on_selector_all(  # noqa: E731
        "#leaderboard tbody tr th", "cells => cells.map(c => c.textContent.trim())"
    )
    assert labels()[:2] == ["strong", "weak"]  # best headline first, reported rows after
    header = page.locator("#leaderboard thead th", has_text="overall").first
    header.click()  # descending
    header.click()  # ascending: the weakest measured row on top, reported ones below 0.5
    ordered = labels()
    assert ordered.index("weak") < ordered.index("strong")
    # the measured runs stay above the paper's rows whatever the sort
    assert ordered[:2] == ["weak", "strong"] and "EditScore-7B" in ordered[2:]
    # at a laptop's width every column and the compare controls are on screen
    page.set_viewport_size({"width": 1280, "height": 720})
    width = page.evaluate("document.documentElement.clientWidth")
    for shown in (page.locator("#compare-button"), header,  # the last column shown
                  page.locator(f'input.pick[value="{weak.pk}"]')):  # fmt: skip
        box = shown.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, shown
    page.uncheck("#show-reported")
    assert not page.is_visible('input.pick[value="reported:EditScore-7B"]')
    page.check("#show-reported")
    page.check("#show-groups")
    assert page.is_visible("#leaderboard th.group-col >> nth=0")
    page.check(f'input.pick[value="{weak.pk}"]')
    assert page.is_disabled("#compare-button")
    page.check('input.pick[value="reported:EditScore-7B"]')
    page.click("#compare-button")
    page.wait_for_selector("#compare-groups")
    assert "weak" in page.inner_text("h1") and "EditScore-7B" in page.inner_text("h1")
    assert not errors
