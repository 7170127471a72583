"""Round directory names, a round's files, checkpoints and piece arithmetic (protocol §8.1,
protocol §4.4.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core.balances import RECORD_BYTES
from scryp.core.snapshot import (
    BALANCES,
    CHANGES,
    CHECKPOINT_FILES,
    DELTA_FILES,
    PIECE_BYTES,
    ROUND_MAX,
    TRANSACTIONS,
    WINDOW,
    is_checkpoint,
    parse_round_dir_name,
    piece_range,
    round_dir_name,
    round_files,
)


def test_names() -> None:
    assert round_dir_name(42) == "round-0000000042"
    assert PIECE_BYTES == 16384


def test_round_files_in_torrent_order() -> None:
    """protocol §4.4.4: ``balances`` first (a record index maps to a piece with one
    division), and only in a checkpoint round; every round holds ``changes`` and
    ``transactions``; a checkpoint the whole ``window``, the others their ``remembered``
    records (§6.4)."""
    assert (BALANCES, CHANGES, TRANSACTIONS, WINDOW) == (
        "balances",
        "changes",
        "transactions",
        "window",
    )
    assert DELTA_FILES == ("changes", "transactions", "remembered")
    assert CHECKPOINT_FILES == ("balances", "changes", "transactions", "window")
    assert round_files(True) == CHECKPOINT_FILES
    assert round_files(False) == DELTA_FILES


@given(st.integers(min_value=0, max_value=ROUND_MAX), st.integers(min_value=1, max_value=1000))
def test_checkpoints_are_the_multiples(number: int, every: int) -> None:
    """protocol §4.4.4: round 0 always, then every ``checkpoint_every``-th round."""
    assert is_checkpoint(number, every) == (number % every == 0)
    assert is_checkpoint(0, every)
    assert is_checkpoint(number, 1)


def test_checkpoint_examples() -> None:
    assert [r for r in range(10) if is_checkpoint(r, 3)] == [0, 3, 6, 9]
    assert not is_checkpoint(59, 60) and is_checkpoint(60, 60)


@pytest.mark.parametrize("every", [0, -1, -60])
def test_checkpoint_every_below_one_is_refused(every: int) -> None:
    with pytest.raises(ValueError):
        is_checkpoint(0, every)


@given(st.integers(min_value=0, max_value=ROUND_MAX))
def test_round_dir_names_round_trip_and_sort(number: int) -> None:
    assert parse_round_dir_name(round_dir_name(number)) == number
    if number < ROUND_MAX:
        assert round_dir_name(number) < round_dir_name(number + 1)


@pytest.mark.parametrize(
    "name", ["round-42", "round-00000000042", "Round-0000000042", "round-000000004x", ""]
)
def test_other_names_are_not_rounds(name: str) -> None:
    assert parse_round_dir_name(name) is None


@pytest.mark.parametrize("number", [-1, ROUND_MAX + 1])
def test_rounds_out_of_range(number: int) -> None:
    with pytest.raises(ValueError):
        round_dir_name(number)


def test_piece_range() -> None:
    assert piece_range(0, RECORD_BYTES) == range(0, 1)
    # A record straddling pieces: 16,384 bytes hold 455 whole records and 4 bytes of one more.
    assert piece_range(PIECE_BYTES - 10, RECORD_BYTES) == range(0, 2)
    assert piece_range(455 * RECORD_BYTES, RECORD_BYTES) == range(0, 2)
    assert piece_range(456 * RECORD_BYTES, RECORD_BYTES) == range(1, 2)
    with pytest.raises(ValueError):
        piece_range(0, 0)
