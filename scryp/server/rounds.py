"""A server's sealed rounds on disk: one directory per round (protocol §8.1, docs/storage.md §3).

``DATA/rounds/round-NNNNNNNNNN/`` holds the round's torrent files (``changes``,
``transactions``, ``remembered``; in a checkpoint round ``balances`` first and ``window`` last,
§4.4.4, §6.4) and, beside them, ``raft-meta`` (the seal's Raft index, term,
stamp and state root) and, once a majority vouched for the round, ``certificate``.

A round is written into a hidden temporary directory, every file that has bytes fsynced (an
empty one has no data to flush: the directory's fsync makes its entry durable), then renamed
into place and the parent directory fsynced; ``raft-meta`` is the last file written, so a round
directory without it (a crash mid-fetch) is incomplete and ignored. Rounds are immutable once
written: writing a round again with other bytes is a bug and fails loudly.

The write comes in two steps, ``stage`` (the files into the temporary directory) and ``commit``
(fsync, ``raft-meta``, rename). A checkpoint round is written in the background from a copy of
the balances (``seal_round``, protocol §7.8), so a crash may leave a staged directory: the
server removes them when it starts (``remove_leftovers``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from scryp.core import snapshot
from scryp.core.buckets import MerkleTree
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger
from scryp.core.raft.entries import SnapshotMeta, decode_snapshot_meta, encode_snapshot_meta
from scryp.errors import MalformedInput, invariant
from scryp.keyfile import atomic_write, fsync_directory
from scryp.server.checkpoint_balances import CheckpointBalances

RAFT_META = "raft-meta"
TEMPORARY_PREFIX = ".tmp-"
CERTIFICATE = "certificate"


class StreamedFile(Protocol):
    """A file's bytes that write themselves (``CheckpointBalances``)."""

    def __len__(self) -> int: ...

    def write_to(self, file: BinaryIO) -> None: ...


FileContents = bytes | memoryview | StreamedFile


@dataclass(frozen=True, slots=True)
class StoredRound:
    round: int
    path: Path
    meta: SnapshotMeta

    @property
    def balances_path(self) -> Path:
        return self.path / snapshot.BALANCES

    @property
    def checkpoint(self) -> bool:
        """Whether the round holds the whole balances file (protocol §4.4.4)."""
        return self.balances_path.is_file()


@dataclass(frozen=True, slots=True)
class StagedRound:
    """A round's files in its temporary directory, not yet durable (``RoundStore.commit``)."""

    meta: SnapshotMeta
    temporary: Path
    unsynced: tuple[str, ...]  # the files with bytes, to fsync


class RoundStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def remove_leftovers(self) -> None:
        """Remove the temporary directories a crash left (the owning server, at its start:
        nothing names them, and a replay writes their rounds again)."""
        for leftover in self.directory.glob(f"{TEMPORARY_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def path(self, round_number: int) -> Path:
        return self.directory / snapshot.round_dir_name(round_number)

    def write(self, meta: SnapshotMeta, contents: Mapping[str, FileContents]) -> StoredRound:
        """Write a round durably (see header); idempotent for identical content.
        ``contents`` maps the names of ``snapshot.round_files`` to their bytes."""
        staged = self.stage(meta, contents)
        return staged if isinstance(staged, StoredRound) else self.commit(staged)

    def stage(
        self, meta: SnapshotMeta, contents: Mapping[str, FileContents]
    ) -> StagedRound | StoredRound:
        """A round's files written into its temporary directory, not yet durable: ``commit``
        makes them so. The round already held (identical: else a bug) if it is on disk."""
        invariant(
            tuple(contents) in (snapshot.DELTA_FILES, snapshot.CHECKPOINT_FILES),
            f"round {meta.round}: not a round's files: {tuple(contents)}",
        )
        final = self.path(meta.round)
        existing = self.get(meta.round)
        if existing is not None:
            invariant(existing.meta == meta, f"round {meta.round} sealed twice differently")
            return existing
        if final.exists():
            shutil.rmtree(final)  # an incomplete leftover of a crash
        temporary = self.directory / f"{TEMPORARY_PREFIX}{final.name}"
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir()
        for name, data in contents.items():
            with open(temporary / name, "wb") as file:
                if isinstance(data, bytes | memoryview):
                    file.write(data)
                else:
                    data.write_to(file)
        return StagedRound(meta, temporary, tuple(n for n, data in contents.items() if data))

    def commit(self, staged: StagedRound) -> StoredRound:
        """Make a staged round durable and put it in place (blocking: the disk's time)."""
        for name in staged.unsynced:  # an empty file has no data to flush (header)
            _fsync_file(staged.temporary / name)
        _write_synced(staged.temporary / RAFT_META, encode_snapshot_meta(staged.meta))
        fsync_directory(staged.temporary)
        final = self.path(staged.meta.round)
        os.replace(staged.temporary, final)
        fsync_directory(self.directory)
        return StoredRound(staged.meta.round, final, staged.meta)

    def adopt(self, fetched_dir: Path, meta: SnapshotMeta) -> StoredRound:
        """Mark a round fetched from the swarm into ``path(meta.round)`` as complete."""
        invariant(fetched_dir == self.path(meta.round), "fetched round in the wrong place")
        checkpoint = (fetched_dir / snapshot.BALANCES).is_file()
        for name in snapshot.round_files(checkpoint):
            with open(fetched_dir / name, "rb+") as file:
                os.fsync(file.fileno())
        atomic_write(fetched_dir / RAFT_META, encode_snapshot_meta(meta))
        return StoredRound(meta.round, fetched_dir, meta)

    def get(self, round_number: int) -> StoredRound | None:
        path = self.path(round_number)
        try:
            meta = decode_snapshot_meta((path / RAFT_META).read_bytes())
        except (FileNotFoundError, MalformedInput):
            return None
        if meta.round != round_number:
            return None
        return StoredRound(round_number, path, meta)

    def rounds(self) -> list[int]:
        """The complete rounds held, ascending."""
        found = []
        for entry in self.directory.iterdir():
            number = snapshot.parse_round_dir_name(entry.name)
            if number is not None and (entry / RAFT_META).is_file():
                found.append(number)
        return sorted(found)

    def read(self, round_number: int, name: str) -> bytes:
        return (self.path(round_number) / name).read_bytes()

    def save_certificate(self, round_number: int, certificate: bytes) -> None:
        atomic_write(self.path(round_number) / CERTIFICATE, certificate)

    def certificate(self, round_number: int) -> bytes | None:
        try:
            return (self.path(round_number) / CERTIFICATE).read_bytes()
        except FileNotFoundError:
            return None

    def prune(self, keep: int, keep_from: int) -> list[int]:
        """Delete the rounds older than both the newest ``keep`` and round ``keep_from``."""
        held = self.rounds()
        doomed = [r for r in held[: max(0, len(held) - keep)] if r < keep_from]
        for number in doomed:
            shutil.rmtree(self.path(number), ignore_errors=True)
        return doomed


def round_contents(
    round_number: int, checkpoint_every: int, ledger: Ledger, transactions: bytes
) -> dict[str, bytes]:
    """The files of a round just sealed on ``ledger`` (protocol §4.4.4), in torrent order:
    the whole ``balances`` only in a checkpoint round, so a seal costs what the round changed.
    Takes the ledger's changes: call once per seal."""
    checkpoint = snapshot.is_checkpoint(round_number, checkpoint_every)
    balances = {snapshot.BALANCES: ledger.balances_file()} if checkpoint else {}
    return balances | _taken_files(ledger, transactions, checkpoint)


def _taken_files(ledger: Ledger, transactions: bytes, checkpoint: bool) -> dict[str, bytes]:
    """A round's files after ``balances``: the ledger's changes and window records taken."""
    contents = {snapshot.CHANGES: ledger.take_changes(), snapshot.TRANSACTIONS: transactions}
    remembered = ledger.take_remembered()  # taken every round: the next holds only its own
    if checkpoint:
        contents[snapshot.WINDOW] = ledger.encode_window()
    else:
        contents[snapshot.REMEMBERED] = remembered
    return contents


@dataclass(frozen=True, slots=True)
class Sealing:
    """What ``seal_round`` leaves: the round's tree (for proofs, §4.4.6), its count of
    accounts, and a checkpoint's files still to write (None: the round is written)."""

    tree: MerkleTree
    accounts: int
    unwritten: dict[str, FileContents] | None
    # The checkpoint's balances, watching the ledger until written (unwatch them then).
    balances: CheckpointBalances | None
    phases_s: tuple[tuple[str, float], ...] = ()  # (step, seconds) in order


def seal_round(
    store: RoundStore,
    meta: SnapshotMeta,
    checkpoint_every: int,
    ledger: Ledger,
    transactions: bytes,
) -> Sealing:
    """The round just sealed on ``ledger``: a delta round written durably; a checkpoint
    round's files only made, its balances the ledger's own records, watched (protocol §7.8:
    the caller writes them while the ledger moves on, ``CheckpointBalances``; the write of
    360 MB at 10M accounts took 0.7-1.1 s into the page cache alone, a copy 1.3-2 s on this
    machine's cold memory). Blocking, and meant for a thread: a checkpoint compacts every
    record (~0.35 s at 10M accounts). Nothing else may change the ledger meanwhile (the
    driver awaits this; the API reads only its duplicate window)."""
    checkpoint = snapshot.is_checkpoint(meta.round, checkpoint_every)
    contents: dict[str, FileContents] = {}
    phases = _Phases()
    balances = None
    if checkpoint:
        with phases.timed("compact"):
            balances = CheckpointBalances.of(ledger)
        contents[snapshot.BALANCES] = balances
    with phases.timed("changes"):
        contents |= _taken_files(ledger, transactions, checkpoint)
    if not checkpoint:
        with phases.timed("write"):
            store.write(meta, contents)
    with phases.timed("tree"):
        tree = ledger.state_tree()
    unwritten = contents if checkpoint else None
    phased = tuple(phases.seconds.items())
    return Sealing(tree, ledger.account_count(), unwritten, balances, phased)


class _Phases:
    """How long each step of a seal took (logged when a seal is slow)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - started


def genesis_contents(genesis: Genesis) -> dict[str, bytes]:
    """Round 0's files: ``round_contents`` of a ledger fresh from the genesis (the genesis
    itself, nothing changed, no payment, an empty window), without building that ledger."""
    empty = Ledger(b"")
    return {
        snapshot.BALANCES: genesis.balances_file,
        snapshot.CHANGES: empty.take_changes(),
        snapshot.TRANSACTIONS: b"",
        snapshot.WINDOW: empty.encode_window(),
    }


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _write_synced(path: Path, data: bytes | memoryview) -> None:
    with open(path, "wb") as file:
        if data:  # an idle round's empty files: 2 of its 6 fsyncs saved
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
