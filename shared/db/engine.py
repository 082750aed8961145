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
                # No pre-ping (a round trip per checkout on the hot path): stale
                # connections are recycled, and a dropped one fails one attempt,
                # which tasks retry and clients retry with their idempotency key.
                pool_recycle=1800,
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
