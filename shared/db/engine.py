"""One SQLAlchemy engine per process and database URL."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, create_engine

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """Return this process's engine for ``url``, creating it on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine(
                url,
                pool_size=10,
                max_overflow=20,
                pool_pre_ping=True,
                # Batch executemany UPDATEs into pages (one round trip per
                # page, not per row): stages update whole batches of intents.
                executemany_mode="values_plus_batch",
            )
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Drop pooled connections inherited over fork (gunicorn, Celery prefork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()
