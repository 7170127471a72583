"""A server's payment outcomes on disk: ``DATA/outcomes`` (protocol §6.5, docs/storage.md §4).

An append-only file of ``OutcomeBook`` records, fsynced at every seal that decided anything,
so ``GET /tx`` answers the same after a restart. When it holds twice ``kept_max`` records it
is rewritten (atomically) as the book's own encoding: the horizon, then the kept outcomes.
A server that starts from a round it did not apply itself and has no file (its data
directory was restored from a round) knows nothing before that round: its horizon says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from scryp.core.outcomes import RECORD_BYTES, OutcomeBook
from scryp.errors import ConfigError, MalformedInput
from scryp.keyfile import atomic_write


class OutcomeFile:
    def __init__(self, path: Path, book: OutcomeBook) -> None:
        self.path = path
        self.book = book
        self._records = 0

    @classmethod
    def open(cls, path: Path, *, window_ms: int, kept_max: int, start_stamp_ms: int) -> OutcomeFile:
        """Load the book (blocking). ``start_stamp_ms``: the stamp of the round the server
        starts from, the horizon when there is no file to say more."""
        book = OutcomeBook(window_ms=window_ms, kept_max=kept_max)
        file = cls(path, book)
        if not path.exists():
            book.move_horizon(start_stamp_ms + 1 if start_stamp_ms else 0)
            atomic_write(path, book.encode())
            file._records = 1
            return file
        data = path.read_bytes()
        cut = len(data) - len(data) % RECORD_BYTES  # a torn last record: a crash mid-append
        try:
            book.load(data[:cut])
        except MalformedInput as error:
            raise ConfigError(f"{path}: {error}") from None
        if cut != len(data):
            with open(path, "r+b") as handle:
                handle.truncate(cut)
                os.fsync(handle.fileno())
        file._records = cut // RECORD_BYTES
        return file

    def append(self, records: bytes) -> None:
        """Keep ``records`` durably (blocking: run it in a thread)."""
        if not records:
            return  # an idle round writes nothing
        with open(self.path, "ab") as handle:
            handle.write(records)
            handle.flush()
            os.fsync(handle.fileno())
        self._records += len(records) // RECORD_BYTES
        if self._records > 2 * self.book.kept_max + 1:
            encoded = self.book.encode()
            atomic_write(self.path, encoded)
            self._records = len(encoded) // RECORD_BYTES
