"""The ledger: deterministic rules that turn an ordered batch into new balances (protocol §6).

Owns: the validity rules, their order, the duplicate window and the ``Ledger`` state
(balances, the ids of recent transactions, the last stamp).

Every server applies the same batches in the same order with the same leader stamps, so every
server computes the same outcomes and the same state root (protocol §4.4.3). To keep that
true, nothing here reads a clock or depends on dict or set iteration order for a result.

Invariants (checked by ``Ledger.check``):
- total supply stays 2**32-1; no balance is zero in the file, none exceeds 2**32-1;
- the effective stamp never decreases, so the duplicate window only moves forward;
- a transaction id is accepted at most once: an id stays in ``recent`` for as long as its
  timestamp is inside the window, and outside the window it is refused anyway.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

from scryp.core.balances import BalanceTable, RecordsWatcher
from scryp.core.buckets import BUCKET_BITS, MerkleTree, bucket_of, leaf_hash
from scryp.core.changes import encode_changes
from scryp.core.genesis import Genesis
from scryp.core.tx import Transaction
from scryp.errors import MalformedInput, invariant

WINDOW_MS_DEFAULT = 5_000
_RECENT_ENTRY = struct.Struct(">Q32s")
_STAMP = struct.Struct(">Q")


class Reason(StrEnum):
    """Why a transaction was rejected; the values are shown to users (protocol §6.2)."""

    BAD_SIGNATURE = "bad signature"
    ZERO_AMOUNT = "amount is zero"
    SELF_PAYMENT = "payer and payee are the same account"
    TIMESTAMP_OUT_OF_WINDOW = "timestamp outside the accepted window"
    DUPLICATE = "duplicate of a recent transaction"
    INSUFFICIENT_FUNDS = "insufficient funds"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one transaction: accepted, or rejected with a reason."""

    accepted: bool
    reason: Reason | None = None


ACCEPTED = Outcome(accepted=True)
_REJECTED = {reason: Outcome(accepted=False, reason=reason) for reason in Reason}


def precheck(tx: Transaction) -> Reason | None:
    """The checks that need no ledger state: signature, amount, self-payment (protocol §6.1).

    Separate from ``Ledger.apply`` so a server can run them in parallel, once, before a
    transaction enters the log; every server still gets the same answer, as these are pure.
    """
    if not tx.signature_valid():
        return Reason.BAD_SIGNATURE
    return precheck_fields(tx)


def precheck_fields(tx: Transaction) -> Reason | None:
    """The stateless checks other than the signature (cheap; protocol §6.1 steps 2-3)."""
    if tx.amount == 0:
        return Reason.ZERO_AMOUNT
    if tx.payer == tx.payee:
        return Reason.SELF_PAYMENT
    return None


def precheck_all(txs: Sequence[Transaction]) -> list[Reason | None]:
    return [precheck(tx) for tx in txs]


