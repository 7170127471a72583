"""A Scryp network deployed on the lab's hosts, in private mode (issue 9, "Interface").

Owns: the host plan (host 0 the DHT node at 10.61.0.1, then one host per server, per seeder,
one observer host for the supervisor's own probes, then the clients), the network files
(``keytool``'s layout, optionally a genesis of many accounts), the exact command lines of the
issue's interface, and readiness. Invariant: the supervisor never opens a socket in the
machine's own namespace towards a lab address: it asks from the observer host (``inhost``).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from scryp.core.balances import TOTAL_SUPPLY, encode_balances
from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair
from scryp.keyfile import atomic_write, load_or_create_key
from scryp.keytool import NetworkFiles, init_network
from scryp.lab import inhost, names
from scryp.lab.lab import Lab

DHT_HOST = 0
DHT_PORT = 6881
TORRENT_PORT = 6881
API_PORT = 6882
HTTP_TIMEOUT_S = 3.0
READY_TIMEOUT_S = 90.0
POLL_S = 0.2  # other processes cannot signal the supervisor: it asks at this period


@dataclass(frozen=True, slots=True)
class Plan:
    servers: int
    seeders: int = 0
    clients: int = 1

    @property
    def server_hosts(self) -> range:
        return range(1, 1 + self.servers)

    @property
    def seeder_hosts(self) -> range:
        return range(1 + self.servers, 1 + self.servers + self.seeders)

    @property
    def observer_host(self) -> int:
        return 1 + self.servers + self.seeders

    @property
    def client_hosts(self) -> range:
        first = self.observer_host + 1
        return range(first, first + self.clients)

    @property
    def hosts(self) -> int:
        return self.observer_host + 1 + self.clients


def bootstrap() -> str:
    return f"{names.host_address(DHT_HOST)}:{DHT_PORT}"


def private_args() -> list[str]:
    """The network-mode options every entry point takes (issue 9)."""
    return ["--network", "private", "--bootstrap", bootstrap()]


def write_files(root: Path, servers: int, accounts: int = 0) -> tuple[NetworkFiles, KeyPair]:
    """``keytool init``'s files; with ``accounts``, a genesis of that many filler accounts
    (SHA-256 of a counter, 1..1000 scryp each) and the rest of the supply to the faucet."""
    files = NetworkFiles(root)
    if accounts and not files.genesis.exists():
        files.keys_dir.mkdir(parents=True, exist_ok=True)
        faucet = load_or_create_key(files.faucet_seed)
        filler = {hashlib.sha256(b"account %d" % i).digest(): 1 + i % 1000 for i in range(accounts)}
        filler[faucet.public] = TOTAL_SUPPLY - sum(filler.values())
        balances = encode_balances(sorted(filler.items()))
        atomic_write(files.genesis, Genesis(balances_file=balances).encode())
    _, faucet, _ = init_network(root, servers)
    return files, faucet


@dataclass
class Testbed:
    lab: Lab
    plan: Plan
    files: NetworkFiles
    round_interval_s: float = 1.0

    @property
    def observer_ns(self) -> str:
        return names.host_name(self.plan.observer_host)

    def api(self, server: int) -> str:
        return f"http://{names.host_address(self.plan.server_hosts[server])}:{API_PORT}"

    def start_dht(self) -> None:
        argv = self.lab.python_argv(
            "scryp.dhtnode",
            "--network",
            "private",
            "--listen",
            names.host_address(DHT_HOST),
            "--port",
            str(DHT_PORT),
        )
        self.lab.start("dht", DHT_HOST, argv)

    def server_argv(self, index: int, extra: Sequence[str] = ()) -> list[str]:
        address = names.host_address(self.plan.server_hosts[index])
        files = self.files
        return self.lab.python_argv(
            "scryp.server",
            str(TORRENT_PORT),
            str(API_PORT),
            "--network",
            "private",
            "--listen",
            address,
            "--advertise",
            address,
            "--bootstrap",
            bootstrap(),
            "--key",
            str(files.server_seed(index)),
            "--keys",
            str(files.quorum),
            "--genesis",
            str(files.genesis),
            "--data",
            str(self.lab.run_dir / "data" / f"server-{index}"),
            "--round-interval",
            str(self.round_interval_s),
            *extra,
        )

    def start_servers(self, extra: Sequence[str] = ()) -> None:
        for index in range(self.plan.servers):
            host = self.plan.server_hosts[index]
            self.lab.start(f"server-{index}", host, self.server_argv(index, list(extra)))

    def start_seeders(self) -> None:
        for number, host in enumerate(self.plan.seeder_hosts):
            argv = self.lab.python_argv(
                "scryp.seeder",
                "--keys",
                str(self.files.quorum),
                "--dir",
                str(self.lab.run_dir / "seeders" / f"seeder-{number}"),
                "--poll-s",
                "1",
                "--listen",
                names.host_address(host),
                *private_args(),
            )
            self.lab.start(f"seeder-{number}", host, argv)

    # -- observing, from the observer host ---------------------------------------------------

    async def observe(self, work: Callable[[], Awaitable[Any]]) -> Any:
        async def wrapped() -> Any:
            return await work()

        return await asyncio.wrap_future(inhost.run_on_host(self.observer_ns, wrapped))

    async def statuses(
        self, only: Sequence[int] | None = None, timeout_s: float = HTTP_TIMEOUT_S
    ) -> list[dict[str, Any] | None]:
        """Each server's /status (None: no answer), or only those of ``only``."""
        chosen = range(self.plan.servers) if only is None else only
        urls = [self.api(i) + "/status" for i in chosen]

        async def ask() -> list[dict[str, Any] | None]:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                return list(await asyncio.gather(*(_get_json(session, url) for url in urls)))

        result: list[dict[str, Any] | None] = await self.observe(ask)
        return result

    async def wait_certified(
        self, min_round: int = 1, timeout_s: float = READY_TIMEOUT_S, servers: int | None = None
    ) -> int:
        """Wait until ``servers`` (default: all) report a certified round ≥ ``min_round``;
        the lowest of their certified rounds."""
        want = self.plan.servers if servers is None else servers
        deadline = time.monotonic() + timeout_s
        while True:
            rounds = [
                s["certified_round"] for s in await self.statuses() if s and s["certified_round"]
            ]
            good = sorted((r for r in rounds if r >= min_round), reverse=True)
            if len(good) >= want:
                return int(good[want - 1])
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"gave up after {timeout_s:.0f} s waiting for {want} server(s) to certify "
                    f"round {min_round} (have {rounds})"
                )
            await asyncio.sleep(POLL_S)

    def client_argv(self, command: str, data: Path, *args: str) -> list[str]:
        return self.lab.python_argv(
            "scryp.client",
            command,
            *args,
            "--json",
            *private_args(),
            "--keys",
            str(self.files.quorum),
            "--data",
            str(data),
        )


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url) as response:
            if response.status != 200:
                return None
            body: dict[str, Any] = await response.json(content_type=None)
            return body
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
