"""mypy (with the Django and DRF plugins) over every package, failing on errors that are not in
the recorded baseline: existing findings are paid down over time, new ones never land.

    python .ci/typecheck.py            # check (what `make typecheck` and CI run)
    python .ci/typecheck.py --update   # rewrite the baseline after fixing some

An error is compared without its line number (file, message, code), so moving code does not
change the baseline; the same error twice in a file counts twice."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".ci" / "mypy-baseline.txt"
PACKAGES = ["accounts", "annotation", "benchmark", "config", "demo", "editworld", "jobs",
            "hooks", "lineage", "media", "mlcore", "rewardmodel", "rltraining"]  # fmt: skip
LINE = re.compile(r"^(?P<path>[^:]+):\d+: error: (?P<rest>.*)$")


def findings() -> Counter:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty", *PACKAGES],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode not in (0, 1) or "error: " not in result.stdout and result.returncode:
        sys.exit(f"mypy did not run:\n{result.stdout}{result.stderr}")
    found: Counter = Counter()
    for line in result.stdout.splitlines():
        match = LINE.match(line)
        if match:
            found[f"{match['path']}: {match['rest']}"] += 1
    return found


def main() -> int:
    found = findings()
    if "--update" in sys.argv:
        BASELINE.write_text("".join(f"{key}\n" * n for key, n in sorted(found.items())))
        print(f"baseline: {sum(found.values())} known error(s) in {BASELINE.relative_to(ROOT)}")
        return 0
    known = Counter(BASELINE.read_text().splitlines()) if BASELINE.is_file() else Counter()
    new, fixed = found - known, known - found
    if fixed:
        print(
            f"{sum(fixed.values())} baseline error(s) fixed: run `python .ci/typecheck.py "
            "--update` to lock the gain in"
        )
    if new:
        print(f"{sum(new.values())} new type error(s):")
        for key in sorted(new.elements()):
            print(f"  {key}")
        return 1
    print(f"type check: no new errors ({sum(found.values())} known, being paid down)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
