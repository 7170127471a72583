"""The Raft write-ahead log on a real filesystem: round trips, torn tails, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from scryp.core.raft.entries import Entry, NoOp, Payments, Seal, SnapshotMeta
from scryp.core.raft.ready import HardState
from scryp.errors import ConfigError
from scryp.raftstore import RaftStore

GENESIS = b"\x11" * 32


def entry(index: int, term: int = 1, txs: int = 0) -> Entry:
    payload: NoOp | Payments = Payments(txs=(bytes([index % 256]) * 140,) * txs) if txs else NoOp()
    return Entry(term=term, index=index, stamp_ms=1000 + index, payload=payload)


def reopen(path: Path) -> RaftStore:
    store = RaftStore(path, GENESIS)
    store.load()
    return store


def test_fresh_store_starts_at_genesis(tmp_path: Path) -> None:
    persisted = RaftStore(tmp_path, GENESIS).load()
    assert persisted.hard_state == HardState(term=0, voted_for=None, committed=0)
    assert persisted.snapshot == SnapshotMeta(0, 0, 0, 0, GENESIS)
    assert persisted.entries == []


def test_entries_and_hard_state_survive_a_restart(tmp_path: Path) -> None:
    store = RaftStore(tmp_path, GENESIS)
    store.load()
    store.save(HardState(1, 2, 0), None, [entry(1), entry(2, txs=3)])
    store.save(HardState(1, 2, 2), None, [])
    store.save(None, None, [entry(3)])
    persisted = RaftStore(tmp_path, GENESIS).load()
    assert persisted.hard_state == HardState(1, 2, 2)
    assert persisted.entries == [entry(1), entry(2, txs=3), entry(3)]


def test_a_conflicting_suffix_is_replaced(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    store.save(HardState(1, 0, 0), None, [entry(1), entry(2), entry(3)])
    store.save(HardState(2, 1, 1), None, [entry(2, term=2)])
    assert RaftStore(tmp_path, GENESIS).load().entries == [entry(1), entry(2, term=2)]


def test_a_gap_is_refused(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    with pytest.raises(ConfigError, match="gap"):
        store.save(None, None, [entry(2)])


def test_snapshot_keeps_the_matching_suffix_and_compacts_the_file(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    store.save(HardState(1, 0, 3), None, [entry(i, txs=10) for i in range(1, 6)])
    size_before = store.path.stat().st_size
    seal = SnapshotMeta(index=3, term=1, round=1, stamp_ms=1003, state_root=b"\x22" * 32)
    store.save(None, seal, [])
    assert store.path.stat().st_size < size_before
    persisted = RaftStore(tmp_path, GENESIS).load()
    assert persisted.snapshot == seal
    assert [e.index for e in persisted.entries] == [4, 5]
    assert persisted.hard_state == HardState(1, 0, 3)


def test_snapshot_with_another_term_drops_every_entry(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    store.save(HardState(1, 0, 0), None, [entry(i) for i in range(1, 6)])
    catch_up = SnapshotMeta(index=4, term=3, round=2, stamp_ms=9, state_root=b"\x33" * 32)
    store.save(HardState(3, None, 4), catch_up, [Entry(3, 5, 10, Seal(round=3))])
    persisted = RaftStore(tmp_path, GENESIS).load()
    assert persisted.snapshot == catch_up
    assert persisted.entries == [Entry(3, 5, 10, Seal(round=3))]
    assert persisted.hard_state == HardState(3, None, 4)


def test_every_torn_tail_recovers_a_prefix(tmp_path: Path) -> None:
    """Cut the file at every byte of the last Ready: what loads is a consistent prefix."""
    store = reopen(tmp_path)
    store.save(HardState(1, 0, 1), None, [entry(1)])
    intact = store.path.stat().st_size
    store.save(HardState(1, 0, 3), None, [entry(2, txs=2), entry(3)])
    full = store.path.read_bytes()
    for cut in range(intact, len(full) + 1):
        store.path.write_bytes(full[:cut])
        persisted = RaftStore(tmp_path, GENESIS).load()
        indices = [e.index for e in persisted.entries]
        assert indices in ([1], [1, 2], [1, 2, 3])
        # A hard state never survives without the entries written before it.
        if persisted.hard_state.committed == 3:
            assert indices == [1, 2, 3] and cut == len(full)
        else:
            assert persisted.hard_state == HardState(1, 0, 1)
        assert store.path.stat().st_size <= cut  # the torn part was cut off
        # And the repaired file takes further writes.
        again = reopen(tmp_path)
        again.save(None, None, [entry(len(indices) + 1)])
        assert len(RaftStore(tmp_path, GENESIS).load().entries) == len(indices) + 1


def test_corruption_before_the_tail_fails_loudly(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    store.save(HardState(1, 0, 0), None, [entry(1, txs=1), entry(2)])
    data = bytearray(store.path.read_bytes())
    data[20] ^= 0xFF  # inside the first entry's body
    store.path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="checksum"):
        RaftStore(tmp_path, GENESIS).load()


def test_an_absurd_frame_length_fails_loudly(tmp_path: Path) -> None:
    store = reopen(tmp_path)
    store.save(HardState(1, 0, 0), None, [entry(1)])
    store.path.write_bytes(b"\xff\xff\xff\xff" + store.path.read_bytes()[4:])
    with pytest.raises(ConfigError, match="claims"):
        RaftStore(tmp_path, GENESIS).load()


def test_a_length_corrupted_in_the_middle_is_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    """Regression: a first frame whose length now points past the end of the file was cut
    off as a torn tail, with every frame after it (a vote among them), silently."""
    store = reopen(tmp_path)
    store.save(HardState(1, 0, 0), None, [entry(1, txs=1)])
    store.save(HardState(2, 1, 1), None, [entry(2)])
    data = bytearray(store.path.read_bytes())
    data[0:4] = (len(data) * 2).to_bytes(4, "big")  # the first frame's length, corrupted
    store.path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="past the end"):
        RaftStore(tmp_path, GENESIS).load()