class Ledger:
    """Balances plus the duplicate window; ``apply`` is the state machine's transition."""

    __slots__ = (
        "_changed",
        "_heap",
        "_last_stamp_ms",
        "_recent",
        "_remembered",
        "_table",
        "_tree",
        "window_ms",
    )

    def __init__(
        self,
        balances_file: bytes,
        *,
        window_ms: int = WINDOW_MS_DEFAULT,
        last_stamp_ms: int = 0,
        recent: Sequence[tuple[int, bytes]] = (),
    ) -> None:
        if window_ms < 0:
            raise ValueError("window_ms must be >= 0")
        self.window_ms = window_ms
        self._table = BalanceTable(balances_file)
        self._last_stamp_ms = last_stamp_ms
        # tx id -> its timestamp, for every remembered transaction; a heap orders expiry.
        self._recent: dict[bytes, int] = {tx_id: ts for ts, tx_id in recent}
        self._heap: list[tuple[int, bytes]] = sorted(recent)
        # (timestamp, tx id) remembered since the last ``take_remembered``: a round's
        # ``remembered`` file (protocol §6.4), so a round that is not a checkpoint writes
        # what it added to the window, not the whole window again.
        self._remembered: list[tuple[int, bytes]] = []
        self._tree: MerkleTree | None = None  # built at the first state_root()
        # Accounts changed since the last ``take_changes``, with their balance now: the next
        # round's ``changes`` file.
        self._changed: dict[bytes, int] = {}

    @classmethod
    def from_genesis(cls, genesis: Genesis, *, window_ms: int = WINDOW_MS_DEFAULT) -> Ledger:
        return cls(genesis.balances_file, window_ms=window_ms)

    # -- reading -------------------------------------------------------------------------

    def balance(self, account: bytes) -> int:
        return self._table.get(account)

    @property
    def last_stamp_ms(self) -> int:
        return self._last_stamp_ms

    def balances_file(self) -> bytes:
        return self._table.balances_file()

    def balances_view(self) -> memoryview:
        """The balances file as a read-only view of the table, no copy (a checkpoint's 360 MB
        at 10M accounts: 0.26 s a copy). Release it before the ledger changes again."""
        return self._table.records_view()

    def watched_balances(self, watcher: RecordsWatcher) -> bytearray:
        """The balances file as the table's own records, ``watcher`` told before each later
        write into them (``BalanceTable.watched_records``; protocol §7.8). Read-only."""
        return self._table.watched_records(watcher)

    def unwatch(self, watcher: RecordsWatcher) -> None:
        self._table.unwatch(watcher)

    def state_root(self) -> bytes:
        """The state root (protocol §4.4.3). The first call hashes the whole file into the
        tree (restart, catch-up); later ones rehash only the buckets of accounts changed
        since the previous call, and the paths above them: O(changed buckets × 16) hashes."""
        table = self._table
        touched = table.take_touched()
        self._changed.update(touched)
        if self._tree is None:
            with table.records_view() as records:
                self._tree = MerkleTree.of_file(records)
        elif touched:
            changed = sorted({bucket_of(account, BUCKET_BITS) for account in touched})
            buckets = table.records_of_buckets(changed, BUCKET_BITS)  # no compaction: see there
            self._tree.update(
                {b: leaf_hash(records) for b, records in zip(changed, buckets, strict=True)}
            )
        return self._tree.root

    def take_changes(self) -> bytes:
        """The ``changes`` file (protocol §4.4.4) of every account changed since the last
        call, with its balance now (0: removed), and forget them: a seal's delta."""
        self.state_root()  # folds the accounts touched since into ``_changed`` and the tree
        changed, self._changed = self._changed, {}
        return encode_changes(changed.items())

    def state_tree(self) -> MerkleTree:
        """A copy of the tree at the current state (for proofs of a sealed round, §4.4.6)."""
        self.state_root()
        assert self._tree is not None
        return self._tree.copy()

    def total_supply(self) -> int:
        return self._table.total()

    def account_count(self) -> int:
        return len(self._table)

    def remembers(self, tx_id: bytes) -> bool:
        """Whether ``tx_id`` is in the duplicate window: applying it again would be refused."""
        return tx_id in self._recent

    def recent(self) -> list[tuple[int, bytes]]:
        """The remembered (timestamp, tx id) pairs, sorted: part of a checkpoint (protocol §6.4)."""
        return sorted((ts, tx_id) for tx_id, ts in self._recent.items())

    # -- the transition ------------------------------------------------------------------

    def apply(
        self,
        txs: Sequence[Transaction],
        stamp_ms: int,
        prechecked: Sequence[Reason | None] | None = None,
    ) -> list[Outcome]:
        """Apply an ordered batch at the leader's stamp; one outcome per transaction
        (protocol §6.3).

        ``prechecked`` holds ``precheck`` results computed earlier (possibly in parallel);
        without it the signatures are checked here.
        """
        if prechecked is None:
            prechecked = precheck_all(txs)
        invariant(len(prechecked) == len(txs), "one precheck result per transaction")
        # A new leader's clock may lag the old one's: the window never moves back (protocol §6.3).
        stamp = max(stamp_ms, self._last_stamp_ms)
        self._last_stamp_ms = stamp
        window = self.window_ms
        self._expire(stamp - window)
        recent = self._recent
        heap = self._heap
        remembered = self._remembered
        transfer = self._table.transfer
        outcomes: list[Outcome] = []
        append = outcomes.append
        for tx, reason in zip(txs, prechecked, strict=True):
            if reason is not None:
                append(_REJECTED[reason])
                continue
            timestamp = tx.timestamp_ms
            if timestamp < stamp - window or timestamp > stamp + window:
                append(_REJECTED[Reason.TIMESTAMP_OUT_OF_WINDOW])
                continue
            tx_id = tx.tx_id
            if tx_id in recent:
                append(_REJECTED[Reason.DUPLICATE])
                continue
            # Remembered whatever the outcome below: a rejected payment stays rejected and
            # cannot be replayed into acceptance while its timestamp is valid (protocol §6.2).
            recent[tx_id] = timestamp
            heapq.heappush(heap, (timestamp, tx_id))
            remembered.append((timestamp, tx_id))
            if transfer(tx.payer, tx.payee, tx.amount):
                append(ACCEPTED)
            else:
                append(_REJECTED[Reason.INSUFFICIENT_FUNDS])
        return outcomes

    def advance_stamp(self, stamp_ms: int) -> None:
        """Move the window to a stamp with no transactions (a seal or no-op entry)."""
        self._last_stamp_ms = max(stamp_ms, self._last_stamp_ms)
        self._expire(self._last_stamp_ms - self.window_ms)

    def _expire(self, oldest_kept_ms: int) -> None:
        heap, recent = self._heap, self._recent
        while heap and heap[0][0] < oldest_kept_ms:
            _, tx_id = heapq.heappop(heap)
            del recent[tx_id]

    # -- checkpoints ---------------------------------------------------------------------

    def encode_window(self) -> bytes:
        """The duplicate window as bytes (protocol §6.4): last effective stamp (8), then the
        remembered (timestamp 8, tx id 32) records, sorted."""
        return _encode_window(self._last_stamp_ms, self.recent())

    def take_remembered(self) -> bytes:
        """The ``remembered`` file (protocol §6.4) and forget its records: the last stamp,
        then the (timestamp, tx id) records remembered since the previous call, sorted. It
        has the window file's format; ``window_at`` turns a checkpoint's window and the
        ``remembered`` files of the rounds since into the window of the last of them."""
        taken, self._remembered = self._remembered, []
        return _encode_window(self._last_stamp_ms, sorted(taken))

    @classmethod
    def from_checkpoint(
        cls, balances_file: bytes, window: bytes, *, window_ms: int = WINDOW_MS_DEFAULT
    ) -> Ledger:
        """A ledger restored from a round's balances and window files (protocol §6.4)."""
        last_stamp_ms, recent = decode_window(window)
        # A sealed window holds only ids whose timestamps the window still covers: older ones
        # expired before the seal, later ones were never remembered (protocol §6.2, §6.4).
        lowest, highest = last_stamp_ms - window_ms, last_stamp_ms + window_ms
        if recent and not (lowest <= recent[0][0] and recent[-1][0] <= highest):
            raise MalformedInput("a window record's timestamp is outside the window")
        return cls(balances_file, window_ms=window_ms, last_stamp_ms=last_stamp_ms, recent=recent)

    def check(self) -> None:
        """Every invariant in the module header (O(n): tests and recovery only)."""
        self._table.check()
        invariant(self._table.total() == 2**32 - 1, "total supply changed")
        invariant(set(self._recent) == {tx_id for _, tx_id in self._heap}, "window index")


