#!/usr/bin/env bash
# The whole thing, end to end, without a Klaviyo account (README: "Demo"):
#   1. sets up Meltano and the plugins of meltano.yml (scripts/setup_meltano.sh)
#   2. starts the Klaviyo sandbox (python -m klaviyo_sandbox) on a free port, stopped again on exit
#   3. Klaviyo -> DuckDB:  meltano --environment=sandbox run klaviyo-to-warehouse  (tap-klaviyo target-duckdb)
#      and shows rows per stream in output/sandbox.duckdb plus a query of what landed
#   4. 5 profiles change in the sandbox; the same job again reads only what changed (Meltano's state)
#   5. file -> Klaviyo list:  meltano --environment=sandbox run warehouse-to-klaviyo  (tap-jsonl target-klaviyo)
#      with the list's members before and after, read back through the API
# Re-runnable: every run starts a fresh sandbox, so it ignores the sandbox state of earlier demos
# (--full-refresh) and rebuilds output/sandbox.duckdb. Real-account data (the dev environment,
# output/warehouse.duckdb) is never touched.
#
# Usage: ./scripts/demo.sh [--port N (default: a free one)] [--scale X (default 1: 2,000 profiles,
#        20,000 events)] [--verbose (Meltano's logs on the terminal too)]
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=0
SCALE=1
VERBOSE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --port=*) PORT="${1#*=}"; shift ;;
    --scale) SCALE="$2"; shift 2 ;;
    --scale=*) SCALE="${1#*=}"; shift ;;
    -v|--verbose) VERBOSE=1; shift ;;
    -h|--help) sed -nE '2,/^[^#]/s/^# ?//p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-python3}"  # runs the sandbox (standard library only) and the report helpers
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "demo.sh: needs Python 3.10+ as $PYTHON (set PYTHON=/path/to/python3.x)" >&2
  exit 1
fi
LIST_NAME="Meltano demo: new customers"  # the sandbox environment's list_name in meltano.yml
WAREHOUSE=output/sandbox.duckdb          # the sandbox environment's target-duckdb filepath
LOGS=output/demo
SANDBOX_PID=""

step() { printf '\n==> %s\n' "$*"; }
cleanup() {
  if [ -n "$SANDBOX_PID" ] && kill -0 "$SANDBOX_PID" 2>/dev/null; then
    kill "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
    echo "(sandbox stopped)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# meltano LOG ARGS...: run Meltano in the sandbox environment, its log to $LOGS/LOG.log (and the
# terminal with --verbose); on failure show the end of the log.
meltano_run() {
  local log="$LOGS/$1.log" started=$SECONDS
  shift
  echo "    \$ meltano --environment=sandbox $*"
  local status=0
  if [ "$VERBOSE" = 1 ]; then
    set +e
    "$MELTANO" --environment=sandbox "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
  else
    "$MELTANO" --environment=sandbox "$@" >"$log" 2>&1 || status=$?
  fi
  if [ "$status" != 0 ]; then
    tail -n 30 "$log" | sed 's/^/    | /'
    echo "demo.sh: meltano $* failed (exit $status); full log: $log" >&2
    exit "$status"
  fi
  echo "    ok in $((SECONDS - started))s (log: $log)"
}

step "Setting up Meltano (.venv-meltano) and the plugins of meltano.yml"
MELTANO="$(./scripts/setup_meltano.sh)"
SHOWN="${MELTANO#"$PWD"/}"
echo "    $SHOWN: $("$MELTANO" --version)"
DUCKDB_PYTHON=.meltano/loaders/target-duckdb/venv/bin/python  # has the duckdb that writes the warehouse
REPORT=scripts/pipeline_report.py
mkdir -p "$LOGS"
rm -f "$WAREHOUSE" "$WAREHOUSE.wal"

step "Starting the Klaviyo sandbox"
# --now now: the sandbox's clock is the real one, as Klaviyo's is (the tap compares it with its own).
echo "    \$ $PYTHON -m klaviyo_sandbox --port $PORT --scale $SCALE --now now --job-seconds 1"
"$PYTHON" -m klaviyo_sandbox --port "$PORT" --scale "$SCALE" --now now --job-seconds 1 \
  >"$LOGS/sandbox.log" 2>&1 &
SANDBOX_PID=$!
URL=""
for _ in $(seq 1 100); do
  URL="$(head -n 1 "$LOGS/sandbox.log" | grep -o '^http://[^ ]*' || true)"
  [ -n "$URL" ] && break
  kill -0 "$SANDBOX_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$URL" ]; then
  tail -n 3 "$LOGS/sandbox.log" >&2
  echo "demo.sh: the sandbox did not start (is port $PORT free? try --port 0)" >&2
  exit 1
