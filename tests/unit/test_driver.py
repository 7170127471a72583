"""The shared driver (scryp/server/driver.py) with an IO that records and never waits.

Method: a one-server quorum (a majority of one) runs the real Raft core, ledger, round protocol
and proposal queue; ``run_now`` drives each coroutine to its end, as the simulator does. The
simulator (tests/sim) runs the same driver under faults; these pin single behaviours.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, Reason, precheck_all
from scryp.core.outcomes import OutcomeBook
from scryp.core.pointer import PointerRecord, certified
from scryp.core.proposals import ProposalQueue
from scryp.core.raft import (
    Entry,
    HardState,
    Payments,
    RaftConfig,
    RaftNode,
    Ready,
    SnapshotMeta,
)
from scryp.core.raft.apply import EntryApplied
from scryp.core.rounds import Action, OfferRound, RoundProtocol, RoundsConfig
from scryp.core.snapshot import CHECKPOINT_EVERY_DEFAULT
from scryp.core.tx import Transaction
from scryp.core.wire import Forward, PeerFrame, Share
from scryp.crypto import KeyPair
from scryp.errors import InvariantViolated
from scryp.server.driver import (
    Compacted,
    Driver,
    DriverConfig,
    Report,
    Sealed,
    Seeded,
    SeedFailed,
    Written,
    run_now,
)

KEY = KeyPair.from_seed(hashlib.sha256(b"driver-server").digest())
PAYER = KeyPair.from_seed(hashlib.sha256(b"driver-payer").digest())
GENESIS = Genesis.single(PAYER.public)


class RecordingIO:
    def __init__(self) -> None:
        self.seeds: list[SnapshotMeta] = []
        self.rounds: dict[int, SnapshotMeta] = {}
        self.certificates: dict[int, bytes] = {}
        self.outcomes = bytearray()
        self.published: list[PointerRecord] = []
        self.reports: list[Report] = []
        self.sent: list[tuple[int, PeerFrame]] = []
        self.checkpoints_late_every = 0  # if set: checkpoint rounds are written late (§7.8)
        self.staged: list[SnapshotMeta] = []

    async def persist(self, ready: Ready) -> None:
        pass

    def send(self, peer: int, frame: PeerFrame) -> None:
        self.sent.append((peer, frame))

    async def precheck(self, txs: Sequence[Transaction]) -> list[Reason | None]:
        return precheck_all(txs)

    async def write_round(self, meta: SnapshotMeta, ledger: Ledger, transactions: bytes) -> bool:
        if self.checkpoints_late_every and meta.round % self.checkpoints_late_every == 0:
            self.staged.append(meta)  # made durable when the test posts ``Written``
            return False
        self.rounds[meta.round] = meta
        return True

    async def keep_outcomes(self, records: bytes) -> None:
        self.outcomes += records

    def stored_round(self, round_number: int) -> tuple[SnapshotMeta, bytes] | None:
        meta = self.rounds.get(round_number)
        return None if meta is None else (meta, self.certificates.get(round_number, b""))

    def start_seed(self, meta: SnapshotMeta) -> None:
        self.seeds.append(meta)

    def start_backfill(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        pass  # the simulator keeps no outcomes beyond its own (protocol §6.5 backfill: real)

    def start_fetch(self, meta: SnapshotMeta) -> None:
        raise AssertionError("a lone server never catches up")

    def peer_seeds(self, peer: int, share: Share) -> None:
        pass

    async def store_certificate(self, round_number: int, certificate: bytes) -> None:
        self.certificates[round_number] = certificate

    def publish(self, record: PointerRecord) -> None:
        self.published.append(record)

    def drop_torrent(self, round_number: int, infohash: bytes) -> None:
        pass

    def prune_rounds(self, keep_from: int) -> list[int]:
        return []

    def report(self, report: Report) -> None:
        self.reports.append(report)

    def apply_soon(self) -> None:
        pass  # ``step`` applies after every driver call, as the simulator does

    def applied(self, entry: Entry, applied: EntryApplied, ledger: Ledger) -> None:
        pass


def lone_driver(
    checkpoint_every: int = CHECKPOINT_EVERY_DEFAULT, apply_backlog_entries_max: int = 64
) -> tuple[Driver, RecordingIO]:
    io = RecordingIO()
    genesis_meta = SnapshotMeta(0, 0, 0, 0, GENESIS.state_root)
    raft = RaftNode(
        RaftConfig(server_id=0, servers=(0,), round_interval_ms=500),
        random.Random(1),
        now_ms=0,
        hard_state=HardState(0, None, 0),
        snapshot=genesis_meta,
    )
    rounds = RoundProtocol(
        RoundsConfig(GENESIS.network_id, 0, (KEY.public,), "127.0.0.1:1", 2, 16, 16), KEY
    )
    driver = Driver(
        DriverConfig(
            compaction_lag_rounds=2,
            outcomes_kept_max=100,
            checkpoint_every=checkpoint_every,
            apply_backlog_entries_max=apply_backlog_entries_max,
        ),
        raft=raft,
        ledger=Ledger.from_genesis(GENESIS),
        rounds=rounds,
        proposals=ProposalQueue(8),
        io=io,
    )
    io.rounds[0] = genesis_meta
    run_now(driver.boot([(genesis_meta, b"")]))
    return driver, io


def step(driver: Driver, coroutine: Coroutine[Any, Any, None]) -> None:
    """One call of the core loop, then the apply task's turn (protocol §7.8)."""
    run_now(coroutine)
    run_now(driver.apply_pending())


