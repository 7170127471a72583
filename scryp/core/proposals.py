"""Payments on their way into Raft: taken by the API, proposed by the leader (protocol §9.3).

Owns: the queue of prechecked payments a server took while it led, its bound
(``proposals_queued_max``: beyond it a client is told "overloaded", HTTP 503), forwarding to the
leader when this server does not lead, holding them while no leader is known, and handing the
queue to the new leader when this server loses office. Pure: the driver says who leads.

Invariants: the queue never holds more than ``queued_max`` payments; a payment leaves it only
to be proposed (we lead) or forwarded (to the leader we know); a forward received while not
leading is dropped, never passed on (§9.3), so no payment circles between servers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

OVERLOADED = "server overloaded; retry shortly"
NO_LEADER = "no leader at the moment; retry shortly"


@dataclass(frozen=True, slots=True)
class Propose:
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ForwardTo:
    leader: int
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Taken:
    """``submit``'s answer: ``refusal`` is None when the payments were queued or forwarded."""

    refusal: str | None
    forward: ForwardTo | None = None


class ProposalQueue:
    def __init__(self, queued_max: int) -> None:
        if queued_max < 1:
            raise ValueError("queued_max must be at least 1")
        self.queued_max = queued_max
        self._batches: deque[tuple[bytes, ...]] = deque()
        self._queued = 0

    def __len__(self) -> int:
        return self._queued

    def submit(self, txs: Sequence[bytes], leading: bool, leader: int | None) -> Taken:
        """Prechecked payments from a client: queue them if we lead, else forward them."""
        batch = tuple(txs)
        if leading:
            if self._queued + len(batch) > self.queued_max:
                return Taken(OVERLOADED)
            self._batches.append(batch)
            self._queued += len(batch)
            return Taken(None)
        if leader is None:
            return Taken(NO_LEADER)
        return Taken(None, ForwardTo(leader, batch))

    def take(self, leading: bool, leader: int | None) -> list[Propose | ForwardTo]:
        """What to do with the queue now: propose it all if we lead; hand it to the leader if
        we lost office and know the new one (protocol §9.3); else keep holding it."""
        if not leading and leader is None:
            return []
        actions: list[Propose | ForwardTo] = []
        while self._batches:
            batch = self._batches.popleft()
            self._queued -= len(batch)
            if leading:
                actions.append(Propose(batch))
            elif leader is not None:
                actions.append(ForwardTo(leader, batch))
        return actions

    @staticmethod
    def forwarded(txs: Sequence[bytes], leading: bool) -> Propose | None:
        """Payments a follower forwarded to us: proposed if we lead, dropped otherwise."""
        return Propose(tuple(txs)) if leading and txs else None
