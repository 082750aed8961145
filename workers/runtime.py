"""Per-process collaborators of the tasks, built once from the settings."""

from __future__ import annotations

from functools import cache

from shared.config import get_settings
from shared.connectors.sandbox import FRAUD_TEST_CARDS, SandboxAcquirer
from shared.db.engine import get_engine
from shared.db.uow import UnitOfWork
from shared.security.vault import Vault


def uow(kind: str = "worker") -> UnitOfWork:
    """A unit of work on this process's engine for ``kind`` (``report``: long scans)."""
    from workers.dispatch import dispatch

    return UnitOfWork(
        get_engine(get_settings().database_url, kind, get_settings().db_timeouts(kind)), dispatch
    )


@cache
def vault() -> Vault:
    return Vault.from_settings(get_settings())


@cache
def acquirer() -> SandboxAcquirer:
    return SandboxAcquirer.from_settings(get_settings())


@cache
def fraud_fingerprints() -> frozenset[str]:
    """Fingerprints of the sandbox's fraud test cards (no card is decrypted)."""
    return frozenset(vault().fingerprint(pan) for pan in FRAUD_TEST_CARDS)
