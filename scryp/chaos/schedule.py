"""The fault plan of a chaos run: which server fails how, when, for how long (protocol §11.2).

Pure: a function of the seed and the options, so a failing run is replayed by its seed.
Invariant: faults never overlap, so at most one server is down or paused at any moment and
a majority of a quorum of 3 or more is always up (a minority may fail; protocol §7.1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    KILL = "kill"  # SIGKILL, restarted after the fault's duration
    PAUSE = "pause"  # SIGSTOP, SIGCONT after the fault's duration


LEADER = -1  # target: whichever server leads when the fault starts


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # from the start of the load
    kind: FaultKind
    target: int  # a server index, or LEADER
    duration_s: float

    @property
    def until_s(self) -> float:
        return self.at_s + self.duration_s


@dataclass(frozen=True, slots=True)
class ScheduleOptions:
    servers: int = 3
    duration_s: float = 60.0
    first_fault_s: float = 5.0  # let the load settle first
    quiet_tail_s: float = 8.0  # no fault starts this close to the end
    gap_s: tuple[float, float] = (3.0, 8.0)  # healthy time between faults
    fault_s: tuple[float, float] = (1.0, 6.0)  # how long a fault lasts
    leader_share: float = 0.5  # of faults aimed at the leader


def plan(seed: int, options: ScheduleOptions) -> list[Fault]:
    """Faults one after another, each after a healthy gap, none in the quiet tail."""
    rng = random.Random(f"chaos-schedule-{seed}")
    faults: list[Fault] = []
    at_s = round(options.first_fault_s, 3)
    while True:
        # Times in whole ms, and the next fault counted from the rounded end of this one, so
        # rounding never shortens a gap nor reaches into the tail (found by Hypothesis: a gap
        # 1 ms short, seed 2582).
        duration_s = round(rng.uniform(*options.fault_s), 3)
        if at_s + duration_s > options.duration_s - options.quiet_tail_s:
            return faults
        kind = rng.choice((FaultKind.KILL, FaultKind.PAUSE))
        leader = rng.random() < options.leader_share
        target = LEADER if leader else rng.randrange(options.servers)
        fault = Fault(at_s, kind, target, duration_s)
        faults.append(fault)
        at_s = round(fault.until_s + rng.uniform(*options.gap_s), 3)
