#!/usr/bin/env bash
# Extract a real Klaviyo account into output/*.jsonl: `meltano run tap-klaviyo target-jsonl`.
#
# Needs TAP_KLAVIYO_API_KEY (or the OAuth settings TAP_KLAVIYO_CLIENT_ID and TAP_KLAVIYO_CLIENT_SECRET)
# in the environment or in .env. Without TAP_KLAVIYO_START_DATE the first run reads the whole history.
# Checks that first, then installs only what this job needs: Meltano in .venv-meltano (the one
# virtualenv of scripts/setup_meltano.sh and the demo) and the job's two plugins. Extra arguments go
# to `meltano run` (e.g. --full-refresh).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -nE '2,/^[^#]/s/^# ?//p' "$0"; exit 0 ;;
esac

has_setting() {  # set in the environment, or as NAME=value in .env
  [ -n "${!1:-}" ] || { [ -f .env ] && grep -Eq "^(export +)?$1=['\"]?[^'\"[:space:]]" .env; }
}
if ! has_setting TAP_KLAVIYO_API_KEY && ! has_setting TAP_KLAVIYO_CLIENT_ID; then
  echo "run.sh: TAP_KLAVIYO_API_KEY is not set: export TAP_KLAVIYO_API_KEY=pk_... (a private key with read scopes, Klaviyo > Settings > API keys) or put it in .env" >&2
  exit 1
fi
if ! has_setting TAP_KLAVIYO_START_DATE; then
  echo "run.sh: TAP_KLAVIYO_START_DATE is not set: a first run reads the account's whole history (set e.g. TAP_KLAVIYO_START_DATE=2024-01-01 to begin later)" >&2
fi

MELTANO="$(scripts/setup_meltano.sh --venv-only)"
mkdir -p output
log=output/meltano-install.log
echo "run.sh: installing tap-klaviyo and target-jsonl (log: $log)" >&2
if ! "$MELTANO" install tap-klaviyo target-jsonl >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "run.sh: meltano install failed; full log: $log" >&2
  exit 1
fi
exec "$MELTANO" run tap-klaviyo target-jsonl "$@"
