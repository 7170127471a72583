"""A checkpoint round's ``balances`` written out while the ledger moves on (protocol §7.8).

Owns: a chunk-granular copy-on-write over the ledger's own records. The writer (a worker
thread) writes the records chunk by chunk, straight from the ledger's memory; the ledger (the
event loop's thread) tells it before each balance it writes into them
(``BalanceTable.watched_records``), and a chunk not yet written is copied out first. So the
file holds the records as they were when the round was sealed, and nothing is copied but the
chunks the ledger changes during the write (a few MB in a busy second at 10M accounts, where
a whole copy cost 1.3-2 s on this machine's cold memory: docs/BENCHMARKS.md).

Invariants: every chunk is written exactly once, in order, either from the records (under
the lock, so no write into it can interleave) or from the copy saved before the first write
into it; once a chunk is written, the ledger's writes into it need nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import BinaryIO

from scryp.core.ledger import Ledger

CHUNK_BYTES = 1 << 20  # a write of 1 MB under the lock holds the ledger back ~1-3 ms at most


def _nothing() -> None:
    pass


class CheckpointBalances:
    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._chunk_bytes = chunk_bytes
        self._records = bytearray()
        self._size = 0
        self._lock = threading.Lock()
        self._written = 0  # chunks 0.._written-1 are in the file
        self._saved: dict[int, bytes] = {}
        self.saved_bytes = 0  # copied because the ledger wrote first (a figure for the log)

    @classmethod
    def of(cls, ledger: Ledger, chunk_bytes: int = CHUNK_BYTES) -> CheckpointBalances:
        """The ledger's balances as they are now, watching its records until ``unwatch``."""
        balances = cls(chunk_bytes)
        balances.attach(ledger.watched_balances(balances))
        return balances

    def attach(self, records: bytearray) -> None:
        """The records to write: ``Ledger.watched_balances(self)``, before any write."""
        self._records = records
        self._size = len(records)

    def __len__(self) -> int:
        return self._size

    def before_write(self, offset: int) -> None:
        """The ledger is about to write at ``offset``: keep the chunk as it is, if unwritten."""
        chunk = offset // self._chunk_bytes
        if chunk < self._written:  # an int read is atomic: at worst we take the lock below
            return
        with self._lock:
            if chunk < self._written or chunk in self._saved:
                return
            start = chunk * self._chunk_bytes
            with memoryview(self._records) as view:
                saved = bytes(view[start : start + self._chunk_bytes])
            self._saved[chunk] = saved
            self.saved_bytes += len(saved)

    def write_to(self, file: BinaryIO, between_chunks: Callable[[], None] = _nothing) -> None:
        """Write every chunk, in order (blocking: a worker thread's job). ``between_chunks``
        runs after each chunk, outside the lock (tests let the ledger write there)."""
        chunks = -(-self._size // self._chunk_bytes)
        for chunk in range(chunks):
            start = chunk * self._chunk_bytes
            with self._lock:
                saved = self._saved.pop(chunk, None)
                if saved is None:
                    with memoryview(self._records) as view:
                        file.write(view[start : start + self._chunk_bytes])
                self._written = chunk + 1
            if saved is not None:
                file.write(saved)
            between_chunks()
        self._records = bytearray()  # the ledger's memory is its own again
