#!/usr/bin/env bash
# Make sure Postgres and Redis answer at DATABASE_URL and REDIS_URL, and RabbitMQ
# at BROKER_URL when that is amqp://… (empty, the default: Redis is the broker).
#
# Already reachable: say so and do nothing. Not reachable and the host is local
# (127.0.0.1 / localhost): install the Debian packages if the binaries are
# missing, then start private instances whose data lives in the git-ignored
# var/ folder of the checkout:
#   var/postgres          Postgres cluster (initdb, trust auth), socket in var/run/postgres
#   var/redis             Redis working dir (no persistence)
#   var/rabbitmq          RabbitMQ node data (only when BROKER_URL is amqp)
#   var/log/*.log         server logs
# Idempotent: run it as often as you like. It never stops anything; to stop:
#   pg_ctl -D var/postgres stop          (as the postgres user when run as root)
#   kill "$(cat var/run/redis-PORT.pid)"
#   rabbitmqctl -n clearhouse-PORT@localhost stop  (a RabbitMQ node it started)
#
# Environment: DATABASE_URL, REDIS_URL, BROKER_URL (the app's), MIGRATION_DATABASE_URL (whose
# user becomes the new cluster's superuser: default postgres), CLEARHOUSE_PGDATA
# (override the Postgres data dir), SERVICES_WAIT_S (default 30).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAR="$ROOT/var"
DATABASE_URL="${DATABASE_URL:-postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/clearhouse}"
# The superuser: `clearhouse db upgrade` connects as it and creates the app's roles.
MIGRATION_DATABASE_URL="${MIGRATION_DATABASE_URL:-}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
BROKER_URL="${BROKER_URL:-}"
WAIT_S="${SERVICES_WAIT_S:-30}"

