"""Grafana's provisioning as files: the provider finds the dashboards, and every
dashboard and panel is wired to the provisioned Prometheus data source.

Whether each expression returns series from a running stack is
tests/e2e/test_prometheus_queries.py's job; this only reads files.
"""

from __future__ import annotations

import json

import pytest

from tests.support import monitoring as m

# The dashboards issue 9 asks for (titles end with these).
EXPECTED = ("Pipeline", "API", "Webhooks", "Money", "Queues and workers")


@pytest.fixture(scope="module")
def datasource() -> dict:
    (ds,) = [d for d in m.datasources() if d.get("type") == "prometheus"]
    return ds


@pytest.fixture(scope="module")
def dashboards() -> list[tuple]:
    found = m.dashboards()
    assert found, "no dashboard JSON found through the providers"
    return found


def test_the_provider_points_at_the_folder_of_dashboards():
    (provider_file, provider), *more = m.providers()
    assert not more, "one dashboard provider"
    assert provider.get("type", "file") == "file"
    path = provider["options"]["path"]
    folder = m.host_folder(path)
    # The compose file mounts deploy/grafana/provisioning where the provider looks.
    assert folder is not None, f"{path} is not inside any of Grafana's mounts in docker-compose.yml"
    assert folder == provider_file.parent / "clearhouse" and folder.is_dir()
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(
        p.name for p in m.dashboard_files()
    )
    assert provider.get("folder"), "dashboards go in a folder of their own"


def test_every_dashboard_loads_and_has_a_unique_uid(dashboards):
    uids = [d.get("uid") for _, d in dashboards]
    assert all(uids) and len(set(uids)) == len(uids), uids
    assert all(len(uid) <= 40 for uid in uids)  # Grafana's limit
    titles = [d.get("title") for _, d in dashboards]
    assert len(set(titles)) == len(titles), titles
    for want in EXPECTED:
        assert any(t.endswith(want) for t in titles), f"no {want} dashboard"
    for path, d in dashboards:
        # What Grafana's JSON model needs to show anything.
        assert d.get("schemaVersion") and d.get("panels"), path.name
        assert json.loads(path.read_text()) == d


def test_every_panel_and_target_uses_the_provisioned_datasource(dashboards, datasource):
    want = {"type": datasource["type"], "uid": datasource["uid"]}
    for _, d in dashboards:
        for panel in m.panels(d):
            if panel.get("type") == "row":
                continue
            where = f"{d['title']} / {panel.get('title')}"
            assert panel.get("datasource") == want, where
            assert panel.get("targets"), f"{where}: no query"
            for target in panel["targets"]:
                assert target.get("datasource", want) == want, where
        for var in d.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                assert var.get("datasource") == want, f"{d['title']} variable {var['name']}"


def test_every_target_has_an_expr_and_unique_ref_ids(dashboards):
    for _, d in dashboards:
        for panel in m.panels(d):
            targets = panel.get("targets") or []
            where = f"{d['title']} / {panel.get('title')}"
            assert all(t.get("expr", "").strip() for t in targets), where
            refs = [t.get("refId") for t in targets]
            assert all(refs) and len(set(refs)) == len(refs), where
        ids = [p.get("id") for p in m.panels(d)]
        assert len(set(ids)) == len(ids), f"{d['title']}: panel ids repeat"


def test_grafana_variables_are_substituted(dashboards):
    exprs = [e for _, d in dashboards for _, e in m.panel_queries(d)]
    assert any("$__rate_interval" in e for e in exprs)
    for e in exprs:
        assert "$" not in m.grafana_expr(e), e
    assert m.grafana_expr('rate(x{q=~"$queue", r=~"${route:regex}"}[$__rate_interval])') == (
        'rate(x{q=~".*", r=~".*"}[1m])'
    )


@pytest.mark.parametrize(
    ("condition", "series"),
    [
        ("up == 0", ["up"]),
        (
            "sum by (reason) (increase(x_total[10m])) > 0",
            ["sum by (reason) (increase(x_total[10m]))"],
        ),
        ("a / b > 0.05", ["a / b"]),
        ("0.05 < a", ["a"]),
        ("x > bool 3 * 60", ["x"]),
        ("time() - last_success > 3 * 60", ["time() - last_success"]),
        ("a > 0.1 and b > 10", ["a", "b"]),
        ("a > on (job) group_left b", ["a", "b"]),
        ('(a > 1) or (b{x=">"} < 2)', ["a", 'b{x=">"}']),
        ("a unless on () b", ["a", "b"]),
        ('absent(up{job="relay"})', ['up{job="relay"}']),
        ("absent_over_time(x[5m])", ["x"]),
        ("count(up == 0) > 0", ["count(up)"]),
        (
            "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) > 0.25",
            ["histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))"],
        ),
        ("max_over_time((x > 0)[5m:1m])", ["max_over_time((x)[5m:1m])"]),
        ("rate(x[5m])", ["rate(x[5m])"]),
    ],
)
def test_underlying_series_of_a_condition(condition, series):
    assert m.underlying(condition) == series
