"""The bench's bare reference app answers under the API's own gunicorn settings."""

import random

import requests
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db import roles
from tests.conftest import TEST_ENV
from tests.load import bare_app
from tests.load.mix import intent_body
from tests.support import processes
from tests.support.services import free_port


def test_the_bare_app_inserts_one_row_per_post_under_the_api_gunicorn_settings(admin_engine):
    raw = admin_engine.raw_connection()
    try:
        # The layer's database is shared: its tables belong to the owner role, never
        # the superuser (integration/test_db_roles.py). LOCAL: ends with the commit.
        with raw.cursor() as cur:
            cur.execute(f"SET LOCAL ROLE {roles.OWNER}")
        bare_app.create_table(raw, make_url(TEST_ENV["DATABASE_URL"]).username)
    finally:
        raw.close()
    count = text(f"SELECT count(*) FROM {bare_app.TABLE}")
    with admin_engine.connect() as c:
        before = c.execute(count).scalar()
    port = free_port()
    app = "tests.load.bare_app:get_app()"
    env = {"METRICS_PORT": "0", "LOG_LEVEL": "INFO"}
    with processes.gunicorn(port, workers=1, env=env, app=app, health=bare_app.PATH) as p:
        rng = random.Random(12)
        ids = []
        with requests.Session() as s:
            for _ in range(3):
                r = s.post(p.url + bare_app.PATH, json=intent_body(rng), timeout=5)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
        # deploy/gunicorn.conf.py chose the worker class, as for the API.
        assert "gthread" in p.output()
    assert len(set(ids)) == 3
    with admin_engine.connect() as c:
        assert c.execute(count).scalar() == before + 3