log() { printf 'services: %s\n' "$*"; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# --- URL parsing -------------------------------------------------------------
# Sets URL_USER URL_PASS URL_HOST URL_PORT from scheme://[user[:pass]@]host[:port][/...]
parse_url() {
    local url="$1" default_port="$2" rest auth hostport
    rest="${url#*://}"
    rest="${rest%%[/?#]*}"
    URL_USER="" URL_PASS=""
    if [[ "$rest" == *@* ]]; then
        auth="${rest%@*}"
        hostport="${rest##*@}"
        URL_USER="${auth%%:*}"
        if [[ "$auth" == *:* ]]; then URL_PASS="${auth#*:}"; fi
    else
        hostport="$rest"
    fi
    if [[ "$hostport" == \[*\]* ]]; then            # [ipv6]:port
        URL_HOST="${hostport%%]*}"; URL_HOST="${URL_HOST#[}"
        URL_PORT="${hostport##*]}"; URL_PORT="${URL_PORT#:}"
    elif [[ "$hostport" == *:* ]]; then
        URL_HOST="${hostport%%:*}"
        URL_PORT="${hostport##*:}"
    else
        URL_HOST="$hostport"
        URL_PORT=""
    fi
    URL_HOST="${URL_HOST:-127.0.0.1}"
    # Bind and probe IPv4 loopback for "localhost"; clients try every address anyway.
    if [[ "$URL_HOST" == "localhost" ]]; then URL_HOST="127.0.0.1"; fi
    URL_PORT="${URL_PORT:-$default_port}"
    [[ "$URL_PORT" =~ ^[0-9]+$ ]] || die "bad port in URL: $url"
}

is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" ]]; }

# TCP reachability without pg_isready / redis-cli.
reachable() {
    local host="$1" port="$2"
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

wait_reachable() {
    local name="$1" host="$2" port="$3" logfile="$4" deadline=$((SECONDS + WAIT_S))
    until reachable "$host" "$port"; do
        if ((SECONDS >= deadline)); then
            if [[ -f "$logfile" ]]; then tail -n 20 "$logfile" >&2; fi
            die "$name did not become reachable at $host:$port within ${WAIT_S}s (log: $logfile)"
        fi
        sleep 0.5
    done
}

# --- privileges and packages --------------------------------------------------
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi
APT_UPDATED=0

apt_install() {
    command -v apt-get >/dev/null 2>&1 \
        || die "missing $*; no apt-get here, install it yourself or point the URLs elsewhere"
    if [[ "$(id -u)" != 0 && -z "$SUDO" ]]; then
        die "missing $*; run as root or install sudo (or install the packages yourself)"
    fi
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Directory holding initdb/pg_ctl: PATH first, then Debian's versioned dirs
# (preferring the version an existing data dir was made with).
pg_bindir() {
    local want="${1:-}" d
    if [[ -n "$want" && -x "/usr/lib/postgresql/$want/bin/pg_ctl" ]]; then
        echo "/usr/lib/postgresql/$want/bin"; return
    fi
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"; return
    fi
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" ]] && echo "$d"
}

# Run a command as the Postgres owner: the postgres OS user when we are root.
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# --- Postgres -----------------------------------------------------------------
ensure_postgres() {
    # The server is DATABASE_URL's; the superuser initdb makes is the migration
    # URL's user (DATABASE_URL's user is the app role, which db upgrade creates).
    local user=postgres
    if [[ -n "$MIGRATION_DATABASE_URL" ]]; then
        parse_url "$MIGRATION_DATABASE_URL" 5432
        user="${URL_USER:-postgres}"
    fi
    parse_url "$DATABASE_URL" 5432
    local host="$URL_HOST" port="$URL_PORT"
    if reachable "$host" "$port"; then
        log "postgres reachable at $host:$port"
        return
    fi
    is_local "$host" || die "postgres not reachable at $host:$port (not a local host, not starting one)"

    local data="${CLEARHOUSE_PGDATA:-$VAR/postgres}" run="$VAR/run/postgres" logdir="$VAR/log"
    local want_version="" bindir
    if [[ -f "$data/PG_VERSION" ]]; then want_version="$(cat "$data/PG_VERSION")"; fi
    bindir="$(pg_bindir "$want_version" || true)"
    if [[ -z "$bindir" ]]; then
        apt_install postgresql
        # The package may have started its own cluster on our port.
        if reachable "$host" "$port"; then
            log "postgres reachable at $host:$port (started by the package)"
            return
        fi
        bindir="$(pg_bindir "$want_version" || true)"
        [[ -n "$bindir" ]] || die "postgresql installed but initdb/pg_ctl not found"
    fi

    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 \
            || useradd --system --user-group --no-create-home --shell /bin/bash postgres
        mkdir -p "$VAR/run" "$logdir"
        install -d -m 0700 -o postgres -g postgres "$data"
        install -d -m 0775 -o postgres -g postgres "$run"
        if ! runuser -u postgres -- test -w "$data" -a -w "$run" 2>/dev/null; then
            local fallback="${TMPDIR:-/tmp}/clearhouse-pg-$(id -u)"
            log "the postgres OS user cannot write $data; using $fallback for Postgres instead"
            data="$fallback/data" run="$fallback/run" logdir="$fallback"
            install -d -m 0755 "$fallback"
            install -d -m 0700 -o postgres -g postgres "$data"
            install -d -m 0775 -o postgres -g postgres "$run"
        fi
    else
        mkdir -p -m 0700 "$data"
        mkdir -p "$run" "$logdir"
    fi
    local logfile="$logdir/postgres.log"
    touch "$logfile"
    if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$logfile"; fi

    if [[ ! -f "$data/PG_VERSION" ]]; then
        log "initdb $data (superuser $user, trust auth)"
        as_pg "$bindir/initdb" -D "$data" -U "$user" --auth=trust --encoding=UTF8 \
            --locale=C >>"$logfile" 2>&1 || { tail -n 20 "$logfile" >&2; die "initdb failed"; }
    fi

    if as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        # Running, yet not reachable at $host:$port: started with other settings.
        die "a postgres already runs from $data but not on $host:$port; stop it: pg_ctl -D $data stop"
    fi

    log "starting postgres on $host:$port (data $data, log $logfile)"
    as_pg "$bindir/pg_ctl" -D "$data" -l "$logfile" -w -t "$WAIT_S" \
        -o "-p $port -k $run -c listen_addresses=$host -c max_connections=300" start \
        >/dev/null || { tail -n 20 "$logfile" >&2; die "pg_ctl start failed (log: $logfile)"; }
    wait_reachable postgres "$host" "$port" "$logfile"
    log "postgres started at $host:$port"
}

# --- Redis ----------------------------------------------------------------------
ensure_redis() {
    parse_url "$REDIS_URL" 6379
    local host="$URL_HOST" port="$URL_PORT" pass="$URL_PASS"
    if reachable "$host" "$port"; then
        log "redis reachable at $host:$port"
        return
    fi
    is_local "$host" || die "redis not reachable at $host:$port (not a local host, not starting one)"
    [[ "$REDIS_URL" == redis://* ]] || die "can only start a plain redis:// server, got $REDIS_URL"

    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    if reachable "$host" "$port"; then
        log "redis reachable at $host:$port (started by the package)"
        return
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found after install"

    local dir="$VAR/redis" logfile="$VAR/log/redis.log" pidfile="$VAR/run/redis-$port.pid"
    mkdir -p "$dir" "$VAR/log" "$VAR/run"
    local args=(--daemonize yes --port "$port" --bind "$host" --dir "$dir"
        --save "" --appendonly no --logfile "$logfile" --pidfile "$pidfile")
    if [[ -n "$pass" ]]; then args+=(--requirepass "$pass"); fi
    log "starting redis on $host:$port (dir $dir, log $logfile)"
    redis-server "${args[@]}" || die "redis-server failed to start (log: $logfile)"
    wait_reachable redis "$host" "$port" "$logfile"
    log "redis started at $host:$port"
}

# --- RabbitMQ (BROKER_URL=amqp://...) -------------------------------------------
ensure_rabbitmq() {
    case "$BROKER_URL" in
        amqp://* | amqps://* | pyamqp://*) ;;
        *) return ;; # Redis is the broker
    esac
    parse_url "$BROKER_URL" 5672
    local host="$URL_HOST" port="$URL_PORT" user="${URL_USER:-guest}" pass="${URL_PASS:-guest}"
    local vhost="${BROKER_URL#*://}"
    vhost="${vhost#*/}"
    [[ "$vhost" == "${BROKER_URL#*://}" ]] && vhost="" # no path: the default vhost
    vhost="${vhost%%[?#]*}"
    vhost="${vhost//%2F//}"
    vhost="${vhost//%2f//}"
    vhost="${vhost:-/}"
    # Our own node (started below, or by an earlier run: its config file is
    # there) is named by its port; rabbitmqctl must address it by that name.
    local node="clearhouse-$port@localhost" conf="$VAR/rabbitmq/$port/rabbitmq.conf"
    local ctl=(rabbitmqctl -q)
    if [[ -f "$conf" ]]; then ctl+=(-n "$node"); fi
    if reachable "$host" "$port"; then
        log "rabbitmq reachable at $host:$port"
    else
        is_local "$host" \
            || die "rabbitmq not reachable at $host:$port (not a local host, not starting one)"
        start_rabbitmq "$host" "$port" "$node"
        if [[ -f "$conf" ]]; then ctl=(rabbitmqctl -q -n "$node"); fi
    fi
    # The URL's vhost and user, made when missing (a node of our own has only
    # guest on /). Needs rabbitmqctl's access to the node: skipped without it.
    if is_local "$host" && [[ "$vhost" != "/" || "$user" != guest ]] \
        && "${ctl[@]}" list_vhosts >/dev/null 2>&1; then
        "${ctl[@]}" add_vhost "$vhost" >/dev/null 2>&1 || true
        if [[ "$user" != guest ]]; then
            "${ctl[@]}" add_user "$user" "$pass" >/dev/null 2>&1 || true
        fi
        "${ctl[@]}" set_permissions -p "$vhost" "$user" ".*" ".*" ".*" >/dev/null
        log "rabbitmq vhost $vhost ready for $user"
    fi
}

# Start a RabbitMQ node of our own on host:port (installing the package if needed).
start_rabbitmq() {
    local host="$1" port="$2" node="$3"
    command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
    # The package starts its own node (on 5672) when it can.
    if reachable "$host" "$port"; then
        log "rabbitmq reachable at $host:$port (started by the package)"
        return
    fi
    command -v rabbitmq-server >/dev/null 2>&1 || die "rabbitmq-server not found after install"
    # Data in var/rabbitmq; the distribution port beside it, so it never
    # clashes with a system node's.
    local dir="$VAR/rabbitmq/$port" logdir="$VAR/log"
    mkdir -p "$dir" "$logdir"
    local logfile="$logdir/rabbitmq-$port.log"
    touch "$logfile"
    # A config file of its own: the system's (/etc/rabbitmq) may pin 5672.
    printf 'listeners.tcp.local = %s:%s\n' "$host" "$port" >"$dir/rabbitmq.conf"
    if [[ "$(id -u)" == 0 ]] && id rabbitmq >/dev/null 2>&1; then
        chown -R rabbitmq:rabbitmq "$dir" "$logfile"
    fi
    log "starting rabbitmq node $node on $host:$port (data $dir, log $logfile)"
    # rabbitmq-server drops to the rabbitmq user by itself when run as root.
    RABBITMQ_NODENAME="$node" RABBITMQ_NODE_PORT="$port" RABBITMQ_NODE_IP_ADDRESS="$host" \
        RABBITMQ_DIST_PORT="$((port + 20000))" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        rabbitmq-server -detached >>"$logfile" 2>&1 \
        || die "rabbitmq-server failed to start (log: $logfile)"
    # A node takes a few seconds more than Redis to boot.
    WAIT_S=$((WAIT_S < 60 ? 60 : WAIT_S)) wait_reachable rabbitmq "$host" "$port" "$logfile"
    log "rabbitmq started at $host:$port"
}

ensure_postgres
ensure_redis
ensure_rabbitmq
