"""A throwaway, migrated database for tests that must own the whole ledger."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine


def admin_url(url: str) -> str:
    """The same database as MIGRATION_DATABASE_URL's role (a superuser in tests)."""
    return os.environ["MIGRATION_DATABASE_URL"].rsplit("/", 1)[0] + "/" + url.rsplit("/", 1)[1]


@contextmanager
def scratch_database(prefix: str = "clearhouse_scratch") -> Iterator[tuple[str, Engine]]:
    """Create and migrate a fresh database beside DATABASE_URL; drop it afterwards.

    Yields the services' URL and an engine on it (the app role, as deployed);
    ``admin_url(url)`` reaches the same database as a superuser.
    """
    from shared.db.migrate import drop_database, upgrade

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{prefix}_{secrets.token_hex(4)}"
    upgrade(admin_url(url))
    engine = create_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()
        drop_database(admin_url(url))
