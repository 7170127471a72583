"""A whole quorum in one process: servers, network, clients, faults and a virtual clock.

Everything random comes from ``random.Random`` instances derived from one seed, and nothing
reads a clock, so a run is a pure function of (seed, servers, code) and replays exactly.
``run_seed`` is the randomized fault-injecting run; scenario tests drive ``Cluster`` by hand.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger
from scryp.core.pointer import PointerRecord
from scryp.core.raft.apply import EntryApplied
from scryp.core.raft.config import RaftConfig
from scryp.core.raft.entries import Entry, Seal, SnapshotMeta
from scryp.core.raft.node import Role
from scryp.core.raft.ready import HardState, Ready
from scryp.core.rounds import Certified, Diverged, ShareRefused
from scryp.core.tx import Transaction
from scryp.core.wire import PeerFrame, RaftFrame, Share, decode_frame, encode_frame
from scryp.crypto import KeyPair
from scryp.errors import MalformedInput
from scryp.server.driver import BadFrame, CatchingUp, CaughtUp, Report
from scryp.server.rounds import round_contents

from .checker import Checker, SafetyViolation
from .network import LinkFaults, Network
from .server import DurableStore, Hooks, SimServer
from .state_machine import RoundFiles
from .swarm import SimSwarm, SwarmFaults

TICK_MS = 10
ACCOUNTS = 8


@dataclass(frozen=True, slots=True)
class SimOptions:
    servers: int = 3
    election_timeout_ms_min: int = 150
    election_timeout_ms_max: int = 300
    heartbeat_interval_ms: int = 40
    round_interval_ms: int = 500
    payments_per_entry_max: int = 64
    entries_per_message_max: int = 16
    messages_inflight_max: int = 4
    fetch_delay_ms: int = 100  # time for a round to arrive through the swarm
    clock_skew_ms_max: int = 20


@dataclass(slots=True)
class Cluster(Hooks):
    seed: int
    options: SimOptions
    now_ms: int = 0
    trace: list[str] | None = None
    checker: Checker = field(init=False)
    servers: list[SimServer] = field(default_factory=list)
    network: Network = field(init=False)
    swarm: SimSwarm = field(init=False)
    accounts: list[KeyPair] = field(default_factory=list)
    rng: random.Random = field(init=False)
    submitted: list[bytes] = field(default_factory=list)
    roles: dict[int, tuple[Role, int]] = field(default_factory=dict)
    malformed_frames: int = 0
    catch_ups: int = 0
    shares_refused: int = 0
    forged_shares: int = 0

    def __post_init__(self) -> None:
        seed = self.seed
        self.rng = random.Random(f"sim-{seed}-workload")
        self.network = Network(random.Random(f"sim-{seed}-network"))
        self.swarm = SimSwarm(
            random.Random(f"sim-{seed}-swarm"),
            SwarmFaults(fetch_delay_ms=self.options.fetch_delay_ms),
        )
        self.accounts = [
            KeyPair.from_seed(hashlib.sha256(f"sim-{seed}-{i}".encode()).digest())
            for i in range(ACCOUNTS)
        ]
        keys = [
            KeyPair.from_seed(hashlib.sha256(f"sim-{seed}-server-{i}".encode()).digest())
            for i in range(self.options.servers)
        ]
        quorum = tuple(key.public for key in keys)
        genesis = Genesis.single(self.accounts[0].public)
        round0 = RoundFiles.of(round_contents(0, 1, Ledger.from_genesis(genesis), b""))
        assert round0.state_root is not None
        meta0 = SnapshotMeta(0, 0, 0, 0, round0.state_root)
        self.checker = Checker(network=genesis.network_id, quorum=quorum)
        ids = tuple(range(self.options.servers))
        skew_rng = random.Random(f"sim-{seed}-skew")
        for server_id in ids:
            store = DurableStore(
                hard_state=HardState(term=0, voted_for=None, committed=0),
                snapshot=meta0,
                entries=[],
                rounds={0: (meta0, round0)},
            )
            server = SimServer(
                id=server_id,
                config=self._config(server_id, ids),
                key=keys[server_id],
                quorum=quorum,
                network=genesis.network_id,
                store=store,
                rng=random.Random(f"sim-{seed}-node-{server_id}"),
                hooks=self,
                skew_ms=skew_rng.randint(0, self.options.clock_skew_ms_max),
            )
            self.servers.append(server)
        for server in self.servers:
            server.start(self.now_ms)

    def _config(self, server_id: int, ids: tuple[int, ...]) -> RaftConfig:
        options = self.options
        return RaftConfig(
            server_id=server_id,
            servers=ids,
            election_timeout_ms_min=options.election_timeout_ms_min,
            election_timeout_ms_max=options.election_timeout_ms_max,
            heartbeat_interval_ms=options.heartbeat_interval_ms,
            round_interval_ms=options.round_interval_ms,
            payments_per_entry_max=options.payments_per_entry_max,
            entries_per_message_max=options.entries_per_message_max,
            messages_inflight_max=options.messages_inflight_max,
        )

    # -- the step loop -------------------------------------------------------------------

    def step(self) -> None:
        """One tick of virtual time: restarts, swarm results, deliveries, turns; then checks."""
        self.now_ms += TICK_MS
        now_ms = self.now_ms
        for server in self.servers:
            restart_at_ms = server.restart_at_ms
            if not server.alive and restart_at_ms is not None and now_ms >= restart_at_ms:
                self.log(f"s{server.id} restarts from disk")
                server.start(now_ms)
        for server in self.swarm.due(now_ms, self.servers):
            if server.paused_until_ms <= now_ms:
                self._process(server)
        for source, target, frame in self.network.due(now_ms):
            self._deliver(source, target, frame)
        for server in self.servers:
            if server.driver is None or server.paused_until_ms > now_ms:
                continue
            for source, frame in server.backlog:
                self._deliver(source, server.id, frame)
            server.backlog.clear()
            server.turn(now_ms)
            self.checker.after_step(self.servers)
        self._observe_roles()

    def _deliver(self, source: int, target: int, data: bytes) -> None:
        server = self.servers[target]
        if server.driver is None:
            return
        if server.paused_until_ms > self.now_ms:
            server.backlog.append((source, data))
            return
        try:
            frame = decode_frame(data)
        except MalformedInput:
            # The peer's fault (here: corruption on the wire): drop it, never crash.
            self.malformed_frames += 1
            return
        server.driver.receive(source, frame)
        if isinstance(frame, RaftFrame):
            self._process(server)
        else:  # shares, asks and forwards never change a role: the leader checks can wait
            server.process(self.now_ms)

    def _process(self, server: SimServer) -> None:
        server.process(self.now_ms)
        self.checker.after_step(self.servers)

    def _observe_roles(self) -> None:
        for server in self.servers:
            node = server.node
            if node is None:
                continue
            state = (node.role, node.term)
            previous = self.roles.get(server.id)
            if previous != state:
                self.roles[server.id] = state
                # Every role change, but not a follower merely learning a newer term.
                if node.role is not Role.FOLLOWER or (
                    previous and previous[0] is not Role.FOLLOWER
                ):
                    self.log(f"s{server.id} is {node.role} in term {node.term}")

    # -- hooks: what a server's IO does here ---------------------------------------------

    def on_persist(self, server: SimServer, ready: Ready) -> None:
        self.checker.on_persist(server, ready)

    def on_apply(self, server: SimServer, entry: Entry, applied: EntryApplied) -> None:
        assert server.model is not None and server.driver is not None
        observed = server.model.observe(applied, server.driver.ledger)
        self.checker.on_apply(server, entry, observed)
        if isinstance(entry.payload, Seal) and observed.sealed_hash is not None:
            self.log(
                f"s{server.id} seals round {entry.payload.round} at {entry.term}/{entry.index} "
                f"hash {observed.sealed_hash.hex()[:12]}"
            )

    def on_send(self, server: SimServer, target: int, frame: PeerFrame) -> None:
        self.network.send(self.now_ms, server.id, target, encode_frame(frame))

    def on_report(self, server: SimServer, report: Report) -> None:
        match report:
            case CatchingUp(meta=meta):
                self.checker.on_catch_up(server, meta)
                self.catch_ups += 1
                self.log(f"s{server.id} told to catch up from round {meta.round}")
            case CaughtUp(meta=meta):
                server.reset_model()
                self.log(f"s{server.id} loaded round {meta.round}")
            case Certified():
                signers = ",".join(f"s{i}" for i in report.signers)
                self.log(f"s{server.id} certifies round {report.round} ({signers})")
            case Diverged():
                # Only a forged share can name another state root, and it must never get this
                # far: its signature does not verify (protocol §9.3).
                raise SafetyViolation(
                    f"s{server.id}: DIVERGENCE on round {report.round} from s{report.peer}"
                )
            case ShareRefused():
                self.shares_refused += 1
            case BadFrame():
                self.malformed_frames += 1

    def on_certificate(self, server: SimServer, round_number: int, cert: bytes) -> None:
        self.checker.on_certificate(server, round_number, cert)

    def on_publish(self, server: SimServer, record: PointerRecord) -> None:
        self.checker.on_publish(server, record)

    def start_seed(self, server: SimServer, meta: SnapshotMeta) -> None:
        self.swarm.start_seed(self.now_ms, server, meta)

    def start_fetch(self, server: SimServer, meta: SnapshotMeta) -> None:
        self.swarm.start_fetch(self.now_ms, server, meta)

    def on_crash(self, server: SimServer, reason: str) -> None:
        self.checker.on_crash(server, reason)
        self.roles.pop(server.id, None)
        self.log(f"s{server.id} {reason}")

    def log(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(f"t={self.now_ms:>6} {line}")

    # -- operations (faults, clients) ----------------------------------------------------

    def run(self, duration_ms: int) -> None:
        for _ in range(duration_ms // TICK_MS):
            self.step()

    def crash(self, server_id: int, restart_after_ms: int | None = None) -> None:
        server = self.servers[server_id]
        if server.alive:
            server.crash("crashes")
        if restart_after_ms is not None:
            server.restart_at_ms = self.now_ms + restart_after_ms

    def restart(self, server_id: int) -> None:
        server = self.servers[server_id]
        if not server.alive:
            self.log(f"s{server_id} restarts from disk")
            server.start(self.now_ms)

    def partition(self, groups: list[list[int]]) -> None:
        self.network.partition(groups)
        self.log(f"partition {groups}")

    def heal(self) -> None:
        self.network.heal()
        self.swarm.faults = SwarmFaults(fetch_delay_ms=self.options.fetch_delay_ms)
        for server in self.servers:
            server.paused_until_ms = 0
            server.apply_held_until_ms = 0
            if not server.alive:
                self.restart(server.id)
        self.log("network healed, every server up")

    def forge_share(self, rng: random.Random) -> None:
        """A share no server signed, sent as if from a real peer (the link cannot tell here:
        think of a peer with a bug): naming a real round with a bad signature, or another
        state root. Every one must be refused by the signature check (protocol §9.3)."""
        if len(self.swarm.rounds) == 0:
            return
        sender, target = rng.sample(range(len(self.servers)), 2)
        round_number = rng.choice(sorted(self.swarm.rounds))
        files = self.swarm.rounds[round_number]
        infohash, infohash_v2 = files.infohashes
        real = self.swarm.state_roots[round_number]
        state = real if rng.random() < 0.5 else rng.randbytes(32)
        share = Share(round_number, state, infohash, infohash_v2, rng.randbytes(64))
        self.forged_shares += 1
        self.network.send(self.now_ms, sender, target, encode_frame(share))

    def leader(self) -> SimServer | None:
        """The live leader with the highest term, as a client would find by redirects."""
        best = None
        for server in self.servers:
            node = server.node
            if node is None or node.role is not Role.LEADER or server.paused_until_ms > self.now_ms:
                continue
            if best is None or (best.node is not None and node.term > best.node.term):
                best = server
        return best

    def leaders(self) -> list[SimServer]:
        """Every live server that believes it leads (several, in different terms)."""
        return [
            server
            for server in self.servers
            if server.node is not None
            and server.node.role is Role.LEADER
            and server.paused_until_ms <= self.now_ms
        ]

    def pay(self, count: int) -> int:
        """Submit ``count`` fresh payments to the leader; returns how many it queued."""
        queued = 0
        for _ in range(count):
            tx = self._make_payment()
            if self._submit(tx):
                queued += 1
        return queued

    def _submit(self, tx: bytes, via_follower: bool = False) -> bool:
        # Clients find the current leader by redirects, but a client may still talk to a
        # deposed leader that does not know it yet (its entries must never commit), or to a
        # follower, which forwards to the leader it knows (protocol §9.3).
        if via_follower:
            live = [s for s in self.servers if s.alive and s.paused_until_ms <= self.now_ms]
            server = self.rng.choice(live) if live else None
        else:
            leaders = self.leaders()
            use_any = leaders and self.rng.random() < 0.3
            server = self.rng.choice(leaders) if use_any else self.leader()
        if server is None or server.driver is None:
            return False
        self.submitted.append(tx)
        refusal = server.driver.submit([tx])
        self._process(server)
        return refusal is None

    def _make_payment(self) -> bytes:
        rng = self.rng
        payer_index = 0 if rng.random() < 0.3 else rng.randrange(ACCOUNTS)
        payee_index = rng.randrange(ACCOUNTS)
        amount = rng.randint(1, 2**29)
        timestamp_ms = max(0, self.now_ms + rng.randint(-200, 200))
        if rng.random() < 0.02:
            timestamp_ms += 60_000  # outside the window: must be rejected everywhere
        tx = Transaction.create(
            self.accounts[payer_index], self.accounts[payee_index].public, amount, timestamp_ms
        ).encode()
        if rng.random() < 0.02:
            tx = tx[:-1] + bytes([tx[-1] ^ 1])  # a bad signature: rejected, never a crash
        return tx

    def random_traffic(self) -> None:
        """A few clients: new payments, retries of old ones (duplicates), double spends."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            self.pay(rng.randint(1, 3))
        elif roll < 0.30 and self.submitted:
            self._submit(rng.choice(self.submitted[-50:]))  # a client retry
        elif roll < 0.31:
            self._submit(self._make_payment(), via_follower=True)
        elif roll < 0.33:
            # A double spend attempt: one payer's whole balance, twice, to two payees.
            payer = self.accounts[rng.randrange(ACCOUNTS)]
            for payee in rng.sample(self.accounts, 2):
                amount = rng.randint(2**30, 2**32 - 1)
                tx = Transaction.create(payer, payee.public, amount, self.now_ms).encode()
                self._submit(tx)

    # -- summaries -----------------------------------------------------------------------

    def sealed_rounds(self) -> list[int]:
        return [server.round for server in self.servers]

    def certified_rounds(self) -> list[int]:
        return [
            -1 if s.driver is None else s.driver.rounds.certified_round or 0 for s in self.servers
        ]

    def status(self) -> list[str]:
        lines = []
        for server in self.servers:
            node = server.node
            if node is None:
                lines.append(f"s{server.id} down")
                continue
            log = node.log
            lines.append(
                f"s{server.id} {node.role:<9} term {node.term} leader "
                f"{'-' if node.leader_id is None else f's{node.leader_id}'} log "
                f"{log.snapshot.index}..{log.last_index} commit {log.committed} applied "
                f"{log.applied} round {server.round} "
                f"snapshot round {log.snapshot.round}"
            )
        return lines


