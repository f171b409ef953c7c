"""Configs declared once (mlcore.options): validation, the docs table, the CLI options and the
launch form all come from the same field declarations."""

import argparse
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlcore.options import add_arguments, check_options, describe, from_arguments, option
from rltraining.ml.trainer import RLConfig

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Example:
    name: str = option(help="a name")
    steps: int = option(3, help="steps", min=1, max=10)
    rate: float = option(0.5, help="rate", min=0, min_exclusive=True)
    decay: float | None = option(None, help="decay", max=0.9)
    mode: str = option("a", help="mode", choices=("a", "b"))
    flag: bool = option(False, help="flag")

    def __post_init__(self):
        check_options(self)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": 0}, "steps must be >= 1, not 0 (steps)"),
        ({"steps": 11}, "steps must be <= 10"),
        ({"steps": True}, "steps must be an integer"),
        ({"steps": 2.0}, "steps must be an integer"),
        ({"rate": 0}, "rate must be > 0"),
        ({"rate": math.nan}, "rate must be a number"),
        ({"rate": "1"}, "rate must be a number"),
        ({"decay": 0.95}, "decay must be <= 0.9"),
        ({"mode": "c"}, "mode must be one of a, b"),
        ({"flag": 1}, "flag must be true or false"),
        ({"name": None}, "name is required"),
    ],
)
def test_declared_bounds_types_and_choices_are_checked(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Example(**{"name": "x", **change})


def test_valid_values_pass_and_an_int_is_a_number():
    assert Example(name="x", rate=2, decay=None).rate == 2
    assert [o.name for o in describe(Example)] == ["name", "steps", "rate", "decay", "mode", "flag"]
    assert describe(Example)[0].required and not describe(Example)[1].required


def test_the_command_line_options_come_from_the_declaration():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example, skip=("name",))
    args = parser.parse_args(["--steps", "4", "--mode", "b", "--flag"])
    assert from_arguments(args, Example, skip=("name",)) == {"steps": 4, "mode": "b", "flag": True}
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "z"])  # choices come from the declaration too


def test_the_rl_presets_are_valid_and_the_form_shows_each_options_help():
    from rltraining.forms import form_hyperparameters

    assert RLConfig.paper() == RLConfig() and RLConfig.cpu_smoke().rounds == 2
    rows = {row["name"]: row for row in form_hyperparameters()}
    assert rows["group_size"]["help"].startswith("edits per prompt")
    assert rows["group_size"]["accepts"] == "≥ 2, ≤ 1024"


def test_docs_configs_md_is_written_from_the_declarations():
    spec = importlib.util.spec_from_file_location("make", REPO / "docs" / "make_config_docs.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert (REPO / "docs" / "configs.md").read_text() == make.render(), (
        "docs/configs.md is stale: run python docs/make_config_docs.py"
    )


@pytest.mark.django_db
def test_every_job_kind_declares_its_options_and_the_api_lists_them(researcher_client):
    from jobs import registry

    for kind in registry.all_kinds():
        options = registry.config_options(kind)
        assert options and all(o.help for o in options), kind.name  # every field says what it is
    kinds = {k["kind"]: k for k in researcher_client.get("/api/jobs/kinds/").json()}
    gpus = next(o for o in kinds["rltraining.train"]["options"] if o["name"] == "gpus")
    assert gpus == {"name": "gpus", "type": "int", "required": False, "default": 1,
                    "help": "GPUs (torchrun processes) on the worker", "min": 1, "max": 64,
                    "min_exclusive": False, "choices": None}  # fmt: skip
    n = next(o for o in kinds["rltraining.best_of_n"]["options"] if o["name"] == "n")
    assert (n["min"], n["max"]) == (2, 64)
