"""The lab's scenarios (issue 9): ``small`` (the test suite's: 3 servers, a DHT node,
5 clients, one partition), ``deploy`` (3 or 5 servers; a fresh client pays and reads a
verified balance; pointer read → verified majority), ``partition`` (the leader cut off under
a payment load) and ``crowd`` (hundreds of client hosts, light and full, capped servers).

Each takes a ``Lab`` already entered and returns its results (JSON-able) and table rows;
``__main__`` writes the report. Every wait has a deadline; figures are what was measured.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from scryp.crypto import KeyPair
from scryp.keyfile import read_seed
from scryp.lab import clients, load, report
from scryp.lab.clients import ClientJob, CrowdResult
from scryp.lab.lab import Lab
from scryp.lab.testbed import Plan, Testbed, write_files

POLL_S = 0.1
RESUME_TIMEOUT_S = 60.0
REJOIN_TIMEOUT_S = 90.0
CLIENT_TIMEOUT_S = 120.0


@dataclass
class Outcome:
    results: dict[str, Any]
    rows: list[dict[str, Any]]
    times_s: dict[str, list[float]]


async def start(lab: Lab, plan: Plan, accounts: int = 0) -> Testbed:
    files, _ = write_files(lab.run_dir / "net", plan.servers, accounts)
    testbed = Testbed(lab, plan, files)
    testbed.start_dht()
    testbed.start_servers()
    testbed.start_seeders()
    await testbed.wait_certified(1)
    return testbed


def faucet(testbed: Testbed) -> KeyPair:
    return KeyPair.from_seed(read_seed(testbed.files.faucet_seed))


async def pay_and_read(testbed: Testbed, host: int, amount: int = 7) -> dict[str, Any]:
    """The issue's client command lines on a fresh host: pay from the faucet, then read the
    payee's verified balance (at least the payment's round)."""
    payee = KeyPair.from_seed(random.randbytes(32)).account_id
    seed = str(testbed.files.faucet_seed)
    paid, pay_s = await clients.cli(
        testbed, host, f"pay-{host}", "pay", payee, str(amount), "--key", seed
    )
    found, balance_s = await clients.cli(
        testbed, host, f"balance-{host}", "balance", payee, "--min-round", str(paid["round"])
    )
    if found.get("balance") != amount:
        raise AssertionError(f"paid {amount}, verified balance {found.get('balance')}")
    return {
        "pay_s": round(pay_s, 3),
        "paid_round": paid["round"],
        "balance_s": round(balance_s, 3),
        "balance": found["balance"],
        "verified_by": found["verified_by"],
        "sync": found["sync"],
    }


async def deploy(lab: Lab, servers: int, readers: int = 10, reads: int = 10) -> Outcome:
    plan = Plan(servers=servers, clients=1 + readers)
    testbed = await start(lab, plan)
    first = await pay_and_read(testbed, plan.client_hosts[0])
    jobs = [
        ClientJob(host, "light", faucet(testbed).account_id, 0.0, reads)
        for host in plan.client_hosts[1:]
    ]
    crowd = await clients.run_crowd(testbed, jobs, 1, CLIENT_TIMEOUT_S, f"deploy{servers}")
    first_reads = [c["first_read_s"] for c in crowd.clients if c.get("ok")]
    again = [r for c in crowd.clients if c.get("ok") for r in c["reads_s"]]
    results: dict[str, Any] = {
        "servers": servers,
        "fresh_client": first,
        "first_read": report.summary(first_reads),
        "repeated_read": report.summary(again),
        "light_balance": report.summary(crowd.seconds("light")),
        "failures": crowd.failures,
        "network_setup_s": round(lab.network.setup_s, 3),
    }
    rows = [
        {
            "servers": servers,
            "pay (CLI) s": first["pay_s"],
            "balance (CLI) s": first["balance_s"],
            "fresh read p50 s": results["first_read"]["p50_s"],
            "fresh read p99 s": results["first_read"]["p99_s"],
            "read p50 s": results["repeated_read"]["p50_s"],
            "read p99 s": results["repeated_read"]["p99_s"],
            "reads": len(first_reads) + len(again),
            "failures": len(crowd.failures),
        }
    ]
    return Outcome(results, rows, {f"light, {servers} servers": crowd.seconds("light")})


async def leader(testbed: Testbed) -> int:
    deadline = time.monotonic() + RESUME_TIMEOUT_S
    while time.monotonic() < deadline:
        for index, status in enumerate(await testbed.statuses()):
            if status and status["role"] == "leader":
                return index
        await asyncio.sleep(POLL_S)
    raise TimeoutError("no leader")


async def newest_certified(testbed: Testbed, only: list[int]) -> int:
    statuses = await testbed.statuses(only, timeout_s=1.0)
    return max((s["certified_round"] or 0 for s in statuses if s), default=0)


async def wait_agreement(testbed: Testbed, timeout_s: float) -> dict[str, Any]:
    """Until every server reports the same certified round and state root."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = await testbed.statuses(timeout_s=1.0)
        if all(statuses):
            pairs = {(s["certified_round"], s["certified_state_root"]) for s in statuses if s}
            if len(pairs) == 1:
                return {"round": next(iter(pairs))[0]}
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"servers did not agree within {timeout_s:.0f} s")


