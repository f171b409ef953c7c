import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.exports import export_preferences
from annotation.management.consensus_args import (
    add_dataset_argument,
    add_policy_arguments,
    dataset_named,
    policy_from,
)


class Command(BaseCommand):
    help = (
        "Write a dataset's strict consensus pairs as chosen/rejected JSONL per dimension "
        "(with vote counts) for reward-model training, and register the snapshot."
    )

    def add_arguments(self, parser):
        add_dataset_argument(parser)
        add_policy_arguments(parser)
        parser.add_argument("--out", required=True, type=Path, metavar="DIR")
        parser.add_argument("--name", help="snapshot name (default: the folder name)")

    def handle(self, *args, **options):
        dataset = dataset_named(options["dataset"])
        policy = policy_from(options)
        try:
            snapshot = export_preferences(dataset, policy, options["out"], name=options["name"])
        except FileExistsError as exc:
            raise CommandError(f"{exc}; nothing written") from None
        self.stdout.write(
            json.dumps(
                {
                    "snapshot": snapshot.name,
                    "path": snapshot.path,
                    "rows": snapshot.rows,
                    "sha256": snapshot.sha256,
                    "counts": snapshot.counts,
                },
                indent=2,
            )  # fmt: skip
        )
