import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.selectors import dataset_get
from benchmark.ml.scorers import parse_spec
from benchmark.selectors import benchmark_dataset_get
from jobs.registry import InvalidJobConfig
from jobs.runner import run_job
from mlcore.options import add_arguments, from_arguments
from rewardmodel.jobs import TUNABLE, FinetuneJobConfig, finetune_enqueue

# Given by the named options below; the rest of FinetuneJobConfig becomes --options itself.
EXPLICIT = ("model_name", "base_model", "dataset_id", "adapter_init", "training",
            "benchmark_dataset_id", "teacher", "target_modules")  # fmt: skip


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or key not in TUNABLE:
        raise CommandError(
            f"--set {text!r}: expected KEY=VALUE with KEY one of {', '.join(TUNABLE)}"
        )
    try:
        return key, TUNABLE[key](value)
    except ValueError:
        raise CommandError(
            f"--set {text!r}: {value!r} is not a valid {TUNABLE[key].__name__}"
        ) from None


class Command(BaseCommand):
    help = (
        "Fine-tune EditScore (LoRA, the paper's defaults) on a dataset's rankings as a job on "
        "the gpu queue; the new model is registered and, with --benchmark, benchmarked."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", metavar="NAME",
                            help="annotation dataset (or --snapshot-id)")  # fmt: skip
        parser.add_argument("--name", required=True, help="name of the new reward model")
        parser.add_argument("--base", required=True, help="Qwen2.5-VL checkpoint folder")
        parser.add_argument("--adapter-init", default=None, help="continue from this adapter")
        parser.add_argument("--benchmark", default=None, metavar="NAME", help="benchmark dataset")
        parser.add_argument(
            "--teacher", default=None, metavar="SPEC",
            help="openai judge (e.g. openai:model=gpt-4.1) whose reasoning is kept where its "
            "scores order a group's candidates as the annotators did",
        )  # fmt: skip
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--inline", action="store_true", help="train in this process")
        add_arguments(parser, FinetuneJobConfig, skip=EXPLICIT)

    def handle(self, *args, **o):
        dataset = dataset_get(name=o["dataset"]) if o["dataset"] else None
        if o["dataset"] and dataset is None:
            raise CommandError(f"no dataset named {o['dataset']!r}")
        bench = None
        if o["benchmark"]:
            bench = benchmark_dataset_get(name=o["benchmark"])
            if bench is None:
                raise CommandError(f"no benchmark dataset named {o['benchmark']!r}")
        config = {
            **from_arguments(argparse.Namespace(**o), FinetuneJobConfig, skip=EXPLICIT),
            "model_name": o["name"], "dataset_id": dataset.pk if dataset else None,
            "base_model": o["base"],
            "adapter_init": o["adapter_init"], "training": dict(_option(t) for t in o["set"]),
            "benchmark_dataset_id": bench.pk if bench else None,
        }  # fmt: skip
        try:
            if o["teacher"]:
                config["teacher"] = parse_spec(o["teacher"])
            model = finetune_enqueue(config=config)
        except (InvalidJobConfig, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if not o["inline"]:
            self.stdout.write(
                json.dumps({"model": model.name, "job": model.job_id, "status": "queued"})
            )
            return
        outcome = run_job(model.job_id, worker="finetune_reward_model")
        model.refresh_from_db()
        job = model.job
        if job.status != "succeeded":
            raise CommandError(f"fine-tune {outcome}: {job.error}")
        self.stdout.write(json.dumps({"model": model.name, **job.result}, indent=2))
