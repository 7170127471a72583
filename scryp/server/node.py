"""The server: the shared ``Driver`` wired to real IO, and the process's moving parts.

The decisions live in the cores (``scryp.core.raft``, ``scryp.core.rounds``,
``scryp.core.proposals``) and in ``scryp.server.driver``, which the simulator runs too. This
module only does their effects, as tasks of one TaskGroup (``run``):
- the **core loop**, the only code that calls the driver's ``turn``: on news or every tick;
- the **apply task**, the only code that calls the driver's ``apply_pending``: it applies the
  committed entries and writes the sealed rounds, so a slow seal never stops the core loop
  from ticking and heartbeating (protocol §7.8);
- the **peer hub** (authenticated links to the other servers, protocol §9.2);
- per round, a **seed** task (torrent, swarm) and, per catch-up, a **fetch** task (§9.5),
  both reporting back to the driver; a failure (``NotAvailable``) is reported, not raised, and
  the round protocol retries the seed;
- the **pointer publisher** (always the newest record only) and the **pointer watch**
  (``scryp.server.pointers``: the others' addresses, §9.6, and their pointers logged, §9.12);
- the **HTTP API** (``scryp.server.api``), which reads ``ServerView``, never the cores.

Whose fault: malformed frames or requests from peers and clients are logged and dropped
(``RemoteError``); a broken invariant stops the server (``LocalError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Coroutine
from typing import Any

from scryp.core import snapshot
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger
from scryp.core.pointer import PointerRecord, encode_record
from scryp.core.proposals import ProposalQueue
from scryp.core.raft import RaftConfig, RaftNode, SnapshotMeta
from scryp.core.rounds import RoundProtocol, RoundsConfig
from scryp.core.tx import TX_BYTES
from scryp.core.wire import PeerFrame, Share, decode_frame, encode_frame
from scryp.crypto import KeyPair
from scryp.errors import (
    MalformedInput,
    NotAvailable,
    RemoteError,
    StorageCorrupt,
    TimedOut,
    invariant,
)
from scryp.netmode import DHT_STATE_FILE
from scryp.peers import PeerHub
from scryp.raftstore import RaftStore
from scryp.server.backfill import WORK_PREFIX, Backfill, owed_backfills
from scryp.server.catchup import Candidates
from scryp.server.config import ServerConfig
from scryp.server.driver import (
    Backfilled,
    Driver,
    DriverConfig,
    Event,
    Fetched,
    FetchFailed,
    Seeded,
    SeedFailed,
)
from scryp.server.metrics import ServerMetrics
from scryp.server.outcome_file import OutcomeFile
from scryp.server.pointers import PointerWatch
from scryp.server.publisher import Publisher
from scryp.server.rounds import RoundStore, genesis_contents
from scryp.server.server_io import ServerIO
from scryp.server.verify import Verified
from scryp.server.view import ServerView
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
TURN_SLOW_S = 0.25  # a core loop turn slower than this is logged
TICK_MS = 20  # how often the core loop wakes with nothing to do: below the heartbeat interval


class ServerNode:
    def __init__(
        self, config: ServerConfig, key: KeyPair, quorum: list[bytes], genesis: Genesis
    ) -> None:
        invariant(key.public in quorum, "the server's key is not in .keys")
        self.config = config
        self.key = key
        self.quorum = quorum
        self.index = quorum.index(key.public)
        self.genesis: Genesis | None = genesis  # let go once booted: 360 MB at 10M accounts
        self.network = genesis.network_id
        self.genesis_root = genesis.state_root  # round 0's state (§4.4.3), hashed once
        self.rounds = RoundStore(config.data_dir / "rounds")
        self.rounds.remove_leftovers()
        self.store = RaftStore(config.data_dir / "raft", self.genesis_root)
        self.raft_config = RaftConfig(
            server_id=self.index,
            servers=tuple(range(len(quorum))),
            round_interval_ms=int(config.round_interval_s * 1000),
        )
        self.hub = PeerHub(
            key, quorum, self.network, on_frame=self._on_frame, address_of=self._address_of
        )
        self._wake = asyncio.Event()
        self._apply_wake = asyncio.Event()
        self._last_now_ms = 0
        self.driver: Driver | None = None
        # The others' pointers: their addresses (§9.6) and a log line each minute (§9.12).
        self.pointers = PointerWatch(
            quorum,
            self.index,
            self.network,
            list(config.peers),
            poll_s=config.discovery_interval_s,
            get_timeout_s=config.limits.dht_get_timeout_s,
        )
        self._tasks: asyncio.TaskGroup | None = None
        self.swarm: Swarm | None = None
        self.publisher: Publisher | None = None
        self._to_publish: PointerRecord | None = None
        self._publish_wanted = asyncio.Event()
        # A catch-up waiting for a peer's share naming the round's torrent (protocol §9.5).
        self._catch_up: Candidates | None = None
        self.api_address = f"{config.advertise}:{config.server_port}"  # protocol §9.6
        self.verified = Verified()  # payments our API checked: not checked again at apply
        self.view = ServerView(self)
        self.metrics = ServerMetrics(self)  # its own registry: GET /metrics

    # -- time ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Wall-clock milliseconds, never going back: stamps are compared with payments'
        own timestamps (protocol §6.2), and the Raft core requires a monotonic clock."""
        self._last_now_ms = max(self._last_now_ms, int(time.time() * 1000))
        return self._last_now_ms

    # -- start-up ------------------------------------------------------------------------

    def _load(self, torrent_port: int) -> Driver:
        persisted = self.store.load()
        meta = persisted.snapshot
        if meta.round == 0:
            assert self.genesis is not None, "the genesis is let go only after the start"
            ledger = Ledger.from_genesis(self.genesis, window_ms=self.config.window_ms)
            ledger.state_root()  # the tree, built at start rather than at the first seal
        else:
            ledger = self._load_round(meta)
        # Seed randomness for election timeouts from the OS: servers must not be in lockstep.
        raft = RaftNode(
            self.raft_config,
            random.Random(os.urandom(16)),
            now_ms=self.now_ms(),
            hard_state=persisted.hard_state,
            snapshot=meta,
            entries=persisted.entries,
        )
        limits = self.config.limits
        rounds = RoundProtocol(
            RoundsConfig(
                network=self.network,
                index=self.index,
                quorum=tuple(self.quorum),
                api=self.api_address,
                torrent_port=torrent_port,
                # Back to the compaction point at least: a full sync lists the checkpoint.
                infos_kept_max=max(
                    self.config.rounds_kept_effective * 2,
                    self.config.checkpoint_every + self.config.compaction_lag_rounds + 2,
                ),
                shares_rounds_ahead_max=limits.shares_rounds_ahead_max,
            ),
            self.key,
        )
        driver_config = DriverConfig(
            compaction_lag_rounds=self.config.compaction_lag_rounds,
            checkpoint_every=self.config.checkpoint_every,
            outcomes_kept_max=limits.tx_status_kept_max,
            inbox_frames_max=INBOX_FRAMES_MAX,
        )
        self.outcome_file = OutcomeFile.open(
            self.config.data_dir / "outcomes",
            window_ms=self.config.window_ms,
            kept_max=limits.tx_status_kept_max,
            start_stamp_ms=meta.stamp_ms,
        )
        queue = ProposalQueue(limits.proposals_queued_max, window_ms=self.config.window_ms)
        log.info(
            "server %d: resuming at round %d (index %d), %d log entries, term %d",
            self.index,
            meta.round,
            meta.index,
            len(persisted.entries),
            persisted.hard_state.term,
        )
        return Driver(
            driver_config,
            raft=raft,
            ledger=ledger,
            rounds=rounds,
            proposals=queue,
            io=ServerIO(self),
            outcomes=self.outcome_file.book,
        )

    def _load_round(self, meta: SnapshotMeta) -> Ledger:
        """The ledger of the round the write-ahead log starts from, checked against the
        state root the log names: a server never starts from damaged data (§9.10)."""
        where = self.rounds.path(meta.round)
        if self.rounds.get(meta.round) is None:
            raise StorageCorrupt(f"round {meta.round}, which the write-ahead log names, is gone")
        try:
            ledger = self._ledger_of(meta.round)
        except (MalformedInput, OSError) as error:
            raise StorageCorrupt(f"{where} is unreadable: {error}") from None
        if ledger.state_root() != meta.state_root:
            raise StorageCorrupt(f"{where} does not give the state root the log names")
        return ledger

    def _ledger_of(self, round_number: int) -> Ledger:
        ledger = Ledger.from_checkpoint(
            self.rounds.read(round_number, snapshot.BALANCES),
            self.rounds.read(round_number, snapshot.WINDOW),
            window_ms=self.config.window_ms,
        )
        ledger.state_root()  # the tree, built once here (in a thread), then updated per seal
        return ledger

    def _write_genesis_round(self, compaction_point: int) -> None:
        """Round 0's files, unless held, or past: a server whose log starts later pruned
        round 0 long ago (rewriting and seeding it at each restart cost seconds at 10M)."""
        if compaction_point == 0 and self.rounds.get(0) is None and self.genesis is not None:
            genesis_meta = SnapshotMeta(0, 0, 0, 0, self.genesis_root)
            self.rounds.write(genesis_meta, genesis_contents(self.genesis))
        self.genesis = None  # let go: only a start needs it

    def held_rounds(self) -> list[tuple[SnapshotMeta, bytes]]:
        held = []
        for number in self.rounds.rounds():
            stored = self.rounds.get(number)
            if stored is not None:
                held.append((stored.meta, self.rounds.certificate(number) or b""))
        return held

    async def run(self) -> None:
        """Run the server until cancelled; every background task belongs to this TaskGroup."""
        swarm_config = SwarmConfig(
            listen_host=self.config.host,
            listen_port=self.config.torrent_port,
            bootstrap=self.config.bootstrap,
            network=self.config.network,
            dht_state_file=self.config.data_dir / DHT_STATE_FILE,  # protocol §8.8
            # A server's upload is the scarce resource: few unchoke slots and long piece runs
            # make clients trade pieces among themselves (docs/BENCHMARKS.md, swarm).
            unchoke_slots=SERVER_UNCHOKE_SLOTS,
            seed_piece_quota=SERVER_SEED_PIECE_QUOTA,
            optimistic_unchoke_interval_s=SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S,
        )
        swarm = self.make_swarm(swarm_config)
        try:
            await swarm.wait_listening()
            self.swarm = swarm
            self.driver = driver = self._load(swarm.port)
            self.publisher = Publisher(swarm, self.key, republish_s=self.config.republish_s)
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self.hub.run())
                tasks.create_task(self.publisher.run())
                tasks.create_task(self._publish_loop())
                tasks.create_task(self.pointers.run(swarm))
                tasks.create_task(swarm.keep_dht_state())
                tasks.create_task(swarm.keep_seed_budget(self.config.seed_budget))
                # Every server seeds round 0 (the genesis) and every round it still holds.
                await asyncio.to_thread(self._write_genesis_round, driver.compaction_point)
                await driver.boot(await asyncio.to_thread(self.held_rounds))
                for owed in await asyncio.to_thread(owed_backfills, self.config.data_dir):
                    self.start_backfill(*owed)  # one a crash interrupted (protocol §6.5)
                tasks.create_task(self._core_loop(driver))
                tasks.create_task(self._apply_loop(driver))
        finally:
            await swarm.close()

    def make_swarm(self, config: SwarmConfig) -> Swarm:
        """The libtorrent session (a seam: tests may wrap it to inject swarm faults)."""
        return Swarm(config)

    # -- inputs from elsewhere -----------------------------------------------------------

    def _address_of(self, peer: int) -> str | None:
        return self.config.peers.get(peer) or self.pointers.addresses.get(peer)

    def _on_frame(self, peer: int, data: bytes) -> None:
        try:
            frame = decode_frame(data)
        except RemoteError as error:
            log.warning("server %d sent a malformed frame: %s", peer, error)
            return
        if self.driver is not None:
            self.driver.receive(peer, frame)
            self._wake.set()

    def submit(self, txs: list[bytes]) -> str | None:
        """Queue prechecked payments for the leader; None, or why they cannot be taken."""
        driver = self.driver
        if driver is None:
            return "server starting"
        refusal = driver.submit(txs)
        self._wake.set()
        return refusal

    def apply_soon(self) -> None:
        self._apply_wake.set()

    def post_and_wake(self, event: Event) -> None:
        if self.driver is not None:
            self.driver.post(event)
            self._wake.set()

    # -- the core loop ---------------------------------------------------------------------

    async def _core_loop(self, driver: Driver) -> None:
        while True:
            # Wake on news, or after a tick with none: elections and heartbeats need it.
            # asyncio.timeout: 3.11's wait_for can swallow a cancellation (a loop outliving it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_MS / 1000):
                    await self._wake.wait()
            self._wake.clear()
            started_s = time.monotonic()
            await driver.turn(self.now_ms())
            took_s = time.monotonic() - started_s
            if took_s > TURN_SLOW_S:  # heartbeats wait meanwhile: say why there are elections
                log.warning("the core loop's turn took %.2f s", took_s)

    async def _apply_loop(self, driver: Driver) -> None:
        while True:
            await self._apply_wake.wait()
            self._apply_wake.clear()
            await driver.apply_pending()
            self._wake.set()  # the core loop compacts, offers, proposes what waited

    def send_frame(self, peer: int, frame: PeerFrame) -> None:
        """Every frame to a peer goes out here (tests put a lying or slow server here)."""
        self.hub.send(peer, encode_frame(frame))

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        if self._tasks is not None:
            self._tasks.create_task(coroutine)
        else:
            coroutine.close()

    # -- rounds: seeding, fetching, publishing (protocol §8, §9.4, §9.5) ----------------

    async def seed_round(self, meta: SnapshotMeta) -> None:
        """Build and seed round ``meta.round``'s torrent; tell the driver how it went."""
        swarm = self.swarm
        stored = self.rounds.get(meta.round)
        if swarm is None or stored is None:
            self.post_and_wake(SeedFailed(meta.round, "round not on disk"))
            return
        try:
            torrent = await asyncio.to_thread(build_round_torrent, stored.path)
            if torrent.infohash not in swarm.infohashes():
                await swarm.seed(stored.path, torrent, super_seed=False)
            transactions = await asyncio.to_thread(
                self.rounds.read, meta.round, snapshot.TRANSACTIONS
            )
        except (NotAvailable, OSError) as error:
            # Not available now (an add-torrent timeout, a busy disk): the round protocol
            # retries; the server goes on (errors.py: never crash on NotAvailable).
            self.post_and_wake(SeedFailed(meta.round, f"{type(error).__name__}: {error}"))
            return
        self.post_and_wake(
            Seeded(meta.round, torrent.infohash, torrent.infohash_v2, len(transactions) // TX_BYTES)
        )
        # libtorrent announces the new torrent too, but its walk can take 15 s (§8.3.4).
        await swarm.announce_direct(torrent.infohash)

    def publish(self, record: PointerRecord) -> None:
        self._to_publish = record
        self._publish_wanted.set()

    async def _publish_loop(self) -> None:
        """Put our pointer, always the newest record asked for, one put at a time (§8.3)."""
        while True:
            await self._publish_wanted.wait()
            self._publish_wanted.clear()
            record, publisher = self._to_publish, self.publisher
            if record is None or publisher is None:
                continue
            try:
                await publisher.offer(encode_record(record))
            except NotAvailable as error:
                log.warning("publishing round %d: %s", record.round, error)

    def start_backfill(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        if since.round < to.round and self.swarm is not None:
            self.spawn(self.backfill(since, to))

    async def backfill(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        """What the rounds skipped by a catch-up accepted (protocol §6.5): else unknown."""
        assert self.swarm is not None
        filler = Backfill(
            self.swarm,
            self.rounds,
            self.config.data_dir / f"{WORK_PREFIX}{to.round}",
            lambda: [a for i in range(len(self.quorum)) if (a := self._address_of(i))],
            (self.network, self.quorum),
            checkpoint_every=self.config.checkpoint_every,
        )
        try:
            async with asyncio.timeout(self.config.limits.catch_up_timeout_s * 2):
                found = await filler.accepted(since, to, self.config.limits.catch_up_timeout_s)
        except Exception as error:  # a peer's listing, libtorrent, the disk: never stop for it
            log.warning("rounds %d..%d stay unknown: %r", since.round + 1, to.round, error)
            return
        log.info("rounds %d..%d accepted %d payments", since.round + 1, to.round, len(found))
        accepted = tuple((a.tx_id, a.timestamp_ms, a.round) for a in found)
        self.post_and_wake(Backfilled(accepted))

    def start_fetch(self, meta: SnapshotMeta) -> None:
        # Gather shares of the round from now on: the driver has just asked every peer.
        leader = self.driver.raft.leader_id if self.driver is not None else None
        candidates = Candidates(meta.round, meta.state_root, leader, len(self.quorum) // 2 + 1)
        self._catch_up = candidates
        self.spawn(self.fetch_round(meta, candidates))

    async def fetch_round(self, meta: SnapshotMeta, candidates: Candidates) -> None:
        """Catch up through the swarm (protocol §9.5); the driver restores from the result."""
        log.info("far behind: catching up to round %d through the swarm", meta.round)
        try:
            ledger = await self._fetch_round(meta, candidates)
        except (TimeoutError, NotAvailable, RemoteError, OSError, RuntimeError) as error:
            # RuntimeError: libtorrent refusing what a peer named; never stop the server.
            self.post_and_wake(FetchFailed(meta, f"{type(error).__name__}: {error}"))
        else:
            self.post_and_wake(Fetched(meta, ledger))
        finally:
            self._catch_up = None

    async def _fetch_round(self, meta: SnapshotMeta, candidates: Candidates) -> Ledger:
        """From a torrent a majority or the leader name, the most named first (§9.5): one
        server that lies about the round's torrent cannot steer it; a slow one delays it."""
        limits = self.config.limits
        if not await candidates.first(limits.ask_timeout_s):
            raise TimedOut(f"no server named round {meta.round}'s torrent")
        await candidates.more(limits.share_grace_s, len(self.quorum))
        tried: set[tuple[bytes, bytes]] = set()
        failures: list[str] = []
        while pick := await candidates.next_trusted(tried, limits.ask_timeout_s):
            torrent, named = pick
            tried.add(torrent)
            try:
                return await self._fetch_torrent(meta, named)
            except (NotAvailable, RemoteError) as error:
                log.warning("round %d from torrent %s: %s", meta.round, torrent[0].hex(), error)
                failures.append(f"{type(error).__name__}: {error}")
        raise TimedOut(f"no trusted torrent of round {meta.round} held it: {failures or 'none'}")

    async def _fetch_torrent(self, meta: SnapshotMeta, named: list[tuple[int, Share]]) -> Ledger:
        swarm = self.swarm
        assert swarm is not None
        share = named[0][1]
        log.info("round %d is torrent %s; fetching", meta.round, share.infohash.hex())
        peers = [
            p
            for sender, s in named
            for p in self._torrent_peers(sender, s)
            if swarm.config.allows(p[0])
        ]
        result = await swarm.fetch(
            share.infohash,
            self.rounds.directory,
            timeout_s=self.config.limits.catch_up_timeout_s,
            expect_infohash_v2=share.infohash_v2,
            expect_state_root=meta.state_root,
            peers=peers,
            on_progress=lambda p: log.debug("catch-up progress %s", p),
            metadata_timeout_s=self.config.limits.catch_up_metadata_s,
            expect_name=snapshot.round_dir_name(meta.round),  # never over another round
        )
        stored = await asyncio.to_thread(self.rounds.adopt, result.round_dir, meta)
        return await asyncio.to_thread(self._ledger_of, stored.round)

    def peer_seeds(self, peer: int, share: Share) -> None:
        candidates = self._catch_up
        if candidates is not None:
            candidates.offer(peer, share)

    def _torrent_peers(self, sender: int, share: Share) -> list[tuple[str, int]]:
        """Where the server that answered seeds: dialled at once, besides the DHT's peers."""
        address = self._address_of(sender)
        if address is None or not share.torrent_port:
            return []
        return [(address.rpartition(":")[0], share.torrent_port)]
