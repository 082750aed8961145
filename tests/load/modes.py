"""The bench's priority-isolation and overload modes (issue 12, items 3 and 5).

Each runs several load phases on one running stack (``bench.Run``), the
pipeline drained between them, and adds one section to the figures:

- ``BENCH_BACKLOG_ECONOMY=N``: a phase at half of BENCH_RATE (instant e2e at
  half load), then N economy intents inserted by SQL straight into the outbox
  (the relay enqueues them as it does the API's), then a phase at BENCH_RATE
  while they drain: ``backlog`` in the JSON;
- ``BENCH_OVERLOAD=1``: saturation found by a probe phase (or BENCH_RATE taken
  as it), then a phase at saturation and one at twice it: ``overload``.

The arithmetic is in the pure functions at the end (tests/unit/test_bench_modes.py).
"""

from __future__ import annotations

import random
import secrets
import time
from datetime import UTC, datetime

from tests.load.reference import ratio

# Targets of issue 12.
TARGET_INSTANT_P99_BACKLOG_MS = 1000
TARGET_INSTANT_P99_HALF_MS = 250
TARGET_COMPLETED_RATIO_MIN = 0.9
TARGET_ACCEPT_P99_RATIO_MAX = 2.0
# Rows per INSERT of the backlog (one transaction each: the relay starts on the first).
BACKLOG_BATCH = 1000


def _log(msg: str) -> None:
    from tests.load.bench import log

    log(msg)


def _phase(run, rate: float, label: str, last: bool, drain_s: float | None = None) -> dict:
    gen = run.drive(rate, f"loadgen_{label}")
    return run.figures(gen, run.drain(drain_s), last=last)


# -- BENCH_BACKLOG_ECONOMY ------------------------------------------------------


def insert_economy_backlog(run, n: int) -> list[str]:
    """Insert ``n`` economy intents of the run's merchant, as the API would, past it.

    Each is what POST /v1/payment_intents stores (a fresh approved card,
    tokenized under the run's keys; the mix's amounts; automatic capture),
    without its ``payment_intent.processing`` event. Their ``enqueued_at`` is
    NULL, so the outbox trigger wakes the relay, which sends them on exactly as
    it sends the API's.
    """
    from sqlalchemy import insert

    from shared.db.tables import payment_intents
    from shared.db.uow import UnitOfWork
    from shared.domain.validation import validate_create
    from shared.security.vault import Vault
    from shared.services.intents import new_intent_row
    from tests.factories import card_body, random_visa
    from tests.load.mix import AMOUNT_RANGE

    vault = Vault.from_settings(run.settings)
    rng = random.Random(secrets.randbits(64))
    today = datetime.now(UTC).date()
    merchant = run.merchant["merchant_id"]
    ids: list[str] = []
    for start in range(0, n, BACKLOG_BATCH):
        with UnitOfWork(run.engine) as u:
            rows = []
            for _ in range(min(BACKLOG_BATCH, n - start)):
                body = card_body(
                    random_visa(rng), amount=rng.randint(*AMOUNT_RANGE), priority="economy"
                )
                req = validate_create(body, today)
                rows.append(
                    new_intent_row(u, vault, merchant, req, client_ip=None, request_id=None)
                )
            u.conn.execute(insert(payment_intents), rows)
            u.commit()
        ids.extend(r["id"] for r in rows)
    return ids


