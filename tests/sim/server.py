"""A simulated server: the server's own ``Driver`` (scryp/server/driver.py) over in-memory IO.

Everything a real server decides runs here unchanged: the Ready loop, applying entries with the
real ``Ledger``, sealing, the round protocol (seeding, shares, certificates, pointer records),
the proposal queue and forwarding, catch-up and compaction. ``SimIO`` only replaces effects:
the disk is ``DurableStore``, frames go to the simulated network, seeding and fetching finish
after a delay the cluster draws, and publishing is recorded. Its coroutines never suspend, so
the cluster runs each driver call to its end at once (``run_now``).

A crash wipes everything but ``DurableStore``; it may strike between persisting and sending
(``crash_after_persist``), which is exactly the window the persistence contract is about.
"""

from __future__ import annotations

import random
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from scryp.core import snapshot
from scryp.core.ledger import Ledger, Reason, precheck_all
from scryp.core.outcomes import OutcomeBook
from scryp.core.pointer import PointerRecord
from scryp.core.proposals import ProposalQueue
from scryp.core.raft.apply import EntryApplied
from scryp.core.raft.config import RaftConfig
from scryp.core.raft.entries import Entry, SnapshotMeta
from scryp.core.raft.node import RaftNode
from scryp.core.raft.ready import HardState, Ready
from scryp.core.rounds import RoundProtocol, RoundsConfig
from scryp.core.tx import Transaction
from scryp.core.wire import PeerFrame, Share
from scryp.crypto import KeyPair
from scryp.errors import invariant
from scryp.server.driver import Driver, DriverConfig, Report, Written, run_now
from scryp.server.rounds import round_contents

from .state_machine import Model, RoundFiles

COMPACTION_LAG_ROUNDS = 2  # rounds of log kept before compacting (the server's rule, §9.5)
# Small, so that compactions and catch-ups (always to a checkpoint round) happen in a run.
CHECKPOINT_EVERY = 3
ROUNDS_KEPT = 3  # round directories kept besides the compaction point and the certified round
SHARES_ROUNDS_AHEAD_MAX = 16
TX_STATUS_KEPT_MAX = 10_000
PROPOSALS_QUEUED_MAX = 256
# A checkpoint round's files become durable this long after its seal (the server fsyncs them
# in the background, protocol §7.8); a crash before then loses them.
CHECKPOINT_WRITE_MS = 700


class SimCrash(Exception):
    """The server crashes here (raised from inside the driver, caught by ``SimServer``)."""


@dataclass(slots=True)
class DurableStore:
    """What survives a crash: the persisted Raft state, round files and certificates."""

    hard_state: HardState
    snapshot: SnapshotMeta
    entries: list[Entry]
    rounds: dict[int, tuple[SnapshotMeta, RoundFiles]] = field(default_factory=dict)
    certificates: dict[int, bytes] = field(default_factory=dict)
    outcomes: bytearray = field(default_factory=bytearray)  # the server's DATA/outcomes

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

    def write_round(self, meta: SnapshotMeta, files: RoundFiles) -> None:
        held = self.rounds.get(meta.round)
        if held is not None:  # rounds are immutable: a replay after a restart writes the same
            invariant(held[0] == meta, f"round {meta.round} sealed twice differently")
            return
        self.rounds[meta.round] = (meta, files)

    def prune(self, keep: int, keep_from: int) -> list[int]:
        held = sorted(self.rounds)
        doomed = [r for r in held[: max(0, len(held) - keep)] if r < keep_from]
        for number in doomed:
            del self.rounds[number]
            self.certificates.pop(number, None)
        return doomed


class Hooks:
    """What the cluster does for a server's IO and observes of it."""

    def on_persist(self, server: SimServer, ready: Ready) -> None: ...
    def on_apply(self, server: SimServer, entry: Entry, applied: EntryApplied) -> None: ...
    def on_send(self, server: SimServer, target: int, frame: PeerFrame) -> None: ...
    def on_crash(self, server: SimServer, reason: str) -> None: ...
    def on_report(self, server: SimServer, report: Report) -> None: ...
    def on_certificate(self, server: SimServer, round_number: int, cert: bytes) -> None: ...
    def on_publish(self, server: SimServer, record: PointerRecord) -> None: ...
    def start_seed(self, server: SimServer, meta: SnapshotMeta) -> None: ...
    def start_fetch(self, server: SimServer, meta: SnapshotMeta) -> None: ...


