"""Account records and the balances file (protocol §4).

Owns: the 36-byte record layout, the canonical balances file (records sorted by account id,
zero balances dropped), its strict decoder, and ``BalanceTable``, the in-memory form the ledger
updates.

``BalanceTable`` keeps the balances file itself as a bytearray (36 bytes an account, so 1M
accounts cost 36 MB, not the ~170 MB a dict of bytes to int costs), a sorted array of each
id's first 8 bytes to find a record with one C-level bisection, and a small overlay of accounts
created since the last compaction.

Invariants (checked by ``check``, asserted by tests after every apply):
- ``records`` ids strictly increase and ``prefixes[i]`` is the first 8 bytes of record i;
- overlay ids are not in ``records``; no balance exceeds 2**32-1;
- after ``compact``, no record has a zero balance and the overlay is empty;
- every watcher of the records (``watched_records``) is told before each write into them;
  records a compaction replaced are never written again.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise
from typing import Protocol

import numpy as np

from scryp.errors import MalformedInput, invariant

# The account record, the one declaration of its layout (protocol §4.1): the account id (an
# ed25519 public key), then its balance, big-endian. Everything else that reads or writes
# records (the light sync's search, the replay, tests, benchmarks) uses these.
ACCOUNT_ID_BYTES = 32
BALANCE_BYTES = 4
RECORD = struct.Struct(f">{ACCOUNT_ID_BYTES}sI")  # (account id, balance)
RECORD_BYTES = RECORD.size  # 36
BALANCE_OFFSET = ACCOUNT_ID_BYTES  # where the balance starts inside a record
BALANCE = struct.Struct(">I")  # the balance field alone, at BALANCE_OFFSET
BALANCE_MAX = 2 ** (8 * BALANCE_BYTES) - 1
TOTAL_SUPPLY = 2**32 - 1

_BALANCE_ONLY = struct.Struct(f">{ACCOUNT_ID_BYTES}xI")
_RECORDS = np.dtype([("id", f"S{ACCOUNT_ID_BYTES}"), ("balance", ">u4")])  # RECORD, for numpy


def encode_balances(balances: Iterable[tuple[bytes, int]]) -> bytes:
    """The canonical balances file for (id, balance) pairs: sorted, zero balances dropped."""
    ordered = sorted((account, balance) for account, balance in balances if balance)
    for (left, _), (right, _) in pairwise(ordered):
        if left == right:
            raise MalformedInput(f"account {left.hex()} appears twice")
    pack = RECORD.pack
    for account, balance in ordered:
        _check_record_fields(account, balance)
    return b"".join(pack(account, balance) for account, balance in ordered)


def decode_balances(data: bytes | bytearray) -> list[tuple[bytes, int]]:
    """Every (id, balance) of a canonical balances file; MalformedInput if not canonical."""
    check_balances_file(data)
    return list(RECORD.iter_unpack(data))


def check_balances_file(data: bytes | bytearray) -> int:
    """Validate a balances file (protocol §4.1) and return the sum of its balances.

    Vectorised (numpy): a Python pass over the records took ~2 s of a full sync at 10M
    accounts (docs/BENCHMARKS.md, client sync at 10M). The error names the first bad record,
    its ids checked before its balance, as a pass in order would.
    """
    if len(data) % RECORD_BYTES:
        raise MalformedInput(
            f"a balances file is a whole number of {RECORD_BYTES}-byte records, "
            f"got {len(data)} bytes"
        )
    records = np.frombuffer(data, dtype=_RECORDS)
    count = len(records)
    # Equal-length "S32" values compare bytewise, as bytes do (the NUL byte sorts first).
    unsorted = np.flatnonzero(records["id"][1:] <= records["id"][:-1])
    zero = np.flatnonzero(records["balance"] == 0)
    first_unsorted = int(unsorted[0]) + 1 if unsorted.size else count
    first_zero = int(zero[0]) if zero.size else count
    if first_unsorted < count and first_unsorted <= first_zero:
        raise MalformedInput(f"record {first_unsorted}: ids are not strictly increasing")
    if first_zero < count:
        raise MalformedInput(f"record {first_zero}: zero balances are dropped from the file")
    return int(records["balance"].sum(dtype=np.uint64))


def lookup(balances_file: bytes | memoryview, account: bytes) -> int:
    """The balance of ``account`` in a canonical balances file (0 if absent); O(log n).

    Works on any buffer, such as a memory-mapped round file, without copying it.
    """
    view = memoryview(balances_file)
    low, high = 0, len(view) // RECORD_BYTES
    while low < high:
        middle = (low + high) // 2
        start = middle * RECORD_BYTES
        found = bytes(view[start : start + ACCOUNT_ID_BYTES])
        if found < account:
            low = middle + 1
        elif found > account:
            high = middle
        else:
            value: int = BALANCE.unpack_from(view, start + BALANCE_OFFSET)[0]
            return value
    return 0


def _prefixes_of(records: bytearray) -> array[int]:
    """The first 8 bytes of every record's id as native unsigned numbers, read as one
    strided numpy view (a Python pass over 10M records took seconds at every restart)."""
    count = len(records) // RECORD_BYTES
    view = np.ndarray((count,), dtype=">u8", buffer=records, strides=(RECORD_BYTES,))
    prefixes = array("Q")
    prefixes.frombytes(view.astype(np.uint64).tobytes())
    del view  # the bytearray stays resizable
    return prefixes


def _check_record_fields(account: bytes, balance: int) -> None:
    if len(account) != ACCOUNT_ID_BYTES:
        raise MalformedInput(f"an account id is {ACCOUNT_ID_BYTES} bytes, got {len(account)}")
    if not 0 <= balance <= BALANCE_MAX:
        raise MalformedInput(f"balance {balance} does not fit in 4 bytes")


class RecordsWatcher(Protocol):
    """Told before the table writes a balance into the records it watches (``watch``): a
    background writer of those records saves the bytes it has not written yet."""

    def before_write(self, offset: int) -> None: ...


class BalanceTable:
    """Mutable balances: the sorted records plus an overlay of new accounts (see header)."""

    __slots__ = (
        "_bucket_starts",
        "_overlay",
        "_prefixes",
        "_records",
        "_touched",
        "_watchers",
        "_zeroed",
    )

    def __init__(self, balances_file: bytes | bytearray = b"") -> None:
        check_balances_file(balances_file)
        self._records = bytearray(balances_file)
        self._prefixes = _prefixes_of(self._records)
        # bits -> where each bucket starts in the records (``records_of_buckets``); the
        # records move only when compacted, which clears it.
        self._bucket_starts: dict[int, list[int]] = {}
        self._overlay: dict[bytes, int] = {}
        # Indices of records whose balance reached zero; compaction drops those still zero.
        self._zeroed: set[int] = set()
        # Account -> its balance now, for every balance changed since ``take_touched``: the
        # seal's changed records, with no lookup (a bisection each cost 4 ms a seal at 10M).
        self._touched: dict[bytes, int] = {}
        self._watchers: list[RecordsWatcher] = []  # of the current records (``watch``)

    def __len__(self) -> int:
        """Accounts with a non-zero balance."""
        live_records = len(self._prefixes) - sum(
            1 for i in self._zeroed if self._balance_at(i) == 0
        )
        return live_records + sum(1 for v in self._overlay.values() if v)

    def _find(self, account: bytes) -> int:
        """Index of ``account`` in the records, or -1."""
        prefixes = self._prefixes
        prefix = int.from_bytes(account[:8], "big")
        index = bisect_left(prefixes, prefix)
        count = len(prefixes)
        records = self._records
        # Distinct ids may share 8-byte prefixes; scan that (almost always empty) run.
        while index < count and prefixes[index] == prefix:
            start = index * RECORD_BYTES
            if records[start : start + ACCOUNT_ID_BYTES] == account:
                return index
            index += 1
        return -1

    def _balance_at(self, index: int) -> int:
        value: int = BALANCE.unpack_from(self._records, index * RECORD_BYTES + BALANCE_OFFSET)[0]
        return value

    def get(self, account: bytes) -> int:
        """The balance of ``account`` (0 for an unknown account)."""
        index = self._find(account)
        if index >= 0:
            return self._balance_at(index)
        return self._overlay.get(account, 0)

    def transfer(self, payer: bytes, payee: bytes, amount: int) -> bool:
        """Move ``amount`` from payer to payee if the payer has it; False otherwise.

        The caller has already checked amount >= 1 and payer != payee.
        """
        records = self._records
        payer_index = self._find(payer)
        if payer_index >= 0:
            payer_offset = payer_index * RECORD_BYTES + BALANCE_OFFSET
            payer_balance: int = BALANCE.unpack_from(records, payer_offset)[0]
        else:
            payer_balance = self._overlay.get(payer, 0)
        if payer_balance < amount:
            return False
        payee_index = self._find(payee)
        if payee_index >= 0:
            payee_offset = payee_index * RECORD_BYTES + BALANCE_OFFSET
            payee_balance: int = BALANCE.unpack_from(records, payee_offset)[0] + amount
            # Supply is 2**32-1 in all, so no honest balance can overflow (protocol §4.3).
            invariant(payee_balance <= BALANCE_MAX, "balance overflow: supply not conserved")
            for watcher in self._watchers:
                watcher.before_write(payee_offset)
            BALANCE.pack_into(records, payee_offset, payee_balance)
        else:
            payee_balance = self._overlay.get(payee, 0) + amount
            invariant(payee_balance <= BALANCE_MAX, "balance overflow: supply not conserved")
            self._overlay[payee] = payee_balance
        payer_balance -= amount
        touched = self._touched
        touched[payer] = payer_balance
        touched[payee] = payee_balance
        if payer_index >= 0:
            for watcher in self._watchers:
                watcher.before_write(payer_offset)
            BALANCE.pack_into(records, payer_offset, payer_balance)
            if payer_balance == 0:
                self._zeroed.add(payer_index)
        else:
            self._overlay[payer] = payer_balance
        return True

    def compact(self) -> None:
        """Merge the overlay into the records and drop zero balances (protocol §4.1).

        Costs one copy of the records (memcpy-speed slices) plus O(k log n) work for the k
        accounts created or emptied since the last compaction.
        """
        removals = sorted(i for i in self._zeroed if self._balance_at(i) == 0)
        additions = sorted((a, b) for a, b in self._overlay.items() if b)
        if not removals and not additions:
            self._zeroed.clear()
            self._overlay.clear()
            return
        # Events in record order: ("insert before index i", record) or ("drop index i").
        events: list[tuple[int, int, bytes]] = [(i, 1, b"") for i in removals]
        for account, balance in additions:
            events.append((self._insertion_point(account), 0, RECORD.pack(account, balance)))
        events.sort()
        # Both new arrays are allocated once at their final size and filled from views of
        # the old ones: one copy of every record. Growing them by ``+=`` of slices copied
        # each record twice and reallocated as they grew (0.49 s at 10M accounts).
        count = len(self._prefixes) + len(additions) - len(removals)
        records, prefixes = memoryview(self._records), memoryview(self._prefixes)
        new_records = bytearray(count * RECORD_BYTES)
        new_prefixes = array("Q", bytes(8 * count))
        into_records, into_prefixes = memoryview(new_records), memoryview(new_prefixes)
        cursor = at = 0  # next old record to copy; next free slot in the new arrays
        for index, kind, record in [*events, (len(prefixes), 2, b"")]:
            run = index - cursor
            into_records[at * RECORD_BYTES : (at + run) * RECORD_BYTES] = records[
                cursor * RECORD_BYTES : index * RECORD_BYTES
            ]
            into_prefixes[at : at + run] = prefixes[cursor:index]
            at += run
            if kind == 0:
                into_records[at * RECORD_BYTES : (at + 1) * RECORD_BYTES] = record
                into_prefixes[at] = int.from_bytes(record[:8], "big")
                at += 1
                cursor = index
            else:
                cursor = index + 1
        invariant(at == count, "compaction filled every slot")
        del records, prefixes, into_records, into_prefixes  # views pin their arrays
        self._records, self._prefixes = new_records, new_prefixes
        self._watchers = []  # the records they watch are never written again
        self._bucket_starts.clear()
        self._overlay.clear()
        self._zeroed.clear()

    def _insertion_point(self, account: bytes) -> int:
        prefixes = self._prefixes
        prefix = int.from_bytes(account[:8], "big")
        index = bisect_left(prefixes, prefix)
        while index < len(prefixes) and prefixes[index] == prefix:
            start = index * RECORD_BYTES
            if self._records[start : start + ACCOUNT_ID_BYTES] > account:
                break
            index += 1
        return index

    def balances_file(self) -> bytes:
        """The canonical balances file (compacts first); a copy."""
        self.compact()
        return bytes(self._records)

    def records_view(self) -> memoryview:
        """The canonical balances file (compacts first) as a read-only view, no copy: for
        hashing it whole (a restart's tree at 10M accounts). Release it before the next
        ``transfer``/``compact`` (a view pins the bytes)."""
        self.compact()
        return memoryview(self._records).toreadonly()

    def watched_records(self, watcher: RecordsWatcher) -> bytearray:
        """The canonical balances file (compacts first) as the records themselves, no copy:
        ``watcher`` is told before every later write into them, until ``unwatch`` or until
        a compaction moves the table to new records (these then never change again). For a
        checkpoint written in the background while the ledger moves on (protocol §7.8); the
        caller must not write into them."""
        self.compact()
        self._watchers.append(watcher)
        return self._records

    def unwatch(self, watcher: RecordsWatcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def take_touched(self) -> dict[bytes, int]:
        """The accounts whose balance changed since the last call, with their balance now (0:
        emptied), and forget them: what the state root rehashes (protocol §4.4.3)."""
        touched, self._touched = self._touched, {}
        return touched

    def records_of_buckets(self, buckets: Sequence[int], bits: int) -> list[bytes | memoryview]:
        """The records (as compacted) of each bucket of protocol §4.4.2 (the ids whose first
        ``bits`` bits are the bucket's index), **without compacting**: a compaction copies
        every record (~0.8 s a seal at 10M accounts, measured), while a seal's buckets are a
        few thousand slices. Where each bucket starts in the records is found once per
        compaction (the records only move then); a bucket with no new account and no emptied
        record is a view of the records, not a copy (read it before the table changes: two
        copies of every bucket cost 10 ms a seal at 10M accounts), the others are merged."""
        starts = self._bucket_starts.get(bits)
        if starts is None:
            starts = self._bucket_starts[bits] = self._find_bucket_starts(bits)
        wanted = set(buckets)
        shift = 64 - bits
        added: dict[int, list[tuple[bytes, int]]] = {}
        for account, balance in self._overlay.items():
            bucket = int.from_bytes(account[:8], "big") >> shift
            if balance and bucket in wanted:
                added.setdefault(bucket, []).append((account, balance))
        emptied: dict[int, list[int]] = {}
        if self._zeroed:
            indices = sorted(self._zeroed)
            owners = np.searchsorted(np.asarray(starts), indices, side="right") - 1
            for index, bucket in zip(indices, owners.tolist(), strict=True):
                if bucket in wanted:
                    emptied.setdefault(bucket, []).append(index)
        view = memoryview(self._records)
        found: list[bytes | memoryview] = []
        for bucket in buckets:
            start, end = starts[bucket], starts[bucket + 1]
            if bucket in added or bucket in emptied:
                new = sorted(added.get(bucket, ()))
                found.append(self._merged(start, end, emptied.get(bucket, []), new))
            else:
                found.append(view[start * RECORD_BYTES : end * RECORD_BYTES])
        return found

    def _find_bucket_starts(self, bits: int) -> list[int]:
        """The index of each bucket's first record, then the records' count: 2**bits + 1
        numbers, by one vectorised bisection over the id prefixes."""
        if not 0 <= bits <= 24:
            raise ValueError("bits must be in 0..24")
        firsts = np.arange(1 << bits, dtype=np.uint64) << np.uint64(64 - bits)
        prefixes = np.frombuffer(self._prefixes, dtype=np.uint64)  # a view: freed on return
        found: list[int] = np.searchsorted(prefixes, firsts).tolist()
        return [*found, len(self._prefixes)]

    def _merged(
        self, start: int, end: int, emptied: list[int], added: list[tuple[bytes, int]]
    ) -> bytes:
        """Records ``start:end`` as a compaction would leave them: the emptied records among
        them dropped, the new accounts inserted, by slicing (repacking a bucket's ~150
        records cost 20 ms a seal at 10M accounts)."""
        records = self._records
        events = [(index, 1, b"") for index in emptied if self._balance_at(index) == 0]
        events += [
            (self._insertion_point(account), 0, RECORD.pack(account, balance))
            for account, balance in added
        ]
        events.sort()  # at one index: insert before it (0), then drop it (1), as ``compact``
        pieces: list[bytes | bytearray] = []
        cursor = start
        for index, kind, record in events:
            pieces.append(records[cursor * RECORD_BYTES : index * RECORD_BYTES])
            if kind == 0:
                pieces.append(record)
                cursor = index
            else:
                cursor = index + 1
        pieces.append(records[cursor * RECORD_BYTES : end * RECORD_BYTES])
        return b"".join(pieces)

    def items(self) -> Iterator[tuple[bytes, int]]:
        """Every (id, balance) with a non-zero balance, in id order (compacts first)."""
        self.compact()
        yield from RECORD.iter_unpack(self._records)

    def total(self) -> int:
        """Sum of all balances: 2**32-1 for a ledger (O(n); for checks and tests)."""
        in_records: int = sum(b for (b,) in _BALANCE_ONLY.iter_unpack(self._records))
        return in_records + sum(self._overlay.values())

    def check(self) -> None:
        """Verify every invariant in the module header (O(n); for tests and recovery)."""
        invariant(len(self._records) % RECORD_BYTES == 0, "records not whole")
        invariant(len(self._prefixes) * RECORD_BYTES == len(self._records), "index size")
        previous = b""
        for index, (account, balance) in enumerate(RECORD.iter_unpack(self._records)):
            invariant(account > previous, f"record {index} out of order")
            invariant(self._prefixes[index] == int.from_bytes(account[:8], "big"), "prefix")
            invariant(balance > 0 or index in self._zeroed, f"record {index} zero, untracked")
            previous = account
        for account, balance in self._overlay.items():
            invariant(self._find(account) < 0, "overlay id also in records")
            invariant(0 <= balance <= BALANCE_MAX, "overlay balance out of range")
