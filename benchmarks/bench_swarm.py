"""Server upload and time-to-all when N clients fetch one snapshot: torrent vs plain HTTP.

    .venv/bin/python -m benchmarks.bench_swarm [--clients 1,5,20] [--accounts 1000000]
                                               [--cap-mb-s 10] [--json PATH] [--repeat R]
                                               [--methods torrent,torrent-1slot,light,http]

For each N it runs, in one process on 127.0.0.1 only:
- torrent: one server session seeds the round (balances + an empty transactions file) and is
  the bootstrap node of a private DHT; N client sessions find it by infohash through the DHT
  and fetch concurrently, trading pieces among themselves. Server upload = the seed's payload
  upload as libtorrent counts it. The seed's choker is libtorrent's default, all of it
  (``DEFAULTS``: 8 unchoke slots, a 20-piece seeding quota, the optimistic unchoke every 30 s;
  the unchoke interval and the choking algorithms are never set); its other session settings
  are Scryp's loopback ones, as for every method (no uTP, a 100 ms tick, 1 s reconnect).
- torrent-1slot: the same with the server profile of scryp.swarm: it unchokes one peer at a
  time (libtorrent's default is 8), quota 1000 pieces (default 20), and rotates its one
  (optimistic) unchoke every second (default 30 s).
- light: a light client behind a busy server. The server (server profile, as torrent-1slot)
  seeds; N full fetchers start; ``--light-delay-s`` later, ``--light-clients`` light clients
  (read-only DHT sessions, as scryp.client opens them, given the server as a peer as the
  client is) each fetch ``--light-pieces`` random pieces of ``balances``. Reported: each light
  client's time from its fetch call to verified pieces on disk, and the full fetchers' time.
- torrent-super: as torrent, with the server in BEP 16 super-seeding mode (it reveals to
  each peer only pieces no other peer has yet).
- HTTP: an aiohttp server serves the same balances file; N aiohttp clients download it
  concurrently. Server upload = the bytes the server wrote.
``--server-slots``, ``--server-quota`` and ``--server-opt-interval-s`` replace the server
profile's unchoke slots, seeding piece quota and optimistic unchoke interval, to measure
candidates. Both are run uncapped and with the server's upload capped at ``--cap-mb-s``
(libtorrent's upload_rate_limit with loopback peers mapped to the global peer class; a
shared token bucket for HTTP). Uncapped, loopback peers stay in libtorrent's local peer
class, which ignores unchoke slots: those rows do not exercise the choker. Every client
verifies the SHA-256 of what it got.
Bounded: every fetch has a deadline, and the whole run stops at ``--budget-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

from scryp.core import snapshot
from scryp.core.balances import RECORD
from scryp.core.buckets import state_root
from scryp.hostport import LOOPBACK
from scryp.swarm import (
    SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S,
    SERVER_SEED_PIECE_QUOTA,
    SERVER_UNCHOKE_SLOTS,
    Swarm,
    SwarmConfig,
)

CHUNK_BYTES = 64 * 1024
FETCH_TIMEOUT_S = 240.0
LIGHT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Run:
    method: str  # "torrent" or "http"
    clients: int
    cap_mb_s: float | None
    snapshot_bytes: int
    server_upload_bytes: int
    seconds_until_all: float

    light_seconds: tuple[float, ...] = ()  # the light method: each light client's time
    # The seed's choker (unchoke slots, seeding piece quota, optimistic unchoke interval s);
    # none for HTTP.
    choker: tuple[int, int, int] | None = None
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # os.getloadavg() as the run ended

    @property
    def upload_ratio(self) -> float:
        return self.server_upload_bytes / self.snapshot_bytes


@dataclass(frozen=True, slots=True)
class Profile:
    """The server's choking settings (scryp.swarm's server profile unless overridden)."""

    unchoke_slots: int = SERVER_UNCHOKE_SLOTS
    seed_piece_quota: int = SERVER_SEED_PIECE_QUOTA
    optimistic_unchoke_interval_s: int = SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S

    def settings(self) -> tuple[int, int, int]:
        return (self.unchoke_slots, self.seed_piece_quota, self.optimistic_unchoke_interval_s)

    def config(self, cap: int) -> SwarmConfig:
        return SwarmConfig(
            upload_rate_limit_bytes_per_s=cap,
            rate_limit_loopback=bool(cap),
            unchoke_slots=self.unchoke_slots,
            seed_piece_quota=self.seed_piece_quota,
            optimistic_unchoke_interval_s=self.optimistic_unchoke_interval_s,
        )


DEFAULTS = Profile(  # libtorrent's seeding defaults, all three (the optimistic unchoke too)
    unchoke_slots=8, seed_piece_quota=20, optimistic_unchoke_interval_s=30
)


def make_round(root: Path, accounts: int) -> Path:
    """Round 1, a checkpoint round (protocol §4.4.4), with ``accounts`` sorted 36-byte
    records (ids = sha256(i))."""
    ids = sorted(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(accounts))
    balances = b"".join(RECORD.pack(account, 1 + n % 1000) for n, account in enumerate(ids))
    round_dir = root / snapshot.round_dir_name(1)
    round_dir.mkdir(parents=True)
    (round_dir / snapshot.BALANCES).write_bytes(balances)
    for name in snapshot.CHECKPOINT_FILES[1:]:  # changes, transactions, window: empty
        (round_dir / name).write_bytes(b"")
    return round_dir


def _state_root_of(path: Path) -> bytes:
    """What a fetch checks the round's balances against (protocol §4.4.3)."""
    return state_root(path.read_bytes())


