"""GET /v1/balance: the merchant's ledger balances per currency."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.openapi import Operation
from intake.schemas import responses as rs
from shared.db.uow import UnitOfWork
from shared.services import views
from shared.services.ledger import merchant_balances


class Balance:
    auth_required = True
    operations = {
        "GET": Operation(
            "retrieveBalance",
            "balance",
            "Ledger balances per currency",
            200,
            rs.Balance,
            scope="balance:read",
        )
    }

    def __init__(self, engine: Engine):
        self._engine = engine

    def on_get(self, req, resp) -> None:
        with UnitOfWork(self._engine) as uow:
            balances = merchant_balances(uow, req.context.merchant_id)
        resp.media = views.balance_json(balances)
