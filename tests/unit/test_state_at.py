"""A balance, a bucket and the whole file at a kept round, read back from the round files on
disk (scryp/server/state_at.py, protocol §4.4.4, §4.4.6): the newest checkpoint at or before
the round, then the ``changes`` of each round after it; and the net ``changes`` of a range of
rounds (``GET /changes``, §10.4.1).

Method: a real ``Ledger`` seals rounds 0..7 with ``checkpoint_every`` = 3 (checkpoints 0, 3,
6) and random payments; ``round_contents`` makes each round's files and a real ``RoundStore``
writes them under tmp_path. The oracle is the ledger's own balances file saved at each seal.
"""

from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

import pytest

from scryp.core import snapshot
from scryp.core.balances import RECORD, TOTAL_SUPPLY, lookup
from scryp.core.buckets import BUCKET_BITS, bucket_of, bucket_range, state_root
from scryp.core.changes import apply_changes
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, precheck_fields
from scryp.core.raft import SnapshotMeta
from scryp.core.tx import Transaction
from scryp.errors import InvariantViolated, NotAvailable
from scryp.server.rounds import RoundStore, round_contents
from scryp.server.state_at import (
    RangeTooLarge,
    balance_at,
    bucket_at,
    changes_between,
    flat_at,
)

EVERY = 3
ROUNDS = 8  # 0..7: checkpoints 0, 3 and 6, and delta rounds on both sides of each
NOW = 1_700_000_000_000
# Ids in a few 16-bit buckets (protocol §4.4.2), so payments share buckets and empty them.
_PREFIXES = [b"\x00\x00", b"\x00\x01", b"\x7f\xff", b"\xff\xff"]


def unsigned(payer: bytes, payee: bytes, amount: int, timestamp_ms: int) -> Transaction:
    """A payment whose signature the test vouches for (``prechecked``): any account pays."""
    raw = struct.pack(">QI32s32s64s", timestamp_ms, amount, payee, payer, b"\x00" * 64)
    return Transaction.decode(raw)


def seal_rounds(store: RoundStore, seed: int) -> tuple[list[bytes], list[bytes]]:
    """Rounds 0..ROUNDS-1 written to ``store``: (the accounts, each round's balances file)."""
    rng = random.Random(seed)
    accounts = [rng.choice(_PREFIXES) + rng.randbytes(30) for _ in range(10)]
    funded = accounts[:4]  # the others start unfunded: payments create and empty them
    allocation = {funded[0]: TOTAL_SUPPLY - 30, **{a: 10 for a in funded[1:]}}
    ledger = Ledger.from_genesis(Genesis.from_allocations(allocation))
    flats = []
    for number in range(ROUNDS):
        stamp = NOW + number * 500
        if number:  # round 0 is the genesis
            txs = []
            for _ in range(rng.randrange(0, 12)):
                payer, payee = rng.sample(accounts, 2)
                txs.append(unsigned(payer, payee, rng.choice([1, 2, 5, 10, 1_000]), stamp))
            if number == 4 and ledger.balance(funded[1]):  # it leaves the file in a delta
                everything = ledger.balance(funded[1])
                txs.insert(0, unsigned(funded[1], funded[2], everything, stamp))
            ledger.apply(txs, stamp, prechecked=[precheck_fields(tx) for tx in txs])
        meta = SnapshotMeta(number, 1, number, stamp, ledger.state_root())
        contents = round_contents(number, EVERY, ledger, b"")
        assert tuple(contents) == snapshot.round_files(snapshot.is_checkpoint(number, EVERY))
        stored = store.write(meta, contents)
        assert stored.checkpoint == (number % EVERY == 0)
        flats.append(ledger.balances_file())
    return accounts, flats


def buckets_to_check(accounts: list[bytes]) -> list[int]:
    """The buckets of the accounts, their neighbours, and both ends of the tree."""
    held = {bucket_of(a, BUCKET_BITS) for a in accounts}
    near = {b + d for b in held for d in (-1, 1)}
    return sorted(b for b in held | near | {0, (1 << BUCKET_BITS) - 1} if 0 <= b < 1 << BUCKET_BITS)


@pytest.mark.parametrize("seed", range(4))
def test_every_round_reads_back_as_the_ledger_sealed_it(tmp_path: Path, seed: int) -> None:
    """protocol §4.4.4: checkpoint balances plus later changes give each round's state."""
    store = RoundStore(tmp_path / "rounds")
    accounts, flats = seal_rounds(store, seed)
    assert store.rounds() == list(range(ROUNDS))
    outsider = b"\x7f\xff" + b"\x33" * 30
    for number, flat in enumerate(flats):
        assert flat_at(store, number, EVERY) == flat
        stored = store.get(number)
        assert stored is not None and state_root(flat) == stored.meta.state_root
        for account in [*accounts, outsider]:
            assert balance_at(store, number, EVERY, account) == lookup(flat, account)
        for index in buckets_to_check(accounts):
            start, end = bucket_range(flat, index, BUCKET_BITS)
            assert bucket_at(store, number, EVERY, index) == flat[start:end]
    # Something really moved and an account really left, or this test would prove little.
    assert len(set(flats)) > 2
    removed = [
        balance
        for number in range(1, ROUNDS)
        for _, balance in RECORD.iter_unpack(store.read(number, snapshot.CHANGES))
    ]
    assert 0 in removed