async def torrent_run(
    round_dir: Path,
    work: Path,
    clients: int,
    cap_mb_s: float | None,
    *,
    super_seed: bool = False,
    profile: Profile = DEFAULTS,
) -> Run:
    size = (round_dir / snapshot.BALANCES).stat().st_size
    expected = await asyncio.to_thread(_state_root_of, round_dir / snapshot.BALANCES)
    cap = int(cap_mb_s * 1e6) if cap_mb_s else 0
    async with Swarm.start(profile.config(cap)) as server:
        swarms = [Swarm(SwarmConfig(bootstrap=(server.address,))) for _ in range(clients)]
        try:
            for swarm in swarms:
                await swarm.wait_listening()
                server.add_dht_node(*swarm.address)
            torrent = await server.seed(round_dir, super_seed=super_seed)
            for swarm in swarms:
                await swarm.wait_dht_ready()
            started = time.monotonic()
            await asyncio.gather(
                *(
                    swarm.fetch(
                        torrent.infohash,
                        work / f"torrent-{i}",
                        expect_state_root=expected,
                        timeout_s=FETCH_TIMEOUT_S,
                    )
                    for i, swarm in enumerate(swarms)
                )
            )
            seconds = time.monotonic() - started
            stats = server.stats(torrent.infohash)
            assert stats is not None
        finally:
            for swarm in swarms:
                await swarm.close()
    uploaded = stats.payload_bytes_uploaded
    return Run("torrent", clients, cap_mb_s, size, uploaded, seconds, choker=profile.settings())


class TokenBucket:
    """A shared upload cap: ``rate`` bytes per second across all connections."""

    def __init__(self, rate_bytes_per_s: float) -> None:
        self.rate = rate_bytes_per_s
        self.next_free = time.monotonic()

    async def take(self, amount: int) -> None:
        now = time.monotonic()
        start = max(now, self.next_free)
        self.next_free = start + amount / self.rate
        if start > now:
            await asyncio.sleep(start - now)  # pacing is the point: this is the rate limit


async def super_seeded_run(
    round_dir: Path, work: Path, clients: int, cap_mb_s: float | None
) -> Run:
    run = await torrent_run(round_dir, work, clients, cap_mb_s, super_seed=True)
    return replace(run, method="torrent-super")


