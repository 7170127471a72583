"""The one driver around a server's cores: Raft, the ledger, the round protocol and the proposal
queue, with every effect behind an injected ``DriverIO``. The server (``scryp.server.node``)
and the simulator (``tests/sim/server.py``) both run this code.

Owns: the Ready loop of ``scryp.core.raft.ready`` (persist, send, fetch, apply, advance), then
the offers of seeded checkpoint rounds and compaction to the newest checkpoint round at least
``compaction_lag_rounds`` seals back (protocol §4.4.4: only a checkpoint round holds the
balances a restart or a catch-up starts from, so Raft's snapshot is always one);
the application of committed entries (``apply_entry``) with each payment's outcome kept for the
API; the hand-off seal → round files → round protocol; and the routing of the round protocol's
and the proposal queue's actions to IO.

Concurrency: every method runs on one event loop. ``turn``/``process`` (the core loop) touch
Raft; ``apply_pending`` (the apply task) applies the committed entries queued by the Readies,
one at a time in log order, so a seal's slow write never holds up ticks, heartbeats and
acknowledgements (protocol §7.8). The two share the ledger only through that queue and the
apply lock, which a catch-up takes before it replaces the ledger. Slow IO (seeding a round,
fetching one for a catch-up) is started with a non-blocking call and reports back through
``post`` (``Seeded``, ``SeedFailed``, ``Fetched``, ``FetchFailed``), which the next
``process`` handles. An IO whose calls never suspend lets a caller run the coroutines to the
end synchronously (the simulator does, ``apply_pending`` included).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scryp.core.ledger import ACCEPTED, Ledger, Reason
from scryp.core.outcomes import OutcomeBook, horizon_record
from scryp.core.pointer import PointerRecord
from scryp.core.proposals import ProposalQueue, Propose, Taken
from scryp.core.raft import Entry, Payments, ProposeResult, RaftNode, Ready, Role, SnapshotMeta
from scryp.core.raft.apply import EntryApplied, apply_entry, decode_payments
from scryp.core.raft.codec import decode_message, encode_message
from scryp.core.rounds import (
    Action,
    Certified,
    Diverged,
    DropTorrent,
    OfferRound,
    PeerSeeds,
    PublishRecord,
    RoundProtocol,
    SeedRound,
    SendFrame,
    ShareRefused,
    StoreCertificate,
)
from scryp.core.snapshot import CHECKPOINT_EVERY_DEFAULT, is_checkpoint
from scryp.core.tx import Transaction
from scryp.core.wire import Ask, Forward, PeerFrame, RaftFrame, Share
from scryp.errors import InvariantViolated, MalformedInput, RemoteError

# -- what slow IO reports back (``Driver.post``) --------------------------------------------


@dataclass(frozen=True, slots=True)
class Seeded:
    round: int
    infohash: bytes
    infohash_v2: bytes
    transactions: int


@dataclass(frozen=True, slots=True)
class SeedFailed:
    round: int
    reason: str


@dataclass(frozen=True, slots=True)
class Fetched:
    meta: SnapshotMeta
    ledger: Ledger  # restored from the fetched round's files, already stored on disk


@dataclass(frozen=True, slots=True)
class FetchFailed:
    meta: SnapshotMeta
    reason: str


@dataclass(frozen=True, slots=True)
class Written:
    """A sealed round whose ``write_round`` returned before its files were durable now is."""

    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class Backfilled:
    """Payments the rounds skipped by a catch-up accepted, checked by replay (§6.5):
    (tx id, its timestamp, round) each."""

    accepted: tuple[tuple[bytes, int, int], ...]


Event = Seeded | SeedFailed | Fetched | FetchFailed | Backfilled | Written


# -- what the driver reports (to log, or for the simulator's checks) ------------------------


@dataclass(frozen=True, slots=True)
class Sealed:
    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class CatchingUp:
    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class CaughtUp:
    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class Compacted:
    round: int


@dataclass(frozen=True, slots=True)
class BadFrame:
    peer: int
    reason: str


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This server's Raft role or term changed (a log line: elections show in the logs)."""

    term: int
    role: Role
    leader: int | None


@dataclass(frozen=True, slots=True)
class PaymentsDropped:
    count: int
    reason: str


Report = (
    Certified
    | Diverged
    | ShareRefused
    | Sealed
    | CatchingUp
    | CaughtUp
    | Compacted
    | BadFrame
    | PaymentsDropped
    | RoleChanged
    | SeedFailed
    | FetchFailed
)


