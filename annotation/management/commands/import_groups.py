import json

from django.core.management.base import BaseCommand, CommandError

from annotation.importer import import_groups
from annotation.manifest import ImportRefused


class Command(BaseCommand):
    help = (
        "Import groups from a folder or .zip holding manifest.jsonl (one group per line). "
        "All or nothing: any bad line aborts the import and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--dataset", required=True, help="created if it does not exist")
        parser.add_argument("--overlap", type=int, help="rankings wanted per group (K)")
        parser.add_argument("--workers", type=int, help="image-checking threads")

    def handle(self, *args, path, dataset, overlap, workers, **options):
        try:
            summary = import_groups(path, dataset_name=dataset, overlap=overlap, workers=workers)
        except ImportRefused as refused:
            raise CommandError(
                f"import refused, nothing written ({len(refused.errors)} error(s)):\n{refused.summary()}"
            ) from None
        self.stdout.write(json.dumps(summary.as_dict()))
