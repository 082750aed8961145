"""The console's pages, each a (uri template, resource) pair; intake/app.py adds them."""

from __future__ import annotations

from pathlib import Path

from intake.console.pages import admin, intents, login

STATIC_DIR = Path(__file__).parent / "static"


def routes(engine, keys, vault, settings, dispatch) -> list[tuple[str, object]]:
    """The console's (uri template, resource) pairs."""
    return [
        ("/console/login", login.Login(engine, keys, vault, settings)),
        ("/console/password", login.Password(engine, vault, settings)),
        ("/console/logout", login.Logout()),
        ("/console", intents.Search(engine, dispatch)),
        ("/console/payment_intents/{intent_id}", intents.Detail(engine, dispatch)),
        ("/console/payment_intents/{intent_id}/refund", intents.Refund(engine, dispatch)),
        ("/console/events/{event_id}/redeliver", intents.Redeliver(engine, dispatch)),
        ("/console/blocklist", admin.Blocklist(engine)),
        ("/console/blocklist/remove", admin.Unblock(engine)),
        ("/console/merchants", admin.Merchants(engine)),
        ("/console/merchants/{merchant_id}/suspend", admin.Suspend(engine)),
        ("/console/merchants/{merchant_id}/resume", admin.Resume(engine)),
        ("/console/customers/erase", admin.EraseCustomer(engine, vault)),
        ("/console/audit", admin.Audit(engine)),
    ]
