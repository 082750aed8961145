"""``clearhouse-devchain``: a development Ethereum node, eth-tester (py-evm) behind JSON-RPC.

For ``make run`` and tests that run real processes: the workers, beat and the
CLI are separate processes and cannot share an in-process test chain, so this
serves one over HTTP. Every transaction is mined at once, into its own block;
the chain lives in memory and is gone when the process stops. It funds the
account of ANCHOR_PRIVATE_KEY when that is set (as ``make run`` sets it) and
every ``--fund`` address. It needs the dev extra (eth-tester[py-evm]).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from shared.config import Settings

# 1,000 ether in wei for each --fund address: thousands of years of daily anchors.
FUND_WEI = 1000 * 10**18


def to_rpc(value):
    """web3's Python values back into JSON-RPC's: hex quantities and data, plain dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: to_rpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_rpc(v) for v in value]
    return str(value)


class Node:
    """One in-memory chain; calls are answered one at a time (eth-tester is not thread-safe)."""

    def __init__(self):
        from web3 import EthereumTesterProvider, Web3

        self.w3 = Web3(EthereumTesterProvider())

    def fund(self, address: str) -> None:
        to = self.w3.to_checksum_address(address)
        tx = self.w3.eth.send_transaction(
            {"from": self.w3.eth.accounts[0], "to": to, "value": FUND_WEI}
        )
        self.w3.eth.wait_for_transaction_receipt(tx)

    def answer(self, request: dict) -> dict:
        from web3.exceptions import TransactionNotFound

        reply = {"jsonrpc": "2.0", "id": request.get("id")}
        method, params = request.get("method"), request.get("params") or []
        if not isinstance(method, str) or not isinstance(params, list):
            return reply | {"error": {"code": -32600, "message": "invalid request"}}
        try:
            result = self.w3.manager.request_blocking(method, params)
        except TransactionNotFound:
            result = None  # JSON-RPC's answer for an unknown hash
        except Exception as exc:  # every refusal goes back to the caller, as a node's does
            return reply | {"error": {"code": -32000, "message": str(exc) or type(exc).__name__}}
        return reply | {"result": to_rpc(result)}


def _handler(node: Node):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            except ValueError:
                body = None
            if isinstance(body, list):
                answer = [node.answer(r) if isinstance(r, dict) else {} for r in body]
            elif isinstance(body, dict):
                answer = node.answer(body)
            else:
                answer = {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32700, "message": "parse error"},
                }
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # one line per call would drown make run's output
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clearhouse-devchain", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8545)
    p.add_argument("--fund", action="append", default=[], metavar="ADDRESS")
    args = p.parse_args(argv)
    try:
        node = Node()
    except ImportError as exc:
        print(
            f"clearhouse-devchain: needs the dev extra (eth-tester[py-evm]): {exc}", file=sys.stderr
        )
        return 1
    from eth_account import Account

    # From the settings (the environment), not the command line, where `ps` would show it.
    key = Settings.from_env().anchor_private_key
    for address in [*args.fund, *([Account.from_key(key).address] if key else [])]:
        node.fund(address)
        print(f"funded {address}", flush=True)
    server = HTTPServer((args.host, args.port), _handler(node))
    print(
        f"devchain: chain {node.w3.eth.chain_id} on http://{args.host}:{server.server_port}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
