"""The throughput model of docs/scaling.md: pure arithmetic, so its tables are reproducible.

    python -m tests.load.scaling_model        # prints the doc's tables (markdown)

Inputs are CPU milliseconds per completed intent measured with `make bench` on the
2-core machine (issue 12). The model gives Postgres cores of its own (one primary,
or several when intents are partitioned by merchant), puts every other process on
the remaining cores (they are stateless and scale out), picks the split that
maximises throughput, and caps the result by the serial parts the cores cannot
buy: the ledger's hot account rows. Every assumption is a named constant below.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# -- measured (issue 12, make bench, 2 cores, every process on the machine) -------------

MEASURED_CORES = 2
# Without webhooks: saturated at 195 completed intents/s, both cores busy, CPU per intent:
BASE_RATE_PER_S = 195
BASE_MS = {"api": 4.3, "postgres": 3.0, "pipeline": 1.7, "rest": 0.5}
# With webhooks (BENCH_WEBHOOKS=1, ~2 signed deliveries per intent): 94 completed/s with
# 1.93 cores busy, split by process (cores); the rest of the busy time is "rest".
WEBHOOK_RATE_PER_S = 94
WEBHOOK_BUSY_CORES = 1.93
WEBHOOK_CORES = {
    "api": 0.57,
    "postgres": 0.41,
    "background": 0.36,
    "pipeline": 0.27,
    "webhook_sink": 0.10,
}
# The bench's webhook receiver stands for the merchants' servers: not our cores.
NOT_OURS = ("webhook_sink",)

# -- assumed (docs/scaling.md says what would change them) ---------------------------------

# Serial fraction of one Postgres primary (WAL insertion and flush, lock manager, buffer
# mapping): speedup on n cores is n / (1 + SIGMA (n - 1)), Amdahl's law; 0.02 caps a
# primary at 50 cores' worth however many it has.
PG_SIGMA = 0.02
# Time per intent that a capture batch holds a hot account row (platform:fees:<cur>,
# external:card_clearing:<cur>, a large merchant's pending account) locked: from
# lock_balances to commit, the batch's transfer INSERTs, intent UPDATEs and event rows.
# Batching shares the lock among a batch, but this per-intent work is still serial.
HOT_ROW_MS = 0.3


@dataclass(frozen=True)
class Costs:
    """CPU ms per completed intent: Postgres, and the stateless processes (by name)."""

    postgres: float
    stateless: dict

    @property
    def stateless_ms(self) -> float:
        return sum(self.stateless.values())

    @property
    def total_ms(self) -> float:
        return self.postgres + self.stateless_ms


def per_intent_ms(rate_per_s: float, cores: dict) -> dict:
    """Cores busy per process at ``rate_per_s`` -> CPU ms per intent."""
    return {name: round(c / rate_per_s * 1000, 2) for name, c in cores.items()}


def costs(ms: dict) -> Costs:
    ours = {k: v for k, v in ms.items() if k not in NOT_OURS}
    return Costs(ours.pop("postgres"), ours)


def base_costs() -> Costs:
    return costs(BASE_MS)


def webhook_costs() -> Costs:
    ms = per_intent_ms(WEBHOOK_RATE_PER_S, WEBHOOK_CORES)
    rest = WEBHOOK_BUSY_CORES - sum(WEBHOOK_CORES.values())
    ms["rest"] = round(rest / WEBHOOK_RATE_PER_S * 1000, 2)
    return costs(ms)


def efficiency(rate_per_s: float, c: Costs, cores: float = MEASURED_CORES) -> float:
    """Share of the cores that became our per-intent work at saturation (the rest: the
    load generator, the receiver, idle moments)."""
    return round(rate_per_s * c.total_ms / (cores * 1000), 3)


def pg_speedup(cores: float, sigma: float = PG_SIGMA, primaries: int = 1) -> float:
    """Postgres throughput in one-core units: ``primaries`` equal primaries, Amdahl each."""
    n = cores / primaries
    return primaries * n / (1 + sigma * (n - 1))


def predict(
    cores: int,
    c: Costs,
    eta: float,
    sigma: float = PG_SIGMA,
    hot_row_ms: float = HOT_ROW_MS,
    hot_shards: int = 1,
    primaries: int = 1,
) -> dict:
    """Best split of ``cores`` between Postgres and the rest; the throughput and its bound."""
    if cores <= primaries:
        raise ValueError("need a core for each primary and at least one for the rest")
    best = None
    for pg in range(primaries, cores):
        app_per_s = eta * (cores - pg) * 1000 / c.stateless_ms
        pg_per_s = eta * pg_speedup(pg, sigma, primaries) * 1000 / c.postgres
        if best is None or min(app_per_s, pg_per_s) > min(best[1], best[2]):
            best = (pg, app_per_s, pg_per_s)
    pg, app_per_s, pg_per_s = best
    hot_per_s = hot_shards * 1000 / hot_row_ms
    limits = {"app tier": app_per_s, "Postgres": pg_per_s, "hot rows": hot_per_s}
    bound = min(limits, key=limits.get)
    return {
        "cores": cores,
        "postgres_cores": pg,
        "app_cores": cores - pg,
        "app_per_s": round(app_per_s),
        "postgres_per_s": round(pg_per_s),
        "hot_rows_per_s": round(hot_per_s),
        "per_s": round(limits[bound]),
        "bound": bound,
        "linear_per_s": round(eta * cores * 1000 / c.total_ms),
    }


SCENARIOS = (
    # (label, cores, keyword arguments of predict)
    ("4 cores", 4, {}),
    ("16 cores", 16, {}),
    ("64 cores", 64, {}),
    ("64 cores, hot accounts in 8 shards", 64, {"hot_shards": 8}),
    (
        "64 cores, 8 shards, 2 primaries (intents by merchant)",
        64,
        {"hot_shards": 8, "primaries": 2},
    ),
)


def table(c: Costs, eta: float) -> str:
    head = (
        "| machine | Postgres / app cores | app tier limit | Postgres limit | hot-row limit"
        " | predicted intents/s | bound by | linear |\n|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for label, cores, kw in SCENARIOS:
        p = predict(cores, c, eta, **kw)
        rows.append(
            f"| {label} | {p['postgres_cores']} / {p['app_cores']} | {p['app_per_s']:,}"
            f" | {p['postgres_per_s']:,} | {p['hot_rows_per_s']:,} | **{p['per_s']:,}**"
            f" | {p['bound']} | {p['linear_per_s']:,} |"
        )
    return head + "\n".join(rows) + "\n"


def sensitivity(c: Costs, eta: float, cores: int = 64) -> str:
    """Predicted intents/s on ``cores`` for other values of the two assumed constants."""
    hot = (0.1, HOT_ROW_MS, 1.0)
    head = "| σ \\ hot-row ms per intent | " + " | ".join(f"{h}" for h in hot) + " |\n"
    head += "|---|" + "---|" * len(hot) + "\n"
    rows = [
        f"| {sigma} | "
        + " | ".join(f"{predict(cores, c, eta, sigma, h)['per_s']:,}" for h in hot)
        + " |"
        for sigma in (0.01, PG_SIGMA, 0.05)
    ]
    return head + "\n".join(rows) + "\n"


def report() -> str:
    out = []
    for name, c, rate in (
        ("without webhooks", base_costs(), BASE_RATE_PER_S),
        ("with webhooks", webhook_costs(), WEBHOOK_RATE_PER_S),
    ):
        eta = efficiency(rate, c)
        ms = ", ".join(f"{k} {v}" for k, v in {"postgres": c.postgres, **c.stateless}.items())
        out.append(
            f"### {name}\n\nms per intent: {ms} (total {c.total_ms:.2f}, stateless"
            f" {c.stateless_ms:.2f}); efficiency {eta} (= {rate}/s x {c.total_ms:.2f} ms"
            f" / {MEASURED_CORES} cores)\n\n{table(c, eta)}\n64 cores, one primary:\n\n"
            f"{sensitivity(c, eta)}"
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(report())
