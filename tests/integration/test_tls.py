"""TLS for the API: a real gunicorn with deploy/gunicorn.conf.py, real TLS clients.

Certificates come from the real CLI (``clearhouse dev-certs``): one folder whose CA
the API trusts for client certificates (its client, and a second client of the
same CA), and a folder of another CA. The API runs with TLS_CERT_FILE,
TLS_KEY_FILE and TLS_CLIENT_CA_FILE. A refused client must fail in the TLS
handshake: in TLS 1.2 the client's connect fails; in TLS 1.3 the client sends its
certificate after its side of the handshake is done (RFC 8446 §4.4.2), so the
server's alert arrives at the first read; in neither does a byte of HTTP come back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest
import requests
from clearhouse_client import APIConnectionError, AuthenticationError, Client

from intake.app import create_app
from shared.domain.cert_binding import confirmation, normalize_sha256
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_access_token
from shared.services.clients import create_client
from tests.conftest import free_port, python_bin
from tests.support import locust_runs, processes
from tests.support.apiclient import OwnAddressClient
from tests.support.processes import ROOT, Process
from tests.support.waiting import until

pytestmark = pytest.mark.integration

V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def dev_certs(directory: Path, *args: str) -> dict:
    """``clearhouse dev-certs DIR --json [args]``, as a developer runs it."""
    out = subprocess.run(
        [python_bin("clearhouse"), "dev-certs", str(directory), "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pair(folder: Path, name: str) -> tuple[str, str]:
    return str(folder / f"{name}.pem"), str(folder / f"{name}-key.pem")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    ours, other = tmp_path_factory.mktemp("tls"), tmp_path_factory.mktemp("other-ca")
    first = dev_certs(ours)
    second = dev_certs(ours, "--client", "second")
    dev_certs(other)
    return SimpleNamespace(
        dir=ours,
        ca=str(ours / "ca.pem"),
        other_ca=str(other / "ca.pem"),
        client=_pair(ours, "client"),
        second=_pair(ours, "second"),
        other=_pair(other, "client"),
        client_sha256=first["client_cert_sha256"],
        second_sha256=second["client_cert_sha256"],
    )


@pytest.fixture(scope="module")
def api(certs, database):
    env = {
        "TLS_CERT_FILE": str(certs.dir / "server.pem"),
        "TLS_KEY_FILE": str(certs.dir / "server-key.pem"),
        "TLS_CLIENT_CA_FILE": certs.ca,
    }
    tls = {"verify": certs.ca, "cert": certs.client}
    with processes.gunicorn(free_port(), workers=1, env=env, tls=tls) as p:
        p.port = int(p.url.rsplit(":", 1)[1])
        yield p


def attempt(port, ca, cert=None, version=None, host="127.0.0.1", ciphers=None, request=True):
    """One TLS connection and ``GET /health`` (unless not ``request``), told as (stage, result).

    ("connect", error): the handshake failed; ("read", error): the server's alert came
    at the first read; ("answer", bytes): what the server sent back. Refused clients
    send no request: a server that closes with a request unread resets the connection,
    and the reset may overtake its alert.
    """
    context = ssl.create_default_context(cafile=ca)
    if ciphers:
        context.set_ciphers(ciphers)
    if version:
        context.minimum_version = context.maximum_version = version
    if cert:
        context.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        tls = context.wrap_socket(raw, server_hostname=host)
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        return "connect", exc
    with tls:
        try:
            if request:
                tls.sendall(b"GET /health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
        except (ssl.SSLError, OSError) as exc:
            return "read", exc
    return "answer", b"".join(chunks)


def _refused(stage_result, alert: str, stages=("connect", "read")) -> None:
    stage, result = stage_result
    assert stage in stages, (stage, result)  # never an HTTP answer
    assert alert in str(result), result


def test_a_client_without_a_certificate_is_refused_in_the_handshake(api, certs):
    _refused(attempt(api.port, certs.ca, version=V12), "HANDSHAKE_FAILURE", ("connect",))
    _refused(attempt(api.port, certs.ca, version=V13, request=False), "CERTIFICATE_REQUIRED")
    # What an HTTP library sees: a TLS error or a reset, never a status code.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{api.url}/health", verify=certs.ca, timeout=10)
    api.wait_for("Invalid request from ip=127.0.0.1: [SSL: ", timeout=10)  # gunicorn's warning


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(api, certs):
    _refused(attempt(api.port, certs.ca, certs.other, version=V12), "UNKNOWN_CA", ("connect",))
    _refused(attempt(api.port, certs.ca, certs.other, V13, request=False), "UNKNOWN_CA")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{api.url}/health", verify=certs.ca, cert=certs.other, timeout=10)


def test_the_server_certificate_is_good_for_127_0_0_1_and_localhost_and_tls_1_2_up(api, certs):
    for host in ("127.0.0.1", "localhost"):
        for version in (V12, V13):
            stage, answer = attempt(api.port, certs.ca, certs.client, version, host=host)
            assert stage == "answer" and answer.startswith(b"HTTP/1.1 200 "), (host, answer)
    stage, error = attempt(api.port, certs.ca, certs.client, host="clearhouse.example")
    assert stage == "connect" and isinstance(error, ssl.SSLCertVerificationError)
    stage, error = attempt(api.port, certs.other_ca, certs.client)  # another CA's trust store
    assert stage == "connect" and isinstance(error, ssl.SSLCertVerificationError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1_1
        old = attempt(
            api.port, certs.ca, certs.client, ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0"
        )
    _refused(old, "PROTOCOL_VERSION", ("connect",))  # the server's alert: TLS 1.1 is refused
    local = requests.get(f"https://localhost:{api.port}/health", verify=certs.ca, cert=certs.client)
    assert local.status_code == 200


def _session(certs, cert) -> requests.Session:
    session = requests.Session()
    # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment would win over session.verify
    # (psf/requests#3829, kept until requests 3): this session trusts only the dev CA.
    session.trust_env = False
    session.verify, session.cert = certs.ca, cert
    return session


def _token(session, api, merchant, **body) -> requests.Response:
    credentials = {"client_id": merchant["client_id"], "client_secret": merchant["client_secret"]}
    body = {"grant_type": "client_credentials", **credentials, **body}
    return session.post(f"{api.url}/v1/oauth/token", json=body, timeout=10)


def _balance(session, api, token: str) -> requests.Response:
    auth = {"Authorization": f"Bearer {token}"}
    return session.get(f"{api.url}/v1/balance", headers=auth, timeout=10)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_a_good_certificate_gets_health_and_a_token_flow(api, certs, make_merchant):
    session = _session(certs, certs.client)
    assert session.get(f"{api.url}/health", timeout=10).status_code == 200
    assert requests.get(api.metrics_url, timeout=10).status_code == 200  # operator port: plain
    merchant = make_merchant()
    issued = _token(session, api, merchant)
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    assert "cnf" not in _claims(token)  # the client is not bound to a certificate
    assert _balance(session, api, token).status_code == 200
    # Unbound: any certificate the CA signed will do, for the token and for a refresh.
    other = _session(certs, certs.second)
    assert _balance(other, api, token).status_code == 200
    refresh = {"grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"]}
    refreshed = _token(other, api, merchant, **refresh)
    assert refreshed.status_code == 200, refreshed.text


def _thumbprint(cert_file: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(cert_file).read_text())
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@pytest.fixture
def bound_merchant(make_merchant, uow, certs):
    """A merchant whose client is bound to the good client certificate (--cert-sha256)."""
    merchant = make_merchant()
    with uow() as unit:
        bound = create_client(
            unit, merchant["merchant_id"], cert_sha256=normalize_sha256(certs.client_sha256.upper())
        )
        unit.commit()
    return {**merchant, "client_id": bound["client_id"], "client_secret": bound["client_secret"]}


def test_a_bound_clients_token_works_only_over_its_certificate(api, certs, bound_merchant):
    own, other = _session(certs, certs.client), _session(certs, certs.second)
    issued = _token(own, api, bound_merchant)
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    # The peer certificate gunicorn's socket saw is the one the client presented.
    assert _claims(token)["cnf"] == {"x5t#S256": _thumbprint(certs.client[0])}
    assert _balance(own, api, token).status_code == 200

    refused = _balance(other, api, token)  # valid certificate of the same CA, not the bound one
    assert refused.status_code == 401, refused.text
    assert refused.json()["code"] == "invalid_token"
    assert "certificate mismatch" in refused.json()["detail"]
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_a_bound_client_gets_no_token_over_another_certificate(api, certs, bound_merchant):
    own, other = _session(certs, certs.client), _session(certs, certs.second)
    refused = _token(other, api, bound_merchant)
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_client"
    # Nor a refresh: and the refused attempt spent nothing, the token still rotates.
    refresh_token = _token(own, api, bound_merchant).json()["refresh_token"]
    refresh = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    refused = _token(other, api, bound_merchant, **refresh)
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_client"
    rotated = _token(own, api, bound_merchant, **refresh)
    assert rotated.status_code == 200, rotated.text
    assert _claims(rotated.json()["access_token"])["cnf"]["x5t#S256"] == _thumbprint(
        certs.client[0]
    )


def test_the_sdk_speaks_https_with_the_dev_ca_and_a_bound_client_certificate(
    api, certs, bound_merchant, tmp_path
):
    def sdk(**tls) -> Client:
        creds = (bound_merchant["client_id"], bound_merchant["client_secret"])
        return Client(*creds, api.url, max_retries=0, offline_path=tmp_path / "q", **tls)

    own = {"client_cert": certs.client[0], "client_key": certs.client[1]}
    # The certificate-bound client: its token and every call over its own certificate.
    assert sdk(ca_file=certs.ca, **own).balance.retrieve().object == "balance"
    assert sdk(verify=False, **own).balance.retrieve().object == "balance"
    for refused in (
        sdk(ca_file=certs.ca),  # no client certificate: the handshake fails
        sdk(**own),  # the system's CAs do not know the dev CA
        sdk(ca_file=certs.other_ca, **own),
    ):
        with pytest.raises(APIConnectionError):
            refused.balance.retrieve()
    second = {"client_cert": certs.second[0], "client_key": certs.second[1]}
    with pytest.raises(AuthenticationError) as caught:  # same CA, not the bound certificate
        sdk(ca_file=certs.ca, **second).balance.retrieve()
    assert caught.value.code == "invalid_client"


def test_without_tls_a_bound_client_and_a_bound_token_are_refused(
    settings, engine, certs, bound_merchant
):
    # In-process (no socket at all: what a proxy ending TLS in front of the API looks like).
    keys = SigningKeys.from_settings(settings)
    client = OwnAddressClient(create_app(settings, engine=engine, keys=keys))
    body = {
        "grant_type": "client_credentials",
        **{k: bound_merchant[k] for k in ("client_id", "client_secret")},
    }
    refused = client.simulate_post("/v1/oauth/token", json=body)
    assert refused.status_code == 401 and refused.json["code"] == "invalid_client"
    token, _ = issue_access_token(
        keys,
        settings,
        bound_merchant["merchant_id"],
        bound_merchant["client_id"],
        "balance:read",
        cnf=confirmation(certs.client_sha256),
    )
    auth = {"Authorization": f"Bearer {token}"}
    refused = client.simulate_get("/v1/balance", headers=auth)
    assert refused.status_code == 401 and "certificate mismatch" in refused.json["detail"]


# --- make run and make locust -------------------------------------------------------------


def _procfile_api(tmp_path: Path) -> Path:
    """deploy/Procfile's own api line, with this interpreter's bin folder for .venv/bin."""
    line = next(
        line
        for line in (ROOT / "deploy/Procfile").read_text().splitlines()
        if line.startswith("api:")
    )
    procfile = tmp_path / "Procfile"
    procfile.write_text(line.replace(".venv/bin/", str(Path(sys.executable).parent) + "/") + "\n")
    return procfile


def _healthy(url: str, ca: Path, cert=None) -> bool:
    try:
        return requests.get(url, verify=str(ca), cert=cert, timeout=1).status_code == 200
    except (requests.RequestException, OSError):
        return False


def test_make_runs_start_up_makes_dev_certificates_and_serves_https(tmp_path, database):
    tls_dir = tmp_path / "tls"
    ca, client = tls_dir / "ca.pem", _pair(tls_dir, "client")
    env = {
        "BIN": str(Path(sys.executable).parent),
        "PROCFILE": str(_procfile_api(tmp_path)),
        "TLS_DIR": str(tls_dir),
        "METRICS_PORT": str(free_port()),
        "METRICS_DIR": str(tmp_path / "metrics"),
        "WEB_CONCURRENCY": "1",
        **dict.fromkeys(("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"), ""),
    }

    def start(port: int, **more: str) -> Process:
        return Process(
            "make-run", ["bash", "deploy/dev/run.sh", "api"], {**env, **more, "PORT": str(port)}
        )

    port = free_port()
    url = f"https://127.0.0.1:{port}/health"
    with start(port) as run:  # no certificates yet; no client certificate asked for
        until(lambda: _healthy(url, ca), timeout=60, what=lambda: f"{url}:\n{run.output()[-3000:]}")
        with pytest.raises(requests.ConnectionError):  # plain HTTP gets nothing
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    assert "client_cert_sha256: " in run.output()
    assert (tls_dir / "server-key.pem").stat().st_mode & 0o777 == 0o600

    # Started again (make run TLS_CLIENT_CA_FILE=var/tls/ca.pem): the same certificates (a
    # bound client's fingerprint stays true), and now the dev client certificate is required.
    before = ca.read_bytes()
    port = free_port()
    url = f"https://127.0.0.1:{port}/health"
    with start(port, TLS_CLIENT_CA_FILE=str(ca)) as again:
        until(lambda: _healthy(url, ca, client), timeout=60, what=lambda: again.output()[-3000:])
        assert not _healthy(url, ca)
    assert "client_cert_sha256" not in again.output()
    assert ca.read_bytes() == before


def test_make_locust_runs_over_https_with_the_dev_ca_and_a_client_certificate(
    api, certs, worker, tmp_path
):
    out, output, rows = locust_runs.run_script(
        api.url,
        tmp_path / "locust",
        timeout=120,
        TLS_DIR=str(certs.dir),  # ca.pem, client.pem and client-key.pem by default
        LOCUST_USERS="2",
        LOCUST_SPAWN_RATE="2",
        LOCUST_RUN_TIME="5s",
        LOCUST_STOP_TIMEOUT="20",
    )
    assert out.returncode == 0, output[-5000:]
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0, output[-5000:]
    for key in [("POST", "/v1/oauth/token"), ("FLOW", "intent reaches a final status")]:
        assert locust_runs.request_count(rows, key) > 0, (key, sorted(rows))
