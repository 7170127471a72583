"""Configuration of one Raft server: who is in the quorum, and a limit on everything.

Owns: ``RaftConfig`` and its validation. Every limit carries its unit last in its name.
Times are integer milliseconds of the injected clock; the core never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from scryp.core.raft.codec import FRAME_BYTES_MAX, MESSAGE_ENTRIES_MAX, SERVER_ID_MAX
from scryp.core.raft.entries import ENTRY_HEAD_BYTES, ENTRY_PAYMENTS_MAX, TX_BYTES
from scryp.errors import ConfigError

SERVERS_MAX = 7


@dataclass(frozen=True, slots=True)
class RaftConfig:
    server_id: int
    servers: tuple[int, ...]  # every member, this server included, in quorum order
    # Raft §5.2: a follower that hears nothing for a random time in [min, max) campaigns.
    election_timeout_ms_min: int = 300
    election_timeout_ms_max: int = 600
    heartbeat_interval_ms: int = 50
    # CheckQuorum (Raft thesis §6.2): a leader that heard from no majority over this long
    # steps down. Not for safety, only so a cut-off leader stops taking payments; longer
    # than an election timeout, because every server stalls at once at a checkpoint round at
    # 10M accounts (~0.5 s) and a leader that stepped down then cost an election (§7.6).
    check_quorum_interval_ms: int = 1_500
    # A tick this long after the previous one means our own loop stalled (a long seal, a slow
    # fsync): the time between is not counted against the leader or the followers (tick).
    tick_gap_ms_max: int = 150
    # The leader seals a round at every multiple of this interval (protocol §7.3).
    round_interval_ms: int = 1_000
    # Batching: payments wait in the leader for at most one tick, then go out together.
    payments_per_entry_max: int = 1_024
    proposals_pending_max: int = 16_384  # payments queued in the leader, beyond: refused
    entries_per_message_max: int = 64
    message_bytes_max: int = 1024 * 1024
    # Replication pipeline: append messages in flight to one follower before waiting.
    messages_inflight_max: int = 8
    committed_entries_per_ready_max: int = 1_024

    def __post_init__(self) -> None:
        if not 1 <= len(self.servers) <= SERVERS_MAX or len(set(self.servers)) != len(self.servers):
            raise ConfigError(f"a quorum is 1..{SERVERS_MAX} distinct servers: {self.servers}")
        if self.server_id not in self.servers:
            raise ConfigError(f"server {self.server_id} is not in the quorum {self.servers}")
        if not all(0 <= server <= SERVER_ID_MAX for server in self.servers):
            raise ConfigError("server ids must fit in 16 bits")
        if not 0 < self.heartbeat_interval_ms < self.election_timeout_ms_min:
            raise ConfigError("need 0 < heartbeat interval < minimum election timeout")
        if not self.election_timeout_ms_min < self.election_timeout_ms_max:
            raise ConfigError("need election timeout min < max")
        if self.check_quorum_interval_ms < self.election_timeout_ms_min:
            raise ConfigError("need check-quorum interval >= minimum election timeout")
        if self.round_interval_ms <= 0:
            raise ConfigError("round interval must be positive")
        if not 1 <= self.payments_per_entry_max <= ENTRY_PAYMENTS_MAX:
            raise ConfigError(f"payments per entry must be in 1..{ENTRY_PAYMENTS_MAX}")
        if not 1 <= self.entries_per_message_max <= MESSAGE_ENTRIES_MAX:
            raise ConfigError(f"entries per message must be in 1..{MESSAGE_ENTRIES_MAX}")
        largest_entry_bytes = ENTRY_HEAD_BYTES + 8 + TX_BYTES * self.payments_per_entry_max
        if not largest_entry_bytes <= self.message_bytes_max <= FRAME_BYTES_MAX // 2:
            raise ConfigError("message bytes max must hold the largest entry, within the frame")
        for name in (
            "proposals_pending_max",
            "messages_inflight_max",
            "committed_entries_per_ready_max",
            "tick_gap_ms_max",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(server for server in self.servers if server != self.server_id)

    @property
    def majority(self) -> int:
        return len(self.servers) // 2 + 1
