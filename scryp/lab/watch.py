"""``python -m scryp.lab.watch SPEC.json``, run inside a lab host: watch what a client sees of
the network from there for a while (issue 9, strangers), and print one JSON line.

Two measurements run side by side, each from its own DHT session on the host's address:
- **pointers**: every ``period_s``, read the quorum's pointers through the DHT (as every
  client does, protocol §10.2) and time the read; the *lag* is the newest round any server
  reports certified (its ``/status``) minus the round the verified majority names;
- **peers**: the moment a server first reports a new certified round, look its torrent up
  in the DHT with BEP 5 get_peers, as any BitTorrent client would (``Swarm.find_peers``), and
  time until a peer is found (protocol §8.9: a round is announced once it is seeded).

Every wait has a deadline; the run ends after ``duration_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from scryp.client.network import Network
from scryp.client.session import DHT_READY_TIMEOUT_S
from scryp.client.sync import Client, NoMajority
from scryp.errors import NotAvailable, TimedOut
from scryp.hostport import split_hostport
from scryp.keyfile import read_quorum
from scryp.lab.agent import client_config
from scryp.netmode import Mode
from scryp.swarm import Swarm

SPEC_BYTES_MAX = 1 << 20
STATUS_POLL_S = 0.05
STATUS_TIMEOUT_S = 1.0
PEER_TIMEOUT_S = 30.0
DURATION_MAX_S = 600.0


async def newest_certified(
    http: aiohttp.ClientSession, apis: list[str]
) -> tuple[int, bytes | None]:
    """(round, v1 infohash) of the newest round any server reports certified."""

    async def one(api: str) -> tuple[int, bytes | None]:
        try:
            async with http.get(f"{api}/status") as response:
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0, None
        infohash = body.get("infohash")
        return int(body.get("certified_round") or 0), bytes.fromhex(infohash) if infohash else None

    answers = await asyncio.gather(*(one(api) for api in apis))
    return max(answers, key=lambda pair: pair[0])


async def watch_pointers(
    client: Client, http: aiohttp.ClientSession, apis: list[str], until: float, period_s: float
) -> dict[str, Any]:
    reads_s: list[float] = []
    lags: list[int] = []
    empty = 0
    while time.monotonic() < until:
        before = time.monotonic()
        try:
            verified = await client.latest(timeout_s=0.0)
        except NoMajority:
            empty += 1
            verified = None
        read_s = time.monotonic() - before
        certified, _ = await newest_certified(http, apis)
        if verified is not None:
            reads_s.append(read_s)
            lags.append(max(0, certified - verified.round))
        await asyncio.sleep(max(0.0, before + period_s - time.monotonic()))  # the period
    return {"reads_s": reads_s, "lags": lags, "reads_without_majority": empty}


async def watch_peers(
    swarm: Swarm, http: aiohttp.ClientSession, apis: list[str], until: float
) -> dict[str, Any]:
    found_s: list[float] = []
    not_found = 0
    seen = 0
    lookups: list[asyncio.Task[float | None]] = []

    async def look_up(infohash: bytes, since: float) -> float | None:
        try:
            await swarm.find_peers(infohash, PEER_TIMEOUT_S)
        except NotAvailable:
            return None
        return time.monotonic() - since

    while time.monotonic() < until:
        certified, infohash = await newest_certified(http, apis)
        if certified > seen and infohash is not None:
            if seen:  # the first round seen was certified before we looked: not timed
                lookups.append(asyncio.ensure_future(look_up(infohash, time.monotonic())))
            seen = certified
        await asyncio.sleep(STATUS_POLL_S)  # the servers cannot signal us: poll
    for result in await asyncio.gather(*lookups):
        if result is None:
            not_found += 1
        else:
            found_s.append(result)
    return {"rounds_looked_up": len(lookups), "peer_found_s": found_s, "not_found": not_found}


async def watch(spec: dict[str, Any]) -> dict[str, Any]:
    quorum = tuple(read_quorum(Path(spec["quorum"])))
    bootstrap = split_hostport(spec["bootstrap"])
    network = Network(quorum=quorum, bootstrap=(bootstrap,), mode=Mode.PRIVATE)
    apis = list(spec["apis"])
    duration_s = min(float(spec["duration_s"]), DURATION_MAX_S)
    timeout = aiohttp.ClientTimeout(total=STATUS_TIMEOUT_S)
    async with (
        Swarm.start(client_config(spec["address"], bootstrap)) as reader,
        Swarm.start(client_config(spec["address"], bootstrap)) as looker,
        aiohttp.ClientSession(timeout=timeout) as http,
    ):
        # As the client commands do (scryp.client.session): wait for the DHT bootstrap at most
        # DHT_READY_TIMEOUT_S, then go on with the nodes found so far.
        before = time.monotonic()
        with contextlib.suppress(TimedOut):
            await reader.wait_dht_ready(DHT_READY_TIMEOUT_S)
        bootstrap_s = time.monotonic() - before
        client = Client(network, Path(spec["data"]), reader)
        until = time.monotonic() + duration_s
        pointers, peers = await asyncio.gather(
            watch_pointers(client, http, apis, until, float(spec["period_s"])),
            watch_peers(looker, http, apis, until),
        )
    return {"pointers": pointers, "peers": peers, "bootstrap_s": bootstrap_s}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scryp.lab.watch SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_bytes()[:SPEC_BYTES_MAX])
    print(json.dumps(asyncio.run(watch(spec))), flush=True)  # run inside its host (Lab.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
