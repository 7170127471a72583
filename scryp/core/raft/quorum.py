"""Majority arithmetic, apart from the rest so it can be checked against a naive version.

Owns: the commit index a set of match indices supports, and vote tallies.
"""

from __future__ import annotations

from collections.abc import Iterable


def committed_index(match_indices: Iterable[int], majority: int) -> int:
    """The largest index that at least ``majority`` servers hold (Raft §5.3).

    Sorted descending, the ``majority``-th value is held by that many servers or more.
    """
    ordered = sorted(match_indices, reverse=True)
    if len(ordered) < majority:
        return 0
    return ordered[majority - 1]


def vote_won(granted: int, majority: int) -> bool:
    return granted >= majority


def vote_lost(rejected: int, servers: int, majority: int) -> bool:
    return rejected > servers - majority
