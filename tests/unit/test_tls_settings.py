"""TLS settings: read as a set in shared/config.py, and what gunicorn's config makes of them."""

from __future__ import annotations

import runpy
import ssl
from pathlib import Path

import pytest

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TLS = ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE")


@pytest.fixture
def tls_env(monkeypatch):
    for name in TLS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_tls_settings_the_api_is_plain_http(tls_env):
    s = Settings.from_env()
    assert (s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file) == (None, None, None)
    conf = runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))
    assert "certfile" not in conf and "cert_reqs" not in conf


@pytest.mark.parametrize(
    "given, error",
    [
        ({"TLS_CERT_FILE": "s.pem"}, "set both TLS_CERT_FILE and TLS_KEY_FILE"),
        ({"TLS_KEY_FILE": "k.pem"}, "set both TLS_CERT_FILE and TLS_KEY_FILE"),
        ({"TLS_CLIENT_CA_FILE": "ca.pem"}, "TLS_CLIENT_CA_FILE needs TLS_CERT_FILE"),
    ],
)
def test_half_a_tls_setting_is_refused_by_name(tls_env, given, error):
    for name, value in given.items():
        tls_env.setenv(name, value)
    with pytest.raises(ValueError, match=error):
        Settings.from_env()


def test_gunicorn_serves_https_and_requires_client_certificates_when_told(tls_env):
    tls_env.setenv("TLS_CERT_FILE", "server.pem")
    tls_env.setenv("TLS_KEY_FILE", "server-key.pem")
    conf = runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))
    assert (conf["certfile"], conf["keyfile"]) == ("server.pem", "server-key.pem")
    assert conf["do_handshake_on_connect"] is True and "cert_reqs" not in conf
    tls_env.setenv("TLS_CLIENT_CA_FILE", "ca.pem")
    conf = runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))
    assert conf["cert_reqs"] == ssl.CERT_REQUIRED and conf["ca_certs"] == "ca.pem"


def test_gunicorns_context_refuses_anything_older_than_tls_1_2(tls_env):
    conf = runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))

    def lenient_factory():  # a context that would take TLS 1.0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        return context

    context = conf["ssl_context"](None, lenient_factory)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
