"""The revocation check's cost per request, in-process (`python -m tests.load.revocation_bench`).

Times the Auth middleware's ``process_resource`` on a real signed token, with the
revocation list and without it, and the list's own ``is_revoked`` alone (what the
middleware adds). The list is fresh (the read, once a second, is not what a request
pays; a stub stands in for Postgres). Prints one JSON line: medians of RUNS runs, in
microseconds per call. No database, no server.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from types import SimpleNamespace

from intake.middleware import Auth
from intake.resources.balance import Balance
from shared.config import Settings
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_access_token
from shared.services.revocations import RevocationList

RUNS = 7
CALLS = 20_000


def _per_call_us(fn, calls: int = CALLS) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    settings = Settings().replace(key_dir=tempfile.mkdtemp(prefix="bench-keys-"))
    keys = SigningKeys.from_settings(settings)
    token, _ = issue_access_token(keys, settings, "mch_bench", "ci_bench", "balance:read")
    # A list as long as a busy quarter hour's revocations: membership is a set lookup.
    revoked = RevocationList(lambda: frozenset(f"ci_{i}" for i in range(1000)), interval_s=3600)
    resource = Balance(engine=None)
    req = SimpleNamespace(
        method="GET",
        context=SimpleNamespace(),
        get_header=lambda name: f"Bearer {token}" if name == "Authorization" else None,
    )
    with_list = Auth(keys, settings.jwt_audience, settings.jwt_issuer, revoked=revoked)
    without = Auth(keys, settings.jwt_audience, settings.jwt_issuer)

    def auth(middleware):
        return lambda: middleware.process_resource(req, None, resource, {})

    revoked.is_revoked("ci_bench")  # the first read, outside the timing
    runs = {"auth_with_list_us": [], "auth_without_list_us": [], "is_revoked_us": []}
    for _ in range(RUNS):
        runs["auth_with_list_us"].append(_per_call_us(auth(with_list), CALLS // 10))
        runs["auth_without_list_us"].append(_per_call_us(auth(without), CALLS // 10))
        runs["is_revoked_us"].append(_per_call_us(lambda: revoked.is_revoked("ci_bench")))
    print(json.dumps({k: round(statistics.median(v), 3) for k, v in runs.items()} | {"runs": RUNS}))


if __name__ == "__main__":
    main()
