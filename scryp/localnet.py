"""A local Scryp network of real processes on 127.0.0.1 (protocol §9.1).

Starts one DHT bootstrap node (``scryp.dhtnode``), N servers (``scryp.server``) and M seeders
(``scryp.seeder``) as child processes on free loopback ports, each logging to
``DIR/logs/<name>.log``. Used by ``python -m scryp.testnet``, the bank test (``scryp.chaos``)
and the integration tests, which fail its servers with real signals: ``kill`` (SIGKILL),
``restart`` (the same ports, key and data directory), ``pause`` (SIGSTOP), ``resume``
(SIGCONT). ``DIR/testnet.json`` is rewritten (atomically) whenever a server's pid changes.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair
from scryp.hostport import LOOPBACK
from scryp.keyfile import atomic_write
from scryp.keytool import NetworkFiles, init_network

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A TCP and UDP port nobody holds right now on 127.0.0.1 (the DHT needs both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise OSError("no free port pair on 127.0.0.1")


@dataclass(slots=True)
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it)
        self.process = subprocess.Popen(
            self.argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log_file.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    async def wait(self, timeout_s: float) -> int | None:
        process = self.process
        if process is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.to_thread(process.wait), timeout_s)
        except TimeoutError:
            return None


@dataclass(slots=True)
class ServerProcess:
    index: int
    key: KeyPair
    torrent_port: int
    server_port: int
    child: Child

    @property
    def api(self) -> str:
        return f"http://{LOOPBACK}:{self.server_port}"


@dataclass
class LocalNetwork:
    root: Path
    servers: int = 3
    seeders: int = 0
    round_interval_s: float = 1.0
    python: str = sys.executable
    server_args: list[str] = field(default_factory=list)  # extra options for every server
    # Tell each server the others' addresses (--peer); without, they find them in the DHT.
    give_peers: bool = True
    log_format: str = "text"  # servers' and seeders' --log-format (scryp.logformat)
    dht: Child | None = None
    bootstrap: tuple[str, int] | None = None
    server_processes: list[ServerProcess] = field(default_factory=list)
    seeder_children: list[Child] = field(default_factory=list)
    archive_children: list[Child] = field(default_factory=list)
    archives: int = 0  # archival seeders (protocol §10.8)
    archive_args: list[str] = field(default_factory=list)  # extra options for each
    archive_ports: list[tuple[int, int]] = field(default_factory=list)  # (api, torrent)
    seeder_metrics_ports: list[int] = field(default_factory=list)  # 127.0.0.1:PORT/metrics
    faucet: KeyPair | None = None
    genesis: Genesis | None = None
    paused: set[int] = field(default_factory=set)  # servers stopped with SIGSTOP
    # How long ``start`` waits for every server to answer (a 10M-account genesis: longer).
    start_timeout_s: float = START_TIMEOUT_S

    @property
    def files(self) -> NetworkFiles:
        return NetworkFiles(self.root)

    async def start(self) -> None:
        keys, self.faucet, self.genesis = init_network(self.root, self.servers)
        if self.bootstrap is None:  # else: join the DHT node given (testnet --bootstrap)
            await self._start_dht()
        ports = [(free_port(), free_port()) for _ in keys]
        for index, (key, (torrent_port, server_port)) in enumerate(zip(keys, ports, strict=True)):
            child = Child(f"server-{index}", [], self.root / "logs" / f"server-{index}.log")
            self.server_processes.append(
                ServerProcess(index, key, torrent_port, server_port, child)
            )
        for server in self.server_processes:
            server.child.argv = self._server_argv(server)
            server.child.start()
        self.seeder_metrics_ports = [free_port() for _ in range(self.seeders)]
        for number in range(self.seeders):
            self.seeder_children.append(
                self._started(f"seeder-{number}", self._seeder_argv(number))
            )
        for number in range(self.archives):
            self.archive_ports.append((free_port(), free_port()))
            name = f"archive-{number}"
            self.archive_children.append(self._started(name, self._archive_argv(number)))
        self._write_description()
        await self.wait_until(self._all_answering, self.start_timeout_s, "servers answering")

    def _started(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv, self.root / "logs" / f"{name}.log")
        child.start()
        return child

    async def _start_dht(self) -> None:
        port = free_port()
        self.dht = Child(
            "dht",
            [self.python, "-m", "scryp.dhtnode", "--port", str(port)],
            self.root / "logs" / "dht.log",
        )
        self.dht.start()
        self.bootstrap = (LOOPBACK, port)
        # A server whose first DHT bootstrap finds no node waits out libtorrent's retry, and
        # its first pointer put fails (seen under load): start the servers once it listens.
        log_path = self.dht.log_path

        async def listening() -> bool:
            return b"listening" in await asyncio.to_thread(log_path.read_bytes)

        await self.wait_until(listening, START_TIMEOUT_S, "the DHT node listening")

    def _server_argv(self, server: ServerProcess) -> list[str]:
        files = self.files
        argv = [
            self.python,
            "-m",
            "scryp.server",
            str(server.torrent_port),
            str(server.server_port),
            "--key",
            str(files.server_seed(server.index)),
            "--keys",
            str(files.quorum),
            "--genesis",
            str(files.genesis),
            "--data",
            str(self.root / "data" / f"server-{server.index}"),
            "--round-interval",
            str(self.round_interval_s),
            "--log-format",
            self.log_format,
        ]
        if self.bootstrap is not None:
            argv += ["--bootstrap", f"{self.bootstrap[0]}:{self.bootstrap[1]}"]
        for other in self.server_processes if self.give_peers else []:
            if other.index != server.index:
                argv += ["--peer", f"{other.index}={LOOPBACK}:{other.server_port}"]
        return argv + self.server_args

    def _seeder_argv(self, number: int, metrics: bool = True) -> list[str]:
        argv = [
            self.python,
            "-m",
            "scryp.seeder",
            "--keys",
            str(self.files.quorum),
            "--dir",
            str(self.root / "seeders" / f"seeder-{number}"),
            "--poll-s",
            str(max(1.0, self.round_interval_s)),
            "--log-format",
            self.log_format,
        ]
        if metrics:
            argv += ["--metrics-port", str(self.seeder_metrics_ports[number])]
        if self.bootstrap is not None:
            argv += ["--bootstrap", f"{self.bootstrap[0]}:{self.bootstrap[1]}"]
        return argv

    def _archive_argv(self, number: int) -> list[str]:
        api_port, torrent_port = self.archive_ports[number]
        argv = self._seeder_argv(number, metrics=False)
        argv[argv.index("--dir") + 1] = str(self.root / "archives" / f"archive-{number}")
        argv[argv.index("--poll-s") + 1] = str(min(1.0, self.round_interval_s))
        argv += ["--archive", "--api-port", str(api_port), "--port", str(torrent_port)]
        return argv + self.archive_args

    @property
    def archive_apis(self) -> list[str]:
        return [f"http://{LOOPBACK}:{api}" for api, _ in self.archive_ports]

    def _write_description(self) -> None:
        assert self.genesis is not None and self.faucet is not None
        description = {
            "network_id": self.genesis.network_id.hex(),
            "bootstrap": f"{self.bootstrap[0]}:{self.bootstrap[1]}" if self.bootstrap else None,
            "faucet": self.faucet.account_id,
            "faucet_seed_file": str(self.files.faucet_seed),
            "quorum_file": str(self.files.quorum),
            "round_interval_s": self.round_interval_s,
            "servers": [
                {
                    "index": s.index,
                    "public_key": s.key.account_id,
                    "api": s.api,
                    "torrent_port": s.torrent_port,
                    "log": str(s.child.log_path),
                    "pid": s.child.process.pid if s.child.process else None,
                }
                for s in self.server_processes
            ],
            # Archival seeders: history from the genesis (protocol §10.8); untrusted.
            "archives": [
                {"api": api, "torrent_port": torrent}
                for api, (_, torrent) in zip(self.archive_apis, self.archive_ports, strict=True)
            ],
            "seeders": [
                {"metrics": f"http://{LOOPBACK}:{port}/metrics", "log": str(child.log_path)}
                for port, child in zip(self.seeder_metrics_ports, self.seeder_children, strict=True)
            ],
        }
        atomic_write(self.root / "testnet.json", json.dumps(description, indent=2).encode())

    # -- control ---------------------------------------------------------------------------

    def kill(self, index: int, signum: int = signal.SIGKILL) -> None:
        self.server_processes[index].child.signal(signum)
        if signum == signal.SIGSTOP:
            self.paused.add(index)
        elif signum in (signal.SIGCONT, signal.SIGKILL):
            self.paused.discard(index)

    def pause(self, index: int) -> None:
        self.kill(index, signal.SIGSTOP)

    def resume(self, index: int) -> None:
        self.kill(index, signal.SIGCONT)

    async def restart(self, index: int) -> None:
        """Start server ``index`` again with its ports, key and data; a server still running
        (or paused) is killed first, as a crash would."""
        server = self.server_processes[index]
        if server.child.running:
            self.kill(index, signal.SIGKILL)
        if server.child.running and await server.child.wait(STOP_TIMEOUT_S) is None:
            raise TimeoutError(f"server {index} did not die within {STOP_TIMEOUT_S:.0f} s")
        server.child.start()
        self._write_description()

    def state(self, index: int) -> str:
        """What this supervisor knows of server ``index``: "up", "paused" or "down"."""
        if not self.server_processes[index].child.running:
            return "down"
        return "paused" if index in self.paused else "up"

    async def stop(self) -> None:
        children = [s.child for s in self.server_processes]
        children += self.seeder_children + self.archive_children
        if self.dht is not None:
            children.append(self.dht)
        for child in children:
            child.signal(signal.SIGTERM)
        for child in children:
            if await child.wait(STOP_TIMEOUT_S) is None:
                child.signal(signal.SIGKILL)
                await child.wait(STOP_TIMEOUT_S)

    # -- observing -------------------------------------------------------------------------

    async def get(
        self, index: int, path: str, timeout_s: float = HTTP_TIMEOUT_S
    ) -> tuple[int, Any]:
        """(HTTP status, JSON body) of a GET on server ``index``; (0, None) if unreachable."""
        url = self.server_processes[index].api + path
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as r:
                return r.status, await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
            return 0, None

    async def post(
        self, index: int, path: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> tuple[int, Any]:
        url = self.server_processes[index].api + path
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                url, data=io.BytesIO(body), headers={"Content-Type": content_type}
            ) as response,
        ):
            return response.status, await response.json(content_type=None)

    async def statuses(self, timeout_s: float = HTTP_TIMEOUT_S) -> list[dict[str, Any] | None]:
        replies = await asyncio.gather(
            *(self.get(i, "/status", timeout_s) for i in range(self.servers))
        )
        return [body if code == 200 else None for code, body in replies]

    async def _all_answering(self) -> bool:
        return all(s is not None for s in await self.statuses())

    @staticmethod
    async def wait_until(
        condition: Callable[[], Awaitable[bool]],
        timeout_s: float,
        what: str,
        poll_s: float = 0.1,
    ) -> None:
        """Wait for a condition on other processes, with a deadline: they cannot signal us,
        so we ask at a short period until it holds."""
        deadline = time.monotonic() + timeout_s
        while not await condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")
            await asyncio.sleep(poll_s)
