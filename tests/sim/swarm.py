"""The simulator's swarm: seeding and fetching rounds take virtual time and may fail.

A server that seeds a round hands its files to the shared swarm after a random delay (or fails,
``SeedFailed``, as a libtorrent add-torrent timeout would); a server catching up finds a round
there after ``fetch_delay_ms`` if some server seeds it with the state root Raft named. Results
reach the driver through ``Driver.post``, and only the incarnation that asked for them (a
crash forgets what was under way).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from scryp.core.raft.entries import SnapshotMeta
from scryp.core.tx import TX_BYTES
from scryp.server.driver import Event, Fetched, FetchFailed, Seeded, SeedFailed

from .server import SimServer
from .state_machine import RoundFiles


@dataclass(frozen=True, slots=True)
class SwarmFaults:
    seed_delay_ms_min: int = 5
    seed_delay_ms_max: int = 200
    seed_failure: float = 0.0  # chance that one seeding attempt fails (then retried)
    fetch_delay_ms: int = 100


@dataclass(slots=True)
class SimSwarm:
    rng: random.Random
    faults: SwarmFaults = field(default_factory=SwarmFaults)
    rounds: dict[int, RoundFiles] = field(default_factory=dict)  # what some server seeds
    state_roots: dict[int, bytes] = field(default_factory=dict)  # ...and their sealed roots
    seed_failures: int = 0
    _due: list[tuple[int, int, int, int, Event]] = field(default_factory=list)
    _sequence: int = 0

    def start_seed(self, now_ms: int, server: SimServer, meta: SnapshotMeta) -> None:
        faults = self.faults
        due_ms = now_ms + self.rng.randint(faults.seed_delay_ms_min, faults.seed_delay_ms_max)
        held = server.store.rounds.get(meta.round)
        event: Event
        if held is None or (faults.seed_failure and self.rng.random() < faults.seed_failure):
            self.seed_failures += 1
            event = SeedFailed(meta.round, "TimedOut: add torrent (simulated)")
        else:
            files = held[1]
            infohash, infohash_v2 = files.infohashes
            count = len(files.transactions) // TX_BYTES
            event = Seeded(meta.round, infohash, infohash_v2, count)
            # The files are in the swarm once the torrent is added (the round is immutable).
            self.rounds.setdefault(meta.round, files)
            self.state_roots.setdefault(meta.round, meta.state_root)
        self._push(due_ms, server, event)

    def start_fetch(self, now_ms: int, server: SimServer, meta: SnapshotMeta) -> None:
        self._push(now_ms + self.faults.fetch_delay_ms, server, _FetchDue(meta))

    def _push(self, due_ms: int, server: SimServer, event: Event | _FetchDue) -> None:
        self._sequence += 1
        self._due.append((due_ms, self._sequence, server.id, server.incarnation, event))  # type: ignore[arg-type]

    def due(self, now_ms: int, servers: list[SimServer]) -> list[SimServer]:
        """Hand the results whose time has come to their servers; return the servers told."""
        ready = sorted(item for item in self._due if item[0] <= now_ms)
        self._due = [item for item in self._due if item[0] > now_ms]
        told = []
        for _, _, server_id, incarnation, event in ready:
            server = servers[server_id]
            if server.driver is None or server.incarnation != incarnation:
                continue  # crashed meanwhile: the task died with the process
            if isinstance(event, _FetchDue):
                server.driver.post(self._fetch(server, event.meta))
            else:
                server.driver.post(event)
            told.append(server)
        return told

    def _fetch(self, server: SimServer, meta: SnapshotMeta) -> Fetched | FetchFailed:
        files = self.rounds.get(meta.round)
        # Pair check (TigerBeetle): the bytes must hash to what the leader's metadata says.
        if files is None or files.state_root != meta.state_root:
            return FetchFailed(meta, "nobody seeds the round")
        server.store.write_round(meta, files)  # the files land on disk first
        return Fetched(meta, files.ledger())


@dataclass(frozen=True, slots=True)
class _FetchDue:
    meta: SnapshotMeta
