"""Units of work for tests that already hold a connection."""

from __future__ import annotations

from sqlalchemy import Connection

from shared.db.uow import UnitOfWork


class _Bound(UnitOfWork):
    """A unit of work over a connection (and transaction) the test holds.

    The test commits or rolls back itself, so nothing is published and no
    after-commit hook runs: use it for reads and for rows set up by hand.
    """

    def __init__(self, conn: Connection):
        super().__init__(conn.engine)
        self.conn = conn

    def __enter__(self):
        raise TypeError("a bound unit of work is already open")

    def commit(self) -> None:
        raise TypeError("the test owns this transaction")

    def write_last(self, key, item, flush) -> None:
        # The test commits by itself, so nothing can wait for commit(): written now.
        flush(self, [item])


def bound(conn: Connection) -> UnitOfWork:
    """Call a use case on ``conn`` inside the test's own transaction."""
    return _Bound(conn)
