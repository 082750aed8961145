"""``clearhouse-pay``: pay, look a payment up, and work the offline queue from a shell.

Credentials come from the environment: CLEARHOUSE_CLIENT_ID, CLEARHOUSE_CLIENT_SECRET,
CLEARHOUSE_BASE_URL, and optionally CLEARHOUSE_CA_FILE, CLEARHOUSE_CLIENT_CERT,
CLEARHOUSE_CLIENT_KEY, CLEARHOUSE_OFFLINE_PATH.
Exit status: 0 done, 1 the API refused or could not be reached (or items stay queued),
2 a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence

from clearhouse_client.client import DEFAULT_BASE_URL, Client
from clearhouse_client.errors import ClearhouseError
from clearhouse_client.offline import DrainResult, OfflineItem


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="clearhouse-pay",
        description="Pay, look a payment up, and work the offline queue from a shell.",
        # The environment it reads and its exit statuses: the rest of the module's docstring.
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--json", action="store_true", help="print the result as one JSON value")
    commands = top.add_subparsers(dest="command", required=True)

    pay = commands.add_parser("pay", help="create a payment intent")
    pay.add_argument("--amount", type=int, required=True, help="in minor units (cents)")
    pay.add_argument("--currency", required=True)
    method = pay.add_mutually_exclusive_group(required=True)
    method.add_argument("--card", help="card number")
    method.add_argument("--wallet", help="wallet id")
    pay.add_argument("--exp", default=None, help="card expiry MM/YYYY (default: 12, in 3 years)")
    pay.add_argument("--cvc", default=None)
    pay.add_argument("--priority", choices=("instant", "standard", "economy"))
    pay.add_argument("--capture-method", choices=("automatic", "manual"))
    pay.add_argument("--description")
    pay.add_argument("--idempotency-key")
    pay.add_argument(
        "--offline",
        action="store_true",
        help="queue it locally first, then try to send; it stays queued if the API is away",
    )

    status = commands.add_parser("status", help="show one payment intent")
    status.add_argument("intent_id")

    queue = commands.add_parser("queue", help="the offline queue").add_subparsers(
        dest="queue_command", required=True
    )
    queue.add_parser("list", help="every queued item and its state")
    queue.add_parser("drain", help="send what is queued, in order")
    queue.add_parser("purge", help="delete acknowledged and rejected items")
    return top


def _client() -> Client:
    env = os.environ
    client_id, secret = env.get("CLEARHOUSE_CLIENT_ID"), env.get("CLEARHOUSE_CLIENT_SECRET")
    if not client_id or not secret:
        raise SystemExit(_usage("set CLEARHOUSE_CLIENT_ID and CLEARHOUSE_CLIENT_SECRET"))
    return Client(
        client_id,
        secret,
        env.get("CLEARHOUSE_BASE_URL") or DEFAULT_BASE_URL,
        ca_file=env.get("CLEARHOUSE_CA_FILE") or None,
        client_cert=env.get("CLEARHOUSE_CLIENT_CERT") or None,
        client_key=env.get("CLEARHOUSE_CLIENT_KEY") or None,
        offline_path=env.get("CLEARHOUSE_OFFLINE_PATH") or None,
    )


def _usage(message: str) -> int:
    print(f"clearhouse-pay: {message}", file=sys.stderr)
    return 2


def _payment_method(args) -> dict:
    if args.wallet:
        return {"type": "wallet", "wallet_id": args.wallet}
    month, year = 12, dt.date.today().year + 3
    if args.exp:
        try:
            month_text, year_text = args.exp.split("/")
            month, year = int(month_text), int(year_text)
        except ValueError:
            raise SystemExit(_usage("--exp must be MM/YYYY")) from None
    card = {"number": args.card, "exp_month": month, "exp_year": year}
    if args.cvc:
        card["cvc"] = args.cvc
    return {"type": "card", "card": card}


def _pay(client: Client, args) -> tuple[dict, int]:
    params = {
        "amount": args.amount,
        "currency": args.currency,
        "payment_method": _payment_method(args),
        "priority": args.priority,
        "capture_method": args.capture_method,
        "description": args.description,
    }
    params = {k: v for k, v in params.items() if v is not None}
    if not args.offline:
        intent = client.payment_intents.create(**params, idempotency_key=args.idempotency_key)
        return _intent(intent.to_dict()), 0
    if args.idempotency_key:
        params["idempotency_key"] = args.idempotency_key
    try:
        local_id = client.offline.submit(params)
    except ValueError as exc:
        raise SystemExit(_usage(str(exc))) from None
    drained = client.offline.drain()
    item = next(i for i in client.offline.items() if i.local_id == local_id)
    out = _item(item)
    if drained.error is not None:
        out["last_error"] = str(drained.error)
    # Queued is a success: the payment is on disk and goes out on the next drain.
    return out, 1 if item.state == "rejected" else 0


def _intent(data: dict) -> dict:
    keys = ("id", "status", "stage", "amount", "currency", "failure_code", "failure_message")
    return {k: data.get(k) for k in keys}


def _item(item: OfflineItem) -> dict:
    return {
        "local_id": item.local_id,
        "state": item.state,
        "idempotency_key": item.idempotency_key,
        "intent_id": item.intent_id,
        "attempts": item.attempts,
        **item.summary,
        **({"problem": item.problem} if item.problem else {}),
        **({"last_error": item.last_error} if item.last_error else {}),
    }


def _drain_out(result: DrainResult) -> tuple[dict, int]:
    out = {
        "acknowledged": [i.local_id for i in result.acknowledged],
        "rejected": [i.local_id for i in result.rejected],
        "remaining": result.remaining,
        "busy": result.busy,
        "error": str(result.error) if result.error else None,
    }
    return out, 0 if result.remaining == 0 else 1


def _run(client: Client, args) -> tuple[object, int]:
    if args.command == "pay":
        return _pay(client, args)
    if args.command == "status":
        return _intent(client.payment_intents.retrieve(args.intent_id).to_dict()), 0
    if args.queue_command == "list":
        return [_item(i) for i in client.offline.items()], 0
    if args.queue_command == "drain":
        return _drain_out(client.offline.drain())
    return {"purged": client.offline.purge()}, 0


def _print(value: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, sort_keys=True))
        return
    rows = value if isinstance(value, list) else [value]
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if v not in (None, [], {})))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with _client() as client:
            value, status = _run(client, args)
    except ClearhouseError as exc:
        print(f"clearhouse-pay: {exc}", file=sys.stderr)
        return 1
    _print(value, args.json)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
