"""/v1/customers/{customer}/erase: erase a customer's personal data (Stripe-style path)."""

from __future__ import annotations

from intake.idempotent import IdempotentRunner
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.db.uow import UnitOfWork
from shared.services import erasure
from shared.services.audit import Actor

# What an Idempotency-Key's row records as the path: never the customer.
STORED_PATH = "/v1/customers/{customer}/erase"


class Erase:
    auth_required = True
    operations = {
        "POST": Operation(
            "eraseCustomer",
            "customers",
            "Erase a customer's personal data from its payments (ids, amounts and the ledger stay)",
            200,
            rs.CustomerErasure,
            body=rq.EraseCustomer,
            idempotent=True,
            scope="customers:write",
        )
    }

    def __init__(self, vault, runner: IdempotentRunner):
        self._vault = vault
        self._runner = runner

    def on_post(self, req, resp, customer: str) -> None:
        # Any customer id may be asked for: one the merchant never sent (longer
        # than a create allows, say) is erased all the same, with nothing to erase.
        parse(rq.EraseCustomer, req.context.body, closed(set()))
        merchant_id = req.context.merchant_id
        # The API client is who acts; its address is the merchant's server's.
        who = Actor(f"client:{req.context.client_id}", req.context.request_id, req.remote_addr)

        def effect(uow: UnitOfWork):
            return 200, erasure.erase_customer(uow, self._vault, merchant_id, customer, who)

        self._runner.run(req, resp, effect, stored_path=STORED_PATH)
