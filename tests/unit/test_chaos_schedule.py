"""The chaos fault plan (protocol §11.2): a function of its seed, one fault at a time, none
in the quiet tail, aimed at the leader about as often as asked."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.chaos.schedule import LEADER, FaultKind, ScheduleOptions, plan


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), st.sampled_from([3, 5, 7]), st.floats(20, 900))
def test_faults_never_overlap_and_respect_the_tail(
    seed: int, servers: int, duration: float
) -> None:
    options = ScheduleOptions(servers=servers, duration_s=duration)
    faults = plan(seed, options)
    assert faults == plan(seed, options)  # replayable from the seed
    for fault in faults:
        assert fault.at_s >= options.first_fault_s
        assert fault.until_s <= duration - options.quiet_tail_s
        assert fault.target == LEADER or 0 <= fault.target < servers
    for earlier, later in pairwise(faults):
        assert later.at_s >= earlier.until_s + options.gap_s[0] - 1e-6


def test_a_long_plan_has_both_kinds_and_targets_the_leader() -> None:
    faults = plan(7, ScheduleOptions(servers=5, duration_s=600))
    assert len(faults) > 40
    assert {f.kind for f in faults} == {FaultKind.KILL, FaultKind.PAUSE}
    leader_share = sum(f.target == LEADER for f in faults) / len(faults)
    assert 0.3 < leader_share < 0.7
