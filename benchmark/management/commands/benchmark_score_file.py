import json

from django.core.management.base import BaseCommand, CommandError

from benchmark.ml.bench_data import DatasetInvalid, detect, read_rows
from benchmark.ml.metric import evaluate, pairs_from_rows
from benchmark.ml.scorers import FileScorer


class Command(BaseCommand):
    help = (
        "Evaluate a JSONL scores file ({key, prompt_following, consistency, overall} per "
        "candidate) against a benchmark dataset on disk (parquet layout or JSONL), with the "
        "paper's metric. Touches no database."
    )
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, metavar="PATH")
        parser.add_argument("--scores", required=True, metavar="FILE")
        parser.add_argument("--split", choices=["test", "train"], default=None)
        parser.add_argument("--resamples", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="print the full result as JSON")

    def handle(self, *args, **options):
        if options["resamples"] < 0:
            raise CommandError("--resamples must be >= 0")
        try:
            scores = FileScorer(options["scores"]).rows
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            rows = [
                (row.key[0], row.key[1], row.task_type, row.dimension)
                for row in read_rows(
                    detect(options["dataset"], options["split"]), check_images=False
                )
            ]
        except DatasetInvalid as invalid:
            raise CommandError(f"{options['dataset']}:\n{invalid.summary()}") from None
        table = {
            key: {d: getattr(s, d) for d in ("prompt_following", "consistency", "overall")}
            for key, s in scores.items()
        }
        result = evaluate(
            pairs_from_rows(rows, table), resamples=options["resamples"], seed=options["seed"]
        )
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(f"{len(rows)} pairs, {result['n_ties']['total']} ties, "
                          f"{result['n_unscored']['total']} unscored")  # fmt: skip
        for dim, value in result["overall"].items():
            low, high = result["ci95"]["overall"].get(dim) or (None, None)
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None else ""
            self.stdout.write(f"  {dim:<18} {value:.3f}{interval}")
