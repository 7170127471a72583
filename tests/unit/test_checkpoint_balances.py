"""A checkpoint's balances written while the ledger moves on (scryp/server/checkpoint_balances.py,
protocol §7.8): the file holds the records as they were at the seal, whatever the ledger wrote
into them meanwhile, and the ledger's own state is untouched by the writing.

Method: a real ``Ledger`` of 200 accounts; chunks of 5 records, so a write spans 144 chunks;
between the writer's chunks the ledger pays (random payers, payees old and new), so its
writes fall before and after the chunk being written; and once with the writer in its own
thread, as a server runs it. Oracle: the ledger's balances file at the seal. Planted-bug check
(2026-12-03): with the ``before_write`` calls removed from ``BalanceTable.transfer``, the
file took the payments made during the write and this test failed.
"""

from __future__ import annotations

import io
import random
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.balances import RECORD_BYTES, TOTAL_SUPPLY
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger
from scryp.core.tx import Transaction
from scryp.server.checkpoint_balances import CheckpointBalances

STAMP_MS = 1_700_000_000_000
ACCOUNTS = 200


def funded(rng: random.Random) -> tuple[Ledger, list[bytes]]:
    ids = sorted(rng.randbytes(32) for _ in range(ACCOUNTS))
    allocation = {account: 1_000 for account in ids[1:]}
    allocation[ids[0]] = TOTAL_SUPPLY - 1_000 * (ACCOUNTS - 1)
    return Ledger.from_genesis(Genesis.from_allocations(allocation)), ids


def payments(rng: random.Random, ids: list[bytes], count: int, stamp_ms: int) -> list[Transaction]:
    txs = []
    for i in range(count):
        payer = rng.choice(ids)
        payee = rng.randbytes(32) if rng.random() < 0.2 else rng.choice(ids)
        if payee == payer:
            continue
        amount = rng.choice([1, 7, 1_000])  # 1,000 may empty an account
        raw = (stamp_ms + i).to_bytes(8, "big") + amount.to_bytes(4, "big") + payee + payer
        txs.append(Transaction.decode(raw + bytes(64)))  # vouched for: applied as checked
    return txs


class Paying:
    """Between the writer's chunks, the ledger applies a few payments."""

    def __init__(self, ledger: Ledger, rng: random.Random, ids: list[bytes]) -> None:
        self.ledger, self.rng, self.ids = ledger, rng, ids
        self.stamp_ms = STAMP_MS

    def __call__(self) -> None:
        self.stamp_ms += 10
        txs = payments(self.rng, self.ids, self.rng.randrange(0, 4), self.stamp_ms)
        self.ledger.apply(txs, self.stamp_ms, [None] * len(txs))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), chunk_records=st.sampled_from([1, 5, 64, 10_000]))
def test_the_file_is_the_seal_whatever_the_ledger_writes_meanwhile(
    seed: int, chunk_records: int
) -> None:
    rng = random.Random(seed)
    ledger, ids = funded(rng)
    before = payments(rng, ids, 50, STAMP_MS - 100_000)
    ledger.apply(before, STAMP_MS - 100_000, [None] * len(before))
    sealed = ledger.balances_file()
    balances = CheckpointBalances.of(ledger, chunk_bytes=chunk_records * RECORD_BYTES)
    assert len(balances) == len(sealed)
    out, paying = io.BytesIO(), Paying(ledger, rng, ids)
    balances.write_to(out, paying)
    ledger.unwatch(balances)
    assert out.getvalue() == sealed
    ledger.check()  # and the ledger itself took every payment as usual
    after = payments(rng, ids, 20, paying.stamp_ms + 100)
    ledger.apply(after, paying.stamp_ms + 100, [None] * len(after))
    ledger.check()


def test_a_compaction_during_the_write_leaves_the_sealed_records_alone() -> None:
    rng = random.Random(5)
    ledger, ids = funded(rng)
    sealed = ledger.balances_file()
    balances = CheckpointBalances.of(ledger, chunk_bytes=10 * RECORD_BYTES)
    txs = payments(rng, ids, 40, STAMP_MS)
    ledger.apply(txs, STAMP_MS, [None] * len(txs))
    ledger.balances_file()  # compacts into new records: the watched ones never change again
    txs = payments(rng, ids, 40, STAMP_MS + 1_000)
    ledger.apply(txs, STAMP_MS + 1_000, [None] * len(txs))
    out = io.BytesIO()
    balances.write_to(out)
    assert out.getvalue() == sealed


def test_a_writer_in_its_own_thread_while_the_ledger_pays() -> None:
    rng = random.Random(11)
    ledger, ids = funded(rng)
    sealed = ledger.balances_file()
    balances = CheckpointBalances.of(ledger, chunk_bytes=3 * RECORD_BYTES)
    out = io.BytesIO()
    writer = threading.Thread(target=balances.write_to, args=(out,))
    paying = Paying(ledger, rng, ids)
    writer.start()
    for _ in range(2_000):  # bounded; usually outlasts the write
        paying()
        if not writer.is_alive():
            break
    writer.join(timeout=60)
    assert not writer.is_alive()
    assert out.getvalue() == sealed
    ledger.check()
