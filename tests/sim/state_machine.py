"""The replicated state machine of the simulator: the real ``Ledger`` plus a naive model.

The model is a plain dict of balances updated only by the outcomes the ledger reports. Each
seal compares the two, so a ledger that accepted a payment the payer could not afford (a double
spend), created or destroyed scryp, or diverged from its own balances file, is caught here,
independently of the ledger's own checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from scryp.core.balances import TOTAL_SUPPLY, decode_balances, encode_balances, state_hash
from scryp.core.ledger import Ledger
from scryp.core.raft.apply import apply_entry
from scryp.core.raft.entries import Entry
from scryp.core.tx import Transaction
from scryp.errors import InvariantViolated, invariant

WINDOW_MS = 5_000


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A sealed round's state, as a round's files would carry it through the swarm."""

    round: int
    balances_file: bytes
    last_stamp_ms: int
    recent: tuple[tuple[int, bytes], ...]

    @property
    def state_hash(self) -> bytes:
        return state_hash(self.balances_file)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one entry did: accepted tx ids, per-tx verdicts, or a sealed round."""

    verdicts: tuple[bool, ...] = ()
    accepted_ids: tuple[bytes, ...] = ()
    sealed_round: int | None = None
    sealed_hash: bytes | None = None


class SimLedger:
    __slots__ = ("_ledger", "_model", "round")

    def __init__(self, checkpoint: Checkpoint) -> None:
        invariant(state_hash(checkpoint.balances_file) == checkpoint.state_hash, "checkpoint hash")
        self._ledger = Ledger(
            checkpoint.balances_file,
            window_ms=WINDOW_MS,
            last_stamp_ms=checkpoint.last_stamp_ms,
            recent=checkpoint.recent,
        )
        self._model: dict[bytes, int] = dict(decode_balances(checkpoint.balances_file))
        self.round = checkpoint.round

    def apply(self, entry: Entry) -> Applied:
        result = apply_entry(self._ledger, entry)
        if result.sealed_round is not None:
            invariant(
                result.sealed_round == self.round + 1,
                f"seal({result.sealed_round}) after {self.round}",
            )
            self.round = result.sealed_round
            self._check_model()
            return Applied(sealed_round=result.sealed_round, sealed_hash=result.state_hash)
        accepted = []
        for tx, outcome in zip(result.txs, result.outcomes, strict=True):
            if outcome.accepted:
                self._model_transfer(tx)
                accepted.append(tx.tx_id)
        invariant(self._ledger.total_supply() == TOTAL_SUPPLY, "supply changed")
        return Applied(
            verdicts=tuple(outcome.accepted for outcome in result.outcomes),
            accepted_ids=tuple(accepted),
        )

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            round=self.round,
            balances_file=self._ledger.balances_file(),
            last_stamp_ms=self._ledger.last_stamp_ms,
            recent=tuple(self._ledger.recent()),
        )

    def _model_transfer(self, tx: Transaction) -> None:
        balance = self._model.get(tx.payer, 0)
        if balance < tx.amount:
            raise InvariantViolated(
                f"double spend: {tx.describe()} accepted with payer balance {balance}"
            )
        self._model[tx.payer] = balance - tx.amount
        self._model[tx.payee] = self._model.get(tx.payee, 0) + tx.amount

    def _check_model(self) -> None:
        total = sum(self._model.values())
        invariant(total == TOTAL_SUPPLY, f"supply not conserved: {total}")
        invariant(self._ledger.total_supply() == TOTAL_SUPPLY, "ledger supply not conserved")
        invariant(
            encode_balances(self._model.items()) == self._ledger.balances_file(),
            "ledger balances differ from the model's",
        )
