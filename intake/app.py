"""The Falcon app: ``create_app(settings, ...)`` for tests, ``get_app()`` for gunicorn."""

from __future__ import annotations

import falcon

from intake import errors
from intake.admission import Admission, QueueWait
from intake.console import routes as console_routes
from intake.console import session as console_session
from intake.console.session import Console
from intake.idempotent import IdempotentRunner
from intake.metrics import Metrics
from intake.middleware import Auth, JSONBody, Parameters, RequestId
from intake.ratelimit import RateLimit
from intake.resources import balance, customers, events, intents, oauth, ops, refunds, reports
from intake.resources import webhook_endpoints as endpoints
from intake.resources.operator import accounts as operator_accounts
from intake.resources.operator import audit as operator_audit
from intake.resources.operator import auth as operator_auth
from intake.resources.operator import blocklist as operator_blocklist
from intake.resources.operator import merchants as operator_merchants
from intake.resources.operator import payments as operator_payments
from intake.resources.operator import reports as operator_reports
from intake.resources.operator import session as operator_session
from shared.config import Settings
from shared.db.engine import get_engine
from shared.db.uow import UnitOfWork
from shared.domain.validation import ValidationError
from shared.observability import queues
from shared.security.failures import FailureCounter
from shared.security.redis_breaker import RedisBreaker
from shared.security.signing import SigningKeys
from shared.security.throttle import Throttle
from shared.security.vault import Vault
from shared.services import revocations, suspensions
from shared.services.errors import ServiceError
from shared.services.lockout import Lockout


def _celery_dispatch(step: str, ids: list[str], countdown: float | None = None) -> None:
    # Imported on first use: building the app (tests, /health) needs no broker.
    from workers.celery_app import publish

    publish(step, ids, countdown)


def _operator_active(engine, operator_id: str) -> bool:
    # Every operator request: a disabled account stops at once, not when its token expires.
    from shared.services.operators import is_active

    with UnitOfWork(engine) as uow:
        return is_active(uow, operator_id)


def redis_client_for(url: str):
    """The API's Redis client (/ready, rate limits, lockout): 1 s timeouts, no retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py >= 6 retries 3 times with backoff by default, which turns a hung
    # Redis's 1 s timeout into about 15 s per call. Every use here must answer
    # fast and copes with a failure (the limiter fails open, /ready says not ready).
    return redis.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def _broker_check(settings: Settings):
    """What /ready pings for the broker: RabbitMQ's, or None when Redis (pinged anyway) is it."""
    return queues.AmqpDepths(settings.broker) if settings.broker_is_amqp else None


