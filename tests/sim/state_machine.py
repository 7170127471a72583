"""The simulator's view of the replicated state machine: round files and a naive model.

Servers apply entries with the real ``Ledger`` inside the shared driver. Beside each one runs a
``Model``: a plain dict of balances updated only by the outcomes the ledger reports. Each seal
compares the two, so a ledger that accepted a payment the payer could not afford (a double
spend), created or destroyed scryp, or diverged from its own balances file, is caught here,
independently of the ledger's own checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scryp.core import snapshot
from scryp.core.balances import TOTAL_SUPPLY, decode_balances, encode_balances
from scryp.core.buckets import state_root
from scryp.core.changes import apply_changes
from scryp.core.ledger import Ledger
from scryp.core.raft.apply import EntryApplied
from scryp.core.tx import Transaction
from scryp.errors import InvariantViolated, invariant

WINDOW_MS = 5_000


@dataclass(frozen=True, slots=True)
class RoundFiles:
    """A sealed round's files (protocol §8.1, §4.4.4), as the swarm would carry them: what
    ``scryp.server.rounds.round_contents`` made, in torrent order."""

    contents: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, contents: dict[str, bytes]) -> RoundFiles:
        return cls(tuple(contents.items()))

    def _file(self, name: str) -> bytes | None:
        return next((data for named, data in self.contents if named == name), None)

    @property
    def balances(self) -> bytes | None:
        """The whole balances file: checkpoint rounds only."""
        return self._file(snapshot.BALANCES)

    @property
    def transactions(self) -> bytes:
        return self._file(snapshot.TRANSACTIONS) or b""

    @property
    def changes(self) -> bytes:
        return self._file(snapshot.CHANGES) or b""

    @property
    def state_root(self) -> bytes | None:
        balances = self.balances
        return None if balances is None else state_root(balances)

    @property
    def infohashes(self) -> tuple[bytes, bytes]:
        """Stand-ins for the torrent's v1 and v2 infohashes: functions of every byte."""
        content = b"|".join(name.encode() + b"=" + data for name, data in self.contents)
        return hashlib.sha1(content).digest(), hashlib.sha256(content).digest()

    def ledger(self) -> Ledger:
        balances, window = self.balances, self._file(snapshot.WINDOW)
        invariant(balances is not None and window is not None, "a ledger from a delta round")
        assert balances is not None and window is not None
        return Ledger.from_checkpoint(balances, window, window_ms=WINDOW_MS)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one entry did: accepted tx ids, per-tx verdicts, or a sealed round."""

    verdicts: tuple[bool, ...] = ()
    accepted_ids: tuple[bytes, ...] = ()
    sealed_round: int | None = None
    sealed_hash: bytes | None = None


class Model:
    __slots__ = ("_model", "flat", "previous_flat", "round")

    def __init__(self, round_number: int, balances_file: bytes) -> None:
        self._model: dict[bytes, int] = dict(decode_balances(balances_file))
        self.round = round_number
        # The balances file at the newest seal and at the one before: a round's ``changes``
        # must turn the second into the first (protocol §4.4.4).
        self.flat = self.previous_flat = balances_file

    def check_changes(self, changes: bytes) -> None:
        invariant(
            apply_changes(self.previous_flat, changes) == self.flat,
            f"round {self.round}'s changes do not give its balances",
        )

    def observe(self, result: EntryApplied, ledger: Ledger) -> Applied:
        """Follow one entry the driver applied to ``ledger``; check at each seal."""
        if result.sealed_round is not None:
            invariant(
                result.sealed_round == self.round + 1,
                f"seal({result.sealed_round}) after {self.round}",
            )
            self.round = result.sealed_round
            self._check(ledger)
            return Applied(sealed_round=result.sealed_round, sealed_hash=result.state_root)
        accepted = []
        for tx, outcome in zip(result.txs, result.outcomes, strict=True):
            if outcome.accepted:
                self._transfer(tx)
                accepted.append(tx.tx_id)
        invariant(ledger.total_supply() == TOTAL_SUPPLY, "supply changed")
        return Applied(
            verdicts=tuple(outcome.accepted for outcome in result.outcomes),
            accepted_ids=tuple(accepted),
        )

    def _transfer(self, tx: Transaction) -> None:
        balance = self._model.get(tx.payer, 0)
        if balance < tx.amount:
            raise InvariantViolated(
                f"double spend: {tx.describe()} accepted with payer balance {balance}"
            )
        self._model[tx.payer] = balance - tx.amount
        self._model[tx.payee] = self._model.get(tx.payee, 0) + tx.amount

    def _check(self, ledger: Ledger) -> None:
        total = sum(self._model.values())
        invariant(total == TOTAL_SUPPLY, f"supply not conserved: {total}")
        invariant(ledger.total_supply() == TOTAL_SUPPLY, "ledger supply not conserved")
        flat = encode_balances(self._model.items())
        invariant(flat == ledger.balances_file(), "ledger balances differ from the model's")
        self.previous_flat, self.flat = self.flat, flat
