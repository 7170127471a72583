"""The crowd's jobs dealt to agent processes (scryp/lab/clients.py): every agent holds its
share of each mode. Dealt in one pass, one job in four full and four agents, every full sync
landed in one process and their state roots queued for its interpreter lock."""

from __future__ import annotations

from collections import Counter

from scryp.lab.clients import ClientJob, deal
from scryp.lab.crowd import jobs
from scryp.lab.testbed import Plan


def test_each_agent_gets_its_share_of_full_and_light_syncs() -> None:
    work = jobs(Plan(servers=3, seeders=0, clients=200), accounts=1000, arrival_s=10.0)
    groups = deal(work, 4)
    assert sorted(job.host for group in groups for job in group) == sorted(j.host for j in work)
    for group in groups:
        modes = Counter(job.mode for job in group)
        assert 12 <= modes["full"] <= 13 and 37 <= modes["light"] <= 38


def test_fewer_jobs_than_agents_leave_some_agents_idle() -> None:
    groups = deal([ClientJob(1, "full", None), ClientJob(2, "light", None)], 3)
    assert [len(group) for group in groups] == [1, 1, 0]
