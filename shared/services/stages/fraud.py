"""Stage 2: score the risk of each intent; block at the merchant's threshold.

An intent in the review band goes on to its normal outcome with its review
opened: ``risk_level`` elevated and a ``review.opened`` event, in the same
transaction as the score.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import text

from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain import fraud
from shared.domain.intent import FailureCode, Stage
from shared.observability import metrics
from shared.services import events, outcomes, views
from shared.services.stages.common import StageResult, advance, claim, now


def run(
    uow: UnitOfWork,
    ids,
    *,
    test_cards: Mapping[str, fraud.SandboxCard],
    default_threshold: int,
    review_band: int = fraud.REVIEW_BAND,
):
    """Score each claimed intent; fail those at or over the merchant's threshold.

    ``test_cards`` maps the fingerprint of each documented sandbox test card
    to what it asks of the rules.
    """
    rows = claim(uow, ids, Stage.LIMITS_CHECKED)
    result = StageResult()
    if not rows:
        return result
    t = now(uow)
    fps = sorted({r.card_fingerprint for r in rows if r.card_fingerprint})
    ips = sorted({r.client_ip for r in rows if r.client_ip})
    since = t - timedelta(seconds=fraud.VELOCITY_WINDOW_S)
    # +2: the window includes the intent being scored, and "more than N" needs N+1
    velocity = _counts(uow, "card_fingerprint", fps, since, fraud.CARD_VELOCITY_EXTREME + 2)
    ip_velocity = _counts(uow, "client_ip", ips, since, fraud.IP_VELOCITY_HIGH + 2)
    declines = _declines(uow, fps, t - timedelta(seconds=fraud.DECLINE_WINDOW_S))
    payer = _payer_history(uow, rows)
    merchant_avg = _merchant_history(uow, rows)
    blocked = _blocklisted(uow, rows)
    thresholds = {
        m: fraud.Thresholds.below(block, review_band)
        for m, block in _thresholds(uow, rows, default_threshold).items()
    }
    scored, to_block, reviews = {}, [], []
    for r in rows:
        count, avg = payer.get((r.payer_key, r.currency), (0, None))
        assessment = fraud.assess(
            fraud.FraudSignals(
                amount=r.amount,
                currency=r.currency,
                test_card=test_cards.get(r.card_fingerprint),
                # the window's count includes this intent itself
                card_velocity=max(velocity.get(r.card_fingerprint, 0) - 1, 0),
                ip_velocity=max(ip_velocity.get(r.client_ip, 0) - 1, 0),
                payer_history_count=count,
                payer_history_avg=avg,
                merchant_history_avg=merchant_avg.get((r.merchant_id, r.currency)),
                blocklisted=tuple(blocked.get(r.id, ())),
                recent_declines=declines.get(r.card_fingerprint, 0),
            ),
            thresholds[r.merchant_id],
        )
        values = {
            "risk_score": assessment.score,
            "risk_reasons": assessment.to_json(),
            "risk_level": assessment.level.value,
        }
        metrics.fraud_scored(uow, assessment.score, assessment.level)
        if assessment.blocked:
            to_block.append((r, values))
        else:
            scored[r.id] = values
            if assessment.review:
                reviews.append((r, values))
    advance(uow, list(scored), Stage.RISK_SCORED, per_row=scored)
    for r, values in to_block:
        uow.conn.execute(pi.update().where(pi.c.id == r.id).values(**values))
    outcomes.fail(uow, [r for r, _ in to_block], FailureCode.FRAUD_SUSPECTED)
    _open_reviews(uow, reviews)
    result.advanced = list(scored)
    result.failed = [r.id for r, _ in to_block]
    return result


def _open_reviews(uow: UnitOfWork, reviews) -> None:
    """A ``review.opened`` event for each intent scored into the review band."""
    items = []
    for r, values in reviews:
        review = views.review_json(r.id, values["risk_score"])
        items.append((r.merchant_id, "review.opened", review["id"], review))
    events.emit(uow, items)


def _counts(uow: UnitOfWork, column: str, values: list[str], since, cap: int) -> dict[str, int]:
    """Recent intents per value, counted up to ``cap`` only.

    The rules only ask "more than N?", so each count stops at N+1 rows: a
    busy card or IP costs the same as a quiet one.
    """
    if not values:
        return {}
    rows = uow.conn.execute(
        text(
            f"SELECT v, (SELECT count(*) FROM (SELECT 1 FROM payment_intents"
            f" WHERE {column} = v AND created_at > :since LIMIT :cap) AS recent)"
            " FROM unnest(CAST(:v AS text[])) AS v"
        ),
        {"v": values, "since": since, "cap": cap},
    )
    return dict(rows.all())


def _declines(uow: UnitOfWork, fps: list[str], since) -> dict[str, int]:
    if not fps:
        return {}
    rows = uow.conn.execute(
        text(
            "SELECT card_fingerprint, count(*) FROM payment_intents"
            " WHERE card_fingerprint = ANY(:v) AND created_at > :since AND status = 'failed'"
            " AND failure_code IN ('card_declined', 'insufficient_funds', 'expired_card')"
            " GROUP BY 1"
        ),
        {"v": fps, "since": since},
    )
    return dict(rows.all())


def _payer_history(uow: UnitOfWork, rows) -> dict[tuple[str, str], tuple[int, int | None]]:
    keys = sorted({r.payer_key for r in rows})
    found = uow.conn.execute(
        text(
            "SELECT payer_key, currency, count(*), round(avg(amount)) FROM payment_intents"
            " WHERE payer_key = ANY(:k) AND status = 'succeeded' GROUP BY 1, 2"
        ),
        {"k": keys},
    )
    return {(k, c): (n, int(avg) if avg is not None else None) for k, c, n, avg in found}


# The mean of the merchant's last 500 successes: recent enough to follow the
# business, bounded so it costs the same at a million intents. The partial index
# ix_intents_merchant_succeeded (0023) holds successes only, so the intents still
# processing behind them (a backlog) are never read.
MERCHANT_MEAN = (
    "SELECT round(avg(amount)) FROM (SELECT amount FROM payment_intents"
    " WHERE merchant_id = :m AND currency = :c AND status = 'succeeded'"
    " ORDER BY created_at DESC LIMIT 500) AS recent"
)


def _merchant_history(uow: UnitOfWork, rows) -> dict[tuple[str, str], int]:
    out = {}
    for merchant_id, cur in sorted({(r.merchant_id, r.currency) for r in rows}):
        avg = uow.conn.execute(text(MERCHANT_MEAN), {"m": merchant_id, "c": cur}).scalar()
        if avg is not None:
            out[(merchant_id, cur)] = int(avg)
    return out


def _blocklisted(uow: UnitOfWork, rows) -> dict[str, list[str]]:
    wanted = {}
    for r in rows:
        for kind, value in (
            ("card_fingerprint", r.card_fingerprint),
            ("wallet", r.wallet_id),
            ("ip", r.client_ip),
            ("customer", r.customer),
        ):
            if value:
                wanted.setdefault((kind, value), []).append(r.id)
    if not wanted:
        return {}
    found = uow.conn.execute(
        text("SELECT kind, value FROM blocklist WHERE value = ANY(:v)"),
        {"v": sorted({v for _, v in wanted})},
    )
    out: dict[str, list[str]] = {}
    for kind, value in found:
        for intent_id in wanted.get((kind, value), []):
            out.setdefault(intent_id, []).append(kind)
    return out


def _thresholds(uow: UnitOfWork, rows, default: int) -> dict[str, int]:
    ids = sorted({r.merchant_id for r in rows})
    found = uow.conn.execute(
        text("SELECT id, fraud_block_threshold FROM merchants WHERE id = ANY(:ids)"),
        {"ids": ids},
    )
    configured = dict(found.all())
    return {m: default if configured.get(m) is None else configured[m] for m in ids}
