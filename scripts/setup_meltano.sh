#!/usr/bin/env bash
# Set up Meltano for this project, idempotently (quick when everything is there already):
#   - Meltano itself in its own virtualenv, .venv-meltano (not a dependency of the connectors,
#     whose venv is .venv); override with MELTANO_VENV=/path, MELTANO_VERSION=x.y.z, PYTHON=python3.x
#   - with no option: the plugins of meltano.yml (`meltano install`, each in its own venv under
#     .meltano/) and the output/ folder the local warehouse is written to
#   - with --venv-only: only the Meltano virtualenv (tests/e2e install plugins in a copy of the project)
# Prints the path of the meltano executable on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  ""|--venv-only) ;;
  -h|--help) sed -nE '2,/^[^#]/s/^# ?//p' "$0"; exit 0 ;;
  *) echo "setup_meltano: unknown option $1 (--venv-only, or none; --help)" >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
  echo "setup_meltano: one option at most (--venv-only, or none; --help)" >&2
  exit 2
fi
PYTHON="${PYTHON:-python3}"
MELTANO_VERSION="${MELTANO_VERSION:-4.4.1}"
VENV="${MELTANO_VENV:-.venv-meltano}"
MELTANO="$VENV/bin/meltano"

if ! "$MELTANO" --version 2>/dev/null | grep -qx "meltano, version $MELTANO_VERSION"; then
  echo "setup_meltano: installing Meltano $MELTANO_VERSION in $VENV" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  echo '*' > "$VENV/.gitignore"  # keeps the venv out of git without touching the project's .gitignore
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "meltano==$MELTANO_VERSION" \
      >"$VENV/install.log" 2>&1; then
    tail -n 30 "$VENV/install.log" >&2
    echo "setup_meltano: pip install meltano==$MELTANO_VERSION failed; full log: $VENV/install.log" >&2
    exit 1
  fi
fi

if [ "${1:-}" != "--venv-only" ]; then
  mkdir -p output  # target-duckdb creates the database file, not its folder
  log=output/meltano-install.log
  echo "setup_meltano: installing the plugins of meltano.yml (meltano install, log: $log)" >&2
  if ! "$MELTANO" install >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup_meltano: meltano install failed; full log: $log" >&2
    exit 1
  fi
fi
echo "$(cd "$(dirname "$MELTANO")" && pwd)/meltano"
