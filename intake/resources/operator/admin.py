"""What the admin's operator resources share: a body check, the resource base."""

from __future__ import annotations

from sqlalchemy import Engine

from shared.config import Settings
from shared.db.uow import UnitOfWork, transact
from shared.domain.validation import ValidationError, reject_unknown, require_object

TAG = "operator"


def fields_check(fields: set[str], required: tuple[str, ...] = ()):
    """A check: an object of ``fields``, each of ``required`` present; the body as given."""

    def check(body: object) -> dict:
        body = require_object(body)
        reject_unknown(body, fields)
        for name in required:
            if body.get(name) is None:
                raise ValidationError(name, f"Missing required param: {name}.", "parameter_missing")
        return body

    return check


class AdminResource:
    """An operator resource with the database, the vault and the settings; admin by default."""

    operator_role = "admin"

    def __init__(self, engine: Engine, vault, settings: Settings):
        self._engine = engine
        self._vault = vault
        self._settings = settings

    def _new_uow(self) -> UnitOfWork:
        return UnitOfWork(self._engine)

    def _run(self, fn, *args):
        return transact(self._new_uow, fn, *args)
