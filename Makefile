# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a CPU wheel on local disk; a bare range would pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[ml,dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python manage.py demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf var/ .pytest_cache
