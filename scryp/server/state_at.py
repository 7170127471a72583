"""An account's balance and a bucket's records at a kept round, read from the round files on
disk (protocol §4.4.4, §4.4.6): the newest checkpoint at or before the round, then the
``changes`` of every round after it, up to the round. And the net ``changes`` of a range of
rounds (``GET /changes``, §10.4.1).

Why from files: only checkpoint rounds hold the whole balances file, and the certified round
the API answers for may be a round or two behind the ledger. Each ``changes`` file is sorted,
so a balance costs one bisection per round since the checkpoint (≤ ``checkpoint_every``), and
a bucket two. Blocking: run in a thread.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator
from pathlib import Path

from scryp.core import snapshot
from scryp.core.balances import lookup
from scryp.core.buckets import BUCKET_BITS, bucket_range
from scryp.core.changes import apply_changes, apply_rounds, find_change, merge_changes
from scryp.errors import MalformedInput, NotAvailable, RemoteError
from scryp.server.rounds import RoundStore


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[memoryview]:
    """The file's bytes, memory-mapped (an empty file: empty bytes)."""
    with open(path, "rb") as file:
        if not path.stat().st_size:
            yield memoryview(b"")
            return
        with (
            mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            memoryview(mapped) as view,
        ):
            yield view


def _paths(store: RoundStore, round_number: int, checkpoint_every: int) -> tuple[Path, list[Path]]:
    """(the checkpoint's balances, the ``changes`` of the rounds after it up to the round).
    OSError if any is gone (pruned: the caller's round is too old)."""
    checkpoint = round_number - round_number % checkpoint_every
    balances = store.path(checkpoint) / snapshot.BALANCES
    changes = [store.path(r) / snapshot.CHANGES for r in range(checkpoint + 1, round_number + 1)]
    for path in (balances, *changes):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not held here")
    return balances, changes


def balance_at(store: RoundStore, round_number: int, checkpoint_every: int, account: bytes) -> int:
    """``account``'s balance after round ``round_number`` (0 if it has none)."""
    balances, changes = _paths(store, round_number, checkpoint_every)
    for path in reversed(changes):
        with _mapped(path) as view:
            found = find_change(view, account)
        if found is not None:
            return found
    with _mapped(balances) as view:
        return lookup(view, account)


def bucket_at(store: RoundStore, round_number: int, checkpoint_every: int, index: int) -> bytes:
    """Bucket ``index``'s records (protocol §4.4.2) after round ``round_number``."""
    balances, changes = _paths(store, round_number, checkpoint_every)
    with _mapped(balances) as view:
        start, end = bucket_range(view, index, BUCKET_BITS)
        records = bytes(view[start:end])
    for path in changes:
        with _mapped(path) as view:
            start, end = bucket_range(view, index, BUCKET_BITS)
            if end > start:
                records = apply_changes(records, bytes(view[start:end]))
    return records


def flat_at(store: RoundStore, round_number: int, checkpoint_every: int) -> bytes:
    """The whole balances file after round ``round_number`` (O(state): a rebuild, rare)."""
    balances, changes = _paths(store, round_number, checkpoint_every)
    return apply_rounds(balances.read_bytes(), (path.read_bytes() for path in changes))


class RangeTooLarge(RemoteError):
    """The rounds asked for hold more ``changes`` bytes than one answer may merge."""


def changes_between(store: RoundStore, since: int, round_number: int, bytes_max: int) -> bytes:
    """The net ``changes`` of rounds since+1..round_number (``merge_changes``, protocol
    §10.4.1), from the round files held here. NotAvailable if a round is not held whole (pruned,
    before this server's catch-up point, or damaged); RangeTooLarge past ``bytes_max`` bytes
    of round files, checked before any is read, so a request costs at most that much work."""
    paths = []
    total = 0
    for number in range(since + 1, round_number + 1):
        path = store.path(number) / snapshot.CHANGES
        if store.get(number) is None or not path.is_file():  # raft-meta: the round is whole
            raise NotAvailable(f"round {number}'s changes are not held here")
        total += path.stat().st_size
        paths.append(path)
    if total > bytes_max:
        raise RangeTooLarge(
            f"rounds {since + 1}..{round_number} hold {total} bytes of changes, over "
            f"{bytes_max}: ask for fewer rounds"
        )
    try:
        return merge_changes(path.read_bytes() for path in paths)
    except MalformedInput:  # our own file, damaged (§9.10): refuse, never serve it merged
        raise NotAvailable(
            f"a changes file of rounds {since + 1}..{round_number} here is damaged"
        ) from None
