"""``clearhouse dev-certs DIR``: a CA, a server and a client certificate for local use."""

from __future__ import annotations

import json

GROUPS = ("dev-certs",)


def add_parsers(sub) -> None:
    """Add ``dev-certs`` to the main parser's subcommands."""
    d = sub.add_parser(
        "dev-certs",
        help="write ca.pem, server.pem, server-key.pem, client.pem, client-key.pem (local use)",
    )
    d.add_argument("directory", metavar="DIR")
    d.add_argument("--force", action="store_true", help="overwrite files that exist")
    d.add_argument(
        "--client",
        metavar="NAME",
        help="only issue another client (NAME.pem, NAME-key.pem) from DIR's CA",
    )
    d.add_argument("--json", action="store_true", help="one line of JSON")


def run(args) -> int:
    """Write the files; print where, and the client certificate's SHA-256."""
    from shared.security import devcerts

    if args.client:
        digest = devcerts.write_client(args.directory, args.client, args.force)
        name = args.client
    else:
        digest = devcerts.write_bundle(args.directory, args.force)
        name = "client"
    out = {
        "directory": args.directory,
        "client_cert": f"{args.directory}/{name}.pem",
        "client_key": f"{args.directory}/{name}-key.pem",
        "client_cert_sha256": digest,
    }
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0
