"""The always-on seeder: follow the quorum's pointers, fetch and verify each round, seed the
last K rounds (protocol §8.7).

``python -m scryp.seeder --keys .keys --bootstrap HOST:PORT ... [--rounds-kept K] [--dir DIR]
[--network loopback|private|public] [--listen ADDR]``
(``--archive``: the archival seeder instead, ``scryp.archive``, protocol §10.8)

Each poll reads every server's BEP 44 pointer in parallel, verifies each (key in ``.keys``,
signature, size, strict record), and follows the highest round a majority vouches for (the same
round, state root and infohashes in a majority of pointers, or a valid majority certificate;
``scryp.core.pointer.agreed``). It fetches that round reusing the unchanged pieces of the last
round it holds, checks the torrent's v2 infohash and the balances' state root against the
pointers, seeds it, and drops rounds older than the last K. A pointer that fails verification
is the publisher's fault: logged, and ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from scryp import netmode
from scryp.archive import run as archive_run
from scryp.core import snapshot
from scryp.core.certificate import majority
from scryp.core.pointer import PointerRecord, agreed
from scryp.errors import LocalError, NotAvailable, TimedOut
from scryp.hostport import LOOPBACK
from scryp.keyfile import read_quorum
from scryp.logformat import add_log_arguments, announce, setup_logging
from scryp.metrics import SeederCollector, serve_metrics
from scryp.stopping import stop_event
from scryp.swarm import FetchFailed, Swarm

log = logging.getLogger("scryp.seeder")

ROUNDS_KEPT_MAX = 1000
POLL_MIN_S = 0.1


@dataclass(frozen=True, slots=True)
class SeederConfig:
    quorum: tuple[bytes, ...]
    directory: Path
    rounds_kept: int = 3
    network: bytes | None = None  # None: the network a majority of pointers names
    poll_s: float = 10.0
    get_timeout_s: float = 10.0
    fetch_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.quorum:
            raise LocalError("an empty quorum")
        if not 1 <= self.rounds_kept <= ROUNDS_KEPT_MAX:
            raise LocalError(f"rounds kept must be in 1..{ROUNDS_KEPT_MAX}")
        if self.poll_s < POLL_MIN_S:
            raise LocalError(f"poll interval below {POLL_MIN_S} s")


@dataclass(frozen=True, slots=True)
class HeldRound:
    round: int
    infohash: bytes
    path: Path


@dataclass
class Seeder:
    swarm: Swarm
    config: SeederConfig
    held: dict[int, HeldRound] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    fetches: Counter[str] = field(default_factory=Counter)  # by result, for /metrics
    last_fetch_bytes: int = 0
    # This seeder's own metrics (never prometheus_client's global registry).
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.registry.register(SeederCollector(self))

    async def resume(self) -> None:
        """Seed again the rounds already on disk (after a restart), newest K only."""
        self.config.directory.mkdir(parents=True, exist_ok=True)
        found = sorted(
            (number, path)
            for path in self.config.directory.iterdir()
            if (number := snapshot.parse_round_dir_name(path.name)) is not None
            and all((path / name).is_file() for name in snapshot.ROUND_FILES)
        )
        for number, path in found[-self.config.rounds_kept :]:
            torrent = await self.swarm.seed(path)
            self.held[number] = HeldRound(number, torrent.infohash, path)
            log.info("seeding round %d from disk (%s)", number, torrent.infohash_hex)

    async def read_pointers(self) -> dict[bytes, PointerRecord]:
        """Every quorum server's verified record; refusals are logged and counted."""
        records, refused = await self.swarm.get_pointers(
            self.config.quorum, timeout_s=self.config.get_timeout_s
        )
        for public, error in refused.items():
            self.refused[type(error).__name__] += 1
            log.warning("refused pointer of %s: %s", public.hex()[:16], error)
        return records

    def network_of(self, records: dict[bytes, PointerRecord]) -> bytes | None:
        if self.config.network is not None:
            return self.config.network
        counts = Counter(r.network for r in records.values())
        for network, count in counts.most_common(1):
            if count >= majority(len(self.config.quorum)):
                return network
        return None

    async def step(self) -> int | None:
        """One poll: fetch, verify and seed a newer agreed round; the round, or None."""
        records = await self.read_pointers()
        network = self.network_of(records)
        if network is None:
            return None
        target = agreed(records, self.config.quorum, network)
        newest = max(self.held, default=-1)
        if target is None or target.round <= newest:
            return None
        previous = self.held[newest].path if newest >= 0 else None
        try:
            result = await self.swarm.fetch(
                target.infohash,
                self.config.directory,
                reuse_from=previous,
                expect_infohash_v2=target.infohash_v2,
                expect_state_root=target.state_root,
                timeout_s=self.config.fetch_timeout_s,
            )
        except FetchFailed as error:
            self.fetches["refused"] += 1
            log.warning("round %d refused: %s", target.round, error)
            return None
        except NotAvailable as error:
            self.fetches["not_available"] += 1
            log.warning("round %d not fetched yet: %s", target.round, error)
            return None
        if result.round_dir.name != snapshot.round_dir_name(target.round):
            self.fetches["refused"] += 1
            log.warning("round %d arrived as %s; dropped", target.round, result.round_dir.name)
            await self.swarm.remove(target.infohash)
            return None
        self.fetches["ok"] += 1
        self.last_fetch_bytes = result.payload_bytes_downloaded
        self.held[target.round] = HeldRound(target.round, target.infohash, result.round_dir)
        log.info(
            "round %d fetched (%d bytes downloaded, %.1f s), seeding",
            target.round,
            result.payload_bytes_downloaded,
            result.seconds,
        )
        await self.prune()
        return target.round

    async def prune(self) -> None:
        for number in sorted(self.held)[: -self.config.rounds_kept]:
            old = self.held.pop(number)
            await self.swarm.remove(old.infohash)
            await asyncio.to_thread(shutil.rmtree, old.path, True)
            log.info("dropped round %d", number)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; each poll is bounded by the get and fetch timeouts."""
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see server.publisher
                async with asyncio.timeout(self.config.poll_s):
                    await stop.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scryp.seeder", description=__doc__)
    parser.add_argument("--keys", type=Path, default=Path(".keys"), help="the quorum file")
    netmode.add_arguments(parser, listen=True)
    parser.add_argument("--rounds-kept", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("seeder"))
    parser.add_argument("--port", type=int, default=0, help="listen port (0: any)")
    parser.add_argument(
        "--network-id", help="64-hex network id to follow (default: the majority's)"
    )
    parser.add_argument("--poll-s", type=float, default=10.0)
    parser.add_argument("--fetch-timeout-s", type=float, default=600.0)
    parser.add_argument("--duration-s", type=float, default=None, help="stop after this long")
    parser.add_argument("--once", action="store_true", help="poll once, wait for the fetch")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0: any free port)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    archive_run.add_arguments(parser)
    add_log_arguments(parser)
    return parser


async def serve(args: argparse.Namespace, quorum: list[bytes]) -> int:
    config = archive_run.swarm_config(args)
    seeder_config = SeederConfig(
        quorum=tuple(quorum),
        directory=args.dir,
        rounds_kept=args.rounds_kept,
        network=bytes.fromhex(args.network_id) if args.network_id else None,
        poll_s=args.poll_s,
        fetch_timeout_s=args.fetch_timeout_s,
    )
    async with Swarm.start(config) as swarm, contextlib.AsyncExitStack() as stack:
        if config.bootstrap:
            with contextlib.suppress(TimedOut):  # the DHT node cache may do instead
                await swarm.wait_dht_ready()
        seeder = Seeder(swarm, seeder_config)
        await seeder.resume()
        announce(args, log.name, f"seeder: listening on {config.listen_host}:{swarm.port}")
        if args.metrics_port is not None:
            served = serve_metrics(seeder.registry, args.metrics_port)
            port = await stack.enter_async_context(served)
            announce(args, log.name, f"seeder: metrics on http://{LOOPBACK}:{port}/metrics")
        if args.once:
            fetched = await seeder.step()
            done = f"seeder: round {fetched}" if fetched is not None else "seeder: nothing new"
            announce(args, log.name, done)
            return 0
        stop = stop_event(args.duration_s)
        started = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            saver = tasks.create_task(swarm.keep_dht_state())
            await seeder.run(stop)
            saver.cancel()
        log.info("stopped after %.0f s", time.monotonic() - started)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args, logging.INFO if args.verbose else logging.WARNING)
    args.netmode = mode = netmode.parse_or_exit(
        parser, args, needs_bootstrap=True, data_dir=args.dir
    )
    loopback = mode.mode is netmode.Mode.LOOPBACK
    if loopback and not mode.bootstrap and not netmode.has_dht_state(args.dir):
        netmode.fail(parser.prog, "give --bootstrap HOST:PORT (a DHT node to join)")
    for url in args.server:  # the archive's servers
        host = url.removeprefix("http://").rstrip("/").rpartition(":")[0]
        if not mode.allows(host):
            netmode.fail(parser.prog, f"--server {url} is not allowed in --network {mode.mode}")
    try:
        quorum = read_quorum(args.keys)
        if args.archive:
            return asyncio.run(archive_run.serve(args, quorum))
        return asyncio.run(serve(args, quorum))
    except LocalError as error:
        print(f"scryp.seeder: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
