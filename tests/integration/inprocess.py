"""Three real ``ServerNode``s in one process (real libtorrent sessions, real peer links and
HTTP APIs on 127.0.0.1, a private DHT), for tests that change one server's behaviour by
subclassing it: a flaky swarm, a lying or slow peer."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair
from scryp.localnet import free_port
from scryp.server.api import make_app
from scryp.server.config import ServerConfig
from scryp.server.node import ServerNode

from .conftest import private_dht

DEADLINE_S = 60.0
STOP_S = 30.0  # a cancelled server stops within this (its tasks and libtorrent session)
KEYS = [KeyPair.from_seed(hashlib.sha256(f"faults-{i}".encode()).digest()) for i in range(3)]
FAUCET = KeyPair.from_seed(hashlib.sha256(b"faults-faucet").digest())

Runs = list[asyncio.Task[None]]


@asynccontextmanager
async def cluster(
    tmp_path: Path, kinds: dict[int, type[ServerNode]], running: int, **config: Any
) -> AsyncIterator[tuple[list[ServerNode], Runs]]:
    """The servers, of ``kinds`` (default ``ServerNode``), 0.3 s rounds; the first ``running``
    started (start the others with ``nodes[i].run()``); ``config`` overrides ServerConfig."""
    genesis = Genesis.single(FAUCET.public)
    quorum = [key.public for key in KEYS]
    api_ports = [free_port() for _ in KEYS]
    peers = {i: f"127.0.0.1:{port}" for i, port in enumerate(api_ports)}
    async with private_dht(1) as (boot,):
        nodes = []
        for i, key in enumerate(KEYS):
            settings = ServerConfig(
                key_file=tmp_path / "unused",
                quorum_file=tmp_path / "unused",
                genesis_file=tmp_path / "unused",
                data_dir=tmp_path / f"server-{i}",
                torrent_port=free_port(),
                server_port=api_ports[i],
                bootstrap=(boot.address,),
                peers={j: a for j, a in peers.items() if j != i},
                round_interval_s=0.3,
                **config,
            )
            nodes.append(kinds.get(i, ServerNode)(settings, key, quorum, genesis))
        runners = []
        for node in nodes:
            runner = web.AppRunner(make_app(node), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", node.config.server_port).start()
            runners.append(runner)
        runs = [asyncio.create_task(node.run()) for node in nodes[:running]]
        try:
            yield nodes, runs
        finally:
            for run in runs:
                run.cancel()
            _, stopping = await asyncio.wait(runs, timeout=STOP_S) if runs else ((), set())
            for runner in runners:
                await runner.cleanup()
            if stopping:  # say where a server hangs, not wait for pytest's timeout
                for task in asyncio.all_tasks():
                    task.print_stack(limit=8, file=sys.stderr)
                raise AssertionError(
                    f"{len(stopping)} server(s) still running {STOP_S} s after cancel"
                )


async def wait_for(condition: Callable[[], bool], what: str, runs: Runs) -> None:
    """Wait on a condition with a deadline (polled: it reads other tasks' state); fail at
    once if a server stops meanwhile."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        stopped = [run for run in runs if run.done()]
        if stopped:
            raise AssertionError(f"a server stopped: {stopped[0].exception()!r}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
