"""Key management: create, rotate and retire the key files; what each key still protects.

The key files live in ``settings.key_dir`` and every process re-reads them
when they change (shared.security.watch), so a rotation needs no restart.
Writes hold the folder's lock and replace a file atomically. Keys given in
the environment (``JWT_PRIVATE_KEY``, ``CARD_KEYS``) are the operator's to
change: the commands refuse and say so.
"""

from __future__ import annotations

from datetime import datetime

from shared.config import Settings, parse_card_keys
from shared.db.uow import UnitOfWork
from shared.domain import keyring as K
from shared.security import card_ring, jwt_ring, keyfiles
from shared.security.signing import load_ring, window_of
from shared.services import card_data
from shared.services.errors import ServiceError


class KeysFromEnvironment(ServiceError):
    """The keys come from the environment: the operator changes them there."""

    code = "keys_from_environment"


# The JWT signing rings: merchant access tokens', and operator tokens' (their own keys).
RINGS = {"merchant": jwt_ring.RING_FILE, "operator": jwt_ring.OPERATOR_RING_FILE}


def _jwt_from_env(settings: Settings, ring: str = "merchant") -> None:
    setting = "JWT_PRIVATE_KEY" if ring == "merchant" else "OPERATOR_JWT_PRIVATE_KEY"
    if settings.jwt_private_key if ring == "merchant" else settings.operator_jwt_private_key:
        raise KeysFromEnvironment(
            f"JWT keys come from {setting}: add the new PRIVATE KEY block at its end"
            " (the last one signs), keep the old key as a PUBLIC KEY block until its tokens"
            f" expire ({window_of(settings).token_ttl_s} s), and restart the API"
        )


def _card_from_env(settings: Settings) -> None:
    if settings.card_keys:
        raise KeysFromEnvironment(
            "card keys come from CARD_KEYS: add the new version at its end"
            " (v<N>:<base64 of 32 random bytes>; the last one is current) and restart every"
            " process; then the re-encrypt job moves the rows to it"
        )


def _load_card_keys(settings: Settings) -> card_ring.CardKeys | None:
    data = keyfiles.read(settings.key_dir, card_ring.KEY_FILE)
    return None if data is None else card_ring.parse(data)


def _load_jwt(settings: Settings, ring_file: str = jwt_ring.RING_FILE) -> jwt_ring.Ring | None:
    # Only the merchant ring had a PEM predecessor.
    legacy = (jwt_ring.LEGACY_FILE,) if ring_file == jwt_ring.RING_FILE else ()
    present = any(
        keyfiles.read(settings.key_dir, name) is not None for name in (ring_file, *legacy)
    )
    return load_ring(settings.key_dir, production=True, ring_file=ring_file) if present else None


def init(settings: Settings, now: datetime) -> dict:
    """Create the key files that are missing (never touching one that exists)."""
    with keyfiles.locked(settings.key_dir):
        return {
            "jwt": _missing_created(
                settings.jwt_private_key and "JWT_PRIVATE_KEY",
                lambda: _load_jwt(settings),
                lambda: _write_jwt(settings, jwt_ring.new_ring(now)),
            ),
            # Operator tokens have a ring of their own (never the merchant keys).
            "operator_jwt": _missing_created(
                settings.operator_jwt_private_key and "OPERATOR_JWT_PRIVATE_KEY",
                lambda: _load_jwt(settings, jwt_ring.OPERATOR_RING_FILE),
                lambda: _write_jwt(settings, jwt_ring.new_ring(now), jwt_ring.OPERATOR_RING_FILE),
            ),
            "card": _missing_created(
                settings.card_keys and "CARD_KEYS",
                lambda: _load_card_keys(settings),
                lambda: _write_card(settings, card_ring.new_keys(now)),
            ),
        }


def _missing_created(env_name: str, load, create) -> str:
    if env_name:
        return f"from {env_name}"
    return "exists" if load() is not None else f"created {create()}"


def _write_jwt(settings: Settings, ring: jwt_ring.Ring, ring_file: str = jwt_ring.RING_FILE) -> str:
    keyfiles.replace(settings.key_dir, ring_file, jwt_ring.to_json(ring))
    return K.signer(ring.entries).kid


def _write_card(settings: Settings, keys: card_ring.CardKeys) -> str:
    keyfiles.replace(settings.key_dir, card_ring.KEY_FILE, card_ring.dump(keys))
    return keys.current


