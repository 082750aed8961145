"""The columns encrypted with the card keys: how many rows each version protects, re-encryption.

Every ciphertext is ``<version>:<base64>`` (shared.security.vault), bound by
AAD to its row: a card token to its intent's id, a webhook endpoint's secrets
(current and previous) to the endpoint's id (or, copied by 0015, to
``secret_aad``, its merchant's id), an operator's TOTP secret to the operator's
id. The merchants' own webhook secrets (unused since 0015, bound to the
merchant's id) are re-encrypted too until a migration drops them.
Re-encryption walks a table in id order, one small transaction per batch,
locking only rows that still need it and skipping rows another transaction
holds (``FOR UPDATE SKIP LOCKED``): the pipeline and the API keep running,
and a skipped row is taken on the next pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Table, and_, func, or_, select, text

from shared.db.tables import merchants, operators, payment_intents, webhook_endpoints
from shared.db.uow import UnitOfWork
from shared.security.vault import VaultError

log = logging.getLogger(__name__)

# (table, column) pairs holding card-key ciphertexts; the AAD is the row's id.
COLUMNS: tuple[tuple[Table, str], ...] = (
    (payment_intents, "card_token"),
    (merchants, "webhook_secret_enc"),
    (merchants, "webhook_secret_prev_enc"),
    (webhook_endpoints, "secret_enc"),
    (webhook_endpoints, "secret_prev_enc"),
    (operators, "totp_secret_enc"),
)
# The tables a pass walks, in order.
TABLES: tuple[Table, ...] = (payment_intents, merchants, webhook_endpoints, operators)
# A column naming the AAD when it is not the row's id (and is not NULL).
AAD_COLUMNS: dict[str, str] = {webhook_endpoints.name: "secret_aad"}


def label(table: Table, column: str) -> str:
    return f"{table.name}.{column}"


def _version(col):
    return func.split_part(col, ":", 1)


def rows_by_version(uow: UnitOfWork) -> dict[str, dict[str, int]]:
    """{"table.column": {version: rows}} over every encrypted column (a full scan of each)."""
    out: dict[str, dict[str, int]] = {}
    for table, name in COLUMNS:
        col = table.c[name]
        query = select(_version(col), func.count()).where(col.is_not(None)).group_by(_version(col))
        out[label(table, name)] = {v: n for v, n in uow.conn.execute(query)}
    return out


def rows_using(uow: UnitOfWork, version: str) -> dict[str, int]:
    """{"table.column": rows} still encrypted under ``version``."""
    prefix = f"{version}:"
    return {
        label(table, name): uow.conn.execute(
            select(func.count()).where(func.starts_with(table.c[name], prefix))
        ).scalar_one()
        for table, name in COLUMNS
    }


@dataclass(frozen=True)
class Batch:
    reencrypted: int
    failed: int
    # The id to go on after; None: the table's end was reached.
    next_after: str | None


def _stale(table: Table, current: str):
    """Rows of ``table`` with a ciphertext under another version than ``current``."""
    prefix = f"{current}:"
    conds = [
        and_(table.c[name].is_not(None), ~func.starts_with(table.c[name], prefix))
        for t, name in COLUMNS
        if t is table
    ]
    return or_(*conds)


def reencrypt_batch(uow: UnitOfWork, vault, table: Table, after: str | None, limit: int) -> Batch:
    """Re-encrypt up to ``limit`` rows of ``table`` past id ``after`` under the current key."""
    names = [name for t, name in COLUMNS if t is table]
    current = vault.current_version
    aad_column = table.c[AAD_COLUMNS[table.name]] if table.name in AAD_COLUMNS else table.c.id
    query = select(table.c.id, aad_column.label("aad"), *(table.c[n] for n in names))
    query = query.where(_stale(table, current))
    if after is not None:
        query = query.where(table.c.id > after)
    query = query.order_by(table.c.id).limit(limit).with_for_update(skip_locked=True)
    rows = uow.conn.execute(query).all()
    updates, failed = [], 0
    for row in rows:
        try:
            values = zip(names, row[2:], strict=True)
            aad = row.aad or row.id
            new = {n: vault.reencrypt(v, aad=aad) if v else v for n, v in values}
        except VaultError as exc:
            # A version this vault does not hold (or a damaged value): left as
            # it is and counted; keys status shows it under its version.
            failed += 1
            log.warning("re-encrypt: %s %s not re-encrypted (%s)", table.name, row.id, exc)
            continue
        updates.append((row.id, *new.values()))
    if updates:
        # One statement for the batch (the rows' new values as arrays): far
        # fewer round trips than an UPDATE per row.
        uow.conn.execute(_update_from_arrays(table, names), _columns(updates, names))
    end = len(rows) < limit
    return Batch(len(updates), failed, None if end else rows[-1].id)


def _update_from_arrays(table: Table, names: list[str]):
    # Names come from COLUMNS, never from input.
    sets = ", ".join(f"{n} = v.{n}" for n in names)
    arrays = ", ".join(f"CAST(:{n} AS text[])" for n in names)
    return text(
        f"UPDATE {table.name} AS t SET {sets}"
        f" FROM unnest(CAST(:ids AS text[]), {arrays}) AS v(id, {', '.join(names)})"
        " WHERE t.id = v.id"
    )


def _columns(updates: list[tuple], names: list[str]) -> dict[str, list]:
    columns = list(zip(*updates, strict=True))
    return {
        "ids": list(columns[0]),
        **{n: list(c) for n, c in zip(names, columns[1:], strict=True)},
    }


def reencrypt_step(
    uow: UnitOfWork, vault, limit: int, cursor: list | None = None
) -> tuple[Batch, bool]:
    """One batch of a re-encrypt pass over every table; the pass goes on in a run of its own.

    ``cursor``: a one-item list holding ``[table name, last id]`` (as the
    settlement scans' cursors are). The next batch is enqueued as step
    ``reencrypt_card_data`` until the last table's end; returns the batch and
    whether the pass is over.
    """
    names = [t.name for t in TABLES]
    name, after = cursor[0] if cursor else (names[0], None)
    index = names.index(name)
    batch = reencrypt_batch(uow, vault, TABLES[index], after, limit)
    following = None
    if batch.next_after is not None:
        following = [name, batch.next_after]
    elif index + 1 < len(names):
        following = [names[index + 1], None]
    if following:
        uow.enqueue("reencrypt_card_data", [following])
    if batch.reencrypted or batch.failed:
        log.info(
            "re-encrypt: %d %s rows moved to card key %s (%d could not be)",
            batch.reencrypted,
            name,
            vault.current_version,
            batch.failed,
        )
    return batch, following is None
