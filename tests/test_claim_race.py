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


@pytest.mark.postgres
def test_concurrent_claims_have_exactly_one_winner(transactional_db):
    rounds, claimers = 25, 4
    for _ in range(rounds):
        job = JobFactory()
        barrier = threading.Barrier(claimers)
        winners: list[str] = []

        def claim(name: str) -> None:
            try:
                barrier.wait(timeout=10)
                if services.job_claim(job_id=job.pk, worker=name) is not None:
                    winners.append(name)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(claimers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(winners) == 1, winners
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING and job.worker == winners[0] and job.attempts == 1
    assert Job.objects.filter(attempts=1).count() == rounds