def rotate_jwt(settings: Settings, now: datetime, ring: str = "merchant") -> dict:
    """A new signing key of ``ring`` (RINGS); the old ones verify until their tokens expire."""
    _jwt_from_env(settings, ring)
    ring_file = RINGS[ring]
    window = window_of(settings)
    with keyfiles.locked(settings.key_dir):
        current = _load_jwt(settings, ring_file)
        new = jwt_ring.new_ring(now) if current is None else jwt_ring.rotated(current, now, window)
        _write_jwt(settings, new, ring_file)
    previous = [e for e in new.entries if e.retired_at == now]
    return {
        "kid": K.signer(new.entries).kid,
        "retired_kids": [e.kid for e in previous],
        "retired_verify_until": (
            window.verify_until(previous[0]).isoformat() if previous else None
        ),
    }


def rotate_card(settings: Settings, now: datetime) -> dict:
    """A new current card key version; the re-encrypt job moves every row to it."""
    _card_from_env(settings)
    with keyfiles.locked(settings.key_dir):
        keys = _load_card_keys(settings)
        new = card_ring.new_keys(now) if keys is None else card_ring.rotated(keys, now)
        _write_card(settings, new)
    return {"current_version": new.current, "versions": list(new.keys)}


def retire_card(uow: UnitOfWork, settings: Settings, version: str) -> dict:
    """Remove card key ``version`` if no row still uses it; else refuse with the count."""
    if settings.card_keys:
        versions = list(parse_card_keys(settings.card_keys))
        K.check_card_retirement(versions, version, card_data.rows_using(uow, version))
        raise KeysFromEnvironment(
            f"card keys come from CARD_KEYS: no row uses {version} any more; remove it from"
            " CARD_KEYS and restart every process"
        )
    with keyfiles.locked(settings.key_dir):
        keys = _load_card_keys(settings)
        if keys is None:
            raise ServiceError(f"no {card_ring.KEY_FILE} in CLEARHOUSE_KEY_DIR", "version")
        # Counted under the lock: no rotation can move rows meanwhile. A
        # process that has not seen the current version yet could still
        # write under an old one: retire only after the re-encrypt job ran.
        K.check_card_retirement(list(keys.keys), version, card_data.rows_using(uow, version))
        rest = card_ring.without(keys, version)
        _write_card(settings, rest)
    return {"retired_version": version, "versions": list(rest.keys)}


def status(uow: UnitOfWork, settings: Settings, now: datetime) -> dict:
    """Every key: JWT kids (times, state), card versions (current, rows each protects)."""
    return {"jwt": _jwt_status(settings, now), "card": _card_status(uow, settings)}


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _jwt_status(settings: Settings, now: datetime) -> dict:
    window = window_of(settings)
    ring = jwt_ring.from_pem(settings.jwt_private_key) if settings.jwt_private_key else None
    source = "JWT_PRIVATE_KEY" if ring else "key_dir"
    ring = ring or _load_jwt(settings)
    entries = ring.entries if ring else []
    signing = K.signer(entries).kid if entries else None
    keys = [
        {
            "kid": e.kid,
            "state": _state(e, signing, now, window),
            "created_at": _iso(e.created_at),
            "retired_at": _iso(e.retired_at),
            "verifies_until": _iso(window.verify_until(e)),
        }
        for e in entries
    ]
    return {"source": source, "keys": keys}


def _state(entry: K.KeyEntry, signing: str | None, now: datetime, window: K.Window) -> str:
    if entry.kid == signing or entry.retired_at:
        return K.state(entry, now, window)
    # A PEM ring has no times: its keys other than the signer verify until removed.
    return "verifying"


def _card_status(uow: UnitOfWork, settings: Settings) -> dict:
    if settings.card_keys:
        source, versions, created = "CARD_KEYS", list(parse_card_keys(settings.card_keys)), {}
    else:
        keys = _load_card_keys(settings)
        source = "key_dir"
        versions, created = (list(keys.keys), keys.created) if keys else ([], {})
    counts = card_data.rows_by_version(uow)
    found = {v for per in counts.values() for v in per}
    rows = {
        v: {col: per.get(v, 0) for col, per in counts.items()}
        for v in [*versions, *sorted(found - set(versions))]
    }
    return {
        "source": source,
        "current_version": versions[-1] if versions else None,
        "versions": [
            {
                "version": v,
                "current": bool(versions) and v == versions[-1],
                # A version rows use that no key decrypts: their data is lost
                # to this deployment until that key is put back.
                "known": v in versions,
                "created_at": created.get(v),
                "rows": sum(rows[v].values()),
                "rows_by_column": rows[v],
            }
            for v in rows
        ],
    }