# -- the randomized run --------------------------------------------------------------------

FAULT_PHASE_MS = 4_000
LIVENESS_MS_MAX = 5_000
NEW_ROUNDS_REQUIRED = 2


@dataclass(frozen=True, slots=True)
class SeedResult:
    seed: int
    servers: int
    virtual_ms: int
    rounds_sealed: int
    entries_applied: int
    elections: int
    crashes: int
    catch_ups: int
    messages: int
    recovery_ms: int  # from healing to a majority sealing and certifying the new rounds
    certificates: int  # distinct rounds certified (by some server)
    forged_shares: int
    shares_refused: int  # forged, or corrupted on the wire
    seed_failures: int  # seeding attempts that failed (and were retried)


class LivenessViolation(AssertionError):
    """Faults stopped, but a majority did not seal new rounds in the allowed virtual time."""


def replay_command(seed: int, servers: int) -> str:
    return f"tools/sim --seed {seed} --servers {servers}"


def run_seed(seed: int, servers: int) -> SeedResult:
    """One fault-injecting run. Raises SafetyViolation / LivenessViolation with the replay line."""
    try:
        return _run_seed(seed, servers)
    except Exception as error:
        error.add_note(f"seed {seed} failed; replay: {replay_command(seed, servers)}")
        raise


def _run_seed(seed: int, servers: int, trace: list[str] | None = None) -> SeedResult:
    cluster = Cluster(seed=seed, options=SimOptions(servers=servers), trace=trace)
    faults = random.Random(f"sim-{seed}-faults")
    cluster.network.faults = LinkFaults(
        loss=faults.choice([0.0, 0.01, 0.05, 0.15]),
        duplicate=faults.choice([0.0, 0.02, 0.1]),
        corrupt=faults.choice([0.0, 0.0, 0.01]),
        delay_ms_min=1,
        delay_ms_max=faults.choice([2, 10, 40]),
        long_delay=faults.choice([0.0, 0.01, 0.05]),
    )
    cluster.swarm.faults = SwarmFaults(
        seed_delay_ms_min=5,
        seed_delay_ms_max=faults.choice([50, 200, 600]),
        seed_failure=faults.choice([0.0, 0.05, 0.2]),
        fetch_delay_ms=cluster.options.fetch_delay_ms,
    )
    intensity = faults.choice([0.5, 1.0, 2.0, 4.0])
    crashes = 0
    while cluster.now_ms < FAULT_PHASE_MS:
        crashes += _inject_faults(cluster, faults, intensity)
        cluster.random_traffic()
        cluster.step()
    cluster.heal()
    heal_ms = cluster.now_ms
    baseline = max(cluster.checker.seals, default=0)
    majority = servers // 2 + 1
    target = baseline + NEW_ROUNDS_REQUIRED
    while True:
        cluster.random_traffic()
        cluster.step()
        sealed = sorted(cluster.sealed_rounds(), reverse=True)
        certified = sorted(cluster.certified_rounds(), reverse=True)
        # Live: a majority seals new rounds, and certifies them (shares, protocol §9.4).
        if sealed[majority - 1] >= target and certified[majority - 1] >= target:
            break
        if cluster.now_ms - heal_ms > LIVENESS_MS_MAX:
            raise LivenessViolation(
                f"no majority sealed and certified round {target} within "
                f"{LIVENESS_MS_MAX} ms after healing; rounds {cluster.sealed_rounds()}, "
                f"certified {cluster.certified_rounds()}; " + "; ".join(cluster.status())
            )
    cluster.checker.check_final_logs(cluster.servers)
    cluster.checker.check_outcomes(cluster.servers)
    return SeedResult(
        seed=seed,
        servers=servers,
        virtual_ms=cluster.now_ms,
        rounds_sealed=max(cluster.checker.seals, default=0),
        entries_applied=cluster.checker.applied_count,
        elections=len(cluster.checker.leaders),
        crashes=crashes,
        catch_ups=cluster.catch_ups,
        messages=cluster.network.statistics.sent,
        recovery_ms=cluster.now_ms - heal_ms,
        certificates=len(cluster.checker.certified),
        forged_shares=cluster.forged_shares,
        shares_refused=cluster.shares_refused,
        seed_failures=cluster.swarm.seed_failures,
    )