def seed_all(driver: Driver, io: RecordingIO, now_ms: int) -> None:
    for meta in io.seeds:
        driver.post(Seeded(meta.round, bytes(20), bytes(32), 0))
    io.seeds.clear()
    step(driver, driver.process(now_ms))


def run_until(driver: Driver, io: RecordingIO, until_ms: int, start_ms: int = 0) -> None:
    for now_ms in range(start_ms, until_ms, 10):
        step(driver, driver.turn(now_ms))
        seed_all(driver, io, now_ms)


def test_a_payment_is_applied_sealed_seeded_certified_and_published() -> None:
    driver, io = lone_driver()
    run_until(driver, io, 400)  # elected
    tx = Transaction.create(PAYER, KEY.public, 5, 300).encode()
    assert driver.submit([tx]) is None
    run_until(driver, io, 1_200, start_ms=400)
    sealed = [r.meta.round for r in io.reports if isinstance(r, Sealed)]
    assert sealed and sealed[0] == 1
    status = driver.outcomes.lookup(Transaction.decode(tx).tx_id)
    assert status is not None
    assert status.outcome.accepted and status.round == 1
    assert 1 in io.certificates
    newest = io.published[-1]
    assert newest.round >= 1 and certified(newest, (KEY.public,))


def test_a_failed_seed_is_retried_and_the_round_certified_then() -> None:
    driver, io = lone_driver()
    [genesis] = io.seeds
    io.seeds.clear()
    driver.post(SeedFailed(0, "TimedOut: injected"))
    step(driver, driver.process(100))
    assert io.seeds == [] and 0 not in io.certificates
    step(driver, driver.turn(100 + 1_999))
    assert genesis not in io.seeds
    step(driver, driver.turn(100 + 2_000))
    assert genesis in io.seeds  # retried (the time also elected us and sealed round 1)
    seed_all(driver, io, 2_200)
    assert 0 in io.certificates


def test_a_forward_to_a_follower_is_dropped_and_proposals_need_a_leader() -> None:
    driver, io = lone_driver()
    tx = Transaction.create(PAYER, KEY.public, 5, 0).encode()
    assert driver.submit([tx]) is not None  # no leader yet: refused, nothing queued
    driver.receive(0, Forward((tx,)))
    step(driver, driver.process(0))
    assert not driver.raft.log.unstable_entries()
    assert io.sent == []


def test_run_now_refuses_a_coroutine_that_suspends() -> None:
    async def waits() -> None:
        import asyncio

        await asyncio.sleep(0)

    with pytest.raises(InvariantViolated):
        run_now(waits())


def test_a_late_copy_never_turns_an_accepted_payment_into_a_refusal() -> None:
    """Regression (the bank test, protocol §6.5): a copy of an applied payment that reaches
    the log after its timestamp left the window is refused for its timestamp; GET /tx must
    still say accepted, on this run and after a restart from the outcomes kept on disk."""
    driver, io = lone_driver()
    run_until(driver, io, 400)  # elected
    raw = Transaction.create(PAYER, KEY.public, 5, 300).encode()
    tx_id = Transaction.decode(raw).tx_id
    assert driver.submit([raw]) is None
    run_until(driver, io, 1_200, start_ms=400)
    late_ms = 300 + driver.ledger.window_ms + 1_000
    run_until(driver, io, late_ms, start_ms=1_200)
    assert driver.submit([raw]) is None  # as a forward would bring it: no check at the door
    run_until(driver, io, late_ms + 1_200, start_ms=late_ms)
    found = driver.outcomes.lookup(tx_id)
    assert found is not None and found.outcome.accepted and found.round == 1
    restarted = OutcomeBook(window_ms=driver.ledger.window_ms, kept_max=100)
    restarted.load(bytes(io.outcomes))
    assert restarted.lookup(tx_id) == found


