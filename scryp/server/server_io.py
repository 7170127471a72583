"""The driver's IO on a real server (``scryp.server.driver.DriverIO``): disk, peer links,
threads, the swarm and the DHT, each done by the ``ServerNode`` it serves; and the log line
of each driver report."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from scryp.core.ledger import Ledger, Reason
from scryp.core.pointer import PointerRecord
from scryp.core.raft import Entry, Ready, Role, SnapshotMeta
from scryp.core.raft.apply import EntryApplied
from scryp.core.rounds import Certified, Diverged, ShareRefused
from scryp.core.tx import Transaction
from scryp.core.wire import PeerFrame, Share
from scryp.server.driver import (
    BadFrame,
    CatchingUp,
    CaughtUp,
    Compacted,
    FetchFailed,
    PaymentsDropped,
    Report,
    RoleChanged,
    Sealed,
    SeedFailed,
    Written,
)
from scryp.server.rounds import Sealing, seal_round

if TYPE_CHECKING:
    from scryp.server.node import ServerNode

log = logging.getLogger("scryp.server.node")  # the server's log lines, as before the split
# A Raft persist slower than this is logged: the core loop waits on it before it sends
# anything, heartbeats included, so a slow disk shows as elections (protocol §7.6).
PERSIST_SLOW_S = 0.25


class ServerIO:
    """The driver's IO on a real server: disk, peer links, threads, the swarm, the DHT."""

    def __init__(self, node: ServerNode) -> None:
        self.node = node

    async def persist(self, ready: Ready) -> None:
        if ready.hard_state is not None or ready.snapshot is not None or ready.entries:
            store = self.node.store
            started_s = time.monotonic()
            await asyncio.to_thread(store.save, ready.hard_state, ready.snapshot, ready.entries)
            took_s = time.monotonic() - started_s
            if took_s > PERSIST_SLOW_S:
                log.warning("Raft persist took %.2f s (a busy disk?)", took_s)

    def send(self, peer: int, frame: PeerFrame) -> None:
        self.node.send_frame(peer, frame)

    async def precheck(self, txs: Sequence[Transaction]) -> list[Reason | None]:
        return await self.node.verified.applying(txs)

    async def write_round(self, meta: SnapshotMeta, ledger: Ledger, transactions: bytes) -> bool:
        node = self.node
        # In a thread (see seal_round), awaited by the apply task: the core loop keeps
        # ticking meanwhile (protocol §7.8).
        started_s = time.monotonic()
        sealing = await asyncio.to_thread(
            seal_round, node.rounds, meta, node.config.checkpoint_every, ledger, transactions
        )
        took_s = time.monotonic() - started_s
        if took_s > PERSIST_SLOW_S:
            steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in sealing.phases_s)
            log.info("round %d sealed in %.2f s (%s)", meta.round, took_s, steps)
        node.view.sealed_accounts = sealing.accounts
        node.view.keep_tree(meta.round, sealing.tree)  # for GET /proof (§4.4.6)
        if sealing.unwritten is None:
            return True
        # The apply task goes on meanwhile (§7.8).
        node.spawn(self._write_checkpoint(meta, sealing, ledger))
        return False

    async def _write_checkpoint(self, meta: SnapshotMeta, sealing: Sealing, ledger: Ledger) -> None:
        """Write a checkpoint round durably, then tell the driver. An OSError here is as
        fatal as one in a delta round's write: it ends the server's task group."""
        assert sealing.unwritten is not None and sealing.balances is not None
        started_s = time.monotonic()
        try:
            await asyncio.to_thread(self.node.rounds.write, meta, sealing.unwritten)
        finally:
            ledger.unwatch(sealing.balances)
        took_s = time.monotonic() - started_s
        if took_s > PERSIST_SLOW_S:
            saved_mb = sealing.balances.saved_bytes / 1e6
            log.info(
                "round %d written in the background in %.2f s (%.1f MB copied meanwhile)",
                meta.round,
                took_s,
                saved_mb,
            )
        self.node.post_and_wake(Written(meta))

    async def keep_outcomes(self, records: bytes) -> None:
        if records:
            await asyncio.to_thread(self.node.outcome_file.append, records)

    def stored_round(self, round_number: int) -> tuple[SnapshotMeta, bytes] | None:
        stored = self.node.rounds.get(round_number)
        if stored is None:
            return None
        return stored.meta, self.node.rounds.certificate(round_number) or b""

    def start_seed(self, meta: SnapshotMeta) -> None:
        self.node.spawn(self.node.seed_round(meta))

    def start_fetch(self, meta: SnapshotMeta) -> None:
        self.node.start_fetch(meta)

    def start_backfill(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        self.node.start_backfill(since, to)

    def peer_seeds(self, peer: int, share: Share) -> None:
        self.node.peer_seeds(peer, share)

    async def store_certificate(self, round_number: int, certificate: bytes) -> None:
        await asyncio.to_thread(self.node.rounds.save_certificate, round_number, certificate)

    def publish(self, record: PointerRecord) -> None:
        self.node.publish(record)

    def drop_torrent(self, round_number: int, infohash: bytes) -> None:
        swarm = self.node.swarm
        if swarm is not None:
            self.node.spawn(swarm.remove(infohash))

    def prune_rounds(self, keep_from: int) -> list[int]:
        config = self.node.config
        return self.node.rounds.prune(config.rounds_kept_effective, keep_from=keep_from)

    def apply_soon(self) -> None:
        self.node.apply_soon()

    def applied(self, entry: Entry, applied: EntryApplied, ledger: Ledger) -> None:
        self.node.metrics.applied(applied)

    def report(self, report: Report) -> None:
        self.node.metrics.report(report)
        _log_report(report)


def _log_report(report: Report) -> None:
    match report:
        case Sealed(meta=meta):
            log.info("sealed round %d: state %s", meta.round, meta.state_root.hex()[:16])
        case Certified():
            log.info("round %d certified by servers %s", report.round, list(report.signers))
        case Diverged():
            # Servers applying the same log can only disagree through a bug: say so loudly.
            log.error(
                "DIVERGENCE: server %d signed round %d as %s, we have %s",
                report.peer,
                report.round,
                report.theirs.hex()[:16],
                report.ours.hex()[:16],
            )
        case ShareRefused():
            log.warning("server %d sent a share of round %d: %s", *_fields(report))
        case BadFrame():
            log.warning("server %d: bad raft message: %s", report.peer, report.reason)
        case PaymentsDropped():
            log.warning("dropped %d payments: %s", report.count, report.reason)
        case SeedFailed():
            log.warning("seeding round %d failed: %s; will retry", report.round, report.reason)
        case FetchFailed():
            log.warning(
                "catching up to round %d failed: %s; will retry", report.meta.round, report.reason
            )
        case CatchingUp(meta=meta):
            log.info("told to catch up from round %d", meta.round)
        case CaughtUp(meta=meta):
            log.info("caught up from round %d", meta.round)
        case RoleChanged(role=Role.LEADER):
            log.info("leading term %d", report.term)
        case RoleChanged():
            leader = "none known" if report.leader is None else f"server {report.leader}"
            log.info("term %d: %s, leader %s", report.term, report.role.value, leader)
        case Compacted():
            log.debug("compacting the log to round %d", report.round)


def _fields(report: ShareRefused) -> tuple[int, int, str]:
    return report.peer, report.round, report.reason
