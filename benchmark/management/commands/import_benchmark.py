import json

from django.core.management.base import BaseCommand, CommandError

from benchmark.importer import ImportRefused, import_benchmark


class Command(BaseCommand):
    help = (
        "Import a benchmark dataset from a local path: the published EditReward-Bench "
        "parquet layout (a file or folder), a JSONL file with image paths, or a snapshot "
        "exported by export_benchmark. Every row is validated first; any error refuses "
        "the whole dataset."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--name", required=True)
        parser.add_argument("--split", choices=["test", "train"], default=None)

    def handle(self, *args, path, name, split, **options):
        try:
            summary = import_benchmark(path, name=name, split=split)
        except ImportRefused as refused:
            raise CommandError(
                f"{path}: import refused, nothing written ({len(refused.errors)} error(s)):\n"
                + refused.summary()
            ) from None
        self.stdout.write(json.dumps(summary.as_dict(), indent=2))
