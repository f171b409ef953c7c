from annotation.exports import export_preferences
from annotation.management.consensus_args import SnapshotCommand


class Command(SnapshotCommand):
    help = (
        "Write a dataset's strict consensus pairs as chosen/rejected JSONL per dimension "
        "(with vote counts) for reward-model training, and register the snapshot."
    )
    export = staticmethod(export_preferences)
