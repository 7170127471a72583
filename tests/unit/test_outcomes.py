"""What a server says became of a payment (protocol §6.5): the first final outcome stands,
a late or replayed copy never changes it, a timestamp refusal is provisional, and what a
server cannot know it does not guess. The book survives a restart byte for byte."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.ledger import ACCEPTED, Outcome, Reason
from scryp.core.outcomes import RECORD_BYTES, OutcomeBook
from scryp.errors import MalformedInput

W = 5_000
TX = hashlib.sha256(b"a payment").digest()
LATE = Outcome(False, Reason.TIMESTAMP_OUT_OF_WINDOW)
DUPLICATE = Outcome(False, Reason.DUPLICATE)
POOR = Outcome(False, Reason.INSUFFICIENT_FUNDS)


def test_a_late_copy_of_an_accepted_payment_does_not_make_it_rejected() -> None:
    """The bug the bank test found: a late copy, refused for its timestamp, replaced
    "accepted" in GET /tx."""
    book = OutcomeBook(window_ms=W)
    assert book.decide(TX, 10_000, ACCEPTED, 3, 10_100) is not None
    assert book.decide(TX, 10_000, LATE, 9, 16_000) is None
    assert book.decide(TX, 10_000, DUPLICATE, 4, 11_000) is None
    found = book.lookup(TX)
    assert found is not None and found.outcome == ACCEPTED and found.round == 3


def test_a_refusal_for_funds_is_final_too() -> None:
    book = OutcomeBook(window_ms=W)
    book.decide(TX, 10_000, POOR, 3, 10_100)
    assert book.decide(TX, 10_000, ACCEPTED, 4, 11_000) is None
    assert book.lookup(TX) is not None and book.lookup(TX).outcome == POOR  # type: ignore[union-attr]


def test_a_timestamp_refusal_gives_way_to_a_later_acceptance() -> None:
    """Signed too far ahead, refused and not remembered (protocol §6.2): accepted later."""
    book = OutcomeBook(window_ms=W)
    assert book.decide(TX, 30_000, LATE, 1, 10_000) is not None
    assert book.decide(TX, 30_000, ACCEPTED, 5, 29_000) is not None
    assert book.lookup(TX) is not None and book.lookup(TX).outcome == ACCEPTED  # type: ignore[union-attr]


def test_before_the_horizon_a_server_says_it_does_not_know() -> None:
    """Caught up from a round stamped 20,000: a copy of a payment stamped 14,000 refused as
    too old may follow an accepted copy this server never applied: no answer, not a lie."""
    book = OutcomeBook(window_ms=W)
    book.move_horizon(20_000)
    assert book.decide(TX, 14_000, LATE, 9, 30_000) is None
    assert book.lookup(TX) is None
    other = hashlib.sha256(b"another").digest()
    assert book.decide(other, 26_000, LATE, 9, 32_000) is not None  # 26,000 - W >= horizon


def test_forgetting_the_oldest_moves_the_horizon() -> None:
    book = OutcomeBook(window_ms=W, kept_max=2)
    ids = [hashlib.sha256(b"%d" % i).digest() for i in range(3)]
    for i, tx_id in enumerate(ids):
        book.decide(tx_id, 1_000 * i, ACCEPTED, i, 1_000 * i)
    assert book.lookup(ids[0]) is None and len(book) == 2
    assert book.horizon_ms == 1  # the forgotten decision's stamp, plus one
    assert book.decide(ids[0], 0, LATE, 7, 60_000) is None


def test_the_file_form_is_checked() -> None:
    with pytest.raises(MalformedInput, match="records"):
        OutcomeBook(window_ms=W).load(bytes(RECORD_BYTES + 1))
    bad = bytes(32) + bytes(16) + b"\x09"
    bad = hashlib.sha256(b"x").digest() + bad[32:]
    with pytest.raises(MalformedInput, match="unknown outcome"):
        OutcomeBook(window_ms=W).load(bad)


COPIES = st.lists(
    st.tuples(
        st.integers(0, 5),  # which payment (each has one fixed timestamp)
        st.integers(0, 3_000),  # how far the stamp moved since the previous copy
        st.booleans(),  # funds enough, if it is decided now
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    COPIES,
    st.lists(st.integers(0, 60_000), min_size=6, max_size=6),
    st.integers(0, 20_000),
    st.integers(1, 8),
)
def test_final_outcomes_never_change_and_survive_a_restart(
    copies: list[tuple[int, int, bool]], timestamps: list[int], horizon: int, kept_max: int
) -> None:
    """Copies of six payments reach the log at rising stamps; each gets what the ledger's
    rules give it (protocol §6.2): outside the window a timestamp refusal, a copy after one
    decided in the window a duplicate, else accepted or refused for funds."""
    book = OutcomeBook(window_ms=W, kept_max=kept_max)
    book.move_horizon(horizon)
    written = bytearray(book.encode())  # what the server appends, as it appends it
    finals: dict[bytes, Outcome] = {}
    decided_once: set[bytes] = set()
    stamp = 0
    for step, (which, advance, funded) in enumerate(copies):
        stamp += advance
        tx_id = hashlib.sha256(b"%d" % which).digest()
        timestamp = timestamps[which]
        if abs(timestamp - stamp) > W:
            outcome = LATE
        elif tx_id in decided_once:
            outcome = DUPLICATE
        else:
            outcome = ACCEPTED if funded else POOR
            decided_once.add(tx_id)
        decided = book.decide(tx_id, timestamp, outcome, step, stamp)
        if decided is not None:
            written += decided.encode()
        known = book.lookup(tx_id)
        if tx_id in finals and known is not None:
            assert known.outcome == finals[tx_id], "a final outcome changed"
        if known is not None and known.final:
            finals.setdefault(tx_id, known.outcome)
        if known is not None and not known.final and tx_id in finals:
            raise AssertionError("a final outcome was replaced by a provisional one")
        assert len(book) <= kept_max
    restarted = OutcomeBook(window_ms=W, kept_max=kept_max)
    restarted.load(bytes(written))
    for which in range(6):
        tx_id = hashlib.sha256(b"%d" % which).digest()
        assert restarted.lookup(tx_id) == book.lookup(tx_id)
    assert restarted.horizon_ms == book.horizon_ms
    compacted = OutcomeBook(window_ms=W, kept_max=kept_max)
    compacted.load(book.encode())
    assert compacted.encode() == book.encode()
