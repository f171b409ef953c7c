"""Two workers claiming the same job at the same instant: exactly one wins."""

import threading

import pytest
from django.db import connection, connections

from jobs import services
from jobs.models import Job, JobStatus
from tests.factories import JobFactory

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs concurrent writers on PostgreSQL (CI sets DATABASE_URL; SQLite serialises writers)",
)


def _claim(job_id: int, name: str, barrier: threading.Barrier, winners: list[str]) -> None:
    try:
        barrier.wait(timeout=10)  # all claimers fire their UPDATE at the same instant
        if services.job_claim(job_id=job_id, worker=name) is not None:
            winners.append(name)
    finally:
        connections.close_all()


@pytest.mark.postgres
def test_concurrent_claims_have_exactly_one_winner(transactional_db):
    rounds, claimers = 25, 4
    for _ in range(rounds):
        job = JobFactory()
        barrier = threading.Barrier(claimers)
        winners: list[str] = []

        threads = [
            threading.Thread(target=_claim, args=(job.pk, f"w{i}", barrier, winners))
            for i in range(claimers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(winners) == 1, winners
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING and job.worker == winners[0] and job.attempts == 1
    assert Job.objects.filter(attempts=1).count() == rounds
