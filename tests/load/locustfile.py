"""Locust against a running stack (``make run``), with the bench's request mix.

    clearhouse merchant create --name "Load" --json      # note client_id / client_secret
    export CLEARHOUSE_CLIENT_ID=ci_... CLEARHOUSE_CLIENT_SECRET=cs_...
    locust -f tests/load/locustfile.py --host http://127.0.0.1:8000

Each user sends LOCUST_RATE_PER_USER intents/s (default 1; constant throughput),
so ``-u 150`` offers ~150 intents/s. Headless: add ``--headless -u 150 -r 50 -t 60s``.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from locust import FastHttpUser, constant_throughput, events, task

# locust puts this file's directory on sys.path, not the repo root.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.load.mix import idempotency_key, intent_body  # noqa: E402

CLIENT_ID = os.environ.get("CLEARHOUSE_CLIENT_ID", "")
CLIENT_SECRET = os.environ.get("CLEARHOUSE_CLIENT_SECRET", "")
RATE_PER_USER = float(os.environ.get("LOCUST_RATE_PER_USER") or 1)
TOKEN_MARGIN_S = 60


@events.init.add_listener
def _check_credentials(environment, **_):
    if not (CLIENT_ID and CLIENT_SECRET):
        sys.exit(
            "set CLEARHOUSE_CLIENT_ID and CLEARHOUSE_CLIENT_SECRET "
            "(from `clearhouse merchant create --name Load --json`)"
        )


class Merchant(FastHttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.token = ""
        self.refresh_at = 0.0
        self._refresh_token()

    def _refresh_token(self) -> None:
        with self.client.post(
            "/v1/oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            name="/v1/oauth/token",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"token: HTTP {resp.status_code}")
                return
            doc = resp.json()
            ttl = int(doc.get("expires_in") or 900)
            self.token = doc["access_token"]
            self.refresh_at = time.monotonic() + max(ttl - TOKEN_MARGIN_S, ttl / 2)

    @task
    def create_intent(self) -> None:
        if time.monotonic() >= self.refresh_at:
            self._refresh_token()
        with self.client.post(
            "/v1/payment_intents",
            json=intent_body(self.rng),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Idempotency-Key": idempotency_key(),
            },
            name="/v1/payment_intents",
            catch_response=True,
        ) as resp:
            if resp.status_code == 401:
                self.refresh_at = 0.0  # refresh before the next one
                resp.failure("HTTP 401")
            elif resp.status_code != 202:
                resp.failure(f"HTTP {resp.status_code}")
            else:
                resp.success()