def window_at(window: bytes, remembered: Sequence[bytes], window_ms: int) -> bytes:
    """The window file of a round (protocol §6.4), from the window file of a checkpoint
    before it and the ``remembered`` files of every round since, in round order: their
    records together, less those the last stamp has expired. MalformedInput if any file is
    not canonical or a stamp goes back."""
    stamp, records = decode_window(window)
    kept = set(records)
    for data in remembered:
        next_stamp, added = decode_window(data)
        if next_stamp < stamp:
            raise MalformedInput("a remembered file's stamp is before the previous round's")
        stamp = next_stamp
        kept.update(added)
    oldest_kept_ms = stamp - window_ms
    alive = sorted(record for record in kept if record[0] >= oldest_kept_ms)
    if len({tx_id for _, tx_id in alive}) != len(alive):
        raise MalformedInput("a transaction id is remembered twice")
    return _encode_window(stamp, alive)


def _encode_window(stamp_ms: int, records: Iterable[tuple[int, bytes]]) -> bytes:
    """The window file format (protocol §6.4): the stamp, then the sorted records."""
    return _STAMP.pack(stamp_ms) + b"".join(_RECENT_ENTRY.pack(ts, tx_id) for ts, tx_id in records)


def decode_window(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(last stamp, remembered ids) of a window file; MalformedInput if not canonical."""
    if len(data) < _STAMP.size or (len(data) - _STAMP.size) % _RECENT_ENTRY.size:
        raise MalformedInput(f"a window file is 8 bytes and 40-byte records, got {len(data)} bytes")
    (last_stamp_ms,) = _STAMP.unpack_from(data, 0)
    entries = list(_RECENT_ENTRY.iter_unpack(memoryview(data)[_STAMP.size :]))
    if any(a >= b for a, b in pairwise(entries)):
        raise MalformedInput("window records are not strictly increasing")
    if len({tx_id for _, tx_id in entries}) != len(entries):
        raise MalformedInput("a transaction id is remembered twice in the window")
    return last_stamp_ms, [(ts, bytes(tx_id)) for ts, tx_id in entries]
