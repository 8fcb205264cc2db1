#!/usr/bin/env bash
# One command for the main job: set up, then extract Klaviyo with `meltano run tap-klaviyo target-jsonl`.
# Needs TAP_KLAVIYO_API_KEY (or the OAuth settings) in the environment or in .env.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e . "meltano~=4.4"
.venv/bin/meltano install
exec .venv/bin/meltano run tap-klaviyo target-jsonl "$@"