def test_compaction_and_offers_go_only_to_checkpoint_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """protocol §4.4.4: only a checkpoint round holds the balances a restart or a catch-up
    starts from, so Raft's snapshot (the compaction point) and every round offered to a
    lagging follower is one, though the round protocol offers every seeded round."""
    driver, io = lone_driver(checkpoint_every=3)
    offered: list[SnapshotMeta] = []
    protocol_offers: list[int] = []
    real_offer, real_seeded = driver.raft.offer, driver.rounds.seeded

    def offer(meta: SnapshotMeta) -> None:
        offered.append(meta)
        real_offer(meta)

    def seeded(round_number: int, infohash: bytes, v2: bytes, transactions: int) -> list[Action]:
        actions = real_seeded(round_number, infohash, v2, transactions)
        protocol_offers.extend(a.meta.round for a in actions if isinstance(a, OfferRound))
        return actions

    monkeypatch.setattr(driver.raft, "offer", offer)
    monkeypatch.setattr(driver.rounds, "seeded", seeded)
    run_until(driver, io, 6_000)
    sealed = [r.meta.round for r in io.reports if isinstance(r, Sealed)]
    compacted = [r.round for r in io.reports if isinstance(r, Compacted)]
    assert max(sealed) >= 9
    assert any(r % 3 for r in protocol_offers)  # the driver had others to refuse
    assert compacted and all(r % 3 == 0 for r in compacted)
    assert offered and all(m.round % 3 == 0 for m in offered)
    assert driver.compaction_point % 3 == 0 and driver.compaction_point >= 3


def _payments_in_log(driver: Driver) -> int:
    log = driver.raft.log
    entries = log.slice(log.snapshot.index + 1, log.last_index + 1)
    return sum(len(e.payload.txs) for e in entries if isinstance(e.payload, Payments))


def test_the_core_loop_goes_on_while_the_apply_task_is_behind() -> None:
    """protocol §7.8: Readies are persisted, sent and committed while the apply task has not
    applied them (a checkpoint's write); then it applies them all, in log order."""
    driver, io = lone_driver()
    run_until(driver, io, 400)  # elected
    committed = driver.raft.log.committed
    tx = Transaction.create(PAYER, KEY.public, 5, 400).encode()
    assert driver.submit([tx]) is None
    sealed_before = sum(isinstance(r, Sealed) for r in io.reports)
    for now_ms in range(400, 2_400, 10):  # 2 s of the core loop alone
        run_now(driver.turn(now_ms))
    assert driver.raft.log.committed >= committed + 4  # the payment and 3 seals at least
    assert driver.apply_backlog >= 4
    assert sum(isinstance(r, Sealed) for r in io.reports) == sealed_before
    run_now(driver.apply_pending())
    assert driver.apply_backlog == 0
    sealed = [r.meta.round for r in io.reports if isinstance(r, Sealed)]
    assert sealed == list(range(1, len(sealed) + 1)) and len(sealed) >= 4
    status = driver.outcomes.lookup(Transaction.decode(tx).tx_id)
    assert status is not None and status.outcome.accepted and status.round == 1


def test_a_leader_behind_on_applying_proposes_nothing_new() -> None:
    """protocol §7.8: beyond ``apply_backlog_entries_max`` waiting entries, payments wait in
    the proposal queue, so the log cannot outrun the ledger without bound."""
    driver, io = lone_driver(apply_backlog_entries_max=2)
    run_until(driver, io, 400)
    for now_ms in range(400, 2_000, 10):
        run_now(driver.turn(now_ms))  # seals committed, none applied
    assert driver.apply_backlog > 2
    tx = Transaction.create(PAYER, KEY.public, 5, 2_000).encode()
    assert driver.submit([tx]) is None  # taken: it waits in the queue
    for now_ms in range(2_000, 2_300, 10):
        run_now(driver.turn(now_ms))
    assert _payments_in_log(driver) == 0
    run_now(driver.apply_pending())
    run_until(driver, io, 3_500, start_ms=2_300)
    assert _payments_in_log(driver) == 1
    status = driver.outcomes.lookup(Transaction.decode(tx).tx_id)
    assert status is not None and status.outcome.accepted


def test_a_checkpoint_written_late_is_neither_seeded_nor_compacted_to_until_durable() -> None:
    """protocol §7.8: a checkpoint's fsyncs run in the background while the rounds after it
    are applied and sealed; until ``Written`` the round is not seeded (its files may not
    survive a crash) and Raft's log is not compacted to it (a restart would need them)."""
    driver, io = lone_driver(checkpoint_every=3)
    io.checkpoints_late_every = 3
    run_until(driver, io, 6_000)
    sealed = [r.meta.round for r in io.reports if isinstance(r, Sealed)]
    staged = [m.round for m in io.staged]
    assert staged[:2] == [3, 6] and max(sealed) >= 9
    assert not set(staged) & set(sealed)  # sealed, written, not reported: not seeded either
    assert driver.compaction_point == 0  # nothing durable to compact to
    for meta in io.staged:
        io.rounds[meta.round] = meta
        driver.post(Written(meta))
    io.staged.clear()
    io.checkpoints_late_every = 0
    run_until(driver, io, 8_000, start_ms=6_000)
    sealed = [r.meta.round for r in io.reports if isinstance(r, Sealed)]
    assert set(staged) <= set(sealed)
    assert driver.compaction_point >= 6 and driver.compaction_point % 3 == 0
