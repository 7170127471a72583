"""What became of each payment, as a server tells it (``GET /tx``): first outcome final, and
"unknown" rather than a guess (protocol §6.5).

Owns: ``OutcomeBook``, the outcomes of the last ``kept_max`` payment ids this server decided,
and the byte form in which a server keeps them on disk (``DATA/outcomes``, docs/storage.md).

Invariants:
- a payment id's first **final** outcome never changes: a later copy of the payment (a replay,
  a late resend) can only be refused as a duplicate or for its timestamp, and neither says
  anything about the payment itself, so neither replaces what is known;
- a *timestamp* refusal is **provisional**: a copy signed too far ahead may still be accepted
  later (protocol §6.2), and a copy too old may have been preceded by one this server never
  saw; so it stands only until a final outcome comes, and is not recorded at all when an
  earlier copy could have been decided before this server's **horizon**;
- the horizon is the stamp before which this server does not know every decision: where it
  caught up from a round it did not apply itself, or where the oldest outcome was forgotten.
Pure: no clock, no files; ``decide`` takes the entry's stamp, and records are plain bytes.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from scryp.core.ledger import ACCEPTED, Outcome, Reason
from scryp.errors import MalformedInput

RECORD = struct.Struct(">32sQQB")  # tx id, round, stamp ms, code
RECORD_BYTES = RECORD.size
HORIZON_ID = bytes(32)  # a record with this id moves the horizon to its stamp
KEPT_MAX_DEFAULT = 1_000_000


class Code(IntEnum):
    """An outcome as one byte, for the file."""

    ACCEPTED = 0
    BAD_SIGNATURE = 1
    ZERO_AMOUNT = 2
    SELF_PAYMENT = 3
    TIMESTAMP_OUT_OF_WINDOW = 4
    DUPLICATE = 5
    INSUFFICIENT_FUNDS = 6
    HORIZON = 255


_CODE_OF_REASON = {reason: Code[reason.name] for reason in Reason}
_OUTCOME_OF_CODE = {Code.ACCEPTED: ACCEPTED} | {
    code: Outcome(False, reason) for reason, code in _CODE_OF_REASON.items()
}


@dataclass(frozen=True, slots=True)
class Decided:
    """One payment's outcome as this server knows it."""

    tx_id: bytes
    round: int  # the round whose seal closes the batch that decided it
    stamp_ms: int  # the stamp of the entry that decided it
    outcome: Outcome

    @property
    def final(self) -> bool:
        return self.outcome.reason is not Reason.TIMESTAMP_OUT_OF_WINDOW

    def encode(self) -> bytes:
        reason = self.outcome.reason
        code = Code.ACCEPTED if reason is None else _CODE_OF_REASON[reason]
        return RECORD.pack(self.tx_id, self.round, self.stamp_ms, code)


def horizon_record(stamp_ms: int) -> bytes:
    return RECORD.pack(HORIZON_ID, 0, stamp_ms, Code.HORIZON)


class OutcomeBook:
    def __init__(self, *, window_ms: int, kept_max: int = KEPT_MAX_DEFAULT) -> None:
        if kept_max < 1:
            raise ValueError("kept_max must be at least 1")
        self.window_ms = window_ms
        self.kept_max = kept_max
        self.horizon_ms = 0
        self._book: OrderedDict[bytes, Decided] = OrderedDict()

    def __len__(self) -> int:
        return len(self._book)

    def lookup(self, tx_id: bytes) -> Decided | None:
        return self._book.get(tx_id)

    def decided(self) -> Iterator[Decided]:
        """Every kept outcome, oldest first."""
        return iter(self._book.values())

    def decide(
        self, tx_id: bytes, timestamp_ms: int, outcome: Outcome, round_number: int, stamp_ms: int
    ) -> Decided | None:
        """Take the outcome a committed copy of a payment got; the record to keep, or None
        if it changes nothing (see the invariants)."""
        reason = outcome.reason
        if reason is Reason.DUPLICATE:
            return None  # says only that an earlier copy was seen: never the payment's fate
        known = self._book.get(tx_id)
        if known is not None and known.final:
            return None
        late = reason is Reason.TIMESTAMP_OUT_OF_WINDOW
        if late and (known is not None or timestamp_ms - self.window_ms < self.horizon_ms):
            return None  # an earlier copy may have been decided where we cannot see
        decided = Decided(tx_id, round_number, stamp_ms, outcome)
        self._keep(decided)
        return decided

    def move_horizon(self, stamp_ms: int) -> None:
        """We know no decision before ``stamp_ms`` (caught up from a round applied elsewhere)."""
        self.horizon_ms = max(self.horizon_ms, stamp_ms)

    def load(self, data: bytes) -> None:
        """Replay a file of records (``Decided.encode`` and ``horizon_record``), oldest first:
        the same rules, so the book is what it was before the restart."""
        if len(data) % RECORD_BYTES:
            raise MalformedInput(f"an outcomes file is {RECORD_BYTES}-byte records")
        for tx_id, round_number, stamp_ms, code in RECORD.iter_unpack(data):
            if code == Code.HORIZON:
                self.move_horizon(stamp_ms)
                continue
            try:
                outcome = _OUTCOME_OF_CODE[Code(code)]
            except ValueError:
                raise MalformedInput(f"unknown outcome code {code}") from None
            known = self._book.get(tx_id)
            if known is None or not known.final:
                self._keep(Decided(tx_id, round_number, stamp_ms, outcome))

    def encode(self) -> bytes:
        """The whole book as a file: the horizon, then every outcome, oldest first."""
        records = b"".join(decided.encode() for decided in self._book.values())
        return horizon_record(self.horizon_ms) + records

    def _keep(self, decided: Decided) -> None:
        self._book[decided.tx_id] = decided
        self._book.move_to_end(decided.tx_id)
        while len(self._book) > self.kept_max:
            _, forgotten = self._book.popitem(last=False)
            self.move_horizon(forgotten.stamp_ms + 1)
