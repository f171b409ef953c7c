import json

from django.core.management.base import BaseCommand, CommandError

from annotation.management.consensus_args import add_dataset_argument, dataset_named
from annotation.quality import EDITOR_PAIRS, compute_report


class Command(BaseCommand):
    help = (
        "Agreement of a dataset's annotators per dimension, overall and per task type "
        "(pairwise agreement, Kendall tau-b, Krippendorff's alpha with bootstrap 95%% "
        "intervals), plus the annotator table, consensus counts and editor leaderboard."
    )

    def add_arguments(self, parser):
        add_dataset_argument(parser)
        parser.add_argument("--json", action="store_true", help="print the full report as JSON")
        parser.add_argument("--resamples", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--editors-on",
            choices=EDITOR_PAIRS,
            default="consensus",
            help="fit the editor leaderboard on majority consensus pairs (default) or raw pairs",
        )

    def handle(self, *args, **options):
        if options["resamples"] < 0:
            raise CommandError("--resamples must be >= 0")
        dataset = dataset_named(options["dataset"])
        report = compute_report(
            dataset,
            resamples=options["resamples"],
            seed=options["seed"],
            editors_on=options["editors_on"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self.stdout.write(
            f"{dataset.name}: {report['rankings']} rankings, {report['groups_ranked']} groups "
            f"({report['seconds']} s)"
        )
        for dim, figures in report["agreement"].items():
            rows = [("all", figures["all"]), *sorted(figures["by_task_type"].items())]
            self.stdout.write(f"\n{dim}")
            for label, summary in rows:
                if summary is None:
                    continue
                self.stdout.write(f"  {label:<20} " + "  ".join(
                    f"{key} {_fmt(summary[key])}"
                    for key in ("pairwise_agreement", "kendall_tau_b", "krippendorff_alpha")
                ))  # fmt: skip


def _fmt(estimate: dict) -> str:
    if estimate["value"] is None:
        return "n/a"
    if estimate["low"] is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"
