"""A round's ``changes`` file: the records its payments changed (protocol §4.4.4). Pure.

Owns: the codec of the file, merging consecutive rounds' files into one, and applying it to
a balances file (§4.1).

A ``changes`` file is 36-byte records ``id (32) | balance (4)`` sorted by id with ids strictly
increasing, one for every account whose balance the round changed, holding the balance after
the round; balance 0 means the account left the file. Applying a round's ``changes`` to the
balances file of the round before gives the round's balances file, whose state root the
certificate signs (§4.4.3): a client checks that root, so a ``changes`` file from an untrusted
peer can only fail to verify, never yield wrong balances.

Invariant: ``apply_changes`` of a canonical balances file and a canonical ``changes`` file is
canonical (sorted, no zero balance), and costs O(k log n) bisections plus one copy of the file
for k changed records.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from itertools import pairwise

from scryp.core.balances import ACCOUNT_ID_BYTES, RECORD, RECORD_BYTES
from scryp.errors import MalformedInput

CHANGES_RECORDS_MAX = 1 << 24  # 604 MB: far beyond any round's payments (protocol §4.4.4)
# The header of a ``GET /changes`` answer naming the rounds it merges, "FIRST-LAST" (protocol
# §10.4.1): a client refuses an answer for other rounds before it spends an apply on it.
ROUNDS_HEADER = "Scryp-Rounds"


def encode_changes(records: Iterable[tuple[bytes, int]]) -> bytes:
    """The ``changes`` file of (id, new balance) pairs (balance 0: removed), sorted here."""
    ordered = sorted(records)
    if any(a[0] == b[0] for a, b in pairwise(ordered)):
        raise ValueError("an account is changed twice")
    return b"".join(RECORD.pack(account, balance) for account, balance in ordered)


def decode_changes(data: bytes | bytearray | memoryview) -> list[tuple[bytes, int]]:
    """The (id, new balance) records of a ``changes`` file; MalformedInput if not canonical."""
    if len(data) % RECORD_BYTES:
        raise MalformedInput(f"a changes file is whole 36-byte records, got {len(data)} bytes")
    if len(data) // RECORD_BYTES > CHANGES_RECORDS_MAX:
        raise MalformedInput(f"a changes file holds at most {CHANGES_RECORDS_MAX} records")
    records = [(bytes(account), balance) for account, balance in RECORD.iter_unpack(data)]
    if any(a[0] >= b[0] for a, b in pairwise(records)):
        raise MalformedInput("the ids of a changes file do not strictly increase")
    return records


class _IdAt:
    """``_IdAt(file)[i]`` is record i's id: lets ``bisect`` search a flat file in place."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data) // RECORD_BYTES

    def __getitem__(self, index: int) -> bytes:
        start = index * RECORD_BYTES
        return bytes(self._data[start : start + ACCOUNT_ID_BYTES])


def apply_changes(balances_file: bytes | bytearray | memoryview, changes: bytes) -> bytes:
    """The balances file after a round's ``changes`` (both canonical; MalformedInput if the
    changes file is not). The result's state root must still be checked by the caller."""
    records = decode_changes(changes)
    ids = _IdAt(balances_file)
    view = memoryview(balances_file)
    parts: list[bytes | memoryview] = []
    cursor = 0  # records of the old file before this index are already placed
    for account, balance in records:
        index = bisect_left(ids, account, lo=cursor)
        parts.append(view[cursor * RECORD_BYTES : index * RECORD_BYTES])
        present = index < len(ids) and ids[index] == account
        if balance:
            parts.append(RECORD.pack(account, balance))
        cursor = index + 1 if present else index
    parts.append(view[cursor * RECORD_BYTES :])
    return b"".join(parts)


def merge_changes(changes_files: Iterable[bytes | bytearray | memoryview]) -> bytes:
    """The net ``changes`` of consecutive rounds (oldest first), as one canonical ``changes``
    file: each account's record from the latest round that changed it, a zero kept (the
    account left the file, or was created and emptied in between: a no-op to apply). Applying
    it to round C's balances gives what applying rounds C+1..R one after the other gives, so
    a server can answer a range of rounds at once (``GET /changes``, protocol §10.4.1).
    MalformedInput if any input file is not canonical."""
    merged: dict[bytes, int] = {}
    for changes in changes_files:
        merged.update(decode_changes(changes))
    return encode_changes(merged.items())


def apply_rounds(
    balances_file: bytes | bytearray | memoryview,
    changes_files: Iterable[bytes | bytearray | memoryview],
) -> bytes:
    """The balances file after several consecutive rounds' ``changes`` (oldest first): merged
    into one (a later round's record wins), then applied in one pass, so k rounds cost one
    copy of the file, not k. MalformedInput if any changes file is not canonical."""
    return apply_changes(balances_file, merge_changes(changes_files))


def find_change(changes: bytes | bytearray | memoryview, account: bytes) -> int | None:
    """The new balance of ``account`` in a canonical ``changes`` file (0: removed), or None
    if the round did not change it; O(log k), works on a memory-mapped file."""
    ids = _IdAt(changes)
    index = bisect_left(ids, account)
    if index < len(ids) and ids[index] == account:
        value: int = RECORD.unpack_from(changes, index * RECORD_BYTES)[1]
        return value
    return None