async def plain_torrent_run(
    round_dir: Path, work: Path, clients: int, cap_mb_s: float | None
) -> Run:
    return await torrent_run(round_dir, work, clients, cap_mb_s)


async def one_slot_run(
    round_dir: Path, work: Path, clients: int, cap_mb_s: float | None, *, profile: Profile
) -> Run:
    run = await torrent_run(round_dir, work, clients, cap_mb_s, profile=profile)
    return replace(run, method="torrent-1slot")


async def fetch_light(
    swarm: Swarm, infohash: bytes, save_dir: Path, wanted: list[int], server: tuple[str, int]
) -> float:
    """A light client's fetch of a few pieces, dialling the server directly; its seconds."""
    result = await swarm.fetch(
        infohash, save_dir, pieces=wanted, peers=(server,), timeout_s=LIGHT_TIMEOUT_S
    )
    return result.seconds


async def light_run(
    round_dir: Path,
    work: Path,
    clients: int,
    cap_mb_s: float | None,
    *,
    profile: Profile,
    light: argparse.Namespace,
) -> Run:
    """N full fetchers keep the server busy; light clients then fetch a few pieces each."""
    size = (round_dir / snapshot.BALANCES).stat().st_size
    expected = await asyncio.to_thread(_state_root_of, round_dir / snapshot.BALANCES)
    cap = int(cap_mb_s * 1e6) if cap_mb_s else 0
    rng = random.Random(light.seed)
    async with Swarm.start(profile.config(cap)) as server:
        full = [Swarm(SwarmConfig(bootstrap=(server.address,))) for _ in range(clients)]
        lights = [
            Swarm(SwarmConfig(bootstrap=(server.address,), dht_read_only=True))
            for _ in range(light.light_clients)
        ]
        try:
            for swarm in full + lights:
                await swarm.wait_listening()
                server.add_dht_node(*swarm.address)
            torrent = await server.seed(round_dir)
            pieces = torrent.torrent_info().num_pieces()
            for swarm in full + lights:
                await swarm.wait_dht_ready()
            started = time.monotonic()
            fetches = [
                asyncio.ensure_future(
                    swarm.fetch(
                        torrent.infohash,
                        work / f"full-{i}",
                        expect_state_root=expected,
                        timeout_s=FETCH_TIMEOUT_S,
                    )
                )
                for i, swarm in enumerate(full)
            ]
            await asyncio.sleep(light.light_delay_s)  # the server is busy by now
            light_seconds = await asyncio.gather(
                *(
                    fetch_light(
                        swarm,
                        torrent.infohash,
                        work / f"light-{i}",
                        rng.sample(range(pieces), light.light_pieces),
                        server.address,
                    )
                    for i, swarm in enumerate(lights)
                )
            )
            await asyncio.gather(*fetches)
            seconds = time.monotonic() - started
            stats = server.stats(torrent.infohash)
            assert stats is not None
        finally:
            for swarm in full + lights:
                await swarm.close()
    uploaded = stats.payload_bytes_uploaded
    times, choker = tuple(light_seconds), profile.settings()
    return Run("light", clients, cap_mb_s, size, uploaded, seconds, times, choker=choker)


async def http_run(round_dir: Path, work: Path, clients: int, cap_mb_s: float | None) -> Run:
    path = round_dir / snapshot.BALANCES
    data = path.read_bytes()
    expected = hashlib.sha256(data).digest()
    bucket = TokenBucket(cap_mb_s * 1e6) if cap_mb_s else None
    sent = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        view = memoryview(data)
        for at in range(0, len(data), CHUNK_BYTES):
            chunk = view[at : at + CHUNK_BYTES]
            if bucket is not None:
                await bucket.take(len(chunk))
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/balances", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]

    async def download(index: int, session: ClientSession) -> None:
        target = work / f"http-{index}"
        digest = hashlib.sha256()
        async with session.get(f"http://{LOOPBACK}:{port}/balances") as response:
            response.raise_for_status()
            with target.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
        if digest.digest() != expected:
            raise AssertionError(f"HTTP client {index} got a corrupt snapshot")

    try:
        started = time.monotonic()
        async with ClientSession(timeout=ClientTimeout(total=FETCH_TIMEOUT_S)) as session:
            await asyncio.gather(*(download(i, session) for i in range(clients)))
        seconds = time.monotonic() - started
    finally:
        await runner.cleanup()
    return Run("http", clients, cap_mb_s, len(data), sent, seconds)