@dataclass(slots=True)
class SimServer:
    id: int
    config: RaftConfig
    key: KeyPair
    quorum: tuple[bytes, ...]
    network: bytes
    store: DurableStore
    rng: random.Random
    hooks: Hooks
    skew_ms: int = 0
    driver: Driver | None = None
    node: RaftNode | None = None  # the driver's Raft core while alive (read by the checks)
    model: Model | None = None
    paused_until_ms: int = 0
    # A slow apply task (a checkpoint's write): committed entries wait, the core loop runs on.
    apply_held_until_ms: int = 0
    restart_at_ms: int | None = None
    crash_after_persist: bool = False
    incarnation: int = 0  # seeds and fetches started before a crash report to nobody
    backlog: list[tuple[int, bytes]] = field(default_factory=list)
    now_ms: int = 0  # the cluster's clock at the last call
    # Checkpoint rounds written but not yet durable: (durable at, meta, files).
    staged: list[tuple[int, SnapshotMeta, RoundFiles]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.driver is not None

    @property
    def round(self) -> int:
        return self.model.round if self.model is not None else -1

    def start(self, now_ms: int) -> None:
        """Boot (or reboot) from the durable store alone."""
        store = self.store
        _, files = store.rounds[store.snapshot.round]
        invariant(files.state_root == store.snapshot.state_root, "round file")
        raft = RaftNode(
            self.config,
            self.rng,
            now_ms=now_ms + self.skew_ms,
            hard_state=store.hard_state,
            snapshot=store.snapshot,
            entries=list(store.entries),
        )
        rounds = RoundProtocol(
            RoundsConfig(
                network=self.network,
                index=self.id,
                quorum=self.quorum,
                api=f"127.0.0.1:{7000 + self.id}",
                torrent_port=6000 + self.id,
                infos_kept_max=2 * (ROUNDS_KEPT + COMPACTION_LAG_ROUNDS),
                shares_rounds_ahead_max=SHARES_ROUNDS_AHEAD_MAX,
            ),
            self.key,
        )
        ledger = files.ledger()
        outcomes = OutcomeBook(window_ms=ledger.window_ms, kept_max=TX_STATUS_KEPT_MAX)
        outcomes.load(bytes(store.outcomes))
        self.driver = Driver(
            DriverConfig(
                COMPACTION_LAG_ROUNDS, TX_STATUS_KEPT_MAX, checkpoint_every=CHECKPOINT_EVERY
            ),
            raft=raft,
            ledger=ledger,
            rounds=rounds,
            proposals=ProposalQueue(PROPOSALS_QUEUED_MAX),
            io=SimIO(self),
            outcomes=outcomes,
        )
        self.node = raft
        assert files.balances is not None  # Raft's snapshot is always a checkpoint round
        self.model = Model(store.snapshot.round, files.balances)
        self.incarnation += 1
        self.restart_at_ms = None
        self.backlog.clear()
        self.crash_after_persist = False
        self.apply_held_until_ms = 0
        self.staged.clear()
        held = [(m, store.certificates.get(r, b"")) for r, (m, _) in sorted(store.rounds.items())]
        self.run(self.driver.boot(held))

    def reset_model(self) -> None:
        """After a catch-up the ledger is the fetched round's: follow it from there."""
        assert self.driver is not None
        self.model = Model(self.driver.newest_sealed.round, self.driver.ledger.balances_file())

    def crash(self, reason: str) -> None:
        self.driver = None
        self.node = None
        self.model = None
        self.backlog.clear()
        self.staged.clear()  # not yet durable: lost
        self.hooks.on_crash(self, reason)

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run one driver call to its end; a planted crash stops the server there."""
        try:
            run_now(coroutine)
        except SimCrash:
            self.crash("crash after persisting, before sending")

    def turn(self, now_ms: int) -> None:
        self.now_ms = now_ms
        if self.driver is not None:
            self.run(self.driver.turn(now_ms + self.skew_ms))
        self.apply(now_ms)

    def process(self, now_ms: int) -> None:
        self.now_ms = now_ms
        if self.driver is not None:
            self.run(self.driver.process(now_ms + self.skew_ms))
        self.apply(now_ms)

    def apply(self, now_ms: int) -> None:
        """The server's apply task (protocol §7.8), unless a fault holds it back; then the
        checkpoint writes that are durable by now."""
        if self.driver is not None and now_ms >= self.apply_held_until_ms:
            self.run(self.driver.apply_pending())
        while self.driver is not None and self.staged and self.staged[0][0] <= now_ms:
            _, meta, files = self.staged.pop(0)
            self.store.write_round(meta, files)
            self.driver.post(Written(meta))


class SimIO:
    """``DriverIO`` in memory; none of its coroutines ever suspends."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.hooks = server.hooks

    async def persist(self, ready: Ready) -> None:
        server = self.server
        server.store.persist(ready)  # our "fsync"
        self.hooks.on_persist(server, ready)
        if server.crash_after_persist:
            raise SimCrash

    def send(self, peer: int, frame: PeerFrame) -> None:
        self.hooks.on_send(self.server, peer, frame)

    def apply_soon(self) -> None:
        pass  # the server applies after each driver call (``SimServer.apply``)

    async def precheck(self, txs: Sequence[Transaction]) -> list[Reason | None]:
        return precheck_all(txs)

    async def write_round(self, meta: SnapshotMeta, ledger: Ledger, transactions: bytes) -> bool:
        server = self.server
        contents = round_contents(meta.round, CHECKPOINT_EVERY, ledger, transactions)
        model = server.model
        if model is not None and model.round == meta.round:
            model.check_changes(contents[snapshot.CHANGES])
        if snapshot.is_checkpoint(meta.round, CHECKPOINT_EVERY) and meta.round not in (
            server.store.rounds
        ):
            due_ms = server.now_ms + CHECKPOINT_WRITE_MS
            server.staged.append((due_ms, meta, RoundFiles.of(contents)))
            return False
        server.store.write_round(meta, RoundFiles.of(contents))
        return True

    async def keep_outcomes(self, records: bytes) -> None:
        self.server.store.outcomes += records

    def stored_round(self, round_number: int) -> tuple[SnapshotMeta, bytes] | None:
        store = self.server.store
        held = store.rounds.get(round_number)
        if held is None:
            return None
        return held[0], store.certificates.get(round_number, b"")

    def start_seed(self, meta: SnapshotMeta) -> None:
        self.hooks.start_seed(self.server, meta)

    def start_backfill(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        pass  # the simulator keeps no outcomes beyond its own (protocol §6.5 backfill: real)

    def start_fetch(self, meta: SnapshotMeta) -> None:
        self.hooks.start_fetch(self.server, meta)

    def peer_seeds(self, peer: int, share: Share) -> None:
        pass  # the simulated swarm needs no address to fetch from

    async def store_certificate(self, round_number: int, certificate: bytes) -> None:
        self.server.store.certificates[round_number] = certificate
        self.hooks.on_certificate(self.server, round_number, certificate)

    def publish(self, record: PointerRecord) -> None:
        self.hooks.on_publish(self.server, record)

    def drop_torrent(self, round_number: int, infohash: bytes) -> None:
        pass

    def prune_rounds(self, keep_from: int) -> list[int]:
        return self.server.store.prune(ROUNDS_KEPT, keep_from)

    def report(self, report: Report) -> None:
        self.hooks.on_report(self.server, report)

    def applied(self, entry: Entry, applied: EntryApplied, ledger: Ledger) -> None:
        self.hooks.on_apply(self.server, entry, applied)
