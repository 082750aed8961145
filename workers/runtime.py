"""A worker process's collaborators, built once from the settings by the Celery app."""

from __future__ import annotations

from functools import cached_property

from shared.config import Settings
from shared.connectors.bank import Banks
from shared.connectors.chain import AnchorChain
from shared.connectors.sandbox import SandboxAcquirer, fraud_roles
from shared.db.engine import get_engine
from shared.db.uow import Publish, UnitOfWork
from shared.domain.fraud import SandboxCard
from shared.security.vault import Vault


class Runtime:
    def __init__(self, settings: Settings, publish: Publish):
        self.settings = settings
        self.publish = publish

    def uow(self, kind: str = "worker") -> UnitOfWork:
        """A unit of work on this process's engine for ``kind`` (``report``: long scans)."""
        engine = get_engine(self.settings.database_url, kind, self.settings.db_timeouts(kind))
        return UnitOfWork(engine, self.publish)

    @cached_property
    def vault(self) -> Vault:
        return Vault.from_settings(self.settings)

    @cached_property
    def acquirer(self) -> SandboxAcquirer:
        return SandboxAcquirer.from_settings(self.settings)

    @cached_property
    def anchor_chain(self) -> AnchorChain:
        """The chain seals are anchored on (ChainError when unusable; built again next time)."""
        return AnchorChain.from_settings(self.settings)

    @cached_property
    def banks(self) -> Banks:
        return Banks.from_settings(self.settings)

    @cached_property
    def test_cards(self) -> dict[str, SandboxCard]:
        """The sandbox's test cards by fingerprint (no card is decrypted), with their roles."""
        return {self.vault.fingerprint(pan): role for pan, role in fraud_roles().items()}