async def cut_leader(testbed: Testbed, cut_s: float) -> dict[str, Any]:
    """Cut the leader's link for ``cut_s``: time to the majority side's next certified round,
    then heal and time until every server agrees again."""
    cut = await leader(testbed)
    others = [i for i in range(testbed.plan.servers) if i != cut]
    before = await newest_certified(testbed, others)
    testbed.lab.cut(testbed.plan.server_hosts[cut])
    cut_at = time.monotonic()
    resume_s = None
    try:
        while time.monotonic() - cut_at < cut_s:
            if resume_s is None and await newest_certified(testbed, others) > before:
                resume_s = time.monotonic() - cut_at
            await asyncio.sleep(POLL_S)
        during = await newest_certified(testbed, others)
    finally:
        testbed.lab.heal(testbed.plan.server_hosts[cut])
    healed_at = time.monotonic()
    agreed = await wait_agreement(testbed, REJOIN_TIMEOUT_S)
    return {
        "cut_server": cut,
        "cut_s": cut_s,
        "certified_before": before,
        "certified_at_heal": during,
        "resume_s": None if resume_s is None else round(resume_s, 3),
        "rejoin_s": round(time.monotonic() - healed_at, 3),
        "agreed_round": agreed["round"],
    }


async def partition(
    lab: Lab, servers: int = 3, cut_s: float = 20.0, interval_s: float = 0.25
) -> Outcome:
    testbed = await start(lab, Plan(servers=servers, clients=1))
    payments = load.Load([testbed.api(i) for i in range(servers)], faucet(testbed), interval_s)
    warm_s, after_s = 5.0, 10.0
    running = asyncio.ensure_future(testbed.observe(lambda: payments.run(warm_s + cut_s + after_s)))
    await asyncio.sleep(warm_s)  # the load's steady state before the cut
    measured = await cut_leader(testbed, cut_s)
    await running
    await wait_agreement(testbed, REJOIN_TIMEOUT_S)
    tally = await testbed.observe(payments.lost)
    results = {
        **measured,
        "payments_sent": len(payments.payments),
        "acknowledged": len(payments.acknowledged),
        "rejected": sum(1 for p in payments.payments if p.accepted is False),
        "no_outcome": [p.error for p in payments.payments if p.accepted is None][:10],
        **tally,
    }
    row = {k: results[k] for k in ("cut_s", "resume_s", "rejoin_s", "payments_sent")}
    row.update(acknowledged=results["acknowledged"], lost=len(tally["lost"]), servers=servers)
    return Outcome(results, [row], {})


async def small(lab: Lab) -> Outcome:
    """3 servers, a DHT node, 5 clients (one by the command lines, four light in an agent),
    one 8 s partition of the leader."""
    plan = Plan(servers=3, clients=5)
    testbed = await start(lab, plan)
    first = await pay_and_read(testbed, plan.client_hosts[0])
    account = faucet(testbed).account_id
    jobs = [ClientJob(h, "light", account, 0.0, 2) for h in plan.client_hosts[1:]]
    crowd = await clients.run_crowd(testbed, jobs, 1, CLIENT_TIMEOUT_S, "small")
    measured = await cut_leader(testbed, 8.0)
    after = await pay_and_read(testbed, plan.client_hosts[1], amount=3)
    results = {
        "fresh_client": first,
        "light": _crowd_results(crowd),
        "partition": measured,
        "after_heal": after,
    }
    row = {"clients": 1 + len(jobs), "failures": len(crowd.failures), **measured}
    return Outcome(results, [row], {"light": crowd.seconds("light")})


def _crowd_results(crowd: CrowdResult) -> dict[str, Any]:
    return {
        "light": report.summary(crowd.seconds("light")),
        "full": report.summary(crowd.seconds("full")),
        "failures": crowd.failures[:20],
        "failure_count": len(crowd.failures),
        "cpu_per_client_s": crowd.cpu_per_client_s,
        "agents": crowd.agents,
    }
