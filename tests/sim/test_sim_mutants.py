"""The simulator's certificate checks are themselves tested by breaking the round protocol.

Method: monkeypatch one check out of ``scryp/core/rounds.py`` (the code every server runs) and
run seeds until the checker fails; the unmodified code passes the same seeds (the seeded tests).
(a) the majority rule weakened to ⌊n/2⌋ (one signature of three): a stored certificate that
the client's verifier refuses; (b) the share signature check removed: the forged shares the
simulator injects are counted, giving a certificate with a forged signature or a DIVERGENCE.
"""

from __future__ import annotations

import pytest

from scryp.core import rounds

from .checker import SafetyViolation
from .cluster import run_seed

SEEDS_MAX = 20  # each mutant was caught within the first few seeds of every quorum size


def first_failing_seed(servers: int) -> int:
    for seed in range(SEEDS_MAX):
        try:
            run_seed(seed, servers)
        except SafetyViolation:
            return seed
    raise AssertionError(f"no seed of {SEEDS_MAX} caught the mutant with {servers} servers")


@pytest.mark.parametrize("servers", [3, 5, 7])
def test_a_weakened_majority_rule_is_caught(monkeypatch: pytest.MonkeyPatch, servers: int) -> None:
    monkeypatch.setattr(rounds, "majority", lambda quorum_size: quorum_size // 2)
    assert first_failing_seed(servers) < SEEDS_MAX


@pytest.mark.parametrize("servers", [3, 5])
def test_a_missing_share_signature_check_is_caught(
    monkeypatch: pytest.MonkeyPatch, servers: int
) -> None:
    monkeypatch.setattr(rounds, "verify", lambda public, message, signature: True)
    assert first_failing_seed(servers) < SEEDS_MAX