def test_pruned_or_missing_rounds_raise_file_not_found(tmp_path: Path) -> None:
    store = RoundStore(tmp_path / "rounds")
    accounts, flats = seal_rounds(store, 7)
    some = accounts[0]
    # Delta round 4 lost: rounds 4 and 5 need its changes, 3 (a checkpoint) and 6.. do not.
    shutil.rmtree(store.path(4))
    for number in (4, 5):
        for read in (
            lambda r: balance_at(store, r, EVERY, some),
            lambda r: bucket_at(store, r, EVERY, 0),
            lambda r: flat_at(store, r, EVERY),
        ):
            with pytest.raises(FileNotFoundError):
                read(number)
    for number in (3, 6, 7):
        assert flat_at(store, number, EVERY) == flats[number]
    # Pruned up to the checkpoint 6: rounds 0..5 are gone.
    assert store.prune(keep=2, keep_from=6) == [0, 1, 2, 3, 5]
    for number in range(6):
        with pytest.raises(FileNotFoundError):
            balance_at(store, number, EVERY, some)
        with pytest.raises(OSError):
            bucket_at(store, number, EVERY, bucket_of(some, BUCKET_BITS))
    assert balance_at(store, 7, EVERY, some) == lookup(flats[7], some)
    # Not sealed yet: round 8 needs the changes of round 8.
    with pytest.raises(FileNotFoundError):
        flat_at(store, ROUNDS, EVERY)
    # The checkpoint's balances gone: every round after it up to the next is unreadable.
    (store.path(6) / snapshot.BALANCES).unlink()
    with pytest.raises(FileNotFoundError):
        balance_at(store, 7, EVERY, some)


def test_the_store_takes_only_a_round_s_files_in_torrent_order(tmp_path: Path) -> None:
    """protocol §4.4.4: ``balances`` first and only in a checkpoint round."""
    store = RoundStore(tmp_path / "rounds")
    ledger = Ledger.from_genesis(Genesis.single(b"\x01" * 32))
    meta = SnapshotMeta(0, 0, 0, 0, ledger.state_root())
    contents = round_contents(0, EVERY, ledger, b"")
    shuffled = {name: contents[name] for name in reversed(snapshot.CHECKPOINT_FILES)}
    without_changes = {n: d for n, d in contents.items() if n != snapshot.CHANGES}
    for bad in (shuffled, without_changes):
        with pytest.raises(InvariantViolated):
            store.write(meta, bad)
    assert store.rounds() == []
    stored = store.write(meta, contents)
    assert sorted(p.name for p in stored.path.iterdir()) == sorted(
        [*snapshot.CHECKPOINT_FILES, "raft-meta"]
    )
    assert store.read(0, snapshot.BALANCES) == ledger.balances_file()
    assert list(RECORD.iter_unpack(store.read(0, snapshot.BALANCES))) == [
        (b"\x01" * 32, TOTAL_SUPPLY)
    ]
    assert store.read(0, snapshot.CHANGES) == b""


@pytest.mark.parametrize("seed", range(2))
def test_the_changes_of_a_range_give_its_last_round(tmp_path: Path, seed: int) -> None:
    """protocol §10.4.1: the net changes of rounds C+1..R, applied to round C's balances,
    give round R's, for every range, across checkpoints too (a held round newer than the
    checkpoint starts a range anywhere)."""
    store = RoundStore(tmp_path / "rounds")
    _, flats = seal_rounds(store, seed)
    big = 1 << 20
    for since in range(ROUNDS):
        for last in range(since + 1, ROUNDS):
            merged = changes_between(store, since, last, big)
            assert apply_changes(flats[since], merged) == flats[last], (since, last)


def test_a_range_not_held_whole_or_too_large_is_refused(tmp_path: Path) -> None:
    """Whatever a server cannot answer from whole files of its own it refuses: a round not
    sealed or pruned, one written without its raft-meta (a crash mid-write), a damaged
    changes file (never merged into a canonical-looking answer); and a range whose files
    pass the byte limit, before reading them."""
    store = RoundStore(tmp_path / "rounds")
    _, flats = seal_rounds(store, 3)
    sizes = [len(store.read(n, snapshot.CHANGES)) for n in range(ROUNDS)]
    total = sum(sizes[3:8])
    assert total > 0
    assert changes_between(store, 2, 7, total)  # exactly at the limit: answered
    with pytest.raises(RangeTooLarge, match="fewer rounds"):
        changes_between(store, 2, 7, total - 1)
    with pytest.raises(NotAvailable, match="round 8"):
        changes_between(store, 6, ROUNDS, 1 << 20)
    (store.path(5) / "raft-meta").unlink()
    with pytest.raises(NotAvailable, match="round 5"):
        changes_between(store, 3, 6, 1 << 20)
    with (store.path(7) / snapshot.CHANGES).open("ab") as file:
        file.write(b"\x00")  # a partial record
    with pytest.raises(NotAvailable, match="damaged"):
        changes_between(store, 5, 7, 1 << 20)
    assert apply_changes(flats[0], changes_between(store, 0, 4, 1 << 20)) == flats[4]
