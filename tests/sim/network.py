"""An in-memory network of byte frames with seeded faults and a virtual clock.

Faults: loss, duplication, corruption (caught by the frame checksum), random delay (which
reorders), symmetric and one-way partitions (blocked directed links). A frame is checked
against the blocked links both when sent and when it would be delivered.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class LinkFaults:
    loss: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    delay_ms_min: int = 1
    delay_ms_max: int = 5
    long_delay: float = 0.0  # chance of an extra delay of up to ``long_delay_ms_max``
    long_delay_ms_max: int = 400


@dataclass(slots=True)
class NetworkStatistics:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted: int = 0
    blocked: int = 0


@dataclass(slots=True)
class Network:
    rng: random.Random
    faults: LinkFaults = field(default_factory=LinkFaults)
    blocked: set[tuple[int, int]] = field(default_factory=set)  # (source, target) cut
    statistics: NetworkStatistics = field(default_factory=NetworkStatistics)
    _queue: list[tuple[int, int, int, int, bytes]] = field(default_factory=list)
    _sequence: int = 0

    def send(self, now_ms: int, source: int, target: int, frame: bytes) -> None:
        self.statistics.sent += 1
        if (source, target) in self.blocked:
            self.statistics.blocked += 1
            return
        faults, rng = self.faults, self.rng
        if faults.loss and rng.random() < faults.loss:
            self.statistics.lost += 1
            return
        copies = 1
        if faults.duplicate and rng.random() < faults.duplicate:
            copies = 2
            self.statistics.duplicated += 1
        for _ in range(copies):
            payload = frame
            if faults.corrupt and rng.random() < faults.corrupt:
                self.statistics.corrupted += 1
                position = rng.randrange(len(frame))
                flipped = frame[position] ^ (1 << rng.randrange(8))
                payload = frame[:position] + bytes([flipped]) + frame[position + 1 :]
            delay_ms = rng.randint(faults.delay_ms_min, faults.delay_ms_max)
            if faults.long_delay and rng.random() < faults.long_delay:
                delay_ms += rng.randint(0, faults.long_delay_ms_max)
            self._sequence += 1
            heapq.heappush(
                self._queue, (now_ms + delay_ms, self._sequence, source, target, payload)
            )

    def due(self, now_ms: int) -> list[tuple[int, int, bytes]]:
        """Frames whose delivery time has come, in delivery order, minus blocked ones."""
        frames = []
        queue = self._queue
        while queue and queue[0][0] <= now_ms:
            _, _, source, target, payload = heapq.heappop(queue)
            if (source, target) in self.blocked:
                self.statistics.blocked += 1
                continue
            self.statistics.delivered += 1
            frames.append((source, target, payload))
        return frames

    def heal(self) -> None:
        self.blocked.clear()
        self.faults = LinkFaults()

    def partition(self, groups: list[list[int]]) -> None:
        """Cut every link between different groups, both ways (symmetric partition)."""
        for group in groups:
            for other in groups:
                if other is group:
                    continue
                for source in group:
                    for target in other:
                        self.blocked.add((source, target))

    def cut_one_way(self, source: int, target: int) -> None:
        self.blocked.add((source, target))
