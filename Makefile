# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned: EditLoop's parity tests compare against exactly these releases.
REFERENCE_PACKAGES := editscore==0.2 qwen-vl-utils==0.0.14
# The browser the browser tests drive (tests/conftest.py names the same path).
CHROMIUM := /usr/bin/chromium

.PHONY: install demo test lint typecheck clean

$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a CPU wheel on local disk; a bare range would pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[ml,dev]'
	# The authors' reference (prompts, chat template, parser, RL script) and qwen-vl-utils'
	# image sizing, without their dependencies: both require torchvision, which resolves to a
	# CUDA build of torch here. What they really need (json-repair, regex) is in pyproject.toml;
	# rewardmodel/ml/reference.py reads the torchvision-importing files without importing them.
	$(BIN)/pip install -q --no-deps $(REFERENCE_PACKAGES)
	touch $@

install: $(BIN)/.installed

demo: install
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py demo

test: install $(CHROMIUM)
	$(BIN)/python -m pytest

# The browser tests drive Debian's chromium (Playwright cannot download browsers here): installed
# when this user may run apt-get, else the exact command to run, and the tests do not start.
$(CHROMIUM):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo DEBIAN_FRONTEND=noninteractive apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
	  echo "make test needs Debian's chromium at $(CHROMIUM) for its browser tests." >&2; \
	  echo "Install it (Debian/Ubuntu: sudo apt-get install chromium) and run make test again." >&2; \
	  exit 1; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over every package; fails on an error not in .ci/mypy-baseline.txt (see that script).
typecheck: install
	$(BIN)/python .ci/typecheck.py

clean:
	rm -rf var/ .pytest_cache
