"""`python manage.py demo`: everything on one machine, no servers needed.

Migrates, creates a demo annotator and researcher (passwords kept in
var/demo-credentials.json and printed each time), then runs the web server
(gunicorn), a Celery worker for both queues and Celery beat, and stops all
three together on Ctrl-C or when one of them dies. Unless --no-loop,
`manage.py demo_loop` runs once beside them: the EditWorld dataset, simulated
annotators, agreement, a benchmark, a fine-tuned reward model and an RL run
(demo/loop.py); its exit does not stop the demo.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role
from accounts.services import user_create_or_update

DEMO_USERS = {"annotator": Role.ANNOTATOR, "researcher": Role.RESEARCHER}


class Command(BaseCommand):
    help = "Run EditLoop locally: web + worker + beat on the embedded defaults."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument(
            "--no-loop", action="store_true", help="only the servers and the demo dataset"
        )

    def handle(self, *args, host: str, port: int, web_workers: int, no_loop: bool, **options):
        if not 0 < port < 65536:
            raise CommandError(f"--port {port} is not a TCP port")
        call_command("migrate", interactive=False, verbosity=0)
        credentials = self._demo_credentials()
        self._clear_broker_control_folder()

        # The demo's servers run with DEBUG on (static files from the source folders, error
        # pages with tracebacks): local only, so unless the caller said otherwise.
        os.environ.setdefault("DEBUG", "1")
        bin_dir = Path(sys.executable).parent
        celery = str(bin_dir / "celery")
        commands = {
            "web": [
                str(bin_dir / "gunicorn"), "config.wsgi", "--bind", f"{host}:{port}",
                "--workers", str(web_workers), "--threads", "4", "--access-logfile", "-",
            ],
            "worker": [
                celery, "-A", "config", "worker", "-Q", "default,gpu", "--concurrency", "2",
                "--hostname", "demo@%h", "--loglevel", "INFO",
            ],
            "beat": [
                celery, "-A", "config", "beat", "--loglevel", "INFO",
                "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }  # fmt: skip
        url = f"http://{host}:{port}/"
        oneshot = set()
        if not no_loop:
            commands["loop"] = [sys.executable, "manage.py", "demo_loop", "--url", url]
            oneshot.add("loop")
        self.stdout.write(self.style.SUCCESS(f"EditLoop demo on {url}"))
        for username, password in credentials.items():
            self.stdout.write(f"  {DEMO_USERS[username].label:<10} {username} / {password}")
        self.stdout.write(f"  health: {url}healthz    Ctrl-C stops everything")
        self.stdout.flush()
        sys.exit(_supervise(commands, oneshot))

    def _demo_credentials(self) -> dict[str, str]:
        path = Path(settings.VAR_DIR) / "demo-credentials.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        for username, role in DEMO_USERS.items():
            password = stored.get(username) or secrets.token_urlsafe(9)
            user_create_or_update(username=username, role=role, password=password)
            stored[username] = password
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        return stored

    def _clear_broker_control_folder(self) -> None:
        # Remote-control broadcasts of earlier workers pile up here (platform notes).
        if settings.CELERY_BROKER_URL == "filesystem://":
            control = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["control_folder"])
            shutil.rmtree(control, ignore_errors=True)
            control.mkdir(parents=True, exist_ok=True)


def _supervise(commands: dict[str, list[str]], oneshot: set[str] = frozenset()) -> int:
    """Start every process; when one exits or we are told to stop, stop them all. A `oneshot`
    process may end (successfully or not) without stopping the others."""
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()}
    exit_code = 0
    while not stopping:
        for name, proc in list(procs.items()):
            if proc.poll() is None:
                continue
            if name in oneshot:
                print(f"demo: {name} finished with status {proc.returncode}", file=sys.stderr)
                del procs[name]
                continue
            print(f"demo: {name} exited with {proc.returncode}; stopping", file=sys.stderr)
            exit_code, stopping = 1, True
            break
        time.sleep(0.3)
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return exit_code
