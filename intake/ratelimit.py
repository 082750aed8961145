"""Rate limits per API client and per source IP, as falcon middleware (429 rate_limited).

Registered after Auth and JSONBody: the client is known (its token's
``client_id``; on the OAuth endpoints, the ``client_id`` sent), and every key
of a request is checked in one Redis round trip (shared/security/throttle.py).
A request refused before this middleware's turn (a bad token, a malformed
body) is counted on its IP as its response goes out, and answered 429 once
its IP is over: a flood of bad requests is limited too.

Every response carries the IETF draft's ``RateLimit-Limit``, ``-Remaining`` and
``-Reset`` of the tighter limit that applied; none while Redis is away (the
limiter fails open, shared/security/redis_breaker.py) or with every limit off.
The source IP is ``req.remote_addr``: behind a proxy, the proxy's address.

Cost, measured (tests/load/limiter_bench.py; 2 shared cores, local Redis): about 0.4 ms
of wall time and 0.25 ms of the API's CPU per request, nearly all of it the round trip.
"""

from __future__ import annotations

from intake import errors
from intake.errors import ApiError
from intake.resources.oauth import client_credentials
from shared.config import Settings
from shared.domain import ratelimit
from shared.domain.ratelimit import Limit
from shared.security.redis_breaker import RedisBreaker
from shared.security.throttle import Throttle, key_part
from shared.services.auth import OAuthError

OAUTH_PATHS = frozenset({"/v1/oauth/token", "/v1/oauth/revoke"})
# Operator credentials are guessed from the network as client secrets are: the same
# stricter per-IP limit, on a bucket of its own (the account lockout is per operator).
# The web console's login and password forms are the same guesses by another door.
OPERATOR_AUTH_PATHS = frozenset(
    {"/v1/operator/login", "/v1/operator/password", "/console/login", "/console/password"}
)
CHECK = "rate_limit"


def _client_sent(req) -> str | None:
    """The client_id an OAuth request names (Basic or body), if it names one plainly."""
    body = req.context.body if isinstance(getattr(req.context, "body", None), dict) else {}
    try:
        return client_credentials(req, body)[0] or None
    except OAuthError:
        return None


class RateLimit:
    def __init__(self, throttle: Throttle, breaker: RedisBreaker, settings: Settings):
        burst = settings.rate_limit_burst_s
        self._throttle = throttle
        self._breaker = breaker
        self._client = Limit.of(settings.rate_limit_per_client, burst)
        self._ip = Limit.of(settings.rate_limit_per_ip, burst)
        self._oauth_client = Limit.of(settings.rate_limit_token_per_client, burst)
        self._oauth_ip = Limit.of(settings.rate_limit_token_per_ip, burst)

    def _checks(self, req, routed: bool) -> list[tuple[str, Limit]]:
        ip = key_part(req.remote_addr or "unknown")
        if req.path in OPERATOR_AUTH_PATHS:
            wanted = [("operator-auth-ip:" + ip, self._oauth_ip)]
        elif req.path in OAUTH_PATHS:
            client = _client_sent(req) if routed else None
            wanted = [("oauth-ip:" + ip, self._oauth_ip)]
            if client:
                wanted.append(("oauth-client:" + key_part(client), self._oauth_client))
        else:
            client = getattr(req.context, "client_id", None) if routed else None
            wanted = [("ip:" + ip, self._ip)]
            if client:
                wanted.append(("client:" + key_part(client), self._client))
        return [(key, limit) for key, limit in wanted if limit is not None]

    def _check(self, req, routed: bool) -> None:
        req.context.rate_checked = True
        checks = self._checks(req, routed)
        found = self._breaker.call(CHECK, self._throttle.check, checks) if checks else None
        if not found:
            return
        verdict = req.context.rate_verdict = ratelimit.tighter(found)
        if not verdict.allowed:
            raise ApiError(
                429,
                "rate_limited",
                f"Too many requests; retry after {verdict.retry_after_s} s.",
                title="Too Many Requests",
                headers=verdict.headers(),
            )

    def process_resource(self, req, resp, resource, params) -> None:
        self._check(req, routed=True)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        if not getattr(req.context, "rate_checked", False):
            # Refused before our turn: count it on its IP now, and say so if over.
            try:
                self._check(req, routed=False)
            except ApiError as exc:
                body, headers = errors.problem_for(exc, getattr(req.context, "request_id", None))
                errors.write(resp, body, headers)
        verdict = getattr(req.context, "rate_verdict", None)
        if verdict is not None:
            resp.set_headers(verdict.headers())
