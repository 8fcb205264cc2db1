#!/usr/bin/env bash
# One command that sets everything up and passes the tests (README: "Run the tests").
# Installs the pinned versions of requirements/lock.txt. With LINT=1 (as .ci/run sets) it first runs
# the lint, format and type checks that the pre-commit hooks run. With FAST=1 it leaves out the Meltano
# end-to-end tests and the slow ones (pytest -m "not e2e and not slow"): the loop to run while editing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c requirements/lock.txt -e ".[test]"
if [ "${LINT:-0}" = 1 ]; then
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  .venv/bin/mypy
fi
if [ "${FAST:-0}" = 1 ]; then
  exec .venv/bin/python -m pytest -m "not e2e and not slow" "$@"
fi
exec .venv/bin/python -m pytest "$@"
