"""Model folders are read only inside the configured roots (REWARD_MODELS_DIR, RL_RUNS_DIR and
MODELS_DIRS): a benchmark run, an RL run, a fine-tune or a registration naming a folder
elsewhere is refused where its config is checked, before any file is read, and a folder that
is a whole disk is not fingerprinted."""

import pytest

from benchmark.ml import scorers
from benchmark.models import BenchmarkDataset, BenchmarkRun
from rewardmodel.jobs import FinetuneJobConfig
from rewardmodel.services import RegistrationRefused, model_register
from rltraining.jobs import RLJobConfig


@pytest.fixture
def roots(settings, tmp_path):
    models = tmp_path / "models"
    (models / "editscore").mkdir(parents=True)
    (models / "editscore" / "config.json").write_text("{}")
    settings.MODELS_DIRS = [models]
    settings.REWARD_MODELS_DIR = tmp_path / "reward_models"
    settings.RL_RUNS_DIR = tmp_path / "rl_runs"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (models / "sneaky").symlink_to(outside)  # inside by name, outside in fact
    return models, outside


def test_configs_refuse_folders_outside_the_roots(roots):
    models, outside = roots
    for folder in ("/", str(outside), str(models / "sneaky"), str(models / ".." / "elsewhere")):
        with pytest.raises(ValueError, match="is outside the model folders .* MODELS_DIRS"):
            RLJobConfig(run_name="r", policy=folder, reward={"kind": "brightness"}, dataset_id=1)
        with pytest.raises(ValueError, match="base_model .* is outside the model folders"):
            FinetuneJobConfig(model_name="m", base_model=folder, dataset_id=1)
    with pytest.raises(ValueError, match="reward base / is outside"):
        RLJobConfig(run_name="r", policy=str(models / "editscore"), dataset_id=1,
                    reward={"kind": "editscore", "base": "/"})  # fmt: skip
    weighted = {"kind": "weighted", "terms": [[{"kind": "editscore", "base": "/"}, 1.0]]}
    with pytest.raises(ValueError, match="reward base / is outside"):  # nested specs too
        RLJobConfig(run_name="r", policy=str(models / "editscore"), dataset_id=1,
                    reward=weighted)  # fmt: skip
    # inside a root: accepted (whether the weights load is the worker's business)
    RLJobConfig(run_name="r", policy=str(models / "editscore"), reward={"kind": "brightness"},
                dataset_id=1)  # fmt: skip
    FinetuneJobConfig(model_name="m", base_model=str(models / "editscore"), dataset_id=1)


def test_a_benchmark_run_on_a_folder_outside_is_a_400_and_creates_nothing(roots, researcher_client):
    BenchmarkDataset.objects.create(name="bench", layout="snapshot", source_path="-")
    response = researcher_client.post(
        "/api/benchmark/runs/",
        {"dataset": "bench", "scorer": {"kind": "editscore", "base": "/"}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "scorer base / is outside the model folders" in response.json()["detail"]
    assert BenchmarkRun.objects.count() == 0


def test_registration_refuses_a_folder_outside(roots, researcher):
    models, outside = roots
    with pytest.raises(RegistrationRefused, match="base .*elsewhere is outside"):
        model_register(name="m", base=str(outside), user=researcher)
    assert model_register(name="m", base=str(models / "editscore"), user=researcher).pk


def test_a_folder_of_too_many_files_is_not_fingerprinted(tmp_path, monkeypatch):
    monkeypatch.setattr(scorers, "MAX_MODEL_FILES", 5)
    for i in range(6):
        (tmp_path / f"f{i}").write_text("x")
    with pytest.raises(ValueError, match="more than 5 files, not a model folder"):
        scorers.folder_fingerprint(tmp_path)
