#!/usr/bin/env bash
# `make run`'s start-up, once the venv, Postgres, Redis and the schema are there: HTTPS for
# the API, then every process of the Procfile under honcho.
#
#   deploy/dev/run.sh [process names for honcho start: all when none, e.g. `api`]
#
# TLS: TLS_CERT_FILE and TLS_KEY_FILE when set; otherwise the development certificates in
# TLS_DIR (default var/tls), made with `clearhouse dev-certs` when missing. TLS_CLIENT_CA_FILE
# (say var/tls/ca.pem) makes the API require a client certificate that CA signed.
# Ledger anchoring: with ANCHOR_RPC_URL unset (and PROCFILE too), the processes also get a
# development chain (deploy/dev/Procfile.devchain, on DEVCHAIN_PORT, default 8545) and
# ANCHOR_* pointing at it, with a key of this checkout's (made once, CLEARHOUSE_KEY_DIR's
# anchor-dev.key). ANCHOR_RPC_URL set: the node it names, and no devchain.
# Environment: PORT (8000, the API's), BIN (where clearhouse and honcho are, default the
# checkout's .venv/bin), PROCFILE (default deploy/Procfile).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
cd "$ROOT"

if [[ -z "${TLS_CERT_FILE:-}" ]]; then
    dir="${TLS_DIR:-var/tls}"
    if [[ ! -f "$dir/server.pem" || ! -f "$dir/server-key.pem" ]]; then
        # Refuses (and so stops here) when the folder holds part of a bundle: nothing of a
        # developer's is overwritten.
        "$BIN/clearhouse" dev-certs "$dir" >&2
    fi
    export TLS_CERT_FILE="$dir/server.pem" TLS_KEY_FILE="$dir/server-key.pem"
fi

if [[ -z "${ANCHOR_RPC_URL:-}" && -z "${PROCFILE:-}" ]]; then
    key_file="${CLEARHOUSE_KEY_DIR:-var/keys}/anchor-dev.key"
    if [[ ! -s "$key_file" ]]; then
        mkdir -p "$(dirname "$key_file")"
        (umask 077 && "$BIN/python" -c 'import secrets; print("0x" + secrets.token_hex(32))' >"$key_file")
    fi
    ANCHOR_PRIVATE_KEY="$(cat "$key_file")"
    # eth-tester's chain id (py-evm's default): the devchain's.
    export ANCHOR_PRIVATE_KEY ANCHOR_RPC_URL="http://127.0.0.1:${DEVCHAIN_PORT:-8545}"
    export ANCHOR_CHAIN_ID=131277322940537
    mkdir -p var/run
    cat deploy/Procfile deploy/dev/Procfile.devchain >var/run/Procfile
    PROCFILE=var/run/Procfile
fi

exec "$BIN/honcho" -f "${PROCFILE:-deploy/Procfile}" start -p "${PORT:-8000}" "$@"
