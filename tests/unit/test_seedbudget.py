"""A server's upload budget per round torrent (scryp/core/seedbudget.py, protocol §8.9.1),
against a naive oracle that keeps every sample and sums the window by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.seedbudget import UNLIMITED, SeedBudget, SeedBudgets, Seeded

BUDGET = SeedBudget(copies=1.0, floor_bytes=100, window_s=10.0, trickle_bytes_per_s=7)
A, B = b"a" * 20, b"b" * 20


def test_full_speed_until_the_budget_is_spent_then_a_trickle() -> None:
    budgets = SeedBudgets(BUDGET)
    assert budgets.limits([Seeded(A, 1000, 0)], 0.0) == {A: UNLIMITED}
    assert budgets.limits([Seeded(A, 1000, 1099)], 1.0) == {A: UNLIMITED}
    assert budgets.limits([Seeded(A, 1000, 1100)], 2.0) == {A: 7}


def test_the_budget_comes_back_once_the_window_has_passed() -> None:
    budgets = SeedBudgets(BUDGET)
    budgets.limits([Seeded(A, 1000, 0)], 0.0)
    assert budgets.limits([Seeded(A, 1000, 5000)], 1.0) == {A: 7}
    assert budgets.limits([Seeded(A, 1000, 5010)], 10.5) == {A: 7}  # 0 s still in the window
    assert budgets.limits([Seeded(A, 1000, 5020)], 11.5) == {A: UNLIMITED}


def test_a_torrent_added_again_starts_a_new_history() -> None:
    budgets = SeedBudgets(BUDGET)
    budgets.limits([Seeded(A, 1000, 0)], 0.0)
    assert budgets.limits([Seeded(A, 1000, 5000)], 1.0) == {A: 7}
    assert budgets.limits([Seeded(A, 1000, 10)], 2.0) == {A: UNLIMITED}


def test_torrents_are_budgeted_apart_and_forgotten_when_gone() -> None:
    budgets = SeedBudgets(BUDGET)
    budgets.limits([Seeded(A, 1000, 0), Seeded(B, 10, 0)], 0.0)
    assert budgets.limits([Seeded(A, 1000, 500), Seeded(B, 10, 500)], 1.0) == {
        A: UNLIMITED,
        B: 7,  # a small torrent: its budget is 10 bytes + the floor
    }
    budgets.limits([Seeded(A, 1000, 600)], 2.0)
    # B was dropped: seen again, all it uploaded counts as spent now, for one window.
    assert budgets.limits([Seeded(B, 10, 900)], 3.0) == {B: 7}
    assert budgets.limits([Seeded(B, 10, 900)], 13.0) == {B: UNLIMITED}


def test_a_budget_started_late_counts_what_was_uploaded_before() -> None:
    budgets = SeedBudgets(BUDGET)
    assert budgets.limits([Seeded(A, 1000, 5000)], 100.0) == {A: 7}
    assert budgets.limits([Seeded(A, 1000, 5000)], 110.0) == {A: UNLIMITED}


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0.01, 4.0), st.integers(0, 400)), min_size=1, max_size=40)
)
def test_the_limit_is_what_the_window_uploaded_against_the_budget(
    steps: list[tuple[float, int]],
) -> None:
    """Oracle: every sample kept, after a zero at the first one; the spend is the count now
    minus the count at the newest sample at or before the window's start (or the zero)."""
    budgets = SeedBudgets(BUDGET)
    now, uploaded = 0.0, 0
    kept: list[tuple[float, int]] = []
    for gap_s, more in steps:
        now, uploaded = now + gap_s, uploaded + more
        if not kept:
            kept.append((now, 0))  # first seen: what it uploaded before counts as spent now
        kept.append((now, uploaded))
        before = [sample for sample in kept if sample[0] <= now - BUDGET.window_s]
        base = before[-1][1] if before else kept[0][1]
        expected = 7 if uploaded - base >= BUDGET.budget_bytes(1000) else UNLIMITED
        assert budgets.limits([Seeded(A, 1000, uploaded)], now) == {A: expected}


@pytest.mark.parametrize(
    "bad",
    [{"trickle_bytes_per_s": 0}, {"window_s": 0.0}, {"copies": -1.0}, {"floor_bytes": -1}],
)
def test_a_budget_that_would_mean_no_limit_is_refused(bad: dict[str, float]) -> None:
    """A trickle of 0 is libtorrent's "no limit": refused, not silently unlimited."""
    with pytest.raises(ValueError):
        SeedBudget(**bad)  # type: ignore[arg-type]
