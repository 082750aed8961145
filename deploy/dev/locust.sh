#!/usr/bin/env bash
# `make locust`: locust headless against a running stack (`make run` in another shell).
#
#   deploy/dev/locust.sh [API base URL, default http://127.0.0.1:8000] [more locust options]
#
# Environment: LOCUST_USERS (20), LOCUST_SPAWN_RATE (5 users/s), LOCUST_RUN_TIME (60s),
# LOCUST_STOP_TIMEOUT (30 s for running flows to finish after the run time), and
# tests/load/locustfile.py's own (LOCUST_RATE_PER_USER, LOCUST_MANUAL_SHARE, ...).
# Credentials: CLEARHOUSE_CLIENT_ID and CLEARHOUSE_CLIENT_SECRET; when either is unset, a
# new merchant made with the CLI (`clearhouse merchant create --json`, on DATABASE_URL).
# BIN: where locust, python and clearhouse are (default: the checkout's .venv/bin).
#
# Prints locust's summary; exits with locust's status: non-zero when any request failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
HOST="${1:-http://127.0.0.1:8000}"
cd "$ROOT"

say() { printf 'locust: %s\n' "$*" >&2; }

# One clear line instead of a summary full of connection errors.
if ! "$BIN/python" - "$HOST" <<'EOF'; then
import sys
import urllib.request

urllib.request.urlopen(sys.argv[1] + "/health", timeout=5)
EOF
    say "no API answers at $HOST/health: start the stack first (make run, in another shell)"
    exit 1
fi

if [[ -z "${CLEARHOUSE_CLIENT_ID:-}" || -z "${CLEARHOUSE_CLIENT_SECRET:-}" ]]; then
    merchant="$("$BIN/clearhouse" merchant create --name "locust $(date -u +%Y-%m-%dT%H:%M:%SZ)" --json)"
    # The secret goes to locust through the environment only, never onto a command line.
    {
        read -r merchant_id
        read -r CLEARHOUSE_CLIENT_ID
        read -r CLEARHOUSE_CLIENT_SECRET
    } < <("$BIN/python" -c '
import json, sys
m = json.loads(sys.stdin.read().strip().splitlines()[-1])
print(m["merchant_id"], m["client_id"], m["client_secret"], sep="\n")
' <<<"$merchant")
    export CLEARHOUSE_CLIENT_ID CLEARHOUSE_CLIENT_SECRET
    say "created merchant $merchant_id (client $CLEARHOUSE_CLIENT_ID); set CLEARHOUSE_CLIENT_ID/SECRET to reuse one"
fi

users="${LOCUST_USERS:-20}" rate="${LOCUST_SPAWN_RATE:-5}" run_time="${LOCUST_RUN_TIME:-60s}"
say "$users users (+$rate/s) for $run_time against $HOST"
# --only-summary: the final tables, not a table every few seconds. --stop-timeout: a user
# finishes its payment flow (poll, capture, refund) instead of dropping it half-way.
exec "$BIN/locust" -f "$ROOT/tests/load/locustfile.py" --headless --host "$HOST" \
    --users "$users" --spawn-rate "$rate" --run-time "$run_time" \
    --stop-timeout "${LOCUST_STOP_TIMEOUT:-30}" --only-summary --exit-code-on-error 1 "${@:2}"