async def main_async(args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    root = Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    try:
        made = time.monotonic()
        round_dir = await asyncio.to_thread(make_round, root / "server", args.accounts)
        print(f"snapshot: {args.accounts} accounts in {time.monotonic() - made:.1f} s", flush=True)
        profile = Profile(
            unchoke_slots=args.server_slots,
            seed_piece_quota=args.server_quota,
            optimistic_unchoke_interval_s=args.server_opt_interval_s,
        )
        print(f"server profile: {profile}", flush=True)
        methods: dict[str, Callable[[Path, Path, int, float | None], Awaitable[Run]]] = {
            "torrent": plain_torrent_run,
            "torrent-1slot": partial(one_slot_run, profile=profile),
            "light": partial(light_run, profile=profile, light=args),
            "torrent-super": super_seeded_run,
            "http": http_run,
        }
        caps = {"none": None, "capped": args.cap_mb_s}
        for cap_name in args.caps:
            cap = caps[cap_name]
            for clients in args.clients:
                for name in args.methods:
                    for _ in range(args.repeat):
                        work = root / "work"
                        work.mkdir()
                        run = await methods[name](round_dir, work, clients, cap)
                        await asyncio.to_thread(shutil.rmtree, work)
                        run = replace(run, loadavg=os.getloadavg())
                        runs.append(run)
                        light = ""
                        if run.light_seconds:
                            times = " ".join(f"{t:.2f}" for t in run.light_seconds)
                            light = f"; light clients: {times} s (max {max(run.light_seconds):.2f})"
                        choker = "" if run.choker is None else f" choker={run.choker}"
                        print(
                            f"{run.method:13s} N={run.clients:3d} cap={cap or '-'!s:>4} MB/s: "
                            f"server upload {run.server_upload_bytes / 1e6:8.1f} MB "
                            f"({run.upload_ratio:5.2f}x), "
                            f"all done in {run.seconds_until_all:6.2f} s{light};{choker} "
                            f"load {run.loadavg[0]:.2f}",
                            flush=True,
                        )
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 20]
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument(
        "--methods",
        type=lambda s: s.split(","),
        default=["torrent", "torrent-1slot", "http"],
        help="torrent (libtorrent's choker defaults), torrent-1slot (server profile), "
        "light (light clients behind a server busy with N full fetchers), "
        "torrent-super (BEP 16 super seeding: slow, one client took 240 s), http",
    )
    parser.add_argument("--caps", type=lambda s: s.split(","), default=["none", "capped"])
    parser.add_argument("--cap-mb-s", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--server-slots", type=int, default=SERVER_UNCHOKE_SLOTS)
    parser.add_argument("--server-quota", type=int, default=SERVER_SEED_PIECE_QUOTA)
    parser.add_argument(
        "--server-opt-interval-s", type=int, default=SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S
    )
    parser.add_argument("--light-clients", type=int, default=5, help="light method")
    parser.add_argument("--light-pieces", type=int, default=2, help="pieces per light client")
    parser.add_argument("--light-delay-s", type=float, default=1.0, help="after the fetchers")
    parser.add_argument("--seed", type=int, default=1, help="random pieces of light clients")
    parser.add_argument("--budget-s", type=float, default=600.0, help="stop the whole run")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    runs = asyncio.run(asyncio.wait_for(main_async(args), args.budget_s))
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps([asdict(r) | {"upload_ratio": r.upload_ratio} for r in runs], indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
