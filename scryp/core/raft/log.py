"""The Raft log of one server: a snapshot (a sealed round) followed by entries.

Owns: entry storage in memory, term lookup, conflict resolution on append (Raft §5.3),
compaction to a round snapshot (Raft §7), and the commit and apply indices.

Invariants (checked by ``check``):
- ``entries[i].index == snapshot.index + 1 + i``: the log is contiguous after the snapshot;
- terms never decrease along the log, and the first entry's term >= ``snapshot.term``;
- ``snapshot.index <= applied <= committed <= last_index``;
- committed entries are never truncated or rewritten (Raft's State Machine Safety, §5.4.3);
- ``stable_index`` (entries handed to storage) is between ``snapshot.index`` and ``last_index``.
"""

from __future__ import annotations

from collections.abc import Sequence

from scryp.core.raft.entries import Entry, Seal, SnapshotMeta
from scryp.errors import invariant


class RaftLog:
    __slots__ = ("_entries", "_last_seal", "applied", "committed", "snapshot", "stable_index")

    def __init__(self, snapshot: SnapshotMeta, entries: Sequence[Entry], committed: int) -> None:
        self.snapshot = snapshot
        self._entries: list[Entry] = list(entries)
        self.committed = max(committed, snapshot.index)
        # After a restart the state machine holds the snapshot; later entries are re-applied.
        self.applied = snapshot.index
        self.stable_index = self.last_index
        # (round, stamp ms) of the newest seal, cached: the leader asks at every tick, and a
        # scan would walk every entry since the last seal. None means "scan to find out".
        self._last_seal: tuple[int, int] | None = None
        self.check()

    # -- reading -------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        """The first index held as an entry (not compacted)."""
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot.term

    def term_at(self, index: int) -> int | None:
        """The term at ``index``, or None if it is compacted away (below) or absent (above)."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if self.snapshot.index < index <= self.last_index:
            return self._entries[index - self.snapshot.index - 1].term
        return None

    def entry(self, index: int) -> Entry:
        invariant(self.first_index <= index <= self.last_index, f"no entry at {index}")
        return self._entries[index - self.snapshot.index - 1]

    def slice(self, start: int, stop: int) -> list[Entry]:
        """Entries with ``start <= index < stop``, all of which must be held."""
        invariant(self.first_index <= start <= stop <= self.last_index + 1, "slice range")
        offset = self.snapshot.index + 1
        return self._entries[start - offset : stop - offset]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up-to-date as ours?"""
        if last_term != self.last_term:
            return last_term > self.last_term
        return last_index >= self.last_index

    def last_seal(self) -> tuple[int, int]:
        """(round, stamp ms) of the newest seal in the log, or of the snapshot's seal."""
        if self._last_seal is None:
            self._last_seal = self.snapshot.round, self.snapshot.stamp_ms
            for entry in reversed(self._entries):
                if isinstance(entry.payload, Seal):
                    self._last_seal = entry.payload.round, entry.stamp_ms
                    break
        return self._last_seal

    def unstable_entries(self) -> list[Entry]:
        """Entries not yet handed to durable storage."""
        return self.slice(self.stable_index + 1, self.last_index + 1)

    # -- changing ------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries a leader created; they follow the last entry."""
        for entry in entries:
            invariant(entry.index == self.last_index + 1, "appended entry is not next")
            invariant(entry.term >= self.last_term, "appended entry's term goes back")
            self._entries.append(entry)
            if isinstance(entry.payload, Seal):
                self._last_seal = entry.payload.round, entry.stamp_ms

    def merge(self, prev_index: int, entries: Sequence[Entry]) -> int:
        """Follower side of AppendEntries after the prev entry matched (Raft §5.3 step 3-4).

        Skips entries we already have, truncates at the first conflict, appends the rest.
        Returns the index up to which our log now matches the leader's.
        """
        for position, entry in enumerate(entries):
            index = prev_index + 1 + position
            if index <= self.snapshot.index:
                continue  # compacted, hence committed, hence identical (Raft §5.4.3)
            term = self.term_at(index)
            if term == entry.term:
                continue
            if term is not None:
                invariant(index > self.committed, f"truncating committed entry {index}")
                del self._entries[index - self.snapshot.index - 1 :]
                self.stable_index = min(self.stable_index, index - 1)
                self._last_seal = None
            self.append(entries[position:])
            break
        return prev_index + len(entries)

    def commit_to(self, index: int) -> bool:
        """Raise the commit index (never lower it); True if it moved."""
        if index <= self.committed:
            return False
        invariant(index <= self.last_index, f"commit {index} beyond last index {self.last_index}")
        self.committed = index
        return True

    def compact(self, snapshot: SnapshotMeta) -> None:
        """Drop entries up to a sealed round this server has applied (Raft §7)."""
        invariant(snapshot.index <= self.applied, "compacting beyond the applied index")
        invariant(snapshot.index >= self.snapshot.index, "compacting backwards")
        invariant(self.term_at(snapshot.index) == snapshot.term, "snapshot term mismatch")
        entry = self.entry(snapshot.index) if snapshot.index > self.snapshot.index else None
        invariant(
            entry is None or entry.payload == Seal(snapshot.round), "snapshot is not at a seal"
        )
        del self._entries[: snapshot.index - self.snapshot.index]
        self.snapshot = snapshot
        self.stable_index = max(self.stable_index, snapshot.index)

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Start the log from a round loaded from elsewhere (catch-up, §7).

        Entries after the round survive only if we hold its seal entry with its term (then
        they extend the same prefix, by Log Matching); otherwise the whole log goes. Storage
        follows the same rule (``ready.py``).
        """
        invariant(snapshot.index > self.committed, "restoring a snapshot we have committed")
        if self.term_at(snapshot.index) == snapshot.term:
            del self._entries[: snapshot.index - self.snapshot.index]
            self.stable_index = max(self.stable_index, snapshot.index)
        else:
            self._entries.clear()
            self.stable_index = snapshot.index
        self.snapshot = snapshot
        self.committed = self.applied = snapshot.index
        self._last_seal = None

    def check(self) -> None:
        previous_term = self.snapshot.term
        for offset, entry in enumerate(self._entries):
            invariant(entry.index == self.snapshot.index + 1 + offset, "log is not contiguous")
            invariant(entry.term >= previous_term, "log terms decrease")
            previous_term = entry.term
        invariant(
            self.snapshot.index <= self.applied <= self.committed <= self.last_index,
            "snapshot <= applied <= committed <= last",
        )
        invariant(self.snapshot.index <= self.stable_index <= self.last_index, "stable index")