fi
API_KEY="$(head -n 1 "$LOGS/sandbox.log" | cut -d' ' -f2)"
echo "    listening on $URL (pid $SANDBOX_PID), test key $API_KEY"
# The sandbox environment of meltano.yml has everything but this port. Settings of this shell (say, a
# real account's) are left out; Meltano also reads .env, over meltano.yml, so any connector setting
# there is overridden here with the sandbox's value, or blanked.
CONNECTOR_VARS='(TAP_KLAVIYO|TARGET_KLAVIYO|TAP_JSONL|TARGET_DUCKDB)_[A-Z0-9_]+'
for name in $(compgen -e | grep -E "^$CONNECTOR_VARS\$" || true); do unset "$name"; done
IN_DOTENV="$([ -f .env ] && sed -nE "s/^[[:space:]]*(export[[:space:]]+)?($CONNECTOR_VARS)=.*/\\2/p" .env || true)"
if [ -n "$IN_DOTENV" ]; then
  echo "    .env sets $(echo $IN_DOTENV | tr ' ' ','): the demo uses the sandbox's settings instead"
  for name in $IN_DOTENV; do export "$name="; done
  export TAP_KLAVIYO_API_KEY="$API_KEY" TARGET_KLAVIYO_API_KEY="$API_KEY" TARGET_KLAVIYO_LIST_NAME="$LIST_NAME" \
    TAP_JSONL_PATH=scripts/demo_data/new_customers.jsonl TARGET_DUCKDB_FILEPATH="$WAREHOUSE"
fi
export TAP_KLAVIYO_BASE_URL="$URL" TARGET_KLAVIYO_BASE_URL="$URL"

step "Klaviyo -> DuckDB: the klaviyo-to-warehouse job (tap-klaviyo target-duckdb), full sync"
meltano_run 1-klaviyo-to-warehouse run --full-refresh klaviyo-to-warehouse
echo "    What landed in $WAREHOUSE (schema klaviyo):"
"$DUCKDB_PYTHON" "$REPORT" counts "$WAREHOUSE" --sample

step "5 profiles change in Klaviyo; the same job again reads only what changed"
echo "    POST $URL/__sandbox/touch?stream=profiles&n=5   (5 profiles updated, 5 new events)"
"$PYTHON" -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1], method="POST"), timeout=30)' \
  "$URL/__sandbox/touch?stream=profiles&n=5"
meltano_run 2-klaviyo-to-warehouse run klaviyo-to-warehouse
echo "    Records this incremental run read: the 5 changed profiles and 5 new events, plus the records"
echo "    at a bookmark's exact second (the filters are inclusive), the sandbox's future-dated event,"
echo "    and the full-table streams (metrics, list and segment members):"
"$PYTHON" "$REPORT" records "$LOGS/2-klaviyo-to-warehouse.log" --plugin tap-klaviyo
echo "    Meltano's stored state (\$ meltano --environment=sandbox state get sandbox:tap-klaviyo-to-target-duckdb):"
"$MELTANO" --environment=sandbox state get sandbox:tap-klaviyo-to-target-duckdb 2>/dev/null \
  | "$PYTHON" "$REPORT" state

step "File -> Klaviyo list: the warehouse-to-klaviyo job (tap-jsonl target-klaviyo)"
PEOPLE=scripts/demo_data/new_customers.jsonl
echo "    Source: $PEOPLE ($(wc -l <"$PEOPLE" | tr -d ' ') people)"
echo "    Before:"
"$PYTHON" "$REPORT" members --base-url "$URL" --api-key "$API_KEY" --list-name "$LIST_NAME"
meltano_run 3-warehouse-to-klaviyo run --full-refresh warehouse-to-klaviyo
echo "    After:"
"$PYTHON" "$REPORT" members --base-url "$URL" --api-key "$API_KEY" --list-name "$LIST_NAME"

step "Done"
cat <<EOF
    The same jobs against a real Klaviyo account (no --environment: the dev environment):
      export TAP_KLAVIYO_API_KEY=pk_... TARGET_KLAVIYO_API_KEY=pk_... TARGET_KLAVIYO_LIST_NAME='My list'
      export TAP_JSONL_PATH=path/to/people.jsonl
      $SHOWN run klaviyo-to-warehouse    # -> output/warehouse.duckdb
      $SHOWN run warehouse-to-klaviyo
EOF
