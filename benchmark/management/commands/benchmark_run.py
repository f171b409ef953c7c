import json

from django.core.management.base import BaseCommand, CommandError

from benchmark.ml.scorers import parse_spec
from benchmark.models import BenchmarkDataset, BenchmarkRun
from benchmark.runs import run_enqueue
from jobs.registry import InvalidJobConfig
from jobs.runner import run_job


class Command(BaseCommand):
    help = (
        "Evaluate a reward model (a scorer) on a benchmark dataset: creates a run (a job). "
        "SPEC: random:seed=0 | constant:value=5 | pixel | file:path=scores.jsonl | "
        "openai:model=gpt-4.1,base_url=http://... (key from OPENAI_API_KEY)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, metavar="NAME")
        parser.add_argument("--scorer", required=True, metavar="SPEC")
        parser.add_argument("--k", type=int, default=None, help="Avg@K passes (model scorers)")
        parser.add_argument("--label", default="")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="run the job in this process instead of waiting for a worker",
        )

    def handle(self, *args, dataset, scorer, k, label, inline, **options):
        try:
            target = BenchmarkDataset.objects.get(name=dataset)
        except BenchmarkDataset.DoesNotExist:
            known = ", ".join(BenchmarkDataset.objects.values_list("name", flat=True)) or "none"
            raise CommandError(
                f"no benchmark dataset named {dataset!r} (datasets: {known})"
            ) from None
        try:
            spec = parse_spec(scorer)
            if k is not None:
                spec["k"] = k
            run = run_enqueue(dataset=target, scorer=spec, label=label)
        except (ValueError, InvalidJobConfig) as exc:
            raise CommandError(f"--scorer {scorer!r}: {exc}") from None
        if not inline:
            self.stdout.write(json.dumps({"run": run.pk, "job": run.job_id, "status": "queued"}))
            return
        outcome = run_job(run.job_id, worker="benchmark_run")
        run = BenchmarkRun.objects.select_related("job").get(pk=run.pk)
        if run.job.status != "succeeded":
            raise CommandError(f"run {run.pk} {outcome}: {run.job.error}")
        self.stdout.write(json.dumps({"run": run.pk, "job": run.job_id, **run.metric}, indent=2))
