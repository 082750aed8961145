"""/v1/customers/{customer}/erase: erase a customer's personal data (Stripe-style path)."""

from __future__ import annotations

from intake.errors import ApiError
from intake.idempotent import IdempotentRunner
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.db.uow import UnitOfWork
from shared.domain.validation import MAX_ID_LEN
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
        parse(rq.EraseCustomer, req.context.body, closed(set()))
        if not customer or len(customer) > MAX_ID_LEN:
            raise ApiError(
                400,
                "parameter_invalid",
                f"`customer` must be 1 to {MAX_ID_LEN} characters long.",
                param="customer",
                title="Invalid request",
            )
        merchant_id = req.context.merchant_id
        # The API client is who acts; its address is the merchant's server's.
        who = Actor(f"client:{req.context.client_id}", req.context.request_id, req.remote_addr)

        def effect(uow: UnitOfWork):
            return 200, erasure.erase_customer(uow, self._vault, merchant_id, customer, who)

        self._runner.run(req, resp, effect, stored_path=STORED_PATH)
