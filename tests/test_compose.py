"""Docker does not run here: check that compose.yaml refers only to things that exist."""

import importlib.util
import shlex
from pathlib import Path

import yaml
from django.conf import settings

from config.env import KNOWN_VARIABLES, parse_broker_url, parse_database_url

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["web", "worker", "gpu-worker", "beat"]


def _argv(service: dict) -> list[str]:
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        return shlex.split(argv[2].replace("&&", " && "))
    return argv


def test_all_services_present():
    assert set(SERVICES) == {"postgres", "redis", *APP_SERVICES}


def test_app_services_use_only_known_environment_and_valid_urls():
    for name in APP_SERVICES:
        environment = SERVICES[name]["environment"]
        assert set(environment) <= set(KNOWN_VARIABLES), name
        parse_database_url("DATABASE_URL", environment["DATABASE_URL"], REPO)
        parse_broker_url("CELERY_BROKER_URL", environment["CELERY_BROKER_URL"])
        assert (
            "@postgres:" in environment["DATABASE_URL"]
            and "//redis:" in environment["CELERY_BROKER_URL"]
        )


def test_commands_refer_to_existing_modules_queues_and_commands():
    queues_served = set()
    for name in APP_SERVICES:
        argv = _argv(SERVICES[name])
        if "gunicorn" in argv:
            module = argv[argv.index("gunicorn") + 1]
            assert importlib.util.find_spec(module) is not None, module
            assert "manage.py" in argv and argv[argv.index("manage.py") + 1] == "migrate"
        else:
            assert argv[:3] == ["celery", "-A", "config"], name
            assert argv[3] in ("worker", "beat")
            if argv[3] == "worker":
                queues = set(argv[argv.index("-Q") + 1].split(","))
                assert queues <= set(settings.CELERY_TASK_QUEUES_NAMES), name
                queues_served |= queues
    assert queues_served == set(settings.CELERY_TASK_QUEUES_NAMES)  # every queue has a worker


def test_gpu_worker_takes_one_job_at_a_time_on_an_nvidia_gpu_with_the_ml_extra():
    gpu = SERVICES["gpu-worker"]
    argv = _argv(gpu)
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1"
    assert gpu["build"]["args"]["EXTRAS"] == "ml"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_image_build_copies_every_package_that_exists():
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    for source in copied:
        assert (REPO / source).exists(), source
    packages = {p.parent.name for p in REPO.glob("*/apps.py")} | {"config"}
    assert packages <= copied
