"""A throwaway, migrated database for tests that must own the whole ledger."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine


@contextmanager
def scratch_database(prefix: str = "clearhouse_scratch") -> Iterator[tuple[str, Engine]]:
    """Create and migrate a fresh database beside DATABASE_URL; drop it afterwards."""
    from shared.db.migrate import drop_database, upgrade

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{prefix}_{secrets.token_hex(4)}"
    upgrade(url)
    engine = create_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()
        drop_database(url)
