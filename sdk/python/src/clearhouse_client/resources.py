"""The API's resources, Stripe style: ``client.payment_intents.create(...)`` and so on."""

from __future__ import annotations

import datetime as dt
from typing import Any

from clearhouse_client._requestor import Requestor, path_for
from clearhouse_client.objects import (
    ApiObject,
    Balance,
    CustomerErasure,
    DailyReport,
    Event,
    PaymentIntent,
    PeriodReport,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
)
from clearhouse_client.pagination import ListObject, page


class _Resource:
    kind: type[ApiObject]
    collection: str

    def __init__(self, requestor: Requestor):
        self._api = requestor

    def _one(self, method: str, path: str, **kwargs: Any):
        return self.kind.from_json(self._api.json(method, path, **kwargs))

    def _list(self, filters: dict[str, Any]) -> ListObject:
        def fetch(params: dict[str, Any]) -> tuple[list, bool]:
            answer = self._api.json("GET", self.collection, params=params)
            return [self.kind.from_json(d) for d in answer["data"]], bool(answer["has_more"])

        return page(fetch, {k: v for k, v in filters.items() if v is not None})


def _body(**fields: Any) -> dict[str, Any]:
    """A request body of the fields given (None: left out, the API's default applies)."""
    return {k: v for k, v in fields.items() if v is not None}


