"""``/v1/operator/blocklist``: list (viewer), add and remove (support), each change audited."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.errors import ApiError
from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.resources.operator.actor import actor_of
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.db.uow import UnitOfWork, transact
from shared.domain import operator_filters as filters
from shared.services import operator_payments as service

TAG = "operator"


def _list_query(params: dict) -> dict:
    query = list_query({"limit": "50", **params}, {"kind": None})
    filters.block_kind(query["kind"], required=False)
    return query


class Blocklist:
    # The least role of the path; each method's Operation.role is what is checked.
    operator_role = "viewer"
    operations = {
        "GET": Operation(
            "operatorListBlocklist",
            TAG,
            "The fraud blocklist, newest first",
            200,
            rs.BlocklistList,
            query=rq.BlocklistQuery,
            role="viewer",
        ),
        "POST": Operation(
            "operatorBlock",
            TAG,
            "Block a card fingerprint, wallet, IP or customer (adding it again changes nothing)",
            200,
            rs.BlocklistChange,
            body=rq.BlockEntry,
            body_required=True,
            role="support",
        ),
        "DELETE": Operation(
            "operatorUnblock",
            TAG,
            "Take a value off the blocklist (kind and value in the body or the query)",
            200,
            rs.BlocklistChange,
            body=rq.UnblockEntry,
            query=rq.UnblockQuery,
            role="support",
        ),
    }

    def __init__(self, engine: Engine):
        self._engine = engine

    def _new_uow(self) -> UnitOfWork:
        return UnitOfWork(self._engine)

    def on_get(self, req, resp) -> None:
        query = parse(rq.BlocklistQuery, req.params, _list_query, "The query")
        with UnitOfWork(self._engine) as uow:
            data, has_more = service.list_blocklist(uow, **query)
        resp.media = list_object(data, has_more, "/v1/operator/blocklist")

    def on_post(self, req, resp) -> None:
        body = parse(rq.BlockEntry, req.context.body, closed({"kind", "value", "reason"}))
        args = (body.get("kind"), body.get("value"), body.get("reason"))
        resp.media = transact(self._new_uow, service.block, actor_of(req), *args)

    def on_delete(self, req, resp) -> None:
        fields = {"kind", "value"}
        body = parse(rq.UnblockEntry, req.context.body, closed(fields))
        query = parse(rq.UnblockQuery, req.params, closed(fields), "The query")
        if body and query:
            raise ApiError(
                400,
                "parameter_invalid",
                "Name the entry in the body or in the query string, not both.",
                param="kind",
            )
        entry = body or query
        args = (entry.get("kind"), entry.get("value"))
        resp.media = transact(self._new_uow, service.unblock, actor_of(req), *args)
