"""A server's round files on disk (scryp/server/rounds.py, docs/storage.md §3, protocol §7.8):
``seal_round`` writes a delta round durably but only makes a checkpoint round's files, its
balances the ledger's own records, watched (``CheckpointBalances``); a round staged and never
committed (a crash) is not a round, and the server removes it when it starts.

Method: a real ``Ledger`` from a two-account genesis, a real ``RoundStore`` under tmp_path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from scryp.core import snapshot
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger
from scryp.core.raft import SnapshotMeta
from scryp.core.tx import Transaction
from scryp.server.rounds import TEMPORARY_PREFIX, RoundStore, StagedRound, seal_round

EVERY = 3
A = hashlib.sha256(b"round-store-a").digest()
B = hashlib.sha256(b"round-store-b").digest()
STAMP_MS = 1_700_000_000_000


def ledger() -> Ledger:
    return Ledger.from_genesis(Genesis.from_allocations({A: 2**32 - 11, B: 10}))


def meta_of(round_number: int, led: Ledger) -> SnapshotMeta:
    return SnapshotMeta(round_number, 1, round_number, STAMP_MS, led.state_root())


def pay(led: Ledger, payee: bytes, amount: int) -> None:
    raw = STAMP_MS.to_bytes(8, "big") + amount.to_bytes(4, "big") + payee + B + bytes(64)
    outcomes = led.apply([Transaction.decode(raw)], STAMP_MS, [None])  # vouched for: checked
    assert outcomes[0].accepted


def test_a_checkpoint_written_later_holds_the_seal_the_ledger_moved_on(tmp_path: Path) -> None:
    store = RoundStore(tmp_path)
    led = ledger()
    meta = meta_of(EVERY, led)
    sealed_file = led.balances_file()
    sealing = seal_round(store, meta, EVERY, led, b"")
    assert sealing.unwritten is not None and sealing.accounts == 2
    assert store.rounds() == []  # nothing written yet: the caller writes it
    pay(led, hashlib.sha256(b"new").digest(), 3)  # the ledger moves on meanwhile
    assert led.balances_file() != sealed_file
    store.write(meta, sealing.unwritten)
    assert store.rounds() == [EVERY]
    assert store.read(EVERY, snapshot.BALANCES) == sealed_file  # the round's, not today's


def test_a_delta_round_is_durable_when_sealed(tmp_path: Path) -> None:
    store = RoundStore(tmp_path)
    led = ledger()
    sealing = seal_round(store, meta_of(EVERY + 1, led), EVERY, led, b"")
    assert sealing.unwritten is None and store.rounds() == [EVERY + 1]


def test_a_round_staged_but_never_committed_is_not_a_round(tmp_path: Path) -> None:
    led = ledger()
    meta = meta_of(EVERY, led)
    contents = seal_round(RoundStore(tmp_path), meta, EVERY, led, b"").unwritten
    assert contents is not None
    assert isinstance(RoundStore(tmp_path).stage(meta, contents), StagedRound)
    # The crash: the staged directory stays. The restarted server's store:
    store = RoundStore(tmp_path)
    assert store.rounds() == [] and store.get(EVERY) is None
    assert list(tmp_path.glob(f"{TEMPORARY_PREFIX}*"))
    store.remove_leftovers()
    assert not list(tmp_path.glob(f"{TEMPORARY_PREFIX}*"))
    assert store.write(meta, contents).meta == meta  # the replay writes it again
