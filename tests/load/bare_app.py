"""The bench's reference: a bare Falcon app doing one INSERT per request.

    gunicorn -c deploy/gunicorn.conf.py 'tests.load.bare_app:get_app()'

Same gunicorn settings as the API (workers, threads, worker class, keep-alive),
same request body as a create (parsed as JSON), one INSERT of a small row into
a table of its own, a small JSON answer; no auth, no idempotency, no events, no
SQLAlchemy. What clearhouse's intake costs beyond this is what its own code
and libraries add on this machine (tests/load/README.md, `BENCH_REFERENCE`).

DATABASE_URL names the database; the table is made beforehand (`create_table`),
not at import, so that gunicorn's workers do not race to create it.
"""

from __future__ import annotations

import os
import threading

import falcon
import psycopg2

TABLE = "bench_bare_reference"
PATH = "/bare"


def create_table(conn, app_role: str) -> None:
    """Create the reference table (idempotent) and let ``app_role`` insert; a DBAPI connection."""
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY,"
            " amount bigint NOT NULL, currency text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(f'GRANT INSERT, SELECT ON {TABLE} TO "{app_role}"')
        cur.execute(f'GRANT USAGE ON SEQUENCE {TABLE}_id_seq TO "{app_role}"')
    conn.commit()


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg2://...) as libpq reads it."""
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep else url


class Bare:
    """POST: one INSERT (one round trip, autocommit), 202 {"id": n}; GET: 200 (readiness)."""

    def __init__(self, dsn: str):
        self._dsn = dsn
        # One connection per gthread thread, like a pool of the threads' size.
        self._local = threading.local()

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg2.connect(self._dsn)
            conn.autocommit = True
            self._local.conn = conn
        return conn

    def on_get(self, req, resp):
        resp.media = {"ok": True}

    def on_post(self, req, resp):
        body = req.get_media()
        with self._conn().cursor() as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (amount, currency) VALUES (%s, %s) RETURNING id",
                (int(body.get("amount") or 0), str(body.get("currency") or "usd")),
            )
            row_id = cur.fetchone()[0]
        resp.status = falcon.HTTP_202
        resp.media = {"id": row_id}


def create_app(dsn: str) -> falcon.App:
    app = falcon.App()
    app.add_route(PATH, Bare(dsn))
    return app


def get_app() -> falcon.App:
    return create_app(libpq_url(os.environ["DATABASE_URL"]))
