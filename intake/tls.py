"""The TLS client certificate of the connection a request came over.

gunicorn hands the application its connection as ``environ["gunicorn.socket"]``:
an ``ssl.SSLSocket`` when it serves HTTPS (TLS_CERT_FILE). The client presents
a certificate only when the server asks for one (TLS_CLIENT_CA_FILE); a proxy
that ends TLS in front of gunicorn hides it, and binding then always fails.
"""

from __future__ import annotations

import ssl

SOCKET_KEY = "gunicorn.socket"


def peer_certificate(environ: dict) -> bytes | None:
    """DER bytes of the client's certificate; None over plain HTTP or without one."""
    sock = environ.get(SOCKET_KEY)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        return sock.getpeercert(binary_form=True)
    except (ValueError, OSError):  # the handshake never finished, or the socket is closed
        return None
