"""Seal anchors on a public chain: what a transaction carries, and how it is judged (pure).

An anchor is a transaction whose data is a day's seal hash, its 32 raw bytes.
Once mined it is outside our database: a rewrite of the ledger that also
recomputes every seal still leaves the chain holding the old hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


def payload(seal_hash: str) -> bytes:
    """The transaction data that anchors ``seal_hash`` (hex): its raw 32 bytes."""
    data = bytes.fromhex(seal_hash)
    if len(data) != 32:
        raise ValueError(f"a seal hash is 32 bytes, got {len(data)}")
    return data


@dataclass(frozen=True)
class OnChain:
    """An anchor transaction as the chain has it (None fields: not found or not mined)."""

    data: bytes | None
    sender: str | None
    block_number: int | None


def judge(
    day: date,
    stored: str,
    recomputed: str,
    anchor_tx: str,
    anchor_block: int,
    chain: OnChain,
    sender: str,
) -> str | None:
    """What is wrong with one anchored seal, or None.

    ``stored`` is the seal row's hash, ``recomputed`` the seal computed again
    from the ledger as it is now; both must equal what the chain holds, and the
    transaction must come from our anchoring account (anyone may send data).
    """
    where = f"anchor {anchor_tx}"
    if chain.data is None:
        return f"seal {day}: {where} not found on the chain"
    if chain.block_number is None:
        return f"seal {day}: {where} is not mined (block {anchor_block} on record)"
    if chain.block_number != anchor_block:
        return f"seal {day}: {where} is in block {chain.block_number}, not {anchor_block}"
    if (chain.sender or "").lower() != sender.lower():
        return f"seal {day}: {where} was sent by {chain.sender}, not by {sender}"
    held, found = chain.data.hex(), f" ({where} in block {anchor_block})"
    if held != stored:
        return f"seal {day}: the chain holds {held}, the stored seal is {stored}{found}"
    if held != recomputed:
        return f"seal {day}: the chain holds {held}, the ledger recomputes {recomputed}{found}"
    return None


def missing_anchors(unanchored: list[date], sent_on_chain: int, on_record: int, sender: str):
    """A problem when seals look unanchored while the account sent more than is on record.

    Deleting anchor rows would make a rewritten seal look merely "not anchored
    yet"; but the chain counts every transaction the account sent (its nonce),
    and each was an anchor we recorded. More on the chain than on record,
    with seals unanchored, means rows were removed (or the key is used elsewhere).
    """
    if not unanchored or sent_on_chain <= on_record:
        return None
    return (
        f"seal {unanchored[0]}: not anchored, but {sender} has sent {sent_on_chain}"
        f" transactions and {on_record} anchors are on record: anchors were removed"
        " (or the key is used elsewhere)"
    )
