"""No long write inside a transaction: an import commits its groups in batches into a hidden
staging dataset (the database's write lock is free between batches, so annotators' `next` goes
on) and moves them into the named dataset at the end; a failure leaves nothing. /healthz says
when the database is alive but a write cannot get through."""

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from annotation import importer, services
from annotation.models import Candidate, Dataset, Group
from annotation.synthetic import write_bundle
from tests.annotation_fixtures import make_dataset
from tests.factories import UserFactory

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def test_batches_commit_while_annotators_go_on_and_nothing_shows_early(
    transactional_db, media, tmp_path, monkeypatch
):
    monkeypatch.setattr(importer, "BATCH_GROUPS", 2)
    ann = UserFactory(username="ann")
    live = make_dataset("live", groups=6, candidates=2, overlap=1, annotators=[ann])
    bundle = write_bundle(tmp_path / "b", groups=5, candidates=2, size=24)
    seen = []

    def between_batches(fraction, message):
        if not message.startswith("wrote"):
            return
        # another connection, as a web process would: it must get its lease now
        answers = []
        thread = threading.Thread(target=lambda: answers.append(
            services.group_next_for_annotator(dataset=live, annotator=ann)))  # fmt: skip
        thread.start()
        thread.join(timeout=10)
        served = answers[0]
        services.group_skip(group=served.group, annotator=ann)
        seen.append((message, Dataset.objects.filter(name="new").exists(),
                     Group.objects.filter(dataset__name="new").count()))  # fmt: skip

    summary = importer.import_groups(bundle, dataset_name="new", progress=between_batches)
    assert [m for m, *_ in seen] == ["wrote 2 of 5 groups", "wrote 4 of 5 groups",
                                     "wrote 5 of 5 groups"]  # fmt: skip
    assert all(not exists and count == 0 for _, exists, count in seen)  # hidden until the end
    assert summary.groups == 5 and Group.objects.filter(dataset__name="new").count() == 5
    assert Candidate.objects.filter(group__dataset__name="new").count() == 10
    assert not Dataset.all_objects.filter(importing=True).exists()


def test_a_failure_in_a_later_batch_leaves_nothing(transactional_db, media, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "BATCH_GROUPS", 2)
    calls = []
    real = importer._write_rows

    def failing(dataset, groups, stored):
        calls.append(len(groups))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(dataset, groups, stored)

    monkeypatch.setattr(importer, "_write_rows", failing)
    bundle = write_bundle(tmp_path / "b", groups=5, candidates=2, size=24)
    with pytest.raises(OSError, match="disk full"):
        importer.import_groups(bundle, dataset_name="new")
    assert Dataset.all_objects.count() == 0 and Group.objects.count() == 0
    media = Path(tmp_path / "media")
    assert not any(p.is_file() and not p.name.startswith(".") for p in media.rglob("*"))


def _check_database(var_dir: Path) -> dict:
    code = ("import os, json; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'\n"
            "import django; django.setup()\n"
            "from jobs.health import check_database; print(json.dumps(check_database()))")  # fmt: skip
    environ = {k: v for k, v in __import__("os").environ.items()
               if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**environ, "EDITLOOP_VAR_DIR": str(var_dir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return __import__("json").loads(result.stdout.strip().splitlines()[-1])


def test_healthz_reports_a_database_that_is_alive_but_blocked(tmp_path):
    """SQLite with a writer that holds its lock (a long import before this change): /healthz
    said ok while every write waited. Its write probe gives up after a second."""
    db = tmp_path / "editloop.sqlite3"
    assert _check_database(tmp_path)["ok"] is True  # creates the file
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held
    try:
        blocked = _check_database(tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert blocked["ok"] is False and "blocked" in blocked["error"]
    assert _check_database(tmp_path)["ok"] is True
