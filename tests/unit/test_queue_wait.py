"""QueueWait: a create that waited past MAX_QUEUE_WAIT_MS for an API thread is refused 503.

The middleware reads the stamp intake.gthread.QueueStampedWorker puts in the
environ; here the stamp and the clock are given, so the verdict is exact.
"""

import falcon
import falcon.testing
import pytest

from intake import errors
from intake.admission import ROUTE, QueueWait
from intake.gthread import QUEUED_AT
from shared.observability import metrics
from shared.services.errors import ServiceError

NOW = 1_000.0


class Sink:
    def __init__(self):
        self.calls = 0

    def on_post(self, req, resp, **params):
        self.calls += 1
        resp.status = falcon.HTTP_202
        resp.media = {"ok": True}

    on_get = on_post


def client(bound_ms: int):
    sink = Sink()
    app = falcon.App(middleware=[QueueWait(bound_ms, clock=lambda: NOW)])
    for exc in (Exception, falcon.HTTPError, ServiceError):
        app.add_error_handler(exc, errors.handle)
    app.add_route(ROUTE, sink)
    app.add_route("/v1/payment_intents/{intent_id}/capture", sink)
    return falcon.testing.TestClient(app), sink


def waited(ms: float | None) -> dict:
    return {QUEUED_AT: None if ms is None else NOW - ms / 1000}


def shed_count() -> float:
    return metrics.INTAKE_QUEUE_SHED.labels(ROUTE)._value.get()


def test_a_create_that_waited_past_the_bound_gets_503_overloaded_and_reaches_nothing():
    c, sink = client(100)
    before = shed_count()
    r = c.simulate_post(ROUTE, json={}, extras=waited(180))
    assert r.status_code == 503
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.headers["Retry-After"] == "1"
    assert r.json["code"] == "overloaded" and r.json["retry_after_s"] == 1
    assert "180 ms" in r.json["detail"] and "Idempotency-Key" in r.json["detail"]
    assert sink.calls == 0
    assert shed_count() == before + 1


@pytest.mark.parametrize("ms", [None, 0, 50, 99])
def test_a_create_within_the_bound_or_unstamped_goes_through(ms):
    c, sink = client(100)
    assert c.simulate_post(ROUTE, json={}, extras=waited(ms)).status_code == 202
    assert sink.calls == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ROUTE), ("POST", "/v1/payment_intents/pi_1/capture")],
)
def test_only_creates_are_refused(method, path):
    c, sink = client(100)
    assert c.simulate_request(method, path, json={}, extras=waited(5_000)).status_code == 202


def test_a_bound_of_zero_refuses_nothing():
    c, sink = client(0)
    assert c.simulate_post(ROUTE, json={}, extras=waited(60_000)).status_code == 202
