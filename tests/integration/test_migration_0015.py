"""Migration 0015 on a database that had merchants: each merchant's row becomes its first endpoint.

A database of its own, migrated to 0014 and filled as that version left it (a
merchant mid-rotation with a pending delivery, one without a URL, their API
clients), then upgraded. The migrated endpoint must go on as before: the same
URL, signed with the same secrets (sealed for the merchant, opened as they are),
through the real send path to a real receiver; and downgrading puts it back.
"""

from __future__ import annotations

import os
import secrets

import pytest
from sqlalchemy import create_engine, text

from shared.db.migrate import downgrade, drop_database, upgrade
from shared.db.uow import UnitOfWork
from shared.services import events as ev
from shared.services import webhook_endpoints as endpoints
from shared.services import webhooks
from shared.services.webhook_secrets import signing_secrets
from tests.conftest import free_port
from tests.support.receiver import Receiver
from tests.support.scratchdb import admin_url

pytestmark = pytest.mark.integration

OLD_SCOPES = (
    "payment_intents:read payment_intents:write refunds:read refunds:write"
    " events:read events:write balance:read reports:read"
)


@pytest.fixture
def at_0014():
    """A fresh database at revision 0014: (app-role engine, superuser engine)."""
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/clearhouse_m15_{secrets.token_hex(4)}"
    upgrade(admin_url(url), "0014")
    app, admin = create_engine(url), create_engine(admin_url(url))
    try:
        yield url, app, admin
    finally:
        app.dispose()
        admin.dispose()
        drop_database(admin_url(url))


def _fill(admin, vault, receiver_url: str) -> dict:
    """Rows as the version before 0015 wrote them."""
    ids = {k: f"{k}_{secrets.token_hex(6)}" for k in ("mch", "bare", "evt", "whd", "ci", "cib")}
    current, previous = (
        "whsec_current_" + secrets.token_hex(4),
        "whsec_prev_" + secrets.token_hex(4),
    )
    with admin.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO merchants (id, name, webhook_url, webhook_secret_enc,"
                " webhook_secret_prev_enc, webhook_secret_prev_expires_at)"
                " VALUES (:m, 'hooked', :url, :cur, :prev, now() + interval '1 hour'),"
                " (:b, 'bare', NULL, :bare_secret, NULL, NULL)"
            ),
            {
                "m": ids["mch"],
                "b": ids["bare"],
                "url": receiver_url,
                "cur": vault.encrypt(current, aad=ids["mch"]),
                "prev": vault.encrypt(previous, aad=ids["mch"]),
                "bare_secret": vault.encrypt("whsec_bare", aad=ids["bare"]),
            },
        )
        conn.execute(
            text(
                "INSERT INTO api_clients (client_id, merchant_id, secret_hash, scopes)"
                " VALUES (:ci, :m, 'x', :all), (:cib, :b, 'x', 'balance:read')"
            ),
            {
                "ci": ids["ci"],
                "cib": ids["cib"],
                "m": ids["mch"],
                "b": ids["bare"],
                "all": OLD_SCOPES,
            },
        )
        conn.execute(
            text(
                "INSERT INTO events (id, merchant_id, type, object_id, data)"
                " VALUES (:e, :m, 'settlement.paid', 'st_old', '{\"id\": \"st_old\"}');"
                "INSERT INTO webhook_deliveries (id, event_id, merchant_id, url, next_attempt_at)"
                " VALUES (:d, :e, :m, :url, now())"
            ),
            {"e": ids["evt"], "d": ids["whd"], "m": ids["mch"], "url": receiver_url},
        )
    return ids | {"current": current, "previous": previous}


def _one(conn, sql: str, **params):
    return conn.execute(text(sql), params).one()


def test_each_merchants_row_becomes_its_first_endpoint_which_receives_as_before(at_0014, vault):
    from workers.notifications import post

    url, app, admin = at_0014
    receiver = Receiver([], free_port()).start()
    try:
        rows = _fill(admin, vault, receiver.url)
        mid, bare = rows["mch"], rows["bare"]
        receiver.secrets[:] = [rows["current"], rows["previous"]]
        upgrade(admin_url(url))

        with admin.connect() as conn:
            first = _one(conn, "SELECT * FROM webhook_endpoints WHERE merchant_id = :m", m=mid)
            made = _one(conn, "SELECT created_at FROM merchants WHERE id = :m", m=mid)
            empty = _one(conn, "SELECT * FROM webhook_endpoints WHERE merchant_id = :m", m=bare)
            delivery = _one(conn, "SELECT * FROM webhook_deliveries WHERE id = :d", d=rows["whd"])
            scopes = dict(conn.execute(text("SELECT client_id, scopes FROM api_clients")).all())
        assert first.id.startswith("we_") and len(first.id) == 27
        assert (first.url, first.enabled_events, first.status) == (receiver.url, ["*"], "enabled")
        assert (first.secret_aad, first.created_at) == (mid, made.created_at)
        assert (empty.url, empty.secret_aad) == (None, bare)
        assert delivery.endpoint_id == first.id
        # Upgraded to the head: 0015 adds the endpoint scopes, 0018 customers:write.
        assert (
            scopes[rows["ci"]]
            == OLD_SCOPES.replace(
                "events:write", "events:write webhook_endpoints:read webhook_endpoints:write"
            )
            + " customers:write"
        )
        assert scopes[rows["cib"]] == "balance:read"

        # The delivery made before 0015, through the send path: same URL, same secrets.
        with UnitOfWork(app) as uow:
            (send,) = webhooks.prepare(uow, vault, webhooks.claim(uow, [rows["whd"]], 60))
            uow.commit()
        assert (send.endpoint_id, send.url) == (first.id, receiver.url)
        assert send.secrets == (rows["current"], rows["previous"])
        assert post(send).ok
        receiver.wait_for(lambda r: r.ids() == [rows["evt"]])
        assert receiver.received[0].verified_with == [0, 1]

        # New events fan out to it (every type), and to nothing for a merchant with no URL.
        with UnitOfWork(app) as uow:
            ev.emit(
                uow, [(mid, "refund.succeeded", "re_1", {}), (bare, "refund.succeeded", "re_2", {})]
            )
            uow.commit()
        with admin.connect() as conn:
            fanned = conn.execute(
                text("SELECT merchant_id, endpoint_id, url FROM webhook_deliveries WHERE id <> :d"),
                {"d": rows["whd"]},
            ).all()
        assert [tuple(r) for r in fanned] == [(mid, first.id, receiver.url)]

        # Its first rotation re-seals both secrets under the endpoint's own id.
        with UnitOfWork(app) as uow:
            rotated, new = endpoints.rotate(uow, vault, mid, first.id, 1)
            uow.commit()
        assert rotated.secret_aad is None
        assert signing_secrets(vault, rotated, rotated.created_at) == [new, rows["current"]]
    finally:
        receiver.stop()

    # Downgrading puts the URL back; the rotated secret, sealed for the endpoint, cannot be.
    app.dispose()
    downgrade(admin_url(url), "0014")
    with admin.connect() as conn:
        back = dict(conn.execute(text("SELECT id, webhook_url FROM merchants")).all())
        sealed = dict(conn.execute(text("SELECT id, webhook_secret_enc FROM merchants")).all())
        scopes = dict(conn.execute(text("SELECT client_id, scopes FROM api_clients")).all())
    assert back == {mid: receiver.url, bare: None}
    assert sealed[mid] == "unrecoverable:"
    assert vault.decrypt(sealed[bare], aad=bare) == "whsec_bare"
    assert scopes[rows["ci"]] == OLD_SCOPES
