"""Payments on their way into Raft: taken by the API, proposed by the leader (protocol §9.3).

Owns: the queue of prechecked payments a server took while it led, its bound
(``proposals_queued_max``: beyond it a client is told "overloaded", HTTP 503), forwarding to the
leader when this server does not lead, holding them while no leader is known, and handing the
queue to the new leader when this server loses office. Also the payments this server took and
has not yet seen applied (**unsettled**): a forward can be lost on a link, reach a server that
no longer leads, or an entry can be cut from a deposed leader's log, so each one is sent again
every ``resend_ms`` until its entry is applied here or its timestamp leaves the window (then no
copy can be accepted any more). A copy applied twice is refused as a duplicate (§6.2), so
resending never pays twice. Pure: the driver says who leads, what was applied, and the time.

Invariants: the queue never holds more than ``queued_max`` payments, nor the unsettled set
more than ``unsettled_max``; a payment leaves the queue only to be proposed (we lead) or
forwarded (to the leader we know); a forward received while not leading is dropped, never
passed on (§9.3), so no payment circles between servers.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scryp.core.ledger import WINDOW_MS_DEFAULT

OVERLOADED = "server overloaded; retry shortly"
NO_LEADER = "no leader at the moment; retry shortly"
RESEND_MS_DEFAULT = 2_000  # well above a commit's usual latency, so copies stay rare


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
    def __init__(
        self,
        queued_max: int,
        *,
        unsettled_max: int | None = None,
        resend_ms: int = RESEND_MS_DEFAULT,
        window_ms: int = WINDOW_MS_DEFAULT,
    ) -> None:
        if queued_max < 1:
            raise ValueError("queued_max must be at least 1")
        self.queued_max = queued_max
        self.unsettled_max = unsettled_max if unsettled_max is not None else 4 * queued_max
        self.resend_ms = resend_ms
        self.window_ms = window_ms
        self._batches: deque[tuple[bytes, ...]] = deque()
        self._queued = 0
        # tx id -> (payment, when to send it again); ``_due`` holds (due ms, tx id) in due
        # order, with stale entries (settled, or rescheduled) skipped when met.
        self._unsettled: dict[bytes, tuple[bytes, int]] = {}
        self._due: deque[tuple[int, bytes]] = deque()
        self.resent = 0  # payments sent again, for the driver's report

    def __len__(self) -> int:
        return self._queued

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    def submit(
        self, txs: Sequence[bytes], leading: bool, leader: int | None, now_ms: int = 0
    ) -> Taken:
        """Prechecked payments from a client: queue them if we lead, else forward them; either
        way, send them again until they are applied (``settled``)."""
        batch = tuple(txs)
        if len(self._unsettled) + len(batch) > self.unsettled_max:
            return Taken(OVERLOADED)
        if leading:
            if self._queued + len(batch) > self.queued_max:
                return Taken(OVERLOADED)
            self._batches.append(batch)
            self._queued += len(batch)
            self._track(batch, now_ms)
            return Taken(None)
        if leader is None:
            return Taken(NO_LEADER)
        self._track(batch, now_ms)
        return Taken(None, ForwardTo(leader, batch))

    def settled(self, tx_ids: Iterable[bytes]) -> None:
        """These payments' entries were applied here (whatever their outcome)."""
        for tx_id in tx_ids:
            self._unsettled.pop(tx_id, None)

    def _track(self, batch: tuple[bytes, ...], now_ms: int) -> None:
        due_ms = now_ms + self.resend_ms
        for raw in batch:
            tx_id = hashlib.sha256(raw).digest()  # as Transaction.tx_id (§3)
            if tx_id not in self._unsettled:
                self._unsettled[tx_id] = (raw, due_ms)
                self._due.append((due_ms, tx_id))

    def _resends(self, now_ms: int) -> tuple[bytes, ...]:
        """The unsettled payments due again now; those past their window are forgotten."""
        again: list[bytes] = []
        while self._due and self._due[0][0] <= now_ms:
            due_ms, tx_id = self._due.popleft()
            entry = self._unsettled.get(tx_id)
            if entry is None or entry[1] != due_ms:
                continue  # settled, or rescheduled later
            raw = entry[0]
            timestamp_ms = int.from_bytes(raw[:8], "big")  # the layout's first field (§3)
            if timestamp_ms + self.window_ms < now_ms:
                del self._unsettled[tx_id]  # no copy can be accepted any more
                continue
            again.append(raw)
            self._unsettled[tx_id] = (raw, now_ms + self.resend_ms)
            self._due.append((now_ms + self.resend_ms, tx_id))
        self.resent += len(again)
        return tuple(again)

    def take(self, leading: bool, leader: int | None, now_ms: int = 0) -> list[Propose | ForwardTo]:
        """What to do with the queue now: propose it all if we lead; hand it to the leader if
        we lost office and know the new one (protocol §9.3); else keep holding it. Then the
        unsettled payments due again go the same way (kept due while no leader is known)."""
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
        again = self._resends(now_ms)
        if again and leading:
            actions.append(Propose(again))
        elif again and leader is not None:
            actions.append(ForwardTo(leader, again))
        return actions

    @staticmethod
    def forwarded(txs: Sequence[bytes], leading: bool) -> Propose | None:
        """Payments a follower forwarded to us: proposed if we lead, dropped otherwise."""
        return Propose(tuple(txs)) if leading and txs else None
