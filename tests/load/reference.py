"""The bench's reference figures (`BENCH_REFERENCE=1`): pure arithmetic, no I/O.

The bench measures four phases with the same load generator and the same
gunicorn settings: the bare app (tests/load/bare_app.py) and clearhouse's
intake alone, each first closed loop (max accept rate), then open loop at one
offered rate (half of clearhouse's saturation rate), bare and intake taking
turns in slices. These functions turn the generator's raw results into the
figures tests/load/README.md defines.
"""

from __future__ import annotations

# Targets of issue 12: the intake keeps at least half the bare app's rate, and at
# half load its accept p99 stays within 3 times the bare one's.
TARGET_INTAKE_VS_BARE = 0.5
TARGET_P99_VS_BARE = 3.0


def combine(slices: list[dict]) -> dict:
    """The generator's results of several slices of one phase, as one result."""
    out = {"latencies_ms": [], "send_lag_ms": [], "errors": {}, "counts": {}, "cpu_s": 0.0}
    for r in slices:
        out["latencies_ms"] += r["latencies_ms"]
        out["send_lag_ms"] += r["send_lag_ms"]
        out["cpu_s"] += r["cpu_s"]
        for key in ("errors", "counts"):
            for k, v in r[key].items():
                out[key][k] = out[key].get(k, 0) + v
    return out


def max_rate(accepted_in_window: int, duration_s: float) -> float:
    """Closed loop: answers received inside the window per second of window."""
    if duration_s <= 0:
        raise ValueError("the window must have a length")
    return round(accepted_in_window / duration_s, 1)


def cpu_ms_per_request(slices: list[tuple[float, int]], slice_s: float) -> float | None:
    """CPU ms per answered request over slices of (cores the server used, answers in the
    window): less at the mercy of neighbours than a rate, which depends on the CPU share."""
    answered = sum(n for _, n in slices)
    if not answered:
        return None
    return round(sum(cores for cores, _ in slices) * slice_s * 1000 / answered, 2)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to 3 decimals; None when either is missing or the base is 0."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def half_load_rate(saturation_per_s: float, override: float | None = None) -> float:
    """The open-loop phases' offered rate: ``override`` if given, else half the saturation."""
    rate = override if override else saturation_per_s / 2
    return round(max(rate, 1.0), 1)


def reference_figures(
    bare_max_per_s: float,
    intake_max_per_s: float,
    rate_per_s: float,
    bare_latency_ms: dict | None,
    intake_latency_ms: dict | None,
) -> dict:
    """The figures and whether they meet the targets (latencies: {p50, p95, p99} in ms)."""
    intake_vs_bare = ratio(intake_max_per_s, bare_max_per_s)
    p99_vs_bare = ratio((intake_latency_ms or {}).get("p99"), (bare_latency_ms or {}).get("p99"))
    return {
        "bare_max_per_s": bare_max_per_s,
        "intake_max_per_s": intake_max_per_s,
        "intake_vs_bare": intake_vs_bare,
        "half_load_rate_per_s": rate_per_s,
        "bare_accept_latency_ms": bare_latency_ms,
        "intake_accept_latency_ms": intake_latency_ms,
        "accept_p99_vs_bare": p99_vs_bare,
        "target": {
            "intake_vs_bare_min": TARGET_INTAKE_VS_BARE,
            "accept_p99_vs_bare_max": TARGET_P99_VS_BARE,
            "met": bool(
                intake_vs_bare is not None
                and intake_vs_bare >= TARGET_INTAKE_VS_BARE
                and p99_vs_bare is not None
                and p99_vs_bare <= TARGET_P99_VS_BARE
            ),
        },
    }
