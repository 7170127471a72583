"""The ``Ready`` batch: everything the driver must do after feeding the core (etcd style).

Owns: ``HardState`` and ``Ready``. The driver's loop, in this order, for each Ready:

1. **persist** ``hard_state`` (if not None), then ``snapshot`` (if not None: record it; if
   the stored entry at its index has its term, drop the stored entries up to that index,
   otherwise drop every stored entry), then ``entries`` (replacing any stored entries at or
   after ``entries[0].index``), durably (fsync);
2. **send** ``messages`` — only now: a vote or an acknowledgement promises that the state
   above is durable (Raft §5.2/§5.3, Figure 2 "before responding to RPCs");
3. **fetch** round ``catch_up.round`` from the swarm if ``catch_up`` is set (not again if a
   fetch of it is under way); once it has arrived and gives ``catch_up.state_root``,
   call ``RaftNode.restore`` (possibly much later, between two Ready cycles);
4. **apply** ``committed`` entries to the state machine, in order;
5. call ``RaftNode.advance(ready)``.

A crash anywhere in this sequence is safe: the core restarts from what was persisted.
"""

from __future__ import annotations

from dataclasses import dataclass

from scryp.core.raft.entries import Entry, SnapshotMeta
from scryp.core.raft.messages import Message


@dataclass(frozen=True, slots=True)
class HardState:
    """What Raft must remember across crashes besides the log (Raft Figure 2)."""

    term: int
    voted_for: int | None
    committed: int


@dataclass(frozen=True, slots=True)
class Ready:
    hard_state: HardState | None
    snapshot: SnapshotMeta | None
    entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    committed: tuple[Entry, ...]
    catch_up: SnapshotMeta | None

    def is_empty(self) -> bool:
        return (
            self.hard_state is None
            and self.snapshot is None
            and not self.entries
            and not self.messages
            and not self.committed
            and self.catch_up is None
        )
