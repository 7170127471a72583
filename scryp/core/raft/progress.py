"""The leader's view of one follower's log (Raft §5.3 nextIndex/matchIndex), etcd-style.

Owns: ``Progress`` and its three states:

    PROBE      we do not know where the logs diverge: one append in flight at a time,
               stepping ``next_index`` back on each rejection (using the follower's hint);
    REPLICATE  logs match up to ``match_index``: stream appends, optimistically moving
               ``next_index``, with at most ``messages_inflight_max`` unacknowledged;
    SNAPSHOT   the entries it needs are compacted: it was told to catch up from a round and
               we wait until it reports a match at or past ``snapshot_index``.

Invariants: ``match_index < next_index``; in REPLICATE the in-flight list is increasing and
above ``match_index``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    next_index: int
    match_index: int = 0
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False  # PROBE: an append is outstanding; wait for a reply or heartbeat
    inflight: deque[int] = field(default_factory=deque)  # last index of each append in flight
    snapshot_index: int = 0  # SNAPSHOT: the round's seal index we told it to load
    recently_active: bool = False  # heard from since the last quorum check (check-quorum)

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self.probe_sent = False
        self.inflight.clear()

    def acknowledge(self, match_index: int) -> bool:
        """A follower matched up to ``match_index``; True if that is news."""
        while self.inflight and self.inflight[0] <= match_index:
            self.inflight.popleft()
        self.probe_sent = False
        if match_index <= self.match_index:
            return False
        self.match_index = match_index
        self.next_index = max(self.next_index, match_index + 1)
        return True