def create_app(
    settings: Settings,
    *,
    engine=None,
    dispatch=None,
    keys: SigningKeys | None = None,
    operator_keys: SigningKeys | None = None,
    vault: Vault | None = None,
    redis_client=None,
) -> falcon.App:
    """Build the API; collaborators not given are built from ``settings``."""
    engine = engine or get_engine(settings.database_url, "api", settings.db_timeouts_api)
    keys = keys or SigningKeys.from_settings(settings)
    operator_keys = operator_keys or SigningKeys.for_operators(settings)
    vault = vault or Vault.from_settings(settings)
    dispatch = dispatch or _celery_dispatch
    redis_client = redis_client or redis_client_for(settings.redis_url)
    # One breaker for both Redis checks: an outage is one outage, logged once.
    breaker = RedisBreaker()
    prefix = settings.redis_key_prefix
    lockout = Lockout(FailureCounter(redis_client, prefix), breaker, settings)

    app = falcon.App(
        middleware=[
            RequestId(),
            # A create that waited too long for a thread is refused before any work.
            QueueWait(settings.max_queue_wait_ms),
            Metrics(),
            auth := Auth(
                keys,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                # Read lazily, on the first authenticated request: building the app
                # (tests, the OpenAPI document) needs no database.
                revoked=revocations.from_database(lambda: UnitOfWork(engine)),
                operator_keys=operator_keys,
                operator_audience=settings.operator_jwt_audience,
                operator_active=lambda operator_id: _operator_active(engine, operator_id),
                suspended=suspensions.from_database(lambda: UnitOfWork(engine)),
            ),
            Parameters(),
            JSONBody(settings.max_body_bytes),
            # The web console's session cookie, roles and CSRF tokens (a form body is read).
            Console(auth, operator_keys, settings, vault.fingerprint),
            # Last: the client is known (Auth, or the OAuth body's client_id).
            RateLimit(Throttle(redis_client, prefix), breaker, settings),
        ]
    )
    # `?limit=` must be refused, not silently read as "no limit given".
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = True
    # Most specific type wins, so falcon's own HTTPError handler is replaced too.
    # The console's paths get the same answers as HTML pages.
    handle = console_session.error_page(errors.handle)
    for exc_type in (Exception, falcon.HTTPError, ValidationError, ServiceError):
        app.add_error_handler(exc_type, handle)

    # Request hashes are keyed: the bodies they digest contain card numbers.
    runner = IdempotentRunner(engine, settings, mac=vault.fingerprint, dispatch=dispatch)
    deps = (engine, vault, dispatch, runner)
    hooks = (engine, vault, settings, runner)
    routes = [
        ("/v1/oauth/token", oauth.Token(engine, keys, settings, lockout)),
        ("/v1/oauth/revoke", oauth.Revoke(engine, lockout)),
        ("/.well-known/jwks.json", oauth.JWKS(keys)),
        (
            "/v1/payment_intents",
            intents.Collection(
                *deps,
                admission=Admission.from_settings(engine, settings),
                banks=frozenset(settings.bank_addresses),
            ),
        ),
        ("/v1/payment_intents/{intent_id}", intents.Item(*deps)),
        ("/v1/payment_intents/{intent_id}/capture", intents.Capture(*deps)),
        ("/v1/payment_intents/{intent_id}/cancel", intents.Cancel(*deps)),
        ("/v1/balance", balance.Balance(engine)),
        ("/v1/reports/daily", reports.Daily(engine)),
        ("/v1/reports/weekly", reports.Weekly(engine)),
        ("/v1/reports/monthly", reports.Monthly(engine)),
        ("/v1/refunds", refunds.Collection(engine, runner)),
        ("/v1/refunds/{refund_id}", refunds.Item(engine, runner)),
        ("/v1/events", events.Events(engine)),
        ("/v1/events/{event_id}", events.Event(engine)),
        ("/v1/events/{event_id}/redeliver", events.Redeliver(engine, runner)),
        ("/v1/webhook_deliveries", events.Deliveries(engine)),
        ("/v1/webhook_endpoints", endpoints.Collection(*hooks)),
        ("/v1/webhook_endpoints/{endpoint_id}", endpoints.Item(*hooks)),
        ("/v1/webhook_endpoints/{endpoint_id}/rotate_secret", endpoints.RotateSecret(*hooks)),
        ("/v1/customers/{customer}/erase", customers.Erase(vault, runner)),
        ("/v1/operator/me", operator_session.Me()),
        *operator_merchants.routes(engine, vault, settings),
        *operator_accounts.routes(engine, vault, settings),
        ("/v1/operator/payment_intents", operator_payments.Intents(engine, runner)),
        ("/v1/operator/payment_intents/{intent_id}", operator_payments.Intent(engine, runner)),
        ("/v1/operator/refunds", operator_payments.Refunds(engine, runner)),
        ("/v1/operator/events/{event_id}/redeliver", operator_payments.Redeliver(engine, runner)),
        ("/v1/operator/blocklist", operator_blocklist.Blocklist(engine)),
        ("/v1/operator/reports/daily", operator_reports.DailyRerun(engine)),
        ("/v1/operator/audit", operator_audit.Audit(engine)),
        (
            "/v1/operator/login",
            operator_auth.Login(engine, operator_keys, vault, settings),
        ),
        ("/v1/operator/password", operator_auth.Password(engine, vault, settings)),
        ("/v1/operator/refresh", operator_auth.Refresh(engine, operator_keys, settings)),
        ("/health", ops.Health()),
        ("/ready", ops.Ready(engine, redis_client, _broker_check(settings))),
    ]
    # No /metrics here (404): the operator port serves it (intake/metrics.py).
    routes.append(("/openapi.json", ops.OpenAPI(routes)))
    for template, resource in routes:
        app.add_route(template, resource)
    # HTML pages, not API operations: not in the OpenAPI document.
    console = console_routes.routes(engine, operator_keys, vault, settings, dispatch)
    for template, resource in console:
        app.add_route(template, resource)
    app.add_static_route("/console/static", str(console_routes.STATIC_DIR))
    return app


def get_app() -> falcon.App:
    """The gunicorn entry point (``intake.app:get_app()``), configured from the environment."""
    return create_app(Settings.from_env())
