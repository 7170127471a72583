"""How a committed log entry changes the ledger: the state machine's transition (protocol §7.2).

Owns: ``apply_entry``, the one mapping from entry kinds to ``Ledger`` calls, shared by servers
and the simulator so both apply entries the same way.

- no-op: only moves the ledger's stamp (and so its duplicate window) forward;
- payments: one ``Ledger.apply`` batch at the entry's stamp, one outcome per payment;
- seal(r): moves the stamp, then reads the state root: round r's (protocol §4.2, §4.4.3).

Invariant: the result depends only on the ledger's state and the entry (no clock, no
randomness), so servers that apply the same entries from the same round agree byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scryp.core.ledger import Ledger, Outcome, Reason
from scryp.core.raft.entries import Entry, NoOp, Payments, Seal
from scryp.core.tx import Transaction


@dataclass(frozen=True, slots=True)
class EntryApplied:
    """What one entry did: payments' outcomes, or the round it sealed and that round's hash."""

    index: int
    txs: tuple[Transaction, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    sealed_round: int | None = None
    state_root: bytes | None = None


def apply_entry(
    ledger: Ledger,
    entry: Entry,
    prechecked: Sequence[Reason | None] | None = None,
    decoded: Sequence[Transaction] | None = None,
) -> EntryApplied:
    """Apply one committed entry; ``prechecked`` as for ``Ledger.apply`` and ``decoded``
    (``decode_payments`` of the entry, if the caller already has it): payments only."""
    match entry.payload:
        case NoOp():
            ledger.advance_stamp(entry.stamp_ms)
            return EntryApplied(index=entry.index)
        case Seal(round=round_number):
            ledger.advance_stamp(entry.stamp_ms)
            return EntryApplied(
                index=entry.index, sealed_round=round_number, state_root=ledger.state_root()
            )
        case Payments():
            txs = tuple(decoded) if decoded is not None else decode_payments(entry.payload)
            outcomes = ledger.apply(txs, entry.stamp_ms, prechecked)
            return EntryApplied(index=entry.index, txs=txs, outcomes=tuple(outcomes))


def decode_payments(payload: Payments) -> tuple[Transaction, ...]:
    """The entry's payments, decoded. Every payment in a log entry is exactly 140 bytes (the
    entry codec checks), so decoding cannot fail here; validity is the ledger's business
    (protocol §6)."""
    return tuple(Transaction.decode(raw) for raw in payload.txs)
