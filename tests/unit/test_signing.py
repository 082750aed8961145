"""Ed25519 JWT signing: roundtrip, forgeries, rotation, JWKS."""

import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat

from shared.config import Settings
from shared.security.signing import InvalidToken, SigningKeys, generate_pem, thumbprint
from shared.security.tokens import (
    hash_secret,
    issue_access_token,
    new_refresh_token,
    verify_secret,
)

AUD, ISS = "clearhouse-api", "clearhouse"


@pytest.fixture
def settings(tmp_path):
    return Settings().replace(key_dir=str(tmp_path / "keys"))


@pytest.fixture
def keys(settings):
    return SigningKeys.from_settings(settings)


def claims(**over):
    now = int(time.time())
    base = {"sub": "mch_1", "iss": ISS, "aud": AUD, "scope": "balance:read"}
    base.update(iat=now, exp=now + 600)
    base.update(over)
    return base


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, secret: bytes | None) -> str:
    """Build a JWT by hand, as an attacker would (PyJWT refuses some of these)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    sig = b""
    if secret is not None:
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


def verify(keys, token, **kw):
    return keys.verify(token, audience=kw.get("audience", AUD), issuer=kw.get("issuer", ISS))


def reason(keys, token, **kw) -> str:
    with pytest.raises(InvalidToken) as info:
        verify(keys, token, **kw)
    return info.value.reason


def test_roundtrip_and_header(keys):
    token = keys.sign(claims())
    assert verify(keys, token)["sub"] == "mch_1"
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == keys.kid


def test_key_file_created_once_private(settings, keys):
    path = os.path.join(settings.key_dir, "jwt_keys.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.key_dir).st_mode) == 0o700
    (entry,) = json.loads(Path(path).read_text())["keys"]
    assert entry["kid"] == keys.kid and entry["retired_at"] is None
    assert SigningKeys.from_pem(entry["private_key"]).kid == keys.kid


def test_a_legacy_pem_key_file_still_loads(settings):
    pem = generate_pem()
    os.makedirs(settings.key_dir)
    Path(settings.key_dir, "jwt_ed25519.pem").write_bytes(pem)
    keys = SigningKeys.from_settings(settings)
    assert keys.kid == SigningKeys.from_pem(pem).kid
    assert os.listdir(settings.key_dir) == ["jwt_ed25519.pem"]  # nothing generated


def test_configured_key_takes_precedence(settings, monkeypatch):
    pem = generate_pem().decode()
    # Escaped newlines, as env files and secret stores often carry PEM.
    monkeypatch.setenv("JWT_PRIVATE_KEY", pem.replace("\n", "\\n"))
    keys = SigningKeys.from_settings(Settings.from_env(key_dir=settings.key_dir))
    assert keys.kid == SigningKeys.from_pem(pem).kid
    assert not os.path.exists(settings.key_dir)
    assert SigningKeys.from_settings(settings.replace(jwt_private_key=pem)).kid == keys.kid


def test_signing_keys_never_read_the_environment(settings, monkeypatch):
    monkeypatch.setenv("JWT_PRIVATE_KEY", generate_pem().decode())
    SigningKeys.from_settings(settings)  # from key_dir: the settings hold no key
    assert os.path.exists(os.path.join(settings.key_dir, "jwt_keys.json"))


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


GARBLED = "-----BEGIN PRIVATE KEY-----\nAAAAbm90IGEga2V5\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("pem", [_ec_pem(), GARBLED], ids=["not-ed25519", "garbled"])
def test_an_unusable_configured_key_names_the_setting_never_its_material(settings, pem):
    with pytest.raises(ValueError, match="setting JWT_PRIVATE_KEY holds no usable key") as info:
        SigningKeys.from_settings(settings.replace(jwt_private_key=pem))
    body = pem.splitlines()[1]
    assert body not in str(info.value)


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c", "x" * 50])
def test_missing_or_garbled(keys, token):
    assert reason(keys, token) in {"missing token", "malformed token"}


def test_expired(keys):
    now = int(time.time())
    assert reason(keys, keys.sign(claims(iat=now - 1000, exp=now - 10))) == "token expired"


def test_a_token_verified_before_is_refused_once_it_expires(keys, monkeypatch):
    from shared.security import signing

    token = keys.sign(claims(exp=int(time.time()) + 60))
    first = verify(keys, token)
    first["sub"] = "changed by a caller"  # callers get copies of what is remembered
    assert verify(keys, token)["sub"] == "mch_1"
    monkeypatch.setattr(signing, "_epoch", lambda: time.time() + 61)
    assert reason(keys, token) == "token expired"


def test_tampered_payload(keys):
    header, _, sig = keys.sign(claims()).split(".")
    evil = b64url(json.dumps(claims(sub="mch_2")).encode())
    assert reason(keys, f"{header}.{evil}.{sig}") == "bad signature"


def test_alg_none_rejected(keys):
    token = jwt.encode(claims(), None, algorithm="none", headers={"kid": keys.kid})
    assert reason(keys, token) == "unsupported algorithm"
    assert reason(keys, forge({"alg": "none", "kid": keys.kid}, claims(), None))


def test_hs256_with_public_key_as_secret_rejected(keys):
    # The classic key-confusion attack: the public key is public, so an HMAC
    # "signed" with it must not be accepted, whether raw bytes or PEM.
    x = base64.urlsafe_b64decode(keys.jwks()["keys"][0]["x"] + "=")
    pem = Ed25519PublicKey.from_public_bytes(x).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (x, pem):
        token = forge({"alg": "HS256", "typ": "JWT", "kid": keys.kid}, claims(), secret)
        assert reason(keys, token) == "unsupported algorithm"


def test_unknown_kid(keys):
    other = SigningKeys.from_pem(generate_pem())
    assert reason(keys, other.sign(claims())) == "unknown key id"
    # Right kid, wrong key: the signature does not verify.
    header = b64url(json.dumps({"alg": "EdDSA", "kid": keys.kid}).encode())
    _, payload, sig = other.sign(claims()).split(".")
    assert reason(keys, f"{header}.{payload}.{sig}") == "bad signature"


def test_wrong_audience_and_issuer(keys):
    assert reason(keys, keys.sign(claims(aud="someone-else"))) == "wrong audience"
    assert reason(keys, keys.sign(claims(iss="evil"))) == "wrong issuer"


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud", "scope"])
def test_missing_required_claim(keys, claim):
    body = claims()
    del body[claim]
    assert reason(keys, keys.sign(body)) == f"missing claim: {claim}"


def test_jwks_shape_and_generic_pyjwk(keys):
    jwks = keys.jwks()
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert jwk["kid"] == keys.kid
    # A relying party using plain PyJWT and only the published JWKS can verify.
    key = jwt.PyJWKSet.from_dict(jwks)[keys.kid]
    decoded = jwt.decode(keys.sign(claims()), key, algorithms=["EdDSA"], audience=AUD)
    assert decoded["sub"] == "mch_1"


def test_kid_is_rfc7638_thumbprint(keys):
    jwk = keys.jwks()["keys"][0]
    members = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    canonical = json.dumps(members, separators=(",", ":"))
    assert jwk["kid"] == b64url(hashlib.sha256(canonical.encode()).digest())


def test_thumbprint_matches_rfc8037_example():
    # RFC 8037 appendix A.3: the Ed25519 example key and its RFC 7638 thumbprint.
    x = base64.urlsafe_b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    assert thumbprint(Ed25519PublicKey.from_public_bytes(x)) == (
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    )


def test_rotation_old_tokens_still_verify():
    old_pem, new_pem = generate_pem(), generate_pem()
    old = SigningKeys.from_pem(old_pem)
    old_token = old.sign(claims())
    rotated = SigningKeys.from_pem(old_pem + new_pem)
    assert rotated.kid != old.kid
    assert {k["kid"] for k in rotated.jwks()["keys"]} == {old.kid, rotated.kid}
    assert verify(rotated, old_token)["sub"] == "mch_1"
    assert jwt.get_unverified_header(rotated.sign(claims()))["kid"] == rotated.kid
    # Retired key kept only as a PUBLIC KEY block: verifies, never signs.
    public_pem = (
        serialization.load_pem_private_key(old_pem, None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    retired = SigningKeys.from_pem(public_pem + new_pem)
    assert verify(retired, old_token)["sub"] == "mch_1"


def test_issue_access_token(keys, settings):
    token, expires_in = issue_access_token(keys, settings, 42, "cli_1", "refunds:read balance:read")
    assert expires_in == 900
    body = verify(keys, token, audience=settings.jwt_audience, issuer=settings.jwt_issuer)
    assert (
        body["sub"] == "42"
        and body["client_id"] == "cli_1"
        and body["scope"] == "refunds:read balance:read"
    )
    assert body["exp"] - body["iat"] == 900 and body["nbf"] == body["iat"] and body["jti"]
    long = settings.replace(access_token_ttl_s=3600)
    assert issue_access_token(keys, long, "m", "c", "balance:read")[1] == 900
    _, short = issue_access_token(
        keys, settings.replace(access_token_ttl_s=60), "m", "c", "balance:read"
    )
    assert short == 60


def test_refresh_tokens_and_hashing():
    a, b = new_refresh_token(), new_refresh_token()
    assert a != b and a.startswith("rt_") and len(a) == 3 + 43
    h = hash_secret(a)
    assert len(h) == 64 and h == hashlib.sha256(a.encode()).hexdigest()
    assert verify_secret(a, h)
    assert not verify_secret(b, h)
    assert not verify_secret("", h) and not verify_secret(a, "") and not verify_secret(a, "é")
