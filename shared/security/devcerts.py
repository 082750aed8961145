"""Certificates for local use (``clearhouse dev-certs``): a CA, a server and a client.

The CA signs a server certificate for 127.0.0.1 and localhost and a client
certificate; ``ca-key.pem`` is kept beside them so that more clients can be
issued later (``--client NAME``). Keys are P-256, written 0600. Never for
production: whoever has the folder can mint certificates the API would trust.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.domain.cert_binding import certificate_sha256

BUNDLE = ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1",)
CA_DAYS = 3650
# Apple's and the browsers' ceiling for a leaf certificate's lifetime.
LEAF_DAYS = 825


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "clearhouse dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: str, issuer: x509.Name, key, days: int) -> x509.CertificateBuilder:
    # Valid from an hour ago: a clock a little behind must not reject a new certificate.
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _usage(**allowed: bool) -> x509.KeyUsage:
    return x509.KeyUsage(**{flag: allowed.get(flag, False) for flag in _KEY_USAGES})


def new_ca(common_name: str = "clearhouse dev CA") -> Issued:
    """A self-signed CA that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = _usage(key_cert_sign=True, crl_sign=True)
    cert = (
        _builder(common_name, _name(common_name), key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(ca: Issued, common_name: str, *, server: bool) -> Issued:
    """A leaf certificate signed by ``ca``: for a server (127.0.0.1, localhost) or a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = _usage(digital_signature=True)
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    builder = (
        _builder(common_name, ca.certificate.subject, key, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(aki, critical=False)
    )
    if server:
        names = [x509.DNSName(n) for n in SERVER_NAMES]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [p.name for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} already exist; --force overwrites them")


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # an existing file keeps its old mode otherwise
        f.write(data)


def _save(directory: Path, stem: str, issued: Issued) -> None:
    cert = issued.certificate.public_bytes(serialization.Encoding.PEM)
    key = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(directory / f"{stem}.pem", cert, 0o644)
    _write(directory / f"{stem}-key.pem", key, 0o600)


def sha256_of(issued: Issued) -> str:
    """The certificate's SHA-256 (hex): what a client is bound to."""
    return certificate_sha256(issued.certificate.public_bytes(serialization.Encoding.DER))


def write_bundle(directory: str | os.PathLike, force: bool = False) -> str:
    """Write a new CA, server and client into ``directory``; return the client's SHA-256."""
    folder = Path(directory)
    _refuse_existing([folder / name for name in BUNDLE], force)
    folder.mkdir(parents=True, exist_ok=True)
    ca = new_ca()
    client = issue(ca, "clearhouse dev client", server=False)
    _save(folder, "ca", ca)
    _save(folder, "server", issue(ca, "clearhouse dev server", server=True))
    _save(folder, "client", client)
    return sha256_of(client)


def write_client(directory: str | os.PathLike, name: str, force: bool = False) -> str:
    """Issue one more client (``NAME.pem``, ``NAME-key.pem``) from the folder's CA."""
    folder = Path(directory)
    if not name.replace("-", "").replace("_", "").isalnum() or name in {"ca", "server"}:
        raise ValueError("a client name is letters, digits, - and _ (not ca or server)")
    _refuse_existing([folder / f"{name}.pem", folder / f"{name}-key.pem"], force)
    ca = Issued(
        x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes()),
        serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None),
    )
    client = issue(ca, f"clearhouse dev client {name}", server=False)
    _save(folder, name, client)
    return sha256_of(client)
