"""Load figure for 3 real servers on loopback (issues 5 and 10).

    .venv/bin/python -m benchmarks.bench_server [--payments 20000] [--batch 1000]
        [--accounts N] [--payees 1000] [--latency-samples 100] [--checkpoint-every 60]
        [--restart] [--restart-victim follower|leader] [--json PATH]

Starts a local network (3 server processes, 1 s rounds) on a genesis of ``--accounts``
accounts (random ones, the faucet keeping the rest; 0: the faucet alone), waits until every
server certifies rounds, submits payments from the faucet in batches of ``--batch`` to the
servers in turn (each batch signed just ahead of its POST: ``benchmarks.server_load``), and
measures:
- **certified** payments per second: from the first submission to the moment server 0 lists
  certified rounds whose accepted transactions add up to every payment sent (so every single
  payment is counted, none is sampled), next to the ceiling from signature checks measured in
  the same run: every server checks every signature, so the ceiling is cores × single-core
  verify rate ÷ servers;
- submit-to-certified latency of single payments: p50, p90, p99 (nearest rank) and the
  largest of n;
- each server's resident memory (now and peak) and data on disk;
- with ``--restart``: one server killed with SIGKILL and started again, the seconds until it
  has certified the current round in agreement (``benchmarks.server_restart``).
Bounded: a fixed number of payments, each wait has a deadline. The load average
(``os.getloadavg``) is recorded at each step: other work on the machine moves the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.server_load import (
    READY_TIMEOUT_S,
    TermWatch,
    latency,
    percentile,
    ready,
    server_footprint,
    throughput,
    verify_rate,
)
from benchmarks.server_restart import restart_figure
from scryp.core.balances import RECORD_BYTES
from scryp.keyfile import load_or_create_key
from scryp.keytool import NetworkFiles
from scryp.localnet import LocalNetwork
from scryp.random_genesis import write_random_genesis


def write_genesis(root: Path, accounts: int) -> None:
    """A genesis of ``accounts`` random accounts plus the faucet (``init_network`` keeps it)."""
    if accounts:
        faucet = load_or_create_key(NetworkFiles(root).faucet_seed)
        write_random_genesis(NetworkFiles(root).genesis, accounts, faucet.public, {}, seed=10)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=0, help="genesis accounts (0: faucet)")
    parser.add_argument("--payees", type=int, default=1000, help="distinct payees")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=60,
        help="the servers' round layout (protocol §4.4.4); 1: every round holds the whole "
        "balances file, as every round did before issue 10's stage B",
    )
    parser.add_argument("--restart", action="store_true", help="then kill and restart one")
    parser.add_argument("--restart-victim", choices=("follower", "leader"), default="follower")
    parser.add_argument("--restart-down-s", type=float, default=2.0)
    parser.add_argument("--restart-load", type=int, default=100, help="payments/s meanwhile")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--dir", type=Path, help="a new directory to run in, kept (its logs)")
    return parser.parse_args()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def measure(net: LocalNetwork, args: argparse.Namespace, out: dict[str, Any]) -> None:
    began = time.monotonic()
    await net.start()
    out["servers_answering_s"] = round(time.monotonic() - began, 1)
    await ready(net)
    out["network_ready_s"] = round(time.monotonic() - began, 1)
    assert net.faucet is not None
    out["loadavg"]["ready"] = load()
    out["single_core_verify_per_s"] = verify_rate(net.faucet)
    terms = TermWatch(net)
    watching = asyncio.create_task(terms.run())
    out["terms"] = terms.changes  # the first: the term when measuring began
    try:
        await measured(net, args, out, terms.began)
    finally:
        terms.stop()
        await watching


async def measured(
    net: LocalNetwork, args: argparse.Namespace, out: dict[str, Any], origin: float
) -> None:
    out["throughput"] = await throughput(net, args.payments, args.batch, args.payees)
    out["loadavg"]["after_throughput"] = load()
    out["footprint_after_throughput"] = [server_footprint(net, i) for i in range(3)]
    out["latency"] = await latency(net, args.latency_samples, origin)
    out["loadavg"]["after_latency"] = load()
    out["footprint"] = [server_footprint(net, i) for i in range(3)]
    if args.restart:
        out["restart"] = await restart_figure(
            net, args.restart_victim, args.restart_down_s, args.restart_load
        )
        out["loadavg"]["after_restart"] = load()
        out["footprint_after_restart"] = [server_footprint(net, i) for i in range(3)]


async def main() -> None:
    args = arguments()
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": ["benchmarks.bench_server", *sys.argv[1:]],
        "accounts": args.accounts,
        "state_bytes": args.accounts * RECORD_BYTES,
        "cores": os.cpu_count() or 1,
        "loadavg": {"start": load()},
    }
    with contextlib.ExitStack() as stack:
        if args.dir is not None:
            args.dir.mkdir(parents=True)  # a new one: a network's files are never reused
            directory = str(args.dir)
        else:
            directory = stack.enter_context(tempfile.TemporaryDirectory())
        began = time.monotonic()
        write_genesis(Path(directory), args.accounts)
        out["genesis_written_s"] = round(time.monotonic() - began, 1)
        # One sender stands for many clients here: lift the per-client signature budget
        # (protocol §9.6), which would otherwise be what this measures.
        unlimited = ["--client-signatures-per-s", "1000000"]
        layout = ["--checkpoint-every", str(args.checkpoint_every)]
        net = LocalNetwork(
            Path(directory),
            servers=3,
            round_interval_s=1.0,
            server_args=unlimited + layout,
            log_format="json",
            start_timeout_s=READY_TIMEOUT_S,
        )
        try:
            await measure(net, args, out)
        finally:
            await net.stop()
    report(args, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


def report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    cores, single = out["cores"], out["single_core_verify_per_s"]
    ceiling = cores * single / 3
    rate = out["throughput"]["certified_per_s"]
    found = out["latency"]
    lost = len(found["lost_sent_at_s"])
    lat = found["seconds"] + [math.inf] * lost  # a lost payment: slower than any

    def ms(seconds: float) -> float | None:
        return None if math.isinf(seconds) else seconds * 1000  # None: lost

    out["ceiling_per_s"], out["certified_over_ceiling"] = ceiling, rate / ceiling
    out["latency_ms"] = {
        "n": len(lat),
        "lost": lost,
        "p50": ms(percentile(lat, 0.50)),
        "p90": ms(percentile(lat, 0.90)),
        "p99": ms(percentile(lat, 0.99)),
        "max": ms(lat[-1]),
    }
    print(
        f"server load: 3 servers, 1 s rounds, checkpoint every {args.checkpoint_every}, "
        f"{args.accounts:,} genesis accounts, {args.payments} payments to {args.payees:,} "
        f"payees in batches of {args.batch}, {cores} cores; load average {out['loadavg']}"
    )
    print(json.dumps({k: v for k, v in out.items() if k != "latency"}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
