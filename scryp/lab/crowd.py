"""The crowd scenario (issue 9, item 2): many client hosts arriving within seconds, three
quarters asking a light balance and a quarter fully syncing a round of many accounts, every
server's upload capped; with 0 or more seeders.

Owns: the crowd's plan and jobs, the upload accounting (bytes each server host sent on its
link, from the kernel's counters, divided by the snapshot's size), and the crowd's figures.
"""

from __future__ import annotations

import argparse
import hashlib
import random
from typing import Any

from scryp.core.genesis import Genesis
from scryp.lab import clients, netns, report
from scryp.lab.clients import ClientJob
from scryp.lab.lab import Lab
from scryp.lab.scenarios import Outcome, start
from scryp.lab.testbed import Plan

FULL_EVERY = 4  # one client in four syncs fully (the crowd); --full-every changes it
CLIENT_TIMEOUT_S = 300.0
SEED = 9  # the arrival times and accounts are drawn from a fixed seed: runs compare


def plan(args: argparse.Namespace) -> Plan:
    return Plan(servers=args.servers, seeders=args.seeders, clients=args.clients)


def jobs(
    crowd_plan: Plan, accounts: int, arrival_s: float, full_every: int = FULL_EVERY
) -> list[ClientJob]:
    """One job per client host; every ``full_every``-th syncs fully (0: none do)."""
    chance = random.Random(SEED)
    made = []
    for number, host in enumerate(crowd_plan.client_hosts):
        account = hashlib.sha256(b"account %d" % chance.randrange(max(1, accounts))).hexdigest()
        full = full_every > 0 and number % full_every == full_every - 1
        mode = "full" if full else "light"
        made.append(ClientJob(host, mode, account, chance.uniform(0.0, arrival_s)))
    return made


async def run(lab: Lab, args: argparse.Namespace) -> Outcome:
    crowd_plan = plan(args)
    for host in crowd_plan.server_hosts:
        lab.cap_upload(host, args.cap_bytes_per_s)
    testbed = await start(lab, crowd_plan, accounts=args.accounts)
    await testbed.wait_certified(2)
    snapshot_bytes = len(Genesis.decode(testbed.files.genesis.read_bytes()).balances_file)
    before = {h: netns.sent_bytes(h) for h in crowd_plan.server_hosts}
    work = jobs(crowd_plan, args.accounts, args.arrival_s, args.full_every)
    crowd = await clients.run_crowd(testbed, work, args.agents, CLIENT_TIMEOUT_S, "crowd")
    sent = {h: netns.sent_bytes(h) - before[h] for h in crowd_plan.server_hosts}
    fulls = sum(1 for j in work if j.mode == "full")
    snapshot_s = snapshot_bytes / args.cap_bytes_per_s
    results: dict[str, Any] = {
        "clients": len(work),
        "full_clients": fulls,
        "seeders": args.seeders,
        "accounts": args.accounts,
        "arrival_s": args.arrival_s,
        "cap_bytes_per_s": args.cap_bytes_per_s,
        "snapshot_bytes": snapshot_bytes,
        "snapshot_on_capped_link_s": round(snapshot_s, 3),
        "server_sent_bytes": list(sent.values()),
        "server_upload_per_snapshot": [round(b / snapshot_bytes, 3) for b in sent.values()],
        "light": report.summary(crowd.seconds("light")),
        "full": report.summary(crowd.seconds("full")),
        "failure_count": len(crowd.failures),
        "failures": crowd.failures[:20],
        "cpu_per_client_s": crowd.cpu_per_client_s,
        "agents": crowd.agents,
        "network_setup_s": round(lab.network.setup_s, 3),
    }
    row = {
        "clients": len(work),
        "seeders": args.seeders,
        "light p50 s": results["light"]["p50_s"],
        "light p99 s": results["light"]["p99_s"],
        "full p50 s": results["full"]["p50_s"],
        "full p99 s": results["full"]["p99_s"],
        "upload ÷ snapshot (all servers)": round(sum(sent.values()) / snapshot_bytes, 2),
        "failures": len(crowd.failures),
        "CPU s/client": crowd.cpu_per_client_s,
    }
    times = {"light": crowd.seconds("light"), "full": crowd.seconds("full")}
    return Outcome(results, [row], times)