class DriverIO(Protocol):
    """The effects the driver needs; the server does them for real, the simulator in memory."""

    async def persist(self, ready: Ready) -> None:
        """Make ``ready``'s hard state, snapshot and entries durable (ready.py step 1)."""

    def send(self, peer: int, frame: PeerFrame) -> None: ...

    async def precheck(self, txs: Sequence[Transaction]) -> list[Reason | None]: ...

    async def write_round(self, meta: SnapshotMeta, ledger: Ledger, transactions: bytes) -> bool:
        """Store the sealed round's files (protocol §8.1, §9.4), done with ``ledger`` on
        return. True: durable now; False: ``Written(meta)`` is posted once they are (§7.8)."""

    async def keep_outcomes(self, records: bytes) -> None:
        """Append payments' outcome records durably (``OutcomeBook`` form, protocol §6.5)."""

    def stored_round(self, round_number: int) -> tuple[SnapshotMeta, bytes] | None:
        """A round still on disk (its metadata and stored certificate), or None."""

    def start_seed(self, meta: SnapshotMeta) -> None:
        """Build and seed the round's torrent; ``post`` ``Seeded`` or ``SeedFailed`` later."""

    def start_fetch(self, meta: SnapshotMeta) -> None:
        """Fetch the round from the swarm; ``post`` ``Fetched`` or ``FetchFailed`` later."""

    def start_backfill(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        """Learn what rounds after ``since`` up to ``to`` accepted; ``post`` ``Backfilled``
        if that could be checked (else nothing: those outcomes stay unknown)."""

    def peer_seeds(self, peer: int, share: Share) -> None:
        """A verified share: where a peer seeds a round (a catch-up may wait for one)."""

    async def store_certificate(self, round_number: int, certificate: bytes) -> None: ...

    def publish(self, record: PointerRecord) -> None: ...

    def drop_torrent(self, round_number: int, infohash: bytes) -> None: ...

    def prune_rounds(self, keep_from: int) -> list[int]:
        """Delete old rounds from disk, none from ``keep_from`` on; return those deleted."""

    def report(self, report: Report) -> None: ...

    def apply_soon(self) -> None:
        """Committed entries wait: run ``Driver.apply_pending`` soon (the apply task)."""

    def applied(self, entry: Entry, applied: EntryApplied, ledger: Ledger) -> None:
        """Observation only: a committed entry was applied to ``ledger``."""


@dataclass(frozen=True, slots=True)
class DriverConfig:
    compaction_lag_rounds: int
    outcomes_kept_max: int
    inbox_frames_max: int = 10_000
    # Committed entries waiting to be applied beyond which the leader proposes nothing new.
    apply_backlog_entries_max: int = 64
    checkpoint_every: int = CHECKPOINT_EVERY_DEFAULT


class Driver:
    """Create with the cores built from durable state, then ``boot`` and ``turn`` often."""

    def __init__(
        self,
        config: DriverConfig,
        *,
        raft: RaftNode,
        ledger: Ledger,
        rounds: RoundProtocol,
        proposals: ProposalQueue,
        io: DriverIO,
        outcomes: OutcomeBook | None = None,
    ) -> None:
        self.config = config
        self.raft = raft
        self.ledger = ledger
        self.rounds = rounds
        self.proposals = proposals
        self.io = io
        self.now_ms = 0
        # What became of each payment (GET /tx): the first final outcome stands (§6.5).
        self.outcomes = outcomes or OutcomeBook(
            window_ms=ledger.window_ms, kept_max=config.outcomes_kept_max
        )
        self._round_outcomes: list[bytes] = []  # records to keep at the next seal
        # Bounded: if the core falls behind, the oldest peer frames go (Raft resends).
        self._inbox: deque[tuple[int, PeerFrame]] = deque(maxlen=config.inbox_frames_max)
        self._events: deque[Event] = deque()
        self._offers: deque[SnapshotMeta] = deque()
        # The newest seals, oldest first: the first is the compaction point once full.
        self._sealed: deque[SnapshotMeta] = deque([raft.log.snapshot])
        # Checkpoint rounds sealed since Raft's snapshot (itself one), oldest first.
        self._checkpoints: deque[SnapshotMeta] = deque([raft.log.snapshot])
        self._round_txs: list[bytes] = []
        # Committed entries handed over by the Readies, applied by ``apply_pending`` in order.
        self._to_apply: deque[Entry] = deque()
        self._apply_lock = asyncio.Lock()  # held while one entry is applied (and for restore)
        self._office: tuple[int, Role, int | None] = (raft.term, raft.role, raft.leader_id)
        self._fetching: int | None = None
        # The round of the last snapshot made durable: a restart loads it, so it stays on disk.
        self._durable_snapshot_round = raft.log.snapshot.round

    # -- reads -----------------------------------------------------------------------------

    @property
    def newest_sealed(self) -> SnapshotMeta:
        return self._sealed[-1]

    @property
    def compaction_point(self) -> int:
        return self.raft.log.snapshot.round

    def is_checkpoint(self, round_number: int) -> bool:
        return is_checkpoint(round_number, self.config.checkpoint_every)

    # -- inputs ----------------------------------------------------------------------------

    async def boot(self, held: Sequence[tuple[SnapshotMeta, bytes]]) -> None:
        """Seed (and re-certify) every round still on disk, with its stored certificate."""
        for meta, certificate in held:
            await self._route(self.rounds.sealed(meta, certificate))

    def receive(self, peer: int, frame: PeerFrame) -> None:
        self._inbox.append((peer, frame))

    def post(self, event: Event) -> None:
        self._events.append(event)

    def submit(self, txs: Sequence[bytes]) -> str | None:
        """Prechecked payments from a client; None, or why they cannot be taken now."""
        raft = self.raft
        leading = raft.role is Role.LEADER
        taken: Taken = self.proposals.submit(txs, leading, raft.leader_id, self.now_ms)
        if taken.forward is not None:
            self.io.send(taken.forward.leader, Forward(taken.forward.txs))
        return taken.refusal

    @property
    def apply_backlog(self) -> int:
        """Committed entries handed over and not yet applied."""
        return len(self._to_apply)

    async def turn(self, now_ms: int) -> None:
        """Time passed: the frames that arrived first, then tick the cores, then ``process``.
        Frames first: after a stall of our own, what the others sent meanwhile is news, not
        silence (protocol §7.6)."""
        self.now_ms = max(self.now_ms, now_ms)
        await self._step_inbox()
        self.raft.tick(self.now_ms)
        await self._route(self.rounds.tick(self.now_ms))
        await self.process(self.now_ms)

    async def process(self, now_ms: int) -> None:
        """Handle what arrived (IO results, peer frames, payments), then every Ready."""
        self.now_ms = max(self.now_ms, now_ms)
        while self._events:
            await self._on_event(self._events.popleft())
        await self._step_inbox()
        raft = self.raft
        # Behind on applying: new payments wait in the proposal queue (protocol §7.8).
        proposing = len(self._to_apply) <= self.config.apply_backlog_entries_max
        taken = (
            self.proposals.take(raft.role is Role.LEADER, raft.leader_id, self.now_ms)
            if proposing
            else ()
        )
        for action in taken:
            if isinstance(action, Propose):
                self._propose(action.txs)
            else:
                # Taken while we led; we lost office since: the new leader gets them (§9.3).
                self.io.send(action.leader, Forward(action.txs))
        self._offer()
        while raft.has_ready():
            await self._handle(raft.ready())
        self._compact()
        office = (raft.term, raft.role, raft.leader_id)
        if office != self._office:
            self._office = office
            self.io.report(RoleChanged(*office))

    async def apply_pending(self) -> None:
        """Apply every committed entry handed over so far, in log order (the apply task)."""
        while self._to_apply:
            async with self._apply_lock:
                if not self._to_apply:  # a catch-up dropped them meanwhile
                    return
                await self._apply(self._to_apply.popleft())

    # -- steps -----------------------------------------------------------------------------

    async def _step_inbox(self) -> None:
        while self._inbox:
            peer, frame = self._inbox.popleft()
            await self._step(peer, frame)

    async def _on_event(self, event: Event) -> None:
        match event:
            case Seeded():
                actions = self.rounds.seeded(
                    event.round, event.infohash, event.infohash_v2, event.transactions
                )
                await self._route(actions)
            case SeedFailed():
                self.io.report(event)
                await self._route(self.rounds.seed_failed(event.round, self.now_ms))
            case Fetched():
                async with self._apply_lock:  # not while an entry is half applied
                    await self._restore(event)
            case FetchFailed():
                self._fetching = None
                self.io.report(event)
            case Written(meta=meta):
                await self._written(meta)
            case Backfilled():
                records = []
                for tx_id, timestamp_ms, round_number in event.accepted:
                    # The deciding entry's stamp is within the window of the timestamp: the
                    # later bound keeps the horizon conservative if this is forgotten later.
                    stamp_ms = timestamp_ms + self.ledger.window_ms
                    decided = self.outcomes.decide(
                        tx_id, timestamp_ms, ACCEPTED, round_number, stamp_ms
                    )
                    if decided is not None:
                        records.append(decided.encode())
                await self.io.keep_outcomes(b"".join(records))

    async def _restore(self, event: Fetched) -> None:
        """A round fetched for a catch-up: the ledger becomes it, if Raft still wants it."""
        self._fetching = None
        behind = self._sealed[-1]  # the newest round this server sealed itself
        if not self.raft.restore(event.meta):
            return
        self._to_apply.clear()  # all committed before the fetched round: superseded by it
        self.ledger = event.ledger
        self._sealed = deque([event.meta])
        self._checkpoints = deque([event.meta])
        self._round_txs = []
        # Decisions before this round were made where we cannot see (§6.5).
        self.outcomes.move_horizon(event.meta.stamp_ms + 1)
        self._round_outcomes = []
        await self.io.keep_outcomes(horizon_record(self.outcomes.horizon_ms))
        self.io.report(CaughtUp(event.meta))
        self.io.start_backfill(behind, event.meta)
        stored = self.io.stored_round(event.meta.round)
        certificate = stored[1] if stored is not None else b""
        await self._route(self.rounds.sealed(event.meta, certificate))

    async def _step(self, peer: int, frame: PeerFrame) -> None:
        match frame:
            case RaftFrame(body=body):
                try:
                    message = decode_message(body)
                    if message.source != peer:
                        raise MalformedInput(f"server {peer} sent a message as {message.source}")
                    self.raft.step(message)
                except RemoteError as error:
                    self.io.report(BadFrame(peer, str(error)))
            case Forward(txs=txs):
                # Payments a follower prechecked; apply checks them again, as every server does.
                forwarded = self.proposals.forwarded(txs, self.raft.role is Role.LEADER)
                if forwarded is not None:
                    self._propose(forwarded.txs)
            case Share():
                await self._route(self.rounds.share_received(peer, frame))
            case Ask(round=round_number):
                actions = self.rounds.ask_received(peer, round_number)
                if not actions and not self.rounds.knows(round_number):
                    # Still on disk (the compaction point is never pruned): seed it again,
                    # and our share goes to everyone, the asker included.
                    stored = self.io.stored_round(round_number)
                    if stored is not None:
                        actions = self.rounds.sealed(*stored)
                await self._route(actions)

    def _propose(self, txs: Sequence[bytes]) -> None:
        result = self.raft.propose(list(txs))
        if result is not ProposeResult.QUEUED:
            self.io.report(PaymentsDropped(len(txs), str(result)))

    def _offer(self) -> None:
        while self._offers:
            self.raft.offer(self._offers.popleft())

    async def _handle(self, ready: Ready) -> None:
        raft = self.raft
        await self.io.persist(ready)  # 1. persist, before anything that promises it is sent
        if ready.snapshot is not None:
            self._durable_snapshot_round = ready.snapshot.round
        for message in ready.messages:  # 2. send
            self.io.send(message.target, RaftFrame(encode_message(message)))
        catch_up = ready.catch_up  # 3. fetch a round from the swarm, in the background
        if catch_up is not None and self._fetching is None:
            self._fetching = catch_up.round
            self.io.report(CatchingUp(catch_up))
            await self._route(self.rounds.want(catch_up.round))
            self.io.start_fetch(catch_up)
        self._to_apply.extend(ready.committed)  # 4. apply: in the apply task (§7.8)
        if ready.committed:
            self.io.apply_soon()
        raft.advance(ready)  # 5. advance
        self._offer()  # the rounds seeded meanwhile may be named in a catch-up (§9.5)

    async def _apply(self, entry: Entry) -> None:
        """Apply one committed entry; around ``apply_entry`` only what a server adds: parallel
        signature checks, outcomes for the API, the sealed round written and handed on."""
        ledger = self.ledger
        prechecked = decoded = None
        if isinstance(entry.payload, Payments):
            decoded = decode_payments(entry.payload)
            prechecked = await self.io.precheck(decoded)
        applied = apply_entry(ledger, entry, prechecked, decoded)
        self.io.applied(entry, applied, ledger)
        open_round = self._sealed[-1].round + 1
        self.proposals.settled(tx.tx_id for tx in applied.txs)  # no need to send them again
        for tx, outcome in zip(applied.txs, applied.outcomes, strict=True):
            if outcome.accepted:
                self._round_txs.append(tx.raw)
            decided = self.outcomes.decide(
                tx.tx_id, tx.timestamp_ms, outcome, open_round, entry.stamp_ms
            )
            if decided is not None:
                self._round_outcomes.append(decided.encode())
        if applied.sealed_round is None or applied.state_root is None:
            return
        meta = SnapshotMeta(
            index=entry.index,
            term=entry.term,
            round=applied.sealed_round,
            stamp_ms=entry.stamp_ms,
            state_root=applied.state_root,
        )
        transactions = b"".join(self._round_txs)
        self._round_txs = []
        # Outcomes first: a crash between the two re-applies the entries, which decides the
        # same outcomes again (a no-op in the book) and writes the round.
        await self.io.keep_outcomes(b"".join(self._round_outcomes))
        self._round_outcomes = []
        durable = await self.io.write_round(meta, ledger, transactions)
        self._sealed.append(meta)
        while len(self._sealed) > self.config.compaction_lag_rounds + 1:
            self._sealed.popleft()
        if durable:
            await self._written(meta)

    async def _written(self, meta: SnapshotMeta) -> None:
        """A sealed round's files are durable: a checkpoint may now be compacted to, and the
        round is seeded. Rounds may get here out of order (a checkpoint's write is slow)."""
        if self.is_checkpoint(meta.round) and meta.round > self._checkpoints[-1].round:
            self._checkpoints.append(meta)  # (not if a catch-up moved past it meanwhile)
        self.io.report(Sealed(meta))
        await self._route(self.rounds.sealed(meta))

    def _compact(self) -> None:
        """Compact Raft's log to the newest checkpoint round at least ``compaction_lag_rounds``
        seals back (§9.5, §4.4.4)."""
        raft = self.raft
        if len(self._sealed) <= self.config.compaction_lag_rounds:
            return
        lagging = self._sealed[0].round
        eligible = [c for c in self._checkpoints if c.round <= lagging]
        if not eligible:
            return
        point = eligible[-1]
        if point.index > raft.log.snapshot.index:
            self.io.report(Compacted(point.round))
            raft.compact(point)
        while self._checkpoints[0].round < point.round:
            self._checkpoints.popleft()

    # -- the round protocol's actions --------------------------------------------------------

    async def _route(self, actions: Sequence[Action]) -> None:
        io = self.io
        for action in actions:
            match action:
                case SeedRound(meta=meta):
                    io.start_seed(meta)
                case SendFrame(peer=peer, frame=frame):
                    io.send(peer, frame)
                case OfferRound(meta=meta):
                    if self.is_checkpoint(meta.round):  # a catch-up starts from balances
                        self._offers.append(meta)
                case StoreCertificate(round=round_number, certificate=certificate):
                    await io.store_certificate(round_number, certificate)
                case PublishRecord(record=record, newest_certified=newest):
                    io.publish(record)
                    if newest:
                        await self._prune(record.round)
                case DropTorrent(round=round_number, infohash=infohash):
                    io.drop_torrent(round_number, infohash)
                case PeerSeeds(peer=peer, share=share):
                    io.peer_seeds(peer, share)
                case Certified() | Diverged() | ShareRefused():
                    io.report(action)

    async def _prune(self, certified: int) -> None:
        # Raft's compaction point and every round after it may be named in a catch-up (§9.5),
        # and the certified round is what the API serves: keep them all (§9.4). The snapshot
        # made durable may still be older than the compaction point (persisted with the next
        # Ready): a restart before that loads it, so it stays too.
        keep_from = min(self.compaction_point, self._durable_snapshot_round, certified)
        pruned = self.io.prune_rounds(keep_from)
        if pruned:
            await self._route(self.rounds.pruned(pruned))


def run_now(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a driver coroutine whose IO never suspends to its end, here and now (how the
    simulator drives it). A suspension means the IO waited: our bug, reported loudly."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise InvariantViolated("a driver coroutine suspended under an IO that must never wait")
