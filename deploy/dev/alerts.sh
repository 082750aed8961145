#!/usr/bin/env bash
# Check and test the Prometheus alert rules (`make alerts`; `make test` runs it):
#   promtool check rules deploy/prometheus/rules/*.yml
#   promtool test rules  deploy/prometheus/tests/*.yml   (promtool's rule-test format)
#   promtool check config deploy/prometheus/prometheus.yml (syntax only: its rule
#     files are the container's paths)
#
# promtool missing: install Debian's `prometheus` package (it ships promtool), as
# deploy/dev/services.sh does for Postgres; the package may start its own server
# (port 9090): this script stops the one it caused to start. Environment: PROMTOOL
# (a promtool to use instead).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PROM="$ROOT/deploy/prometheus"

log() { printf 'alerts: %s\n' "$*"; }
die() { printf 'alerts: ERROR: %s\n' "$*" >&2; exit 1; }

install_promtool() {
    local sudo=""
    command -v apt-get >/dev/null 2>&1 \
        || die "promtool not found and no apt-get here: install Prometheus's promtool (or set PROMTOOL)"
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 \
            || die "promtool not found; run as root or install sudo (or install promtool yourself)"
        sudo="sudo"
    fi
    log "promtool not found: apt-get install -y prometheus"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus >/dev/null
    # Only promtool is wanted: a server the package started would hold 9090 for good.
    if command -v service >/dev/null 2>&1; then
        $sudo service prometheus stop >/dev/null 2>&1 || true
    fi
    command -v systemctl >/dev/null 2>&1 && $sudo systemctl disable --now prometheus \
        >/dev/null 2>&1 || true
    command -v promtool >/dev/null 2>&1 || die "prometheus installed but promtool not found"
}

PROMTOOL="${PROMTOOL:-}"
if [[ -z "$PROMTOOL" ]]; then
    command -v promtool >/dev/null 2>&1 || install_promtool
    PROMTOOL="promtool"
fi

shopt -s nullglob
rules=("$PROM"/rules/*.yml)
tests=("$PROM"/tests/*.yml)
((${#rules[@]})) || die "no rule files in $PROM/rules"
((${#tests[@]})) || die "no rule tests in $PROM/tests"

"$PROMTOOL" check config --syntax-only "$PROM/prometheus.yml"
"$PROMTOOL" check rules "${rules[@]}"
# Every alerting rule must be exercised by some test.
for alert in $(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "${rules[@]}"); do
    grep -qE "alertname: *$alert\b" "${tests[@]}" || die "alert $alert has no promtool test"
done
"$PROMTOOL" test rules "${tests[@]}"
log "rules checked and tested: ${#rules[@]} rule file(s), ${#tests[@]} test file(s)"
