"""Arguments shared by the commands that read a dataset's consensus."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotation.ml.split import Split
from annotation.models import Dataset
from annotation.stats.consensus import DEFAULT_MAJORITY_TIE_FRACTION, POLICIES, Policy


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_dataset_argument(parser) -> None:
    parser.add_argument("--dataset", required=True, metavar="NAME")


def add_policy_arguments(parser) -> None:
    parser.add_argument("--policy", choices=POLICIES, required=True)
    parser.add_argument(
        "--max-tie-fraction",
        type=fraction,
        default=None,
        help=f"majority: most ties a settled pair may have (default {DEFAULT_MAJORITY_TIE_FRACTION:.3f})",
    )
    parser.add_argument("--min-votes", type=int, default=2, help="fewest rankings (default 2)")


def dataset_named(name: str) -> Dataset:
    try:
        return Dataset.objects.get(name=name)
    except Dataset.DoesNotExist:
        known = ", ".join(Dataset.objects.values_list("name", flat=True)[:20]) or "none"
        raise CommandError(f"no dataset named {name!r} (datasets: {known})") from None


def policy_from(options) -> Policy:
    try:
        return Policy.named(
            options["policy"],
            max_tie_fraction=options["max_tie_fraction"],
            min_votes=options["min_votes"],
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None


class SnapshotCommand(BaseCommand):
    """A command that writes one kind of consensus snapshot: `export` is the
    annotation.exports function that writes it (dataset, policy, out, name=)."""

    export: Callable[..., Any] | None = None
    splits = False  # the command takes --held-out / --split-seed

    def add_arguments(self, parser):
        add_dataset_argument(parser)
        add_policy_arguments(parser)
        parser.add_argument("--out", required=True, type=Path, metavar="DIR")
        parser.add_argument("--name", help="snapshot name (default: the folder name)")
        if self.splits:
            parser.add_argument(
                "--held-out", type=fraction, default=0.0, metavar="FRACTION",
                help="keep only the pairs of this fraction of groups, held out by group (a "
                "fine-tune with the same --held-out and seed never trains on them)",
            )  # fmt: skip
            parser.add_argument("--split-seed", type=int, default=0, help="seed of the split")

    def handle(self, *args, **options):
        dataset = dataset_named(options["dataset"])
        policy = policy_from(options)
        extra = {}
        if self.splits and options["held_out"]:
            try:
                extra["split"] = Split(options["held_out"], options["split_seed"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        try:
            snapshot = self.export(dataset, policy, options["out"], name=options["name"], **extra)
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
                    "split": snapshot.split_text,
                },
                indent=2,
            )  # fmt: skip
        )
