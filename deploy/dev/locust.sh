#!/usr/bin/env bash
# `make locust`: locust headless against a running stack (`make run` in another shell).
#
#   deploy/dev/locust.sh [API base URL, default https://127.0.0.1:8000] [more locust options]
#
# HTTPS: the server's certificate is checked against CLEARHOUSE_CA_FILE (default TLS_DIR's
# ca.pem, TLS_DIR as `make run`'s: var/tls), and the client presents CLEARHOUSE_CLIENT_CERT_FILE
# and CLEARHOUSE_CLIENT_KEY_FILE (default TLS_DIR's client.pem and client-key.pem, when there):
# what `make run TLS_CLIENT_CA_FILE=var/tls/ca.pem` asks for.
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
HOST="${1:-https://127.0.0.1:8000}"
cd "$ROOT"

tls_dir="${TLS_DIR:-var/tls}"
if [[ "$HOST" == https://* ]]; then
    default_ca="" default_cert="" default_key=""
    [[ -f "$tls_dir/ca.pem" ]] && default_ca="$tls_dir/ca.pem"
    if [[ -f "$tls_dir/client.pem" && -f "$tls_dir/client-key.pem" ]]; then
        default_cert="$tls_dir/client.pem" default_key="$tls_dir/client-key.pem"
    fi
    export CLEARHOUSE_CA_FILE="${CLEARHOUSE_CA_FILE:-$default_ca}"
    export CLEARHOUSE_CLIENT_CERT_FILE="${CLEARHOUSE_CLIENT_CERT_FILE:-$default_cert}"
    export CLEARHOUSE_CLIENT_KEY_FILE="${CLEARHOUSE_CLIENT_KEY_FILE:-$default_key}"
fi

say() { printf 'locust: %s\n' "$*" >&2; }

# One clear line instead of a summary full of connection errors.
if ! "$BIN/python" - "$HOST" <<'EOF'; then
import os
import ssl
import sys
import urllib.request

# The locustfile's TLS settings, so that this check fails where its users would.
context = ssl.create_default_context(cafile=os.environ.get("CLEARHOUSE_CA_FILE") or None)
if os.environ.get("CLEARHOUSE_CLIENT_CERT_FILE"):
    context.load_cert_chain(
        os.environ["CLEARHOUSE_CLIENT_CERT_FILE"], os.environ.get("CLEARHOUSE_CLIENT_KEY_FILE")
    )
urllib.request.urlopen(sys.argv[1] + "/health", timeout=5, context=context)
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