def _backlog_state(run, ids: list[str]) -> tuple[float | None, int]:
    """(when the last backlog intent became final, epoch s; how many are not final)."""
    from sqlalchemy import text

    with run.engine.connect() as c:
        row = c.execute(
            text(
                "SELECT extract(epoch FROM max(finalized_at)) AS last,"
                " count(*) FILTER (WHERE finalized_at IS NULL) AS open"
                " FROM payment_intents WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).one()
    return (float(row.last) if row.last is not None else None), int(row.open)


def _instant_e2e_ms(run, since: float, until: float) -> list[tuple[float, int]]:
    """(e2e ms, authorization attempts) of the instant intents created in [since, until)
    that became final."""
    from sqlalchemy import text

    with run.engine.connect() as c:
        return [
            (float(ms), int(attempts))
            for ms, attempts in c.execute(
                text(
                    "SELECT extract(epoch FROM finalized_at - created_at) * 1000, auth_attempts"
                    " FROM payment_intents WHERE priority = 'instant'"
                    " AND created_at >= to_timestamp(:a) AND created_at < to_timestamp(:b)"
                    " AND finalized_at IS NOT NULL"
                ),
                {"a": since, "b": until},
            ).all()
        ]


def backlog(run) -> dict:
    """Half load, then N economy intents queued first and the full rate while they drain."""
    o = run.opts
    n = o["backlog_economy"]
    half = _phase(run, o["rate"] / 2, "half", last=False)
    began = time.time()
    ids = insert_economy_backlog(run, n)
    inserted_s = time.time() - began
    _log(f"backlog: {n} economy intents inserted in {inserted_s:.1f} s")
    gen = run.drive(o["rate"], "loadgen_backlog")
    # The backlog drains at the pipeline's rate: give it time past BENCH_DRAIN_S.
    fig = run.figures(gen, run.drain(o["drain_s"] + n / 50))
    last, unfinished = _backlog_state(run, ids)
    ws, we = run.window
    drained_at = last if not unfinished else None
    instant = _instant_e2e_ms(run, ws, min(we, drained_at) if drained_at else we)
    keys = ("offered_rate", "accepted_per_s", "completed_per_s", "e2e_latency_ms")
    fig["half_load"] = {k: half[k] for k in (*keys, "e2e_first_attempt_latency_ms")}
    fig["backlog"] = backlog_figures(
        n,
        inserted_s,
        began,
        drained_at,
        unfinished,
        instant,
        half["e2e_latency_ms"]["instant"],
        half["e2e_first_attempt_latency_ms"]["instant"],
    )
    fig["backlog"]["drained_before_window_end"] = bool(drained_at and drained_at < we)
    return fig


# -- BENCH_OVERLOAD -------------------------------------------------------------


def overload(run) -> dict:
    """Saturation (probed, or BENCH_RATE), then twice it: how the stack sheds the rest."""
    o = run.opts
    probe = None
    if o["rate_given"]:
        saturation = o["rate"]
    else:
        probe = _phase(run, o["overload_probe_rate"], "probe", last=False)
        saturation = max(1.0, round(probe["completed_per_s"]))
        _log(f"overload: saturation {saturation}/s (completed at {o['overload_probe_rate']}/s)")
    at_sat = _phase(run, saturation, "saturation", last=False)
    fig = _phase(run, 2 * saturation, "double", last=True)
    fig["overload"] = overload_figures(saturation, at_sat, fig)
    fig["overload"]["saturation_from"] = (
        "BENCH_RATE" if probe is None else f"probe at {o['overload_probe_rate']}/s"
    )
    if probe is not None:
        fig["overload"]["probe"] = _brief(probe)
    return fig


def _brief(fig: dict) -> dict:
    keys = ("offered_rate", "accepted_per_s", "completed_per_s", "shed_per_s")
    return {
        **{k: fig[k] for k in keys},
        "accept_p99_ms": (fig["accept_latency_ms"] or {}).get("p99"),
        "backlog_at_window_end": fig["backlog_at_window_end"],
    }


# -- the arithmetic -----------------------------------------------------------------


def backlog_figures(
    n: int,
    inserted_s: float,
    began: float,
    drained_at: float | None,
    unfinished: int,
    instant: list[tuple[float, int]],
    half_instant: dict | None,
    half_instant_first_attempt: dict | None = None,
) -> dict:
    """The ``backlog`` section: the drain, instant e2e while it lasted and at half load.

    ``instant`` holds (e2e ms, authorization attempts) per intent; the
    ``first_attempt`` figures leave out those retried after a transient
    acquirer error (their e2e is the retry schedule's). The target is judged
    on all of them.
    """
    from tests.load.bench import percentiles

    while_draining = percentiles([ms for ms, _ in instant])
    first_attempt = percentiles([ms for ms, attempts in instant if attempts <= 1])
    p99 = (while_draining or {}).get("p99")
    half_p99 = (half_instant or {}).get("p99")
    return {
        "economy_intents": n,
        "inserted_s": round(inserted_s, 1),
        # From the first insert to the last backlog intent's finalized_at.
        "drained_in_s": round(drained_at - began, 1) if drained_at is not None else None,
        "unfinished_after_drain": unfinished,
        "instant_e2e_while_draining_ms": while_draining,
        "instant_e2e_first_attempt_while_draining_ms": first_attempt,
        "instant_intents_while_draining": len(instant),
        "instant_e2e_half_load_ms": half_instant,
        "instant_e2e_first_attempt_half_load_ms": half_instant_first_attempt,
        "target": {
            "instant_p99_while_draining_ms_max": TARGET_INSTANT_P99_BACKLOG_MS,
            "instant_p99_half_load_ms_max": TARGET_INSTANT_P99_HALF_MS,
            "met": bool(
                p99 is not None
                and p99 <= TARGET_INSTANT_P99_BACKLOG_MS
                and half_p99 is not None
                and half_p99 <= TARGET_INSTANT_P99_HALF_MS
            ),
        },
    }


def every(counts: dict, status: int, what: str) -> bool | None:
    """Did every shed ``status`` answer carry ``what``? None when there was none."""
    total = counts.get(f"shed_{status}", 0)
    return None if not total else counts.get(f"shed_{status}_{what}", 0) == total


def overload_figures(saturation: float, at_sat: dict, at_double: dict) -> dict:
    """The ``overload`` section: completed and accept p99 at 2x against saturation."""
    p99 = {
        k: (f["accept_latency_ms"] or {}).get("p99") for k, f in (("s", at_sat), ("d", at_double))
    }
    completed = ratio(at_double["completed_per_s"], at_sat["completed_per_s"])
    latency = ratio(p99["d"], p99["s"])
    shed = at_double["shed_answers"]
    return {
        "saturation_rate": saturation,
        "double_rate": 2 * saturation,
        "shed_per_s": at_double["shed_per_s"],
        "completed_per_s": {
            "saturation": at_sat["completed_per_s"],
            "double": at_double["completed_per_s"],
        },
        "completed_double_vs_saturation": completed,
        "accept_p99_ms": {"saturation": p99["s"], "double": p99["d"]},
        "accept_p99_double_vs_saturation": latency,
        "shed_answers": shed,
        "every_503_has_retry_after": every(shed, 503, "retry_after"),
        "every_503_is_problem_json": every(shed, 503, "problem_json"),
        "every_429_has_retry_after": every(shed, 429, "retry_after"),
        "at_saturation": _brief(at_sat),
        "at_double": _brief(at_double),
        "target": {
            "completed_ratio_min": TARGET_COMPLETED_RATIO_MIN,
            "accept_p99_ratio_max": TARGET_ACCEPT_P99_RATIO_MAX,
            "met": bool(
                completed is not None
                and completed >= TARGET_COMPLETED_RATIO_MIN
                and latency is not None
                and latency <= TARGET_ACCEPT_P99_RATIO_MAX
                and every(shed, 503, "retry_after") is not False
                and every(shed, 503, "problem_json") is not False
            ),
        },
    }
