"""A simulated server: the Raft core, its durable store, the ledger, and the Ready driver.

The driver follows ``scryp/core/raft/ready.py`` to the letter: persist, send, apply, advance.
A crash wipes everything but ``DurableStore``; it may strike between persisting and sending
(``crash_after_persist``), which is exactly the window the persistence contract is about.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from scryp.core.raft.codec import encode_message
from scryp.core.raft.config import RaftConfig
from scryp.core.raft.entries import Entry, Seal, SnapshotMeta
from scryp.core.raft.node import RaftNode
from scryp.core.raft.ready import HardState, Ready
from scryp.errors import invariant

from .state_machine import Applied, Checkpoint, SimLedger

# How many sealed rounds of log a server keeps before compacting (followers further behind
# than this are told to catch up from a round).
RETAINED_ROUNDS = 2


@dataclass(slots=True)
class DurableStore:
    """What survives a crash: the persisted Raft state and the round files on disk."""

    hard_state: HardState
    snapshot: SnapshotMeta
    entries: list[Entry]
    rounds: dict[int, Checkpoint] = field(default_factory=dict)

    def persist(self, ready: Ready) -> None:
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state
        if ready.snapshot is not None:
            self._persist_snapshot(ready.snapshot)
        if ready.entries:
            first = ready.entries[0].index
            keep = first - self.snapshot.index - 1
            invariant(0 <= keep <= len(self.entries), "persisted entries leave a gap")
            del self.entries[keep:]
            self.entries.extend(ready.entries)

    def _persist_snapshot(self, snapshot: SnapshotMeta) -> None:
        invariant(snapshot.round in self.rounds, "snapshot persisted before its round files")
        offset = snapshot.index - self.snapshot.index
        held = 0 < offset <= len(self.entries) and self.entries[offset - 1].term == snapshot.term
        self.entries = self.entries[offset:] if held else []
        self.snapshot = snapshot
        # Old round files would go to the seeders; keep the recent ones only.
        for old in [r for r in self.rounds if r < snapshot.round - RETAINED_ROUNDS]:
            del self.rounds[old]


class Hooks:
    """What the cluster observes of a server (invariant checks and the transcript)."""

    def on_persist(self, server: SimServer, ready: Ready) -> None: ...
    def on_apply(self, server: SimServer, entry: Entry, applied: Applied) -> None: ...
    def on_send(self, server: SimServer, target: int, frame: bytes) -> None: ...
    def on_catch_up(self, server: SimServer, snapshot: SnapshotMeta) -> None: ...
    def on_crash(self, server: SimServer, reason: str) -> None: ...


@dataclass(slots=True)
class SimServer:
    id: int
    config: RaftConfig
    store: DurableStore
    rng: random.Random
    hooks: Hooks
    skew_ms: int = 0
    node: RaftNode | None = None
    ledger: SimLedger | None = None
    paused_until_ms: int = 0
    restart_at_ms: int | None = None
    crash_after_persist: bool = False
    fetch: tuple[int, SnapshotMeta] | None = None  # (due ms, round) being fetched
    seals: dict[int, SnapshotMeta] = field(default_factory=dict)
    offers: list[SnapshotMeta] = field(default_factory=list)  # rounds stored, to offer Raft
    backlog: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.node is not None

    def start(self, now_ms: int) -> None:
        """Boot (or reboot) from the durable store alone."""
        store = self.store
        self.ledger = SimLedger(store.rounds[store.snapshot.round])
        invariant(self.ledger.checkpoint().state_hash == store.snapshot.state_hash, "round file")
        self.node = RaftNode(
            self.config,
            self.rng,
            now_ms=now_ms + self.skew_ms,
            hard_state=store.hard_state,
            snapshot=store.snapshot,
            entries=list(store.entries),
        )
        self.seals = {store.snapshot.round: store.snapshot}
        self.offers = [store.snapshot]
        self.restart_at_ms = None
        self.fetch = None
        self.backlog.clear()
        self.crash_after_persist = False

    def crash(self, reason: str) -> None:
        self.node = None
        self.ledger = None
        self.fetch = None
        self.backlog.clear()
        self.hooks.on_crash(self, reason)

    def drain(self, now_ms: int, swarm: dict[int, Checkpoint], fetch_delay_ms: int) -> None:
        """Run Ready batches until the core has nothing more to say."""
        while self.node is not None and self.node.has_ready():
            node, ledger = self.node, self.ledger
            assert ledger is not None
            ready = node.ready()
            self.store.persist(ready)  # 1. persist (our "fsync")
            self.hooks.on_persist(self, ready)
            if self.crash_after_persist:
                self.crash("crash after persisting, before sending")
                return
            for message in ready.messages:  # 2. send, only now
                self.hooks.on_send(self, message.target, encode_message(message))
            if ready.catch_up is not None and self.fetch is None:  # 3. fetch from the swarm
                self.fetch = (now_ms + fetch_delay_ms, ready.catch_up)
                self.hooks.on_catch_up(self, ready.catch_up)
            for entry in ready.committed:  # 4. apply
                applied = ledger.apply(entry)
                self.hooks.on_apply(self, entry, applied)
                if isinstance(entry.payload, Seal):
                    self._on_sealed(entry, applied, swarm)
            node.advance(ready)  # 5. advance
            for meta in self.offers:  # the round is on disk and in the swarm: servable
                node.offer(meta)
            self.offers.clear()
            self._maybe_compact()

    def _on_sealed(self, entry: Entry, applied: Applied, swarm: dict[int, Checkpoint]) -> None:
        assert self.ledger is not None and applied.sealed_hash is not None
        round_number = applied.sealed_round
        assert round_number is not None
        checkpoint = self.ledger.checkpoint()
        # Write the round's files, then offer them to the swarm (next issue: seed a torrent).
        self.store.rounds[round_number] = checkpoint
        swarm.setdefault(round_number, checkpoint)
        meta = SnapshotMeta(
            index=entry.index,
            term=entry.term,
            round=round_number,
            stamp_ms=entry.stamp_ms,
            state_hash=applied.sealed_hash,
        )
        self.seals[round_number] = meta
        self.offers.append(meta)

    def _maybe_compact(self) -> None:
        assert self.node is not None and self.ledger is not None
        target_round = self.ledger.round - RETAINED_ROUNDS
        meta = self.seals.get(target_round)
        if meta is not None and meta.index > self.node.log.snapshot.index:
            self.node.compact(meta)
            for old in [r for r in self.seals if r < target_round]:
                del self.seals[old]

    def finish_fetch(self, now_ms: int, swarm: dict[int, Checkpoint]) -> bool:
        """The round's files arrived (or not): load them and tell the core. True if loaded."""
        assert self.node is not None and self.fetch is not None
        due_ms, snapshot = self.fetch
        if now_ms < due_ms:
            return False
        self.fetch = None
        checkpoint = swarm.get(snapshot.round)
        # Pair check (TigerBeetle): the bytes must hash to what the leader's metadata says.
        if checkpoint is None or checkpoint.state_hash != snapshot.state_hash:
            return False
        self.store.rounds[snapshot.round] = checkpoint  # the files land on disk first
        if not self.node.restore(snapshot):
            return False
        self.ledger = SimLedger(checkpoint)
        self.seals = {snapshot.round: snapshot}
        self.node.offer(snapshot)
        return True


HookFactory = Callable[[], Hooks]
