"""``python -m scryp.lab.agent SPEC.json``: many lab clients in one process (issue 9, crowd).

Each client is a thread that enters its own host's namespace first (``inhost``), so its
libtorrent session and sockets are bound to that host's address, as a separate machine's
would be; the process shares only Python's start-up and the CPU. Each client: a fresh client
session (its own data directory), the pointers read from the DHT and a majority certificate
checked (``latest``), then a light or full sync; optionally ``reads`` more pointer reads in
the same session. One JSON line per client on stdout, then one ``{"agent": ...}`` line with
the process's CPU seconds, so the cost per client can be reported.

The spec: ``{"quorum": FILE, "bootstrap": "HOST:PORT", "clients": [{"name", "ns",
"address", "mode", "account", "data", "start_s", "reads"}...], "timeout_s"}``. Every client
ends by ``timeout_s`` (a failure, reported), and so does the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from scryp.client.network import Network
from scryp.client.sync import Client, NoMajority
from scryp.errors import TimedOut
from scryp.hostport import split_hostport
from scryp.keyfile import read_quorum
from scryp.lab import inhost
from scryp.lab.lab import die_with_parent
from scryp.netmode import Mode
from scryp.swarm import Swarm, SwarmConfig

DHT_READY_TIMEOUT_S = 3.0
CHECK_WORKERS = 2  # one per core of the lab's machine
SPEC_BYTES_MAX = 16 << 20


def client_config(address: str, bootstrap: tuple[str, int]) -> SwarmConfig:
    """A client session on the host's own address in private mode (issue 9)."""
    return SwarmConfig(
        listen_host=address, bootstrap=(bootstrap,), dht_read_only=True, network=Mode.PRIVATE
    )


async def one_client(
    spec: dict[str, Any],
    network: Network,
    origin: float,
    checks: concurrent.futures.Executor | None = None,
) -> dict[str, Any]:
    """One client's run; times are from its own start (after ``start_s``)."""
    await asyncio.sleep(max(0.0, origin + float(spec["start_s"]) - time.monotonic()))
    started = time.monotonic()
    result: dict[str, Any] = {"name": spec["name"], "mode": spec["mode"], "ok": False}
    bootstrap = network.bootstrap[0]
    async with Swarm.start(client_config(spec["address"], bootstrap)) as swarm:
        with contextlib.suppress(TimedOut):
            await swarm.wait_dht_ready(DHT_READY_TIMEOUT_S)
        result["dht_nodes_at_start"] = swarm.dht_node_count()
        result["ready_s"] = time.monotonic() - started  # session up, DHT bootstrapped
        client = Client(network, Path(spec["data"]), swarm, checks)
        before = time.monotonic()
        try:
            verified = await client.latest()
        except NoMajority as error:  # the report says how far this client's DHT reached
            raise NoMajority(f"{error}; {swarm.dht_node_count()} DHT node(s) known", 0) from None
        result["first_read_s"] = time.monotonic() - before
        reads = []
        for _ in range(int(spec.get("reads", 0))):
            before = time.monotonic()
            await client.latest()
            reads.append(time.monotonic() - before)
        result["reads_s"] = reads
        account = bytes.fromhex(spec["account"]) if spec.get("account") else None
        before = time.monotonic()
        # As the CLI's balance does: a light sync that misses its round's proof reads the
        # pointers again before it falls back to a full one (protocol §4.4.7).
        synced = await client.sync_latest(spec["mode"], account, verified=verified)
        result["sync_s"] = time.monotonic() - before
        result.update(
            ok=True,
            seconds=time.monotonic() - started,
            round=synced.round.round,
            balance=synced.balance,
            bytes_downloaded=synced.bytes_downloaded,
            sync=synced.mode,
        )
    return result


def start_checks() -> concurrent.futures.ProcessPoolExecutor:
    """The process pool the clients' whole-state checks run in (``Client.checks``): dozens of
    clients share this interpreter, and their state roots (0.15 s of Python each at 1M
    accounts) queued for its lock took 2-17 s each in the crowd, a cost no client on its own
    machine pays. Forked now, before any libtorrent thread exists (Python 3.11 forks every
    worker at the first task), and counted in the agent's CPU."""
    pool = concurrent.futures.ProcessPoolExecutor(
        CHECK_WORKERS,
        mp_context=multiprocessing.get_context("fork"),
        # A worker outliving a killed agent held its stdout open, and the lab then waited
        # for an end of file that never came (the 1,000-client crowd).
        initializer=die_with_parent,
    )
    for started in [pool.submit(os.getpid) for _ in range(CHECK_WORKERS)]:
        started.result()
    return pool


def run(spec: dict[str, Any]) -> int:
    quorum = tuple(read_quorum(Path(spec["quorum"])))
    network = Network(
        quorum=quorum, bootstrap=(split_hostport(spec["bootstrap"]),), mode=Mode.PRIVATE
    )
    timeout_s = float(spec["timeout_s"])
    checks = start_checks()
    origin = time.monotonic() + 0.5  # every client's start_s counts from here
    futures: dict[concurrent.futures.Future[dict[str, Any]], dict[str, Any]] = {}
    for client in spec["clients"]:

        async def work(client: dict[str, Any] = client) -> dict[str, Any]:
            return await asyncio.wait_for(one_client(client, network, origin, checks), timeout_s)

        futures[inhost.run_on_host(client["ns"], work, client["name"])] = client
    deadline = origin + timeout_s + max((float(c["start_s"]) for c in spec["clients"]), default=0)
    # Each result is printed as its client ends: a crowd that overran the lab's deadline for
    # this process (which then kills it) still reports every client that did end.
    reported = set()
    try:
        wait_s = max(0.0, deadline - time.monotonic() + 5)
        for future in concurrent.futures.as_completed(futures, wait_s):
            print(json.dumps(_result_line(future, futures[future])), flush=True)
            reported.add(future)
    except TimeoutError:
        for future in set(futures) - reported:
            print(json.dumps({"name": futures[future]["name"], "ok": False, "error": "hung"}))
    checks.shutdown(wait=True, cancel_futures=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the checks' processes
    cpu = {
        "user_s": usage.ru_utime + workers.ru_utime,
        "system_s": usage.ru_stime + workers.ru_stime,
        "clients": len(futures),
    }
    print(json.dumps({"agent": cpu}), flush=True)
    return 0


def _result_line(
    future: concurrent.futures.Future[dict[str, Any]], client: dict[str, Any]
) -> dict[str, Any]:
    error = future.exception()
    if error is None:
        return future.result()
    return {
        "name": client["name"],
        "mode": client["mode"],
        "ok": False,
        "error": f"{type(error).__name__}: {error}",
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scryp.lab.agent SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_bytes()[:SPEC_BYTES_MAX])
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
