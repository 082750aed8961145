"""``clearhouse dev-certs``: what it writes, refuses and prints; and the peer-certificate helper.

The helper (intake/tls.py) is checked on a real TLS connection over a socket pair:
the server side is the ``ssl.SSLSocket`` gunicorn hands the app as ``gunicorn.socket``.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from cli.main import main
from intake.tls import peer_certificate
from shared.domain.cert_binding import certificate_sha256

FILES = ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["dev-certs", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_dev_certs_writes_a_ca_a_server_and_a_client(tmp_path, capsys):
    status, out, _ = run_cli(capsys, str(tmp_path / "tls"), "--json")
    assert status == 0
    folder = tmp_path / "tls"
    assert all((folder / name).is_file() for name in FILES)
    for key in ("server-key.pem", "client-key.pem", "ca-key.pem"):
        assert (folder / key).stat().st_mode & 0o777 == 0o600, key
    ca, server, client = (_cert(folder / n) for n in ("ca.pem", "server.pem", "client.pem"))
    assert {c.public_key().curve.name for c in (ca, server, client)} == {"secp256r1"}
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed["client_cert_sha256"] == certificate_sha256(client.public_bytes(Encoding.DER))


def test_dev_certs_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    assert run_cli(capsys, str(tmp_path))[0] == 0
    before = (tmp_path / "ca.pem").read_bytes()
    status, _, err = run_cli(capsys, str(tmp_path))
    assert status == 1 and "already exist; --force overwrites them" in err
    assert (tmp_path / "ca.pem").read_bytes() == before
    (tmp_path / "client-key.pem").chmod(0o644)
    status, out, _ = run_cli(capsys, str(tmp_path), "--force")
    assert status == 0 and "client_cert_sha256: " in out
    assert (tmp_path / "ca.pem").read_bytes() != before
    assert (tmp_path / "client-key.pem").stat().st_mode & 0o777 == 0o600


def test_dev_certs_needs_no_settings_not_even_the_tls_ones_it_makes(tmp_path, capsys, monkeypatch):
    # `make run TLS_CLIENT_CA_FILE=var/tls/ca.pem` on a fresh checkout: the CA is not there yet.
    monkeypatch.setenv("TLS_CLIENT_CA_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("CARD_KEYS", "not even valid")
    assert run_cli(capsys, str(tmp_path))[0] == 0


def test_dev_certs_issues_more_clients_from_the_folders_ca(tmp_path, capsys):
    assert run_cli(capsys, str(tmp_path))[0] == 0
    status, out, _ = run_cli(capsys, str(tmp_path), "--client", "shop-2", "--json")
    assert status == 0
    second = _cert(tmp_path / "shop-2.pem")
    second.verify_directly_issued_by(_cert(tmp_path / "ca.pem"))
    assert json.loads(out)["client_cert_sha256"] == certificate_sha256(
        second.public_bytes(Encoding.DER)
    )
    assert run_cli(capsys, str(tmp_path), "--client", "shop-2")[0] == 1  # exists
    assert run_cli(capsys, str(tmp_path), "--client", "../x")[0] == 1


def test_the_peer_certificate_is_read_from_a_real_tls_server_socket(tmp_path, capsys):
    assert run_cli(capsys, str(tmp_path))[0] == 0
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.pem")
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server-key.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    client_ctx.load_cert_chain(tmp_path / "client.pem", tmp_path / "client-key.pem")
    left, right = socket.socketpair()
    done = {}

    def client():
        with client_ctx.wrap_socket(right, server_hostname="localhost") as tls:
            tls.recv(1)  # until the server closes: the handshake is complete on both sides

    thread = threading.Thread(target=client)
    thread.start()
    with server_ctx.wrap_socket(left, server_side=True) as tls:
        done["der"] = peer_certificate({"gunicorn.socket": tls})
    thread.join(10)
    expected = _cert(tmp_path / "client.pem").public_bytes(Encoding.DER)
    assert done["der"] == expected


@pytest.mark.parametrize("environ", [{}, {"gunicorn.socket": None}, {"gunicorn.socket": 3}])
def test_no_tls_socket_means_no_peer_certificate(environ):
    assert peer_certificate(environ) is None
    with socket.socket() as plain:
        assert peer_certificate({"gunicorn.socket": plain}) is None
