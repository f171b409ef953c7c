from annotation.exports import export_benchmark
from annotation.management.consensus_args import SnapshotCommand


class Command(SnapshotCommand):
    help = (
        "Write a dataset's strict consensus pairs as an EditReward-Bench snapshot "
        "(parquet with embedded images, JSONL, images/, manifest.json) and register it."
    )
    export = staticmethod(export_benchmark)
    splits = True
