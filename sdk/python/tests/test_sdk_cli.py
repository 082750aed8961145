"""clearhouse-pay: credentials from the environment; pay, status, queue list/drain/purge."""

from __future__ import annotations

import json

import pytest

from clearhouse_client.cli import main
from conftest import Answer, closed_port, intent, problem

INTENTS = "/v1/payment_intents"


@pytest.fixture
def env(monkeypatch, api, tmp_path):
    values = {
        "CLEARHOUSE_CLIENT_ID": "ci_cli",
        "CLEARHOUSE_CLIENT_SECRET": "cs_cli",
        "CLEARHOUSE_BASE_URL": api.url,
        "CLEARHOUSE_OFFLINE_PATH": str(tmp_path / "cli.sqlite3"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(capsys, *argv) -> tuple[int, object, str]:
    status = main(["--json", *argv])
    out, err = capsys.readouterr()
    return status, json.loads(out) if out.strip() else None, err


def test_pay_creates_an_intent_with_the_credentials_from_the_environment(env, api, capsys):
    api.then(INTENTS, Answer(202, intent("pi_cli", amount=1000, currency="USD")))
    status, out, _ = run(
        capsys,
        "pay",
        "--amount",
        "1000",
        "--currency",
        "USD",
        "--card",
        "4242424242424242",
        "--idempotency-key",
        "cli-1",
    )
    assert status == 0 and out["id"] == "pi_cli" and out["status"] == "processing"
    (sent,) = api.requests(INTENTS)
    assert sent.headers["idempotency-key"] == "cli-1"
    card = sent.body["payment_method"]["card"]
    assert card["number"] == "4242424242424242" and card["exp_month"] == 12
    assert api.requests("/v1/oauth/token")[0].body["client_id"] == "ci_cli"


def test_status_shows_one_intent_and_a_refusal_exits_1(env, api, capsys):
    api.then("/v1/payment_intents/pi_1", Answer(200, intent("pi_1", status="succeeded")))
    status, out, _ = run(capsys, "status", "pi_1")
    assert status == 0 and out["status"] == "succeeded"
    status, out, err = run(capsys, "status", "pi_nope")
    assert status == 1 and out is None and "resource_missing" in err


def test_pay_offline_queues_when_the_api_is_away_then_drain_sends_it(env, api, capsys, monkeypatch):
    monkeypatch.setenv("CLEARHOUSE_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    status, out, _ = run(
        capsys,
        "pay",
        "--offline",
        "--amount",
        "500",
        "--currency",
        "EUR",
        "--card",
        "4242424242424242",
    )
    assert status == 0 and out["state"] == "queued" and "no answer" in out["last_error"]
    assert out["payment_method"] == {"type": "card", "last4": "4242"}

    status, listed, _ = run(capsys, "queue", "list")
    assert [i["state"] for i in listed] == ["queued"]
    status, drained, _ = run(capsys, "queue", "drain")
    assert status == 1 and drained["remaining"] == 1 and drained["error"]

    monkeypatch.setenv("CLEARHOUSE_BASE_URL", api.url)
    api.then(INTENTS, Answer(202, intent("pi_off")))
    status, drained, _ = run(capsys, "queue", "drain")
    assert (
        status == 0 and drained["acknowledged"] == [out["local_id"]] and drained["remaining"] == 0
    )
    status, listed, _ = run(capsys, "queue", "list")
    assert listed[0]["state"] == "acknowledged" and listed[0]["intent_id"] == "pi_off"
    assert run(capsys, "queue", "purge")[1] == {"purged": 1}


def test_pay_offline_with_the_api_up_sends_at_once_and_a_rejection_exits_1(env, api, capsys):
    api.then(INTENTS, Answer(202, intent("pi_now")))
    status, out, _ = run(
        capsys, "pay", "--offline", "--amount", "1", "--currency", "USD", "--wallet", "wal_1"
    )
    assert status == 0 and out["state"] == "acknowledged" and out["intent_id"] == "pi_now"
    api.then(INTENTS, problem(400, "amount_too_large", param="amount"))
    status, out, _ = run(
        capsys, "pay", "--offline", "--amount", "1", "--currency", "USD", "--wallet", "wal_1"
    )
    assert status == 1 and out["state"] == "rejected" and out["problem"]["param"] == "amount"


def test_without_credentials_or_with_bad_arguments_it_is_a_usage_error(env, monkeypatch, capsys):
    monkeypatch.delenv("CLEARHOUSE_CLIENT_SECRET")
    with pytest.raises(SystemExit) as caught:
        main(["status", "pi_1"])
    assert caught.value.code == 2 and "CLEARHOUSE_CLIENT_SECRET" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["pay", "--amount", "x", "--currency", "USD", "--card", "4242"])
    assert caught.value.code == 2


def test_human_output_is_one_line_of_key_values(env, api, capsys):
    api.then("/v1/payment_intents/pi_1", Answer(200, intent("pi_1", amount=7, currency="USD")))
    assert main(["status", "pi_1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == "id=pi_1  status=processing  amount=7  currency=USD"
