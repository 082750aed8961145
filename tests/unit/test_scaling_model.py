"""The throughput model behind docs/scaling.md (tests/load/scaling_model.py)."""

from pathlib import Path

import pytest

from tests.load import scaling_model as M

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"


def test_webhook_costs_are_the_measured_core_split_per_intent_without_the_receiver():
    c = M.webhook_costs()
    assert c.postgres == 4.36
    assert c.stateless == {
        "api": 6.06,
        "background": 3.83,
        "pipeline": 2.87,
        "rest": 2.34,  # 1.93 busy cores minus the named ones, at 94/s
    }
    assert "webhook_sink" not in c.stateless


def test_the_efficiency_reproduces_the_two_core_measurement():
    c = M.base_costs()
    assert c.total_ms == pytest.approx(9.5)
    eta = M.efficiency(M.BASE_RATE_PER_S, c)
    assert eta == 0.926
    # Every process sharing both cores: back to the measured 195/s.
    assert eta * M.MEASURED_CORES * 1000 / c.total_ms == pytest.approx(195, abs=0.5)


def test_postgres_speedup_is_amdahl_per_primary():
    assert M.pg_speedup(1) == 1
    assert M.pg_speedup(16, sigma=0) == 16
    assert M.pg_speedup(51, sigma=0.02) == pytest.approx(25.5)
    # Two primaries of 8 cores do better than one of 16: each has its own serial part.
    assert M.pg_speedup(16, primaries=2) == 2 * M.pg_speedup(8)
    assert M.pg_speedup(16, primaries=2) > M.pg_speedup(16)


def test_without_serial_parts_the_prediction_approaches_linear_from_below():
    c, eta = M.base_costs(), 0.9
    shares = []
    for cores in (4, 16, 64):
        p = M.predict(cores, c, eta, sigma=0, hot_row_ms=1e-6)
        assert p["postgres_cores"] + p["app_cores"] == cores
        shares.append(p["per_s"] / p["linear_per_s"])
    # Only whole cores are lost, less and less of them as the machine grows.
    assert all(share <= 1 for share in shares)
    assert shares == sorted(shares)
    assert shares[-1] > 0.98


def test_the_split_balances_the_tiers_and_the_hot_rows_cap_it():
    c = M.base_costs()
    eta = M.efficiency(M.BASE_RATE_PER_S, c)
    four = M.predict(4, c, eta)
    assert (four["postgres_cores"], four["per_s"], four["bound"]) == (1, 309, "Postgres")
    big = M.predict(64, c, eta)
    assert big["bound"] == "hot rows"
    assert big["per_s"] == round(1000 / M.HOT_ROW_MS)
    sharded = M.predict(64, c, eta, hot_shards=8)
    assert sharded["per_s"] > big["per_s"]
    assert sharded["bound"] == "Postgres"
    throughputs = [M.predict(n, c, eta)["per_s"] for n in (2, 4, 8, 16, 32, 64)]
    assert throughputs == sorted(throughputs)


def test_the_doc_shows_the_models_tables_as_the_script_prints_them():
    doc = DOC.read_text()
    for c, rate in (
        (M.base_costs(), M.BASE_RATE_PER_S),
        (M.webhook_costs(), M.WEBHOOK_RATE_PER_S),
    ):
        assert M.table(c, M.efficiency(rate, c)) in doc
