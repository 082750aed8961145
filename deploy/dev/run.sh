#!/usr/bin/env bash
# `make run`'s start-up, once the venv, Postgres, Redis and the schema are there: HTTPS for
# the API, then every process of the Procfile under honcho.
#
#   deploy/dev/run.sh [process names for honcho start: all when none, e.g. `api`]
#
# TLS: TLS_CERT_FILE and TLS_KEY_FILE when set; otherwise the development certificates in
# TLS_DIR (default var/tls), made with `clearhouse dev-certs` when missing. TLS_CLIENT_CA_FILE
# (say var/tls/ca.pem) makes the API require a client certificate that CA signed.
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

exec "$BIN/honcho" -f "${PROCFILE:-deploy/Procfile}" start -p "${PORT:-8000}" "$@"
