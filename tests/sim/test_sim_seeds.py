"""Seeded fault-injecting runs of whole quorums (issue 4): safety after every step, liveness
after the faults stop. Each failure names its seed and the ``tools/sim`` line that replays it.

Method: ``run_seed`` builds 3, 5 or 7 Raft cores over a lossy, duplicating, corrupting,
reordering, partitionable network, crashes (also between persisting and sending), pauses and
restarts servers for 4 s of virtual time while clients pay, then heals everything and requires a
majority to seal two new rounds within 5 s. The normal run covers 200 seeds per quorum size
(the ``slow`` test); ``tools/sim --seeds N`` runs many more.
"""

from __future__ import annotations

import pytest

from .cluster import FAULT_PHASE_MS, LivenessViolation, run_seed

SMOKE_SEEDS = 5  # per quorum size, unmarked: about a second in all
SEEDS = 150  # per quorum size, marked slow: 450 runs (see docs/RELIABILITY.md for the time)


@pytest.mark.parametrize("servers", [3, 5, 7])
def test_a_few_seeds(servers: int) -> None:
    for seed in range(SMOKE_SEEDS):
        result = run_seed(seed, servers)
        assert result.rounds_sealed >= 2 and result.virtual_ms > FAULT_PHASE_MS


@pytest.mark.slow
@pytest.mark.parametrize("servers", [3, 5, 7])
def test_seeds_keep_safety_and_liveness(servers: int) -> None:
    results = [run_seed(seed, servers) for seed in range(SEEDS)]
    # Not vacuous: the runs really elected, crashed, sealed and caught up.
    assert all(result.virtual_ms > FAULT_PHASE_MS for result in results)
    assert all(result.rounds_sealed >= 2 for result in results)
    assert sum(result.crashes for result in results) > SEEDS
    assert sum(result.catch_ups for result in results) > SEEDS // 10
    assert sum(result.elections for result in results) > SEEDS


def test_a_failure_names_its_seed_and_replay_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import cluster

    monkeypatch.setattr(cluster, "LIVENESS_MS_MAX", 0)
    monkeypatch.setattr(cluster, "NEW_ROUNDS_REQUIRED", 10_000)
    with pytest.raises(LivenessViolation) as caught:
        run_seed(7, 3)
    assert "tools/sim --seed 7 --servers 3" in "\n".join(caught.value.__notes__)


def test_runs_are_deterministic() -> None:
    assert run_seed(11, 5) == run_seed(11, 5)
