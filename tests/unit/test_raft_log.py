"""The Raft log and the quorum arithmetic, each against a deliberately naive model.

Method: hypothesis drives random appends, merges, commits and compactions of ``RaftLog`` and
mirrors them on a plain dict of index -> term; ``committed_index`` is compared with a brute
force over every candidate index (etcd's quorum/quick_test.go does the same).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.raft.entries import Entry, NoOp, Seal, SnapshotMeta
from scryp.core.raft.log import RaftLog
from scryp.core.raft.quorum import committed_index
from scryp.errors import InvariantViolated

GENESIS = SnapshotMeta(0, 0, 0, 0, b"\x00" * 32)


def entries(terms: list[int], start: int = 1) -> list[Entry]:
    return [Entry(term, start + i, 0, NoOp()) for i, term in enumerate(terms)]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=7), st.integers(1, 7))
def test_committed_index_matches_brute_force(matches: list[int], majority: int) -> None:
    majority = min(majority, len(matches))
    naive = max((n for n in range(0, 21) if sum(m >= n for m in matches) >= majority), default=0)
    assert committed_index(matches, majority) == naive


def test_merge_skips_known_truncates_conflicts_and_returns_the_match() -> None:
    log = RaftLog(GENESIS, entries([1, 1, 2, 2]), committed=2)
    assert log.merge(1, entries([1, 3], start=2)) == 3  # index 3 conflicts: truncated
    assert [log.term_at(i) for i in range(1, 5)] == [1, 1, 3, None]
    assert log.stable_index == 2  # the rewritten suffix must be persisted again
    assert log.merge(0, entries([1])) == 1  # a stale, shorter append truncates nothing
    assert log.last_index == 3
    with pytest.raises(InvariantViolated):
        log.merge(1, entries([9], start=2))  # would rewrite committed entry 2


def test_up_to_date_compares_last_term_then_length() -> None:
    log = RaftLog(GENESIS, entries([1, 2, 2]), committed=0)
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(3, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_compaction_only_at_an_applied_seal() -> None:
    log = RaftLog(GENESIS, [*entries([1]), Entry(1, 2, 5, Seal(1)), *entries([1], 3)], 3)
    log.applied = 3
    with pytest.raises(InvariantViolated):
        log.compact(SnapshotMeta(1, 1, 1, 0, b"\x00" * 32))  # index 1 is not a seal
    meta = SnapshotMeta(2, 1, 1, 5, b"\x01" * 32)
    log.compact(meta)
    assert log.first_index == 3 and log.term_at(2) == 1 and log.term_at(1) is None
    assert log.last_seal() == (1, 5)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_operations_keep_the_log_equal_to_a_model(data: st.DataObject) -> None:
    log = RaftLog(GENESIS, [], committed=0)
    model: dict[int, int] = {}
    term = 1
    for _ in range(data.draw(st.integers(1, 30))):
        action = data.draw(st.sampled_from(["append", "merge", "commit"]))
        if action == "append":
            term = max(term, log.last_term) + data.draw(st.integers(0, 1))
            log.append([Entry(term, log.last_index + 1, 0, NoOp())])
            model[log.last_index] = term
        elif action == "merge":
            prev = data.draw(st.integers(log.committed, log.last_index))
            count = data.draw(st.integers(0, 4))
            new_term = max(log.term_at(prev) or 0, data.draw(st.integers(1, 40)))
            log.merge(prev, entries([new_term] * count, start=prev + 1))
            for index in range(prev + 1, prev + 1 + count):
                if model.get(index) != new_term:
                    for stale in [i for i in model if i >= index]:
                        del model[stale]
                    model[index] = new_term
            term = max(term, new_term)
        else:
            log.commit_to(data.draw(st.integers(log.committed, log.last_index)))
        log.check()
        assert {i: log.term_at(i) for i in range(1, log.last_index + 1)} == model


def test_the_cached_last_seal_follows_truncation() -> None:
    log = RaftLog(GENESIS, [Entry(1, 1, 10, Seal(1)), Entry(1, 2, 20, Seal(2))], committed=1)
    assert log.last_seal() == (2, 20)
    log.merge(1, [Entry(2, 2, 30, NoOp())])  # seal(2) was never committed: replaced
    assert log.last_seal() == (1, 10)
    log.append([Entry(2, 3, 40, Seal(2))])
    assert log.last_seal() == (2, 40)
