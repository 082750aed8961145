"""Open-loop load from clients that retry with the same Idempotency-Key.

Requests leave at a fixed rate whatever the answers (open loop: a slow or
failing server does not slow the offered load). A client retries a request on
a connection error, a 5xx or a 409 (key in flight), with backoff, always with
the same key and body, as Stripe's clients do, until it gets an answer or
gives up after ``GIVE_UP_S``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from tests.factories import PROCESSING_ERROR, random_visa
from tests.load import mix

GIVE_UP_S = 120.0
RETRYABLE = {409, 429, 500, 502, 503, 504}


@dataclass
class Outcome:
    key: str
    merchant: str
    intent_id: str | None = None
    status: int | None = None
    attempts: int = 0
    ids_seen: set = field(default_factory=set)


@dataclass
class Answer:
    at: float  # time.time()
    status: int | None  # None: connection error
    code: str | None = None


class Load:
    def __init__(self, api: str, tokens: dict[str, str], rate: float, seed: int):
        self.api = api
        self.tokens = tokens  # merchant id -> access token
        self.rate = rate
        self.rng = random.Random(seed)
        self.outcomes: list[Outcome] = []
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=96, thread_name_prefix="client")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._offer, name="offer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop offering new requests, and wait for the clients' retries to end."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _offer(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        merchants = sorted(self.tokens)
        while not self._stop.is_set():
            body = self._body()
            merchant = self.rng.choice(merchants)
            key = "chaos-" + uuid.UUID(int=self.rng.getrandbits(128)).hex
            body["metadata"] = {"chaos_key": key}
            outcome = Outcome(key, merchant)
            with self._lock:
                self.outcomes.append(outcome)
            self._pool.submit(self._client, outcome, body)
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _body(self) -> dict:
        body = mix.intent_body(self.rng)
        card = body["payment_method"]["card"]
        # The transient-error test card fails with processing_error by design;
        # here any processing_error must come from a fault, so leave it out.
        if card["number"] == PROCESSING_ERROR:
            card["number"] = random_visa(self.rng)
        return body

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.trust_env = False
        return s

    def _client(self, outcome: Outcome, body: dict) -> None:
        headers = {
            "Authorization": f"Bearer {self.tokens[outcome.merchant]}",
            "Idempotency-Key": outcome.key,
        }
        give_up = time.monotonic() + GIVE_UP_S
        delay = 0.2
        while True:
            outcome.attempts += 1
            status, payload = self._post(body, headers)
            if status is not None and status not in RETRYABLE:
                outcome.status = status
                if isinstance(payload, dict) and payload.get("id"):
                    outcome.intent_id = payload["id"]
                    outcome.ids_seen.add(payload["id"])
                return
            if time.monotonic() > give_up:
                outcome.status = status
                return
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 3.0)

    def _post(self, body: dict, headers: dict):
        try:
            r = self._session().post(
                self.api + "/v1/payment_intents", json=body, headers=headers, timeout=15
            )
        except requests.RequestException as exc:
            self._record(None, type(exc).__name__)
            self._local.session = None  # a broken keep-alive connection: start afresh
            return None, None
        try:
            payload = r.json()
        except ValueError:
            payload = None
        code = payload.get("code") if isinstance(payload, dict) else None
        self._record(r.status_code, code)
        return r.status_code, payload

    def _record(self, status, code) -> None:
        with self._lock:
            self.answers.append(Answer(time.time(), status, code))
