"""Seals anchored on an in-process Ethereum test chain (eth-tester, py-evm): nothing on the network.

Each test owns its database (``ledger_db``), its chain and its funded account.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.connectors.chain import AnchorChain, ChainError
from shared.db.uow import UnitOfWork, transact
from shared.services import anchoring, ledger_verify, seals
from tests.support.sealed import DAY1, DAY2, DAY3, populate, rewrite_history, superuser_sql
from tests.support.testchain import in_process_chain, node_of
from tests.support.units import bound

pytestmark = pytest.mark.integration


def _sealed(engine):
    ids = populate(engine)
    with engine.begin() as conn:
        seals.seal_day(bound(conn), DAY3)
    return ids


def _anchored(engine):
    """(transfer ids, chain): three days sealed, each anchored and mined."""
    ids = _sealed(engine)
    chain = in_process_chain()
    _step(engine, chain), _step(engine, chain)  # sent, then mined (eth-tester mines at once)
    return ids, chain


def _step(engine, chain) -> anchoring.Step:
    # A unit of work of its own, as the beat job's: the sends follow its commit.
    return transact(lambda: UnitOfWork(engine), anchoring.anchor_step, chain)


def _anchors(engine) -> dict:
    with engine.connect() as conn:
        return {r.day: r for r in conn.execute(text("SELECT * FROM ledger_anchors"))}


def _seal_hashes(engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT day, seal_hash FROM ledger_seals")).all())


def _verify(engine, chain) -> anchoring.AnchorReport:
    with engine.connect() as conn:
        return anchoring.verify_anchors(bound(conn), chain)


class DroppingChain(AnchorChain):
    """The node loses what it is sent while ``dropping`` (a node restarted, a pool evicted)."""

    dropping = True

    def broadcast(self, raw: bytes) -> None:
        if not self.dropping:
            super().broadcast(raw)


def test_each_seal_is_anchored_once_with_its_hash_as_the_transactions_data(ledger_db):
    _, engine, _ = ledger_db
    _sealed(engine)
    chain = in_process_chain()
    assert _step(engine, chain).sent == [DAY1, DAY2, DAY3]
    # eth-tester mines each send at once: the next run records the blocks.
    assert _step(engine, chain).mined == [DAY1, DAY2, DAY3]
    again = _step(engine, chain)
    assert (again.sent, again.resent, again.mined) == ([], [], [])
    anchors, hashes = _anchors(engine), _seal_hashes(engine)
    assert sorted(anchors) == [DAY1, DAY2, DAY3]
    for day, row in anchors.items():
        tx = chain.w3.eth.get_transaction(row.tx_hash)
        assert bytes(tx["input"]).hex() == hashes[day] == row.seal_hash
        assert (tx["from"], tx["to"], tx["value"]) == (chain.address, chain.address, 0)
        assert (tx["blockNumber"], row.chain_id, row.sender) == (
            row.block_number,
            chain.chain_id,
            chain.address,
        )
        assert row.mined_at is not None
    assert [anchors[d].nonce for d in (DAY1, DAY2, DAY3)] == [0, 1, 2]
    report = _verify(engine, chain)
    assert (report.problems, report.anchored, report.unanchored) == ([], 3, [])


def test_a_rewrite_that_recomputes_every_seal_is_caught_by_the_anchors(ledger_db):
    _, engine, admin = ledger_db
    ids, chain = _anchored(engine)
    before = _seal_hashes(engine)

    sql = "UPDATE ledger_transfers SET amount = 1 WHERE id = :i"
    rewrite_history(admin, sql, DAY3, i=ids["d1_b"])

    after = _seal_hashes(engine)
    assert all(after[d] != before[d] for d in (DAY1, DAY2, DAY3))  # every seal recomputed
    with engine.connect() as conn:
        assert ledger_verify.verify(bound(conn)).problems == []  # the database alone: unnoticed
    report = _verify(engine, chain)
    assert report.first_difference == DAY1
    anchors = _anchors(engine)
    assert report.problems == [
        f"seal {d}: the chain holds {before[d]}, the stored seal is {after[d]}"
        f" (anchor {anchors[d].tx_hash} in block {anchors[d].block_number})"
        for d in (DAY1, DAY2, DAY3)
    ]


def test_a_changed_transfer_under_unchanged_seals_differs_from_the_recomputed_seal(ledger_db):
    _, engine, admin = ledger_db
    ids, chain = _anchored(engine)
    hashes = _seal_hashes(engine)
    superuser_sql(admin, "UPDATE ledger_transfers SET amount = 51 WHERE id = :i", i=ids["d3_late"])
    report = _verify(engine, chain)
    assert report.first_difference == DAY3
    (problem,) = report.problems
    assert problem.startswith(f"seal {DAY3}: the chain holds {hashes[DAY3]}, the ledger recomputes")


def test_an_anchor_pointed_at_a_transaction_of_another_account_is_named(ledger_db):
    # The attacker also rewrites the anchor row, to a transaction of its own
    # carrying the forged seal: anyone may send data, only our key signs ours.
    _, engine, admin = ledger_db
    _, chain = _anchored(engine)
    forged_hash = _seal_hashes(engine)[DAY2]
    other = chain.w3.eth.accounts[1]
    tx = chain.w3.eth.send_transaction({"from": other, "to": other, "data": "0x" + forged_hash})
    block = chain.w3.eth.wait_for_transaction_receipt(tx)["blockNumber"]
    superuser_sql(
        admin,
        "UPDATE ledger_anchors SET tx_hash = :t, block_number = :b WHERE day = :d",
        t=tx.to_0x_hex(),
        b=block,
        d=DAY2,
    )
    report = _verify(engine, chain)
    assert report.first_difference == DAY2
    assert report.problems == [
        f"seal {DAY2}: anchor {tx.to_0x_hex()} was sent by {other}, not by {chain.address}"
    ]


def test_a_rewrite_that_also_deletes_the_anchors_is_caught_by_the_accounts_nonce(ledger_db):
    # Without its rows every seal would look merely "not anchored yet"; the chain
    # still counts what the account sent.
    _, engine, admin = ledger_db
    ids, chain = _anchored(engine)
    superuser_sql(admin, "DELETE FROM ledger_anchors")
    rewrite_history(admin, "DELETE FROM ledger_transfers WHERE id = :i", DAY3, i=ids["d1_a"])
    report = _verify(engine, chain)
    assert (report.unanchored, report.first_difference) == ([DAY1, DAY2, DAY3], DAY1)
    assert report.problems == [
        f"seal {DAY1}: not anchored, but {chain.address} has sent 3 transactions and 0"
        " anchors are on record: anchors were removed (or the key is used elsewhere)"
    ]


def test_seals_not_yet_anchored_or_mined_are_reported_as_such_not_as_tampering(ledger_db):
    _, engine, _ = ledger_db
    _sealed(engine)
    chain = in_process_chain()
    report = _verify(engine, chain)
    assert (report.problems, report.unanchored, report.anchored) == ([], [DAY1, DAY2, DAY3], 0)
    node_of(chain).disable_auto_mine_transactions()
    assert _step(engine, chain).sent == [DAY1, DAY2, DAY3]
    report = _verify(engine, chain)  # sent, in the node's pool, not in a block
    assert (report.problems, report.unanchored, report.first_difference) == (
        [],
        [DAY1, DAY2, DAY3],
        None,
    )


def test_an_anchor_is_sent_again_until_a_block_holds_it(ledger_db):
    _, engine, _ = ledger_db
    _sealed(engine)
    base = in_process_chain()
    chain = DroppingChain(base.w3, base.account, base.chain_id)
    assert _step(engine, chain).sent == [DAY1, DAY2, DAY3]  # recorded, then lost
    recorded = {d: r.tx_hash for d, r in _anchors(engine).items()}
    assert _step(engine, chain).resent == [DAY1, DAY2, DAY3]  # lost again
    chain.dropping = False
    node_of(chain).disable_auto_mine_transactions()
    # The node takes the first into its pool (eth-tester refuses the next nonces until
    # it is mined; a real node would hold them): none is in a block yet.
    assert _step(engine, chain).resent == [DAY1, DAY2, DAY3]
    assert all(r.block_number is None for r in _anchors(engine).values())
    node_of(chain).mine_blocks()
    step = _step(engine, chain)
    assert (step.mined, step.resent) == ([DAY1], [DAY2, DAY3])
    node_of(chain).enable_auto_mine_transactions()
    mined = step.mined
    for _ in range(3):  # each run sends what is left, and records what was mined
        mined += _step(engine, chain).mined
    assert mined == [DAY1, DAY2, DAY3]
    # The same signed transactions throughout: never two anchors for one seal.
    assert {d: r.tx_hash for d, r in _anchors(engine).items()} == recorded
    assert chain.mined_nonce() == 3 and _verify(engine, chain).problems == []


def test_an_anchor_is_recorded_as_mined_only_under_enough_confirmations(ledger_db):
    # A public chain may drop its newest blocks (a reorganisation): a mined anchor
    # is final in our table, so it waits until ANCHOR_CONFIRMATIONS blocks hold it.
    _, engine, _ = ledger_db
    _sealed(engine)
    base = in_process_chain()
    chain = AnchorChain(base.w3, base.account, base.chain_id, confirmations=4)
    _step(engine, chain)  # three blocks, one per anchor: DAY1's is 3 deep, DAY3's 1
    step = _step(engine, chain)
    assert (step.mined, step.resent) == ([], [])  # in blocks, so neither sent nor signed again
    node_of(chain).mine_blocks(1)
    assert _step(engine, chain).mined == [DAY1]
    node_of(chain).mine_blocks(2)
    assert _step(engine, chain).mined == [DAY2, DAY3]
    assert len({r.tx_hash for r in _anchors(engine).values()}) == 3 and chain.mined_nonce() == 3


def test_an_anchor_whose_nonce_another_transaction_took_is_signed_again(ledger_db):
    _, engine, _ = ledger_db
    _sealed(engine)
    base = in_process_chain()
    chain = DroppingChain(base.w3, base.account, base.chain_id)
    _step(engine, chain)  # nonces 0, 1, 2 recorded, none arrived
    # The same key used elsewhere: its transaction takes nonce 0.
    stray, raw = chain.sign(b"\x01" * 32, 0)
    chain.dropping = False
    chain.broadcast(raw)
    first = _anchors(engine)[DAY1].tx_hash
    step = _step(engine, chain)
    assert step.resent == [DAY1, DAY2, DAY3]
    anchors = _anchors(engine)
    assert anchors[DAY1].tx_hash not in (first, stray) and anchors[DAY1].nonce == 3
    assert _step(engine, chain).mined == [DAY1, DAY2, DAY3]
    assert _verify(engine, chain).problems == []


def test_a_mined_anchor_is_immutable_and_none_is_ever_deleted(ledger_db):
    _, engine, admin = ledger_db
    _, chain = _anchored(engine)
    for sql in (
        "UPDATE ledger_anchors SET block_number = block_number + 1 WHERE day = :d",
        "UPDATE ledger_anchors SET tx_hash = 'x' WHERE day = :d",
        "DELETE FROM ledger_anchors WHERE day = :d",
        "TRUNCATE ledger_anchors",
    ):
        # A superuser, whom no grant stops: the trigger alone refuses.
        with admin.begin() as conn, pytest.raises(DBAPIError, match="immutable once mined"):
            conn.execute(text(sql), {"d": DAY1})
    with engine.begin() as conn, pytest.raises(DBAPIError, match="permission denied"):
        # The app role may not even try to change what an anchor carries.
        conn.execute(text("UPDATE ledger_anchors SET seal_hash = 'x' WHERE day = :d"), {"d": DAY1})
    assert len(_anchors(engine)) == 3


def test_a_pending_anchor_may_change_but_never_the_seal_it_carries(ledger_db):
    _, engine, admin = ledger_db
    _sealed(engine)
    base = in_process_chain()
    _step(engine, DroppingChain(base.w3, base.account, base.chain_id))
    with engine.begin() as conn:  # what a re-sign does
        conn.execute(text("UPDATE ledger_anchors SET nonce = 9 WHERE day = :d"), {"d": DAY1})
    with admin.begin() as conn, pytest.raises(DBAPIError, match="immutable"):
        conn.execute(text("UPDATE ledger_anchors SET seal_hash = 'x' WHERE day = :d"), {"d": DAY1})


def test_a_wrong_chain_id_or_an_unreachable_node_is_a_clear_error():
    chain = in_process_chain()
    with pytest.raises(ChainError, match=r"ANCHOR_CHAIN_ID is 5 but the node is chain \d+"):
        AnchorChain(chain.w3, chain.account, 5).check()
    from web3 import Web3

    away = Web3(Web3.HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 2}))
    with pytest.raises(ChainError, match="cannot reach the node"):
        AnchorChain(away, chain.account, 1).check()


def test_verify_recomputes_from_the_ledger_not_the_recorded_entry_hashes(ledger_db):
    # seals.recompute_seal is what the sealer writes: over an untouched ledger the
    # recomputation is the stored chain, day by day from the genesis hash.
    _, engine, _ = ledger_db
    _sealed(engine)
    hashes = _seal_hashes(engine)
    with engine.connect() as conn:
        prev = "0" * 64
        for day in (DAY1, DAY2, DAY3):
            prev = seals.recompute_seal(bound(conn), day, prev)
            assert prev == hashes[day]


def test_migration_0020_adds_the_anchor_table_and_goes_back(ledger_db):
    # A filled ledger at the head, taken back to the revision before 0020 and up again:
    # seals and transfers stay as they were, the anchors table and its trigger come and go.
    from alembic.script import ScriptDirectory

    from shared.db.migrate import current_revision, downgrade, make_config, upgrade
    from tests.support.scratchdb import admin_url

    scripts = ScriptDirectory.from_config(make_config(url := ledger_db[0]))
    before, head = scripts.get_revision("0020").down_revision, scripts.get_current_head()

    url, engine, _ = ledger_db
    _, chain = _anchored(engine)
    seals_before = _seal_hashes(engine)
    engine.dispose()
    downgrade(admin_url(url), before)
    assert current_revision(admin_url(url)) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('ledger_anchors')")).scalar() is None
    upgrade(admin_url(url))
    assert current_revision(admin_url(url)) == head
    assert _seal_hashes(engine) == seals_before and _anchors(engine) == {}
    assert _step(engine, chain).sent == [DAY1, DAY2, DAY3]  # anchored again, as new
