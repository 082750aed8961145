"""A till that never loses a sale to the network: pay through the SDK's offline queue.

    export CLEARHOUSE_CLIENT_ID=ci_... CLEARHOUSE_CLIENT_SECRET=cs_...
    export CLEARHOUSE_BASE_URL=https://127.0.0.1:8000 CLEARHOUSE_CA_FILE=var/tls/ca.pem
    python examples/checkout.py --order 1001 --amount 1050 --currency USD --card 4242424242424242

The payment goes to the local queue first (on disk before the till says "queued"),
keyed by the order number: however often the till retries, restarts or drains, the
order becomes one payment intent. Then it tries to send what is queued. If the API
answers, the till waits for the outcome; if not, the sale stays queued and the next
checkout (or ``clearhouse-pay queue drain``) sends it. The last line is JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time

from clearhouse_client import Client

FINAL = {"succeeded", "failed", "canceled", "requires_capture"}


def client_from_env() -> Client:
    env = os.environ
    return Client(
        env["CLEARHOUSE_CLIENT_ID"],
        env["CLEARHOUSE_CLIENT_SECRET"],
        env.get("CLEARHOUSE_BASE_URL", "https://127.0.0.1:8000"),
        ca_file=env.get("CLEARHOUSE_CA_FILE") or None,
        offline_path=env.get("CLEARHOUSE_OFFLINE_PATH") or None,
    )


def wait_final(client: Client, intent_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = client.payment_intents.retrieve(intent_id).status
        if status in FINAL or time.monotonic() > deadline:
            return status
        time.sleep(0.2)  # polling interval; a real till would listen for the webhook


def main() -> None:
    parser = argparse.ArgumentParser(description="Take one card payment, offline-safe.")
    parser.add_argument("--order", required=True, help="the order number: one payment per order")
    parser.add_argument("--amount", type=int, required=True, help="minor units")
    parser.add_argument("--currency", default="USD")
    parser.add_argument("--card", required=True)
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the outcome")
    args = parser.parse_args()

    with client_from_env() as client:
        card = {"number": args.card, "exp_month": 12, "exp_year": dt.date.today().year + 3}
        local_id = client.offline.submit(
            {
                "amount": args.amount,
                "currency": args.currency,
                "payment_method": {"type": "card", "card": card},
                "metadata": {"order": args.order},
                "idempotency_key": f"order-{args.order}",
            }
        )
        drained = client.offline.drain()
        item = next(i for i in client.offline.items() if i.local_id == local_id)
        result = {"order": args.order, "local_id": local_id, "state": item.state}
        if item.state == "acknowledged":
            result.update(
                intent_id=item.intent_id, status=wait_final(client, item.intent_id, args.wait)
            )
        elif item.state == "rejected":
            result["problem"] = item.problem
        else:
            result["waiting"] = drained.remaining
            print(f"payment queued ({drained.error}); it is sent when the API answers again")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
