"""Everything a server is told at start: files, ports, peers, timing and limits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from scryp.core.seedbudget import SeedBudget
from scryp.core.snapshot import CHECKPOINT_EVERY_DEFAULT
from scryp.netmode import Mode


@dataclass(frozen=True, slots=True)
class ServerLimits:
    request_bytes_max: int = 1024 * 1024  # one POST body
    batch_txs_max: int = 4_096  # transactions in one POST /transact
    requests_per_s: float = 200.0  # per client address, token bucket
    request_burst: int = 400
    # Signature checks a client may cause, per address: about a third of one core's rate,
    # so one client cannot stall the sealing (protocol §9.9).
    signatures_per_s: float = 5_000.0
    signature_burst: int = 8_192
    request_s_max: float = 10.0  # a whole request, body included (a slow body is cut off)
    rounds_listed_max: int = 100  # GET /rounds
    # GET /changes (protocol §10.4.1): rounds in one range (a server with a larger
    # checkpoint_every serves that many: a full sync asks for fewer than checkpoint_every),
    # and the bytes of round files merged for one answer (the answer is at most that).
    # 32 MiB: ~220 rounds of 2,000 payments with every payee new; the default range holds
    # 60 rounds, and a busier network's ranges fail over to the torrents.
    changes_rounds_max: int = CHECKPOINT_EVERY_DEFAULT
    changes_bytes_max: int = 32 * 1024 * 1024
    # Merged answers kept (a crowd of clients syncing the same round asks the same range).
    changes_answers_kept: int = 4
    tx_status_kept_max: int = 1_000_000  # outcomes remembered for GET /tx/{id}
    proposals_queued_max: int = 16_384  # payments waiting for the leader's core loop
    shares_rounds_ahead_max: int = 16  # round signatures buffered for rounds not sealed yet
    catch_up_timeout_s: float = 60.0
    ask_timeout_s: float = 5.0  # for a peer's answer naming a round's torrent
    share_grace_s: float = 1.0  # after the first answer, for the others' (protocol §9.5)
    # A torrent whose metadata does not come in this long is nobody's: try the next one.
    catch_up_metadata_s: float = 10.0
    dht_get_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    key_file: Path
    quorum_file: Path
    genesis_file: Path
    data_dir: Path
    host: str = "127.0.0.1"  # what to bind (--listen)
    # What peers and clients are told (--advertise): the host of the API address in the
    # pointer, and of the torrent address peers derive from it (protocol §9.6).
    advertise: str = "127.0.0.1"
    torrent_port: int = 6881
    server_port: int = 6882
    bootstrap: tuple[tuple[str, int], ...] = ()
    network: Mode = Mode.LOOPBACK
    peers: dict[int, str] = field(default_factory=dict)  # server index -> "host:port"
    round_interval_s: float = 10.0
    window_ms: int = 5_000
    rounds_kept: int = 8
    # ...and at least the rounds of this many seconds: a DHT pointer a reader gets may lag
    # the servers by a few rounds, and the round it names must still be seeded.
    rounds_kept_s: float = 60.0
    # Raft compacts its log to a round sealed at least this long ago (and 2 rounds back at
    # least), so a follower that just fetched a round through the swarm still finds the
    # entries after it in the leader's log instead of chasing ever newer rounds.
    compaction_lag_s: float = 10.0
    # Rounds whose number is a multiple of this hold the whole balances file; the same on
    # every server of a network (protocol §4.4.4).
    checkpoint_every: int = CHECKPOINT_EVERY_DEFAULT
    republish_s: float = 1800.0
    discovery_interval_s: float = 5.0
    limits: ServerLimits = field(default_factory=ServerLimits)
    # How much of each round torrent this server uploads at full speed (protocol §8.9.1).
    seed_budget: SeedBudget = field(default_factory=SeedBudget)

    def __post_init__(self) -> None:
        if self.round_interval_s <= 0:
            raise ValueError("round_interval_s must be positive")
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        if self.rounds_kept < 2:
            raise ValueError("rounds_kept must be at least 2")

    @property
    def rounds_kept_effective(self) -> int:
        return max(self.rounds_kept, math.ceil(self.rounds_kept_s / self.round_interval_s))

    @property
    def compaction_lag_rounds(self) -> int:
        return max(2, math.ceil(self.compaction_lag_s / self.round_interval_s))