def _inject_faults(cluster: Cluster, faults: random.Random, intensity: float) -> int:
    """Per tick, maybe start or end a fault. Returns the number of crashes injected."""
    roll = faults.random() / intensity
    servers = cluster.servers
    now_ms = cluster.now_ms
    victim = servers[faults.randrange(len(servers))]
    if roll < 0.004:
        if victim.alive:
            # Up to 4 s down: long enough for the others to compact past it, so it must catch
            # up from a round (§7.9). Pauses seldom do since a stall costs no election (§7.6).
            cluster.crash(victim.id, restart_after_ms=faults.randint(50, 4_000))
            return 1
    elif roll < 0.007:
        if victim.alive:
            victim.crash_after_persist = True
            victim.restart_at_ms = now_ms + faults.randint(50, 1_500)
            return 1
    elif roll < 0.010:
        victim.paused_until_ms = now_ms + faults.randint(50, 1_500)
        cluster.log(f"s{victim.id} paused")
    elif roll < 0.013:
        ids = [server.id for server in servers]
        faults.shuffle(ids)
        cut = faults.randint(1, len(ids) - 1)
        cluster.partition([ids[:cut], ids[cut:]])
    elif roll < 0.015:
        source, target = faults.sample(range(len(servers)), 2)
        cluster.network.cut_one_way(source, target)
        cluster.log(f"link s{source}->s{target} cut")
    elif roll < 0.020:
        cluster.network.blocked.clear()
        cluster.log("partitions healed")
    elif roll < 0.035:
        cluster.forge_share(faults)
    elif roll < 0.038:
        # A slow apply task (a checkpoint round's write at 10M accounts): the core loop must
        # keep the server in the quorum meanwhile, and a catch-up must not race it (§7.8).
        victim.apply_held_until_ms = now_ms + faults.randint(50, 2_500)
        cluster.log(f"s{victim.id} applies late")
    return 0


def trace_seed(seed: int, servers: int) -> list[str]:
    """Replay one seed with its event trace (for ``tools/sim --seed``)."""
    lines: list[str] = []
    try:
        result = _run_seed(seed, servers, trace=lines)
        lines.append(f"ok: {result}")
    except Exception as error:
        lines.append(f"FAILED: {type(error).__name__}: {error}")
        lines.append(f"replay: {replay_command(seed, servers)}")
    return lines
