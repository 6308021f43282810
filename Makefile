# The two user-facing entry points (see README): `make demo` and `make test`.
# Both create or reuse .venv and install what they need (scripts/bootstrap.sh).
PY := .venv/bin/python
SHELL := /bin/bash

.PHONY: demo test bootstrap lint bench clean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m training demo --out runs/demo

test: bootstrap
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf runs build install log .pytest_cache .mypy_cache