class PaymentIntents(_Resource):
    kind = PaymentIntent
    collection = "/v1/payment_intents"

    def create(
        self,
        *,
        amount: int,
        currency: str,
        payment_method: dict[str, Any],
        priority: str | None = None,
        capture_method: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        customer: str | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        """Create an intent (the API answers 202, ``status="processing"``)."""
        body = _body(
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            priority=priority,
            capture_method=capture_method,
            description=description,
            metadata=metadata,
            customer=customer,
        )
        return self._one("POST", self.collection, body=body, idempotency_key=idempotency_key)

    def retrieve(self, intent_id: str) -> PaymentIntent:
        return self._one("GET", path_for("/v1/payment_intents/{}", intent_id))

    def list(
        self, *, status: str | None = None, limit: int | None = None, starting_after=None
    ) -> ListObject[PaymentIntent]:
        """One page, newest first; ``.auto_paging_iter()`` walks every page."""
        return self._list({"status": status, "limit": limit, "starting_after": starting_after})

    def capture(
        self,
        intent_id: str,
        amount_to_capture: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        """Capture a ``requires_capture`` intent, all of it or ``amount_to_capture``."""
        body = _body(amount_to_capture=amount_to_capture)
        return self._act(intent_id, "capture", body, idempotency_key)

    def cancel(
        self,
        intent_id: str,
        cancellation_reason: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        """Cancel a ``processing`` or ``requires_capture`` intent."""
        body = _body(cancellation_reason=cancellation_reason)
        return self._act(intent_id, "cancel", body, idempotency_key)

    def _act(self, intent_id: str, action: str, body: dict, key: str | None) -> PaymentIntent:
        path = path_for(f"/v1/payment_intents/{{}}/{action}", intent_id)
        return self._one("POST", path, body=body, idempotency_key=key)


class Refunds(_Resource):
    kind = Refund
    collection = "/v1/refunds"

    def create(
        self,
        *,
        payment_intent: str,
        amount: int | None = None,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Refund:
        """Refund a succeeded intent: ``amount``, or all that is still refundable."""
        body = _body(payment_intent=payment_intent, amount=amount, reason=reason, metadata=metadata)
        return self._one("POST", self.collection, body=body, idempotency_key=idempotency_key)

    def retrieve(self, refund_id: str) -> Refund:
        return self._one("GET", path_for("/v1/refunds/{}", refund_id))

    def list(
        self, *, payment_intent: str | None = None, limit: int | None = None, starting_after=None
    ) -> ListObject[Refund]:
        filters = {"payment_intent": payment_intent, "limit": limit}
        return self._list({**filters, "starting_after": starting_after})


class Events(_Resource):
    kind = Event
    collection = "/v1/events"

    def retrieve(self, event_id: str) -> Event:
        return self._one("GET", path_for("/v1/events/{}", event_id))

    def list(
        self, *, type: str | None = None, limit: int | None = None, starting_after=None
    ) -> ListObject[Event]:
        return self._list({"type": type, "limit": limit, "starting_after": starting_after})

    def redeliver(
        self, event_id: str, *, endpoint: str | None = None, idempotency_key: str | None = None
    ) -> WebhookDelivery:
        """Send the event's webhook again: a new delivery (202); ``endpoint`` names which one
        (needed when several of the merchant's endpoints receive the event's type)."""
        path = path_for("/v1/events/{}/redeliver", event_id)
        body = _body(endpoint=endpoint)
        answer = self._api.json("POST", path, body=body, idempotency_key=idempotency_key)
        return WebhookDelivery.from_json(answer)


class WebhookDeliveries(_Resource):
    kind = WebhookDelivery
    collection = "/v1/webhook_deliveries"

    def list(
        self,
        *,
        event_id: str | None = None,
        status: str | None = None,
        endpoint: str | None = None,
        limit: int | None = None,
        starting_after=None,
    ) -> ListObject[WebhookDelivery]:
        filters = {"event_id": event_id, "status": status, "endpoint": endpoint, "limit": limit}
        return self._list({**filters, "starting_after": starting_after})


class WebhookEndpoints(_Resource):
    """``/v1/webhook_endpoints``: several endpoints per merchant, each with its own secret."""

    kind = WebhookEndpoint
    collection = "/v1/webhook_endpoints"

    def create(
        self,
        *,
        url: str,
        enabled_events: list[str],
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        disabled: bool | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """A new endpoint; its ``secret`` is in this answer only (keep it)."""
        body = _body(
            url=url,
            enabled_events=enabled_events,
            description=description,
            metadata=metadata,
            disabled=disabled,
        )
        return self._one("POST", self.collection, body=body, idempotency_key=idempotency_key)

    def retrieve(self, endpoint_id: str) -> WebhookEndpoint:
        return self._one("GET", path_for("/v1/webhook_endpoints/{}", endpoint_id))

    def update(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        enabled_events: list[str] | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        disabled: bool | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        body = _body(
            url=url,
            enabled_events=enabled_events,
            description=description,
            metadata=metadata,
            disabled=disabled,
        )
        path = path_for("/v1/webhook_endpoints/{}", endpoint_id)
        return self._one("POST", path, body=body, idempotency_key=idempotency_key)

    def delete(self, endpoint_id: str) -> WebhookEndpoint:
        """Delete it: ``deleted`` is true in the answer; its pending deliveries are canceled."""
        return self._one("DELETE", path_for("/v1/webhook_endpoints/{}", endpoint_id))

    def rotate_secret(
        self,
        endpoint_id: str,
        *,
        overlap_hours: int | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """A new secret (in this answer only); the old one keeps signing ``overlap_hours``."""
        path = path_for("/v1/webhook_endpoints/{}/rotate_secret", endpoint_id)
        body = _body(overlap_hours=overlap_hours)
        return self._one("POST", path, body=body, idempotency_key=idempotency_key)

    def list(self, *, limit: int | None = None, starting_after=None) -> ListObject[WebhookEndpoint]:
        return self._list({"limit": limit, "starting_after": starting_after})


class BalanceResource(_Resource):
    kind = Balance

    def retrieve(self) -> Balance:
        return self._one("GET", "/v1/balance")


class Customers(_Resource):
    kind = CustomerErasure

    def erase(self, customer: str, *, idempotency_key: str | None = None) -> CustomerErasure:
        """Erase a customer's personal data from its payments (scope ``customers:write``).

        Ids, amounts, statuses and the ledger stay. Idempotent: a repeat answers the
        same erasure and erases what has appeared since.
        """
        path = path_for("/v1/customers/{}/erase", customer)
        return self._one("POST", path, body={}, idempotency_key=idempotency_key)


class Reports(_Resource):
    kind = DailyReport

    def daily(self, date: dt.date | str) -> DailyReport:
        """The merchant's rows of one UTC day's report (404 if none was run for it)."""
        return self._one("GET", "/v1/reports/daily", params={"date": _day(date)})

    def daily_csv(self, date: dt.date | str) -> str:
        """The same report as CSV text."""
        params = {"date": _day(date)}
        answer = self._api.request("GET", "/v1/reports/daily", params=params, accept="text/csv")
        return answer.body.decode("utf-8")

    def weekly(self, week: str) -> PeriodReport:
        """An ISO week's report (``"2026-W48"``): the sum of its stored daily reports."""
        answer = self._api.json("GET", "/v1/reports/weekly", params={"week": week})
        return PeriodReport.from_json(answer)

    def monthly(self, month: str) -> PeriodReport:
        """A month's report (``"2026-11"``): the sum of its stored daily reports."""
        answer = self._api.json("GET", "/v1/reports/monthly", params={"month": month})
        return PeriodReport.from_json(answer)

    def weekly_csv(self, week: str) -> str:
        return self._csv("/v1/reports/weekly", {"week": week})

    def monthly_csv(self, month: str) -> str:
        return self._csv("/v1/reports/monthly", {"month": month})

    def _csv(self, path: str, params: dict) -> str:
        return self._api.request("GET", path, params=params, accept="text/csv").body.decode("utf-8")


def _day(date: dt.date | str) -> str:
    if isinstance(date, dt.datetime):
        date = date.date()
    return date.isoformat() if isinstance(date, dt.date) else str(date)
