#!/usr/bin/env bash
# Make sure Debian's chromium and chromium-driver are installed: the console's browser test
# (tests/e2e/test_console_browser.py) drives them headless through selenium. `make test`
# runs this, and the test's set-up runs it when either binary is missing. Never downloads a
# browser of its own: the distribution's packages only. Idempotent.
#
# Environment: CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"

log() { printf 'chromium: %s\n' "$*"; }
die() { printf 'chromium: ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    log "present: $CHROMIUM, $CHROMEDRIVER"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 \
    || die "chromium or chromedriver missing and no apt-get here: install them (or set CHROMIUM, CHROMEDRIVER)"
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 \
        || die "chromium or chromedriver missing; run as root or install sudo (or install them yourself)"
    SUDO="sudo"
fi
log "apt-get install -y chromium chromium-driver"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
[[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] || die "installed, yet $CHROMIUM or $CHROMEDRIVER is missing"
log "installed: $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
