"""``clearhouse-bank --name bank_a --port P``: one sandbox bank, its books in one SQLite file."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
from pathlib import Path

from bank.server import Faults, cleanup_loop, serve
from bank.store import Store
from shared.config import Settings
from shared.observability import logging as logs

log = logging.getLogger("clearhouse.bank")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clearhouse")
    except PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clearhouse-bank", description=__doc__)
    p.add_argument("--name", required=True, help="the bank's name in BANKS, e.g. bank_a")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--host", help="the address to listen on (default BANK_LISTEN_ADDR)")
    p.add_argument("--db", help="its SQLite file (default BANK_DATA_DIR/NAME.sqlite3)")
    p.add_argument("--version", action="version", version="%(prog)s " + _version())
    args = p.parse_args(argv)
    if not re.match(r"^[a-z][a-z0-9_]{0,31}$", args.name):
        p.error("--name must be lower-case letters, digits and _")
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    store = Store(args.db or Path(settings.bank_data_dir) / f"{args.name}.sqlite3")
    faults = Faults(
        settings.bank_latency_ms, settings.bank_failure_rate, settings.bank_fail_methods
    )
    host = args.host or settings.bank_listen_addr
    server = serve(args.name, args.port, store, faults, settings.bank_token, host)
    stop = threading.Event()
    cleaner = threading.Thread(
        target=cleanup_loop,
        args=(
            args.name,
            store,
            settings.bank_prepare_ttl_s,
            settings.bank_cleanup_interval_s,
            stop,
        ),
        daemon=True,
    )
    cleaner.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("bank %s: listening on %s:%d (%s)", args.name, host, args.port, store.path)
    stop.wait()
    server.stop(grace=2).wait()
    log.info("bank %s: stopped", args.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
