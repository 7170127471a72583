"""The server: one asyncio driver around the Raft core, the ledger, storage and the swarm.

Owns the process's moving parts, all as tasks of one TaskGroup (``run``):
- the **core loop**, the only code that touches the ``RaftNode`` and the ``Ledger``: it ticks
  the clock, steps peer messages, proposes payments, and handles each ``Ready`` in the order
  of ``scryp.core.raft.ready`` (persist, send, fetch, apply, advance);
- the **peer hub** (authenticated links to the other servers, protocol §9.2);
- per round, a **certify** task: torrent, seed, sign, gather a majority, publish (§8);
- the **pointer publisher** and **discovery** (other servers' API addresses from the DHT);
- the **HTTP API** (``scryp.server.api``), which only reads snapshots and queues payments.

Whose fault: malformed frames or requests from peers and clients are logged and dropped
(``RemoteError``); a broken invariant stops the server (``LocalError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import random
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from scryp.core import snapshot
from scryp.core.balances import lookup
from scryp.core.certificate import Certificate, Statement, majority
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, Outcome, Reason
from scryp.core.pointer import PointerRecord, SignedItem, encode_record, verify_item
from scryp.core.raft import (
    Entry,
    Payments,
    ProposeResult,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    SnapshotMeta,
)
from scryp.core.raft.apply import apply_entry, decode_payments
from scryp.core.raft.codec import decode_message, encode_message
from scryp.core.wire import Ask, Forward, PeerFrame, RaftFrame, Share, decode_frame, encode_frame
from scryp.crypto import KeyPair, verify
from scryp.errors import MalformedInput, NotAvailable, RemoteError, TimedOut, invariant
from scryp.peers import PeerHub
from scryp.raftstore import RaftStore
from scryp.server.config import ServerConfig
from scryp.server.publisher import Publisher
from scryp.server.rounds import RoundStore, StoredRound
from scryp.server.verify import precheck_parallel
from scryp.swarm import (
    SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S,
    SERVER_SEED_PIECE_QUOTA,
    SERVER_UNCHOKE_SLOTS,
    Swarm,
    SwarmConfig,
    build_round_torrent,
)

log = logging.getLogger(__name__)

INBOX_FRAMES_MAX = 10_000
TICK_MS = 20  # how often the core loop wakes with nothing to do: below the heartbeat interval


@dataclass(frozen=True, slots=True)
class TxStatus:
    """What became of a payment this server saw committed."""

    outcome: Outcome
    round: int  # the round whose seal closes the batch it was in


@dataclass(slots=True)
class RoundInfo:
    """What this server knows of one sealed round."""

    round: int
    state_hash: bytes
    infohash: bytes = b""
    infohash_v2: bytes = b""
    transactions: int = 0
    shares: dict[int, bytes] = field(default_factory=dict)  # server index -> signature
    certificate: bytes = b""


class ServerNode:
    def __init__(
        self, config: ServerConfig, key: KeyPair, quorum: list[bytes], genesis: Genesis
    ) -> None:
        invariant(key.public in quorum, "the server's key is not in .keys")
        self.config = config
        self.key = key
        self.quorum = quorum
        self.index = quorum.index(key.public)
        self.genesis = genesis
        self.network = genesis.network_id
        self.rounds = RoundStore(config.data_dir / "rounds")
        self.store = RaftStore(config.data_dir / "raft", genesis.network_id)
        self.raft_config = RaftConfig(
            server_id=self.index,
            servers=tuple(range(len(quorum))),
            round_interval_ms=int(config.round_interval_s * 1000),
        )
        self.hub = PeerHub(
            key, quorum, self.network, on_frame=self._on_frame, address_of=self._address_of
        )
        # Bounded: if the core loop falls behind, the oldest peer messages go (Raft resends).
        self._inbox: deque[tuple[int, PeerFrame]] = deque(maxlen=INBOX_FRAMES_MAX)
        self._proposals: deque[list[bytes]] = deque()
        self._wake = asyncio.Event()
        self._last_now_ms = 0
        self.raft: RaftNode | None = None
        self.ledger: Ledger | None = None
        self.round_infos: OrderedDict[int, RoundInfo] = OrderedDict()
        self.tx_status: OrderedDict[bytes, TxStatus] = OrderedDict()
        self._round_txs: list[bytes] = []
        self._sealed: deque[SnapshotMeta] = deque()  # newest seals, for lagged compaction
        self._offers: deque[SnapshotMeta] = deque()  # seeded rounds to offer Raft (§7)
        self._certifying: set[int] = set()
        self._pending_shares: dict[int, dict[int, Share]] = {}
        self._catching_up = False
        self._catch_up_waiter: tuple[int, asyncio.Future[tuple[int, Share]]] | None = None
        self._restore: tuple[SnapshotMeta, Ledger] | None = None
        self._discovered: dict[int, str] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self.swarm: Swarm | None = None
        self.publisher: Publisher | None = None
        self.certified_round: StoredRound | None = None
        self.api_address = f"{config.host}:{config.server_port}"

    # -- time ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Wall-clock milliseconds, never going back: stamps are compared with payments'
        own timestamps (protocol §6.2), and the Raft core requires a monotonic clock."""
        self._last_now_ms = max(self._last_now_ms, int(time.time() * 1000))
        return self._last_now_ms

    # -- start-up ------------------------------------------------------------------------

    def _load(self) -> None:
        persisted = self.store.load()
        meta = persisted.snapshot
        if meta.round == 0:
            self.ledger = Ledger.from_genesis(self.genesis, window_ms=self.config.window_ms)
        else:
            stored = self.rounds.get(meta.round)
            invariant(stored is not None, f"round {meta.round} named by the wal is missing")
            self.ledger = Ledger.from_checkpoint(
                self.rounds.read(meta.round, snapshot.BALANCES),
                self.rounds.read(meta.round, snapshot.WINDOW),
                window_ms=self.config.window_ms,
            )
            invariant(self.ledger.state_hash() == meta.state_hash, "round file corrupt")
        self._sealed.append(meta)
        # Seed randomness for election timeouts from the OS: servers must not be in lockstep.
        self.raft = RaftNode(
            self.raft_config,
            random.Random(os.urandom(16)),
            now_ms=self.now_ms(),
            hard_state=persisted.hard_state,
            snapshot=meta,
            entries=persisted.entries,
        )
        log.info(
            "server %d: resuming at round %d (index %d), %d log entries, term %d",
            self.index,
            meta.round,
            meta.index,
            len(persisted.entries),
            persisted.hard_state.term,
        )

    def _write_genesis_round(self) -> StoredRound:
        genesis_meta = SnapshotMeta(0, 0, 0, 0, self.network)
        return self.rounds.write(
            genesis_meta,
            self.genesis.balances_file,
            b"",
            Ledger.from_genesis(self.genesis).encode_window(),
        )

    async def run(self) -> None:
        """Run the server until cancelled; every background task belongs to this TaskGroup."""
        self._load()
        swarm_config = SwarmConfig(
            listen_host=self.config.host,
            listen_port=self.config.torrent_port,
            bootstrap=self.config.bootstrap,
            public_dht=self.config.public_dht,
            # A server's upload is the scarce resource: few unchoke slots and long piece runs
            # make clients trade pieces among themselves (docs/BENCHMARKS.md, swarm).
            unchoke_slots=SERVER_UNCHOKE_SLOTS,
            seed_piece_quota=SERVER_SEED_PIECE_QUOTA,
            optimistic_unchoke_interval_s=SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S,
        )
        swarm = Swarm(swarm_config)
        try:
            await swarm.wait_listening()
            self.swarm = swarm
            self.publisher = Publisher(swarm, self.key, republish_s=self.config.republish_s)
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self.hub.run())
                tasks.create_task(self.publisher.run())
                tasks.create_task(self._core_loop())
                tasks.create_task(self._discover())
                # Every server seeds round 0 (the genesis) and every round it still holds.
                await asyncio.to_thread(self._write_genesis_round)
                for number in self.rounds.rounds():
                    tasks.create_task(self._certify(number))
        finally:
            await swarm.close()

    # -- inputs from elsewhere -----------------------------------------------------------

    def _address_of(self, peer: int) -> str | None:
        return self.config.peers.get(peer) or self._discovered.get(peer)

    def _on_frame(self, peer: int, data: bytes) -> None:
        try:
            frame = decode_frame(data)
        except RemoteError as error:
            log.warning("server %d sent a malformed frame: %s", peer, error)
            return
        if isinstance(frame, Share | Ask):
            self._on_round_frame(peer, frame)
            return
        self._inbox.append((peer, frame))
        self._wake.set()

    def submit(self, txs: list[bytes]) -> str | None:
        """Queue prechecked payments for the leader; None, or why they cannot be taken."""
        raft = self.raft
        if raft is None:
            return "server starting"
        if raft.role is Role.LEADER:
            queued = sum(len(batch) for batch in self._proposals)
            if queued + len(txs) > self.config.limits.proposals_queued_max:
                return "server overloaded; retry shortly"
            self._proposals.append(txs)
            self._wake.set()
            return None
        if raft.leader_id is None:
            return "no leader at the moment; retry shortly"
        self.hub.send(raft.leader_id, encode_frame(Forward(tuple(txs))))
        return None

    # -- the core loop ---------------------------------------------------------------------

    async def _core_loop(self) -> None:
        raft, ledger = self.raft, self.ledger
        invariant(raft is not None and ledger is not None, "core loop before load")
        while True:
            # Wake on news, or after a tick with none: elections and heartbeats need it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_MS / 1000)
            self._wake.clear()
            await self._turn()

    async def _turn(self) -> None:
        raft = self.raft
        assert raft is not None
        if self._restore is not None:
            meta, restored = self._restore
            self._restore = None
            if raft.restore(meta):
                self.ledger = restored
                self._sealed.clear()
                self._sealed.append(meta)
                self._round_txs = []
                log.info("caught up from round %d", meta.round)
        raft.tick(self.now_ms())
        while self._inbox:
            peer, frame = self._inbox.popleft()
            self._step(peer, frame)
        while self._proposals:
            if raft.role is not Role.LEADER:
                # Taken while we led; we lost office since (protocol §9.3): hand them to the
                # new leader, or hold them until one is known (submit takes no more meanwhile).
                if raft.leader_id is None:
                    break
                forward = Forward(tuple(self._proposals.popleft()))
                self.hub.send(raft.leader_id, encode_frame(forward))
                continue
            txs = self._proposals.popleft()
            if raft.propose(txs) is not ProposeResult.QUEUED:
                log.warning("dropped %d payments: the core's queue is full", len(txs))
        while self._offers:
            raft.offer(self._offers.popleft())
        while raft.has_ready():
            await self._handle(raft.ready())
        self._compact()

    def _step(self, peer: int, frame: PeerFrame) -> None:
        raft = self.raft
        assert raft is not None
        if isinstance(frame, RaftFrame):
            try:
                message = decode_message(frame.body)
                if message.source != peer:
                    raise MalformedInput(f"server {peer} sent a message as {message.source}")
                raft.step(message)
            except RemoteError as error:
                log.warning("server %d: bad raft message: %s", peer, error)
        elif isinstance(frame, Forward) and raft.role is Role.LEADER:
            # Payments a follower prechecked; apply checks them again, as every server does.
            raft.propose(list(frame.txs))

    async def _handle(self, ready: Ready) -> None:
        raft = self.raft
        assert raft is not None
        # 1. persist, before anything that promises it is sent (ready.py).
        if ready.hard_state is not None or ready.snapshot is not None or ready.entries:
            await asyncio.to_thread(
                self.store.save, ready.hard_state, ready.snapshot, ready.entries
            )
        # 2. send
        for message in ready.messages:
            self.hub.send(message.target, encode_frame(RaftFrame(encode_message(message))))
        # 3. fetch a round from the swarm, in the background
        if ready.catch_up is not None and not self._catching_up and self._tasks is not None:
            self._catching_up = True
            self._tasks.create_task(self._catch_up(ready.catch_up))
        # 4. apply
        for entry in ready.committed:
            await self._apply(entry)
        # 5. advance
        raft.advance(ready)

    async def _apply(self, entry: Entry) -> None:
        """Apply one committed entry with ``apply_entry``, the transition the simulator runs
        too; around it, only what a server adds: parallel signature checks, outcomes for the
        API, and the sealed round written to disk and certified."""
        ledger = self.ledger
        assert ledger is not None
        prechecked = decoded = None
        if isinstance(entry.payload, Payments):
            decoded = decode_payments(entry.payload)
            prechecked = await precheck_parallel(decoded)
        applied = apply_entry(ledger, entry, prechecked, decoded)
        open_round = self._sealed[-1].round + 1
        for tx, outcome in zip(applied.txs, applied.outcomes, strict=True):
            if outcome.accepted:
                self._round_txs.append(tx.raw)
            self._remember(tx.tx_id, TxStatus(outcome, open_round))
        if applied.sealed_round is None or applied.state_hash is None:
            return
        meta = SnapshotMeta(
            index=entry.index,
            term=entry.term,
            round=applied.sealed_round,
            stamp_ms=entry.stamp_ms,
            state_hash=applied.state_hash,
        )
        transactions = b"".join(self._round_txs)
        self._round_txs = []
        await asyncio.to_thread(
            self.rounds.write, meta, ledger.balances_file(), transactions, ledger.encode_window()
        )
        self._sealed.append(meta)
        while len(self._sealed) > self.config.compaction_lag_rounds + 1:
            self._sealed.popleft()
        log.info("sealed round %d: state %s", meta.round, meta.state_hash.hex()[:16])
        if self._tasks is not None:
            self._tasks.create_task(self._certify(meta.round))

    def _compact(self) -> None:
        """Compact Raft's log to the round ``compaction_lag_rounds`` seals back (config)."""
        raft = self.raft
        assert raft is not None
        if len(self._sealed) > self.config.compaction_lag_rounds:
            if self._sealed[0].index > raft.log.snapshot.index:
                log.debug("compacting the log to round %d", self._sealed[0].round)
            raft.compact(self._sealed[0])

    def _remember(self, tx_id: bytes, status: TxStatus) -> None:
        if status.outcome.reason is Reason.DUPLICATE and tx_id in self.tx_status:
            # A replay must not hide how the payment was decided (protocol §9.3).
            return
        self.tx_status[tx_id] = status
        self.tx_status.move_to_end(tx_id)
        while len(self.tx_status) > self.config.limits.tx_status_kept_max:
            self.tx_status.popitem(last=False)

    # -- rounds: torrent, signatures, certificate, pointer (protocol §8) -----------------

    async def _certify(self, round_number: int) -> None:
        """Seed a stored round, sign it, share the signature; certify when a majority agrees."""
        if round_number in self._certifying:
            return
        self._certifying.add(round_number)
        try:
            await self._seed_and_share(round_number)
        finally:
            self._certifying.discard(round_number)

    async def _seed_and_share(self, round_number: int) -> None:
        stored = self.rounds.get(round_number)
        swarm = self.swarm
        if stored is None or swarm is None:
            return
        torrent = await asyncio.to_thread(build_round_torrent, stored.path)
        if torrent.infohash not in swarm.infohashes():
            await swarm.seed(stored.path, torrent, super_seed=False)
        info = self.round_infos.get(round_number) or RoundInfo(round_number, stored.meta.state_hash)
        info.infohash, info.infohash_v2 = torrent.infohash, torrent.infohash_v2
        info.transactions = len(self.rounds.read(round_number, snapshot.TRANSACTIONS)) // 140
        info.certificate = info.certificate or self.rounds.certificate(round_number) or b""
        self.round_infos[round_number] = info
        self._prune_infos()
        # Now that the swarm can serve it, a follower far behind may catch up from it.
        self._offers.append(stored.meta)
        self._wake.set()
        if self.publisher is not None and self.publisher.value is None and not info.certificate:
            # Nothing certified yet (a fresh start, or peers unknown): publish this round
            # uncertified, so the other servers can find our address (protocol §8.6).
            await self._publish(info)
        share = self._own_share(info)
        info.shares[self.index] = share.signature
        for peer in range(len(self.quorum)):
            if peer != self.index:
                self.hub.send(peer, encode_frame(share))
        for peer, pending in self._pending_shares.pop(round_number, {}).items():
            self._accept_share(peer, pending)
        await self._maybe_certified(info)

    def _own_share(self, info: RoundInfo) -> Share:
        statement = Statement(self.network, info.round, info.state_hash, info.infohash_v2)
        return Share(
            info.round,
            info.state_hash,
            info.infohash,
            info.infohash_v2,
            statement.sign(self.key),
            torrent_port=self.swarm.port if self.swarm else 0,
        )

    def _on_round_frame(self, peer: int, frame: Share | Ask) -> None:
        if isinstance(frame, Ask):
            info = self.round_infos.get(frame.round)
            if info is not None and info.infohash:
                self.hub.send(peer, encode_frame(self._own_share(info)))
            elif frame.round in self.rounds.rounds():
                # Still on disk (the compaction point is never pruned): seed it again and
                # send our share to everyone, the asker included.
                self._tasks_create(self._certify(frame.round))
            return
        statement = frame.statement(self.network)
        if not verify(self.quorum[peer], statement.to_bytes(), frame.signature):
            log.warning("server %d sent a share with a bad signature", peer)
            return
        waiting = self._catch_up_waiter
        if waiting is not None and frame.round == waiting[0] and not waiting[1].done():
            waiting[1].set_result((peer, frame))
        info = self.round_infos.get(frame.round)
        if info is None or not info.infohash:
            newest = max(self.round_infos, default=0)
            if frame.round <= newest + self.config.limits.shares_rounds_ahead_max:
                self._pending_shares.setdefault(frame.round, {})[peer] = frame
            return
        self._accept_share(peer, frame)
        if self._tasks is not None:
            self._tasks.create_task(self._maybe_certified(info))

    def _accept_share(self, peer: int, share: Share) -> None:
        info = self.round_infos[share.round]
        if (share.state_hash, share.infohash_v2) != (info.state_hash, info.infohash_v2):
            # Servers applying the same log can only disagree through a bug: say so loudly.
            log.error(
                "DIVERGENCE: server %d signed round %d as %s, we have %s",
                peer,
                share.round,
                share.state_hash.hex()[:16],
                info.state_hash.hex()[:16],
            )
            return
        info.shares[peer] = share.signature

    async def _maybe_certified(self, info: RoundInfo) -> None:
        if info.certificate or len(info.shares) < majority(len(self.quorum)):
            if info.certificate:
                await self._publish_if_newest(info)
            return
        certificate = Certificate.assemble(info.shares, len(self.quorum))
        info.certificate = certificate.to_bytes()
        await asyncio.to_thread(self.rounds.save_certificate, info.round, info.certificate)
        log.info("round %d certified by %d servers", info.round, len(info.shares))
        await self._publish_if_newest(info)

    async def _publish_if_newest(self, info: RoundInfo) -> None:
        current = self.certified_round
        if current is not None and current.round >= info.round:
            return
        stored = self.rounds.get(info.round)
        if stored is None:
            return
        self.certified_round = stored
        await self._publish(info)
        self._prune_rounds()

    async def _publish(self, info: RoundInfo) -> None:
        """Put our pointer for this round (with its certificate, if it has one) in the DHT."""
        recent = tuple(
            other.infohash
            for number, other in sorted(self.round_infos.items(), reverse=True)
            if number < info.round and other.infohash
        )[:4]
        record = PointerRecord(
            network=self.network,
            round=info.round,
            state_hash=info.state_hash,
            infohash=info.infohash,
            infohash_v2=info.infohash_v2,
            recent=recent,
            api=self.api_address,
            certificate=info.certificate,
        )
        publisher = self.publisher
        if publisher is not None:
            try:
                await publisher.publish(encode_record(record))
            except NotAvailable as error:
                log.warning("publishing round %d: %s", info.round, error)

    def _prune_rounds(self) -> None:
        # Raft's compaction point and every round after it may be named in a catch-up (§7),
        # and the certified round is what the API serves: keep them all.
        compaction_point = self._sealed[0].round if self._sealed else 0
        certified = self.certified_round.round if self.certified_round else 0
        keep_from = min(compaction_point, certified)
        for number in self.rounds.prune(self.config.rounds_kept_effective, keep_from=keep_from):
            info = self.round_infos.pop(number, None)
            if info is not None and info.infohash and self.swarm is not None:
                self._tasks_create(self.swarm.remove(info.infohash))

    def _tasks_create(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        if self._tasks is not None:
            self._tasks.create_task(coroutine)
        else:
            coroutine.close()

    def _prune_infos(self) -> None:
        while len(self.round_infos) > self.config.rounds_kept_effective * 2:
            self.round_infos.popitem(last=False)
        # Shares for rounds we will never hold (pruned, or sealed before we restarted).
        oldest = min(self.round_infos, default=0)
        for number in [r for r in self._pending_shares if r < oldest]:
            del self._pending_shares[number]

    # -- catching up through the swarm (Raft §7, protocol §7) --------------------------

    async def _catch_up(self, meta: SnapshotMeta) -> None:
        log.info("far behind: catching up to round %d through the swarm", meta.round)
        try:
            await asyncio.wait_for(self._fetch_round(meta), self.config.limits.catch_up_timeout_s)
        except (TimeoutError, NotAvailable, RemoteError, OSError) as error:
            log.warning("catching up to round %d failed: %s; will retry", meta.round, error)
        finally:
            self._catching_up = False
            self._catch_up_waiter = None

    async def _fetch_round(self, meta: SnapshotMeta) -> None:
        swarm = self.swarm
        assert swarm is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, Share]] = loop.create_future()
        self._catch_up_waiter = (meta.round, waiter)
        for peer in range(len(self.quorum)):
            if peer != self.index:
                self.hub.send(peer, encode_frame(Ask(meta.round)))
        try:
            sender, share = await asyncio.wait_for(waiter, self.config.limits.ask_timeout_s)
        except TimeoutError:
            raise TimedOut(f"no server named round {meta.round}'s torrent") from None
        log.info("round %d is torrent %s; fetching", meta.round, share.infohash.hex())
        if share.state_hash != meta.state_hash:
            raise MalformedInput("a peer's share of the round differs from the leader's")
        result = await swarm.fetch(
            share.infohash,
            self.rounds.directory,
            timeout_s=self.config.limits.catch_up_timeout_s,
            expect_infohash_v2=share.infohash_v2,
            expect_state_hash=meta.state_hash,
            peers=self._torrent_peers(sender, share),
            on_progress=lambda p: log.debug("catch-up progress %s", p),
        )
        stored = await asyncio.to_thread(self.rounds.adopt, result.round_dir, meta)
        restored = Ledger.from_checkpoint(
            self.rounds.read(stored.round, snapshot.BALANCES),
            self.rounds.read(stored.round, snapshot.WINDOW),
            window_ms=self.config.window_ms,
        )
        self._restore = (meta, restored)
        self._wake.set()

    def _torrent_peers(self, sender: int, share: Share) -> list[tuple[str, int]]:
        """Where the server that answered seeds: dialled at once, besides the DHT's peers."""
        address = self._address_of(sender)
        if address is None or not share.torrent_port:
            return []
        return [(address.rpartition(":")[0], share.torrent_port)]

    # -- discovery of the other servers' addresses from their DHT pointers (§8.6) -------

    async def _discover(self) -> None:
        """Look up the addresses of servers not given with --peer: often while one is
        unknown, then now and then, since a server may move (protocol §8.6)."""
        while True:
            wanted = [
                self.quorum[i]
                for i in range(len(self.quorum))
                if i != self.index and i not in self.config.peers
            ]
            if wanted and self.swarm is not None:
                items = await self.swarm.get_items(
                    wanted, timeout_s=self.config.limits.dht_get_timeout_s
                )
                for public, item in items.items():
                    self._learn_address(public, item)
            unknown = any(self._address_of(self.quorum.index(k)) is None for k in wanted)
            period_s = self.config.discovery_interval_s * (1 if unknown else 12)
            await asyncio.sleep(period_s)  # a period, not a wait for an event

    def _learn_address(self, public: bytes, item: SignedItem) -> None:
        try:
            record = verify_item(item, self.quorum)
        except RemoteError as error:
            log.warning("pointer of %s refused: %s", public.hex()[:16], error)
            return
        if record.network == self.network and record.api:
            self._discovered[self.quorum.index(public)] = record.api

    # -- reads for the API -------------------------------------------------------------

    def balance_at_certified(self, account: bytes) -> tuple[int, StoredRound] | None:
        stored = self.certified_round
        if stored is None:
            return None
        # Map the file rather than read it: a lookup touches ~20 of its records (O(log n)).
        with open(stored.balances_path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return 0, stored
            with (
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
                memoryview(mapped) as view,
            ):
                return lookup(view, account), stored

    def status(self) -> dict[str, object]:
        raft = self.raft
        ledger = self.ledger
        newest = self._sealed[-1] if self._sealed else None
        certified = self.certified_round
        info = self.round_infos.get(certified.round) if certified else None
        return {
            "network": self.network.hex(),
            "server": self.index,
            "public_key": self.key.account_id,
            "role": raft.role.value if raft else "starting",
            "term": raft.term if raft else 0,
            "leader": raft.leader_id if raft else None,
            "round": newest.round if newest else 0,
            # Raft's compaction point: a follower behind it must catch up through the swarm.
            "compacted_round": raft.log.snapshot.round if raft else 0,
            "state_hash": newest.state_hash.hex() if newest else None,
            "certified_round": certified.round if certified else None,
            "certified_state_hash": certified.meta.state_hash.hex() if certified else None,
            "infohash": info.infohash.hex() if info and info.infohash else None,
            "signers": sorted(info.shares) if info else [],
            "peers_out": sorted(self.hub.connected_out),
            "peers_in": sorted(self.hub.connected_in),
            "accounts": ledger.account_count() if ledger else None,
            "torrent_port": self.swarm.port if self.swarm else None,
        }
