"""A server's round files on disk (scryp/server/rounds.py, docs/storage.md §3, protocol §7.8):
a checkpoint round is staged by ``seal_round`` and becomes a round only at ``commit``; a delta
round is durable when ``seal_round`` returns; a crash's staged leftovers are removed at start.

Method: a real ``Ledger`` from a two-account genesis, a real ``RoundStore`` under tmp_path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from scryp.core import snapshot
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger
from scryp.core.raft import SnapshotMeta
from scryp.server.rounds import TEMPORARY_PREFIX, RoundStore, seal_round

EVERY = 3
A = hashlib.sha256(b"round-store-a").digest()
B = hashlib.sha256(b"round-store-b").digest()


def ledger() -> Ledger:
    return Ledger.from_genesis(Genesis.from_allocations({A: 2**32 - 11, B: 10}))


def meta_of(round_number: int, led: Ledger) -> SnapshotMeta:
    return SnapshotMeta(round_number, 1, round_number, round_number * 1_000, led.state_root())


def test_a_checkpoint_is_staged_and_becomes_a_round_only_when_committed(tmp_path: Path) -> None:
    store = RoundStore(tmp_path)
    led = ledger()
    meta = meta_of(EVERY, led)
    sealing = seal_round(store, meta, EVERY, led, b"")
    assert sealing.staged is not None and sealing.accounts == 2
    assert store.get(EVERY) is None and store.rounds() == []  # not a round yet
    stored = store.commit(sealing.staged)
    assert store.get(EVERY) == stored and store.rounds() == [EVERY]
    assert store.read(EVERY, snapshot.BALANCES) == led.balances_file()
    assert not list(tmp_path.glob(f"{TEMPORARY_PREFIX}*"))


def test_a_delta_round_is_durable_when_sealed(tmp_path: Path) -> None:
    store = RoundStore(tmp_path)
    led = ledger()
    sealing = seal_round(store, meta_of(EVERY + 1, led), EVERY, led, b"")
    assert sealing.staged is None and store.rounds() == [EVERY + 1]


def test_a_crash_between_stage_and_commit_leaves_nothing_that_counts(tmp_path: Path) -> None:
    led = ledger()
    meta = meta_of(EVERY, led)
    assert seal_round(RoundStore(tmp_path), meta, EVERY, led, b"").staged is not None
    # The crash: the staged directory stays. The restarted server's store:
    store = RoundStore(tmp_path)
    assert store.rounds() == [] and list(tmp_path.glob(f"{TEMPORARY_PREFIX}*"))
    store.remove_leftovers()
    assert not list(tmp_path.glob(f"{TEMPORARY_PREFIX}*"))
    replayed = ledger()  # the replay seals the same round again, and this time commits it
    sealing = seal_round(store, meta_of(EVERY, replayed), EVERY, replayed, b"")
    assert sealing.staged is not None
    assert store.commit(sealing.staged).meta == meta
