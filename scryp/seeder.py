"""The always-on seeder: follow the quorum's pointers, fetch and verify each round, seed the
newest checkpoint round it holds and every round after it (protocol §8.7, §4.4.4).

``python -m scryp.seeder --keys .keys --bootstrap HOST:PORT ... [--rounds-kept K] [--dir DIR]
[--network loopback|private|public] [--listen ADDR]``
(``--archive``: the archival seeder instead, ``scryp.archive``, protocol §10.8)

Each poll reads every server's BEP 44 pointer in parallel, verifies each (key in ``.keys``,
signature, size, strict record), and follows the highest round a majority vouches for (the same
round, state root and infohashes in a majority of pointers, or a valid majority certificate;
``scryp.core.pointer.agreed``). It fetches that round under the vouched v2 infohash, and the
rounds it missed since the last one it holds from the pointer's ``recent`` infohashes. A
checkpoint round (its torrent holds ``balances``) must give the pointer's state root, reusing
the unchanged pieces of the checkpoint held before; a round after it must give it once the
``changes`` of every round since are applied to the balances the seeder holds. It seeds them,
and drops every round older than both its newest checkpoint and its last K rounds: what a
client's full sync (the newest checkpoint, then the ``changes`` since) needs stays served.
A seeder holding no checkpoint yet (new, or after a long absence) starts from the newest
checkpoint the servers' ``GET /rounds`` list, each entry checked against its certificate.
A pointer that fails verification is the publisher's fault: logged, and ignored.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from scryp import netmode
from scryp.archive import run as archive_run
from scryp.client import servers
from scryp.client.network import pointer_apis
from scryp.core import snapshot
from scryp.core.buckets import state_root
from scryp.core.certificate import majority
from scryp.core.changes import apply_rounds
from scryp.core.listing import ListedRound, certified_round
from scryp.core.pointer import PointerRecord, agreed
from scryp.errors import LocalError, MalformedInput, NotAvailable, RemoteError, TimedOut
from scryp.hostport import LOOPBACK
from scryp.keyfile import read_quorum
from scryp.logformat import add_log_arguments, announce, setup_logging
from scryp.metrics import SeederCollector, serve_metrics
from scryp.stopping import stop_event
from scryp.swarm import FetchFailed, Swarm

log = logging.getLogger("scryp.seeder")

ROUNDS_KEPT_MAX = 1000
LISTED_ROUNDS_MAX = 1000  # how far back a new seeder looks for a checkpoint
FETCHES_PARALLEL_MAX = 8
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
    checkpoint: bool = False  # its torrent holds the whole balances file (protocol §4.4.4)


def round_complete(path: Path) -> bool:
    """Whether a round directory holds every file of its layout (``snapshot.round_files``:
    a checkpoint round's when it holds ``balances``)."""
    checkpoint = (path / snapshot.BALANCES).is_file()
    return all((path / name).is_file() for name in snapshot.round_files(checkpoint))


def kept_from(checkpoints: Mapping[int, bool], rounds_kept: int) -> int:
    """The oldest round to keep of those held (round -> whether a checkpoint): the newest
    checkpoint's, or the ``rounds_kept``-th newest round's if that is older."""
    numbers = sorted(checkpoints)
    if not numbers:
        return 0
    oldest = numbers[-rounds_kept:][0]
    newest_checkpoint = max((n for n in numbers if checkpoints[n]), default=oldest)
    return min(oldest, newest_checkpoint)


def chain_state(rounds: Sequence[HeldRound], state: bytes | None) -> bytes | None:
    """The balances after the last of ``rounds`` (consecutive, ascending): ``state`` (those
    before the first, or None) moved on by each round's ``changes``, a checkpoint's own
    ``balances`` taken as they are; None while no checkpoint starts the chain. MalformedInput
    if a ``changes`` file is not canonical. Blocking: run it in a thread."""
    start = max((i for i, held in enumerate(rounds) if held.checkpoint), default=None)
    if start is not None:
        state = (rounds[start].path / snapshot.BALANCES).read_bytes()
    if state is None:
        return None
    after = rounds[start + 1 :] if start is not None else rounds
    # One merge of every round's changes since: one copy of the state, not one per round.
    return apply_rounds(state, [(held.path / snapshot.CHANGES).read_bytes() for held in after])


def _checked_state(
    rounds: Sequence[HeldRound], state: bytes | None, expected: bytes
) -> bytes | None:
    """``chain_state``, required to give the state root ``expected`` (FetchFailed if not)."""
    after = chain_state(rounds, state)
    if after is not None and state_root(after) != expected:
        raise FetchFailed(f"round {rounds[-1].round} does not give the pointers' state root")
    return after


def _rebuilt(held: Mapping[int, HeldRound]) -> bytes | None:
    """The balances after the newest round held: its newest checkpoint, then the ``changes``
    of the rounds after it; None if no unbroken run of rounds joins them. Blocking."""
    newest = max(held, default=-1)
    start = newest
    while start in held and not held[start].checkpoint:
        start -= 1
    if start not in held:
        return None
    try:
        return chain_state([held[n] for n in range(start, newest + 1)], None)
    except MalformedInput as error:
        log.warning("rounds on disk do not chain (%s): next checkpoint awaited", error)
        return None


@dataclass
class Seeder:
    swarm: Swarm
    config: SeederConfig
    held: dict[int, HeldRound] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    fetches: Counter[str] = field(default_factory=Counter)  # by result, for /metrics
    last_fetch_bytes: int = 0
    # The balances after the newest round held, from the newest checkpoint held and the
    # ``changes`` since; None while no checkpoint starts an unbroken run up to it.
    state: bytes | None = None
    # This seeder's own metrics (never prometheus_client's global registry).
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.registry.register(SeederCollector(self))

    async def resume(self) -> None:
        """Seed again the rounds already on disk (after a restart): the newest checkpoint
        and every round after it, and at least the newest K."""
        self.config.directory.mkdir(parents=True, exist_ok=True)
        found = {
            number: (path / snapshot.BALANCES).is_file()
            for path in self.config.directory.iterdir()
            if (number := snapshot.parse_round_dir_name(path.name)) is not None
            and round_complete(path)
        }
        oldest = kept_from(found, self.config.rounds_kept)
        for number in sorted(n for n in found if n >= oldest):
            path = self.config.directory / snapshot.round_dir_name(number)
            torrent = await self.swarm.seed(path)
            self.held[number] = HeldRound(number, torrent.infohash, path, found[number])
            log.info("seeding round %d from disk (%s)", number, torrent.infohash_hex)
        self.state = await asyncio.to_thread(_rebuilt, dict(self.held))

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
        """One poll: fetch, verify and seed a newer agreed round (and the rounds missed
        before it); the round, or None."""
        records = await self.read_pointers()
        network = self.network_of(records)
        if network is None:
            return None
        target = agreed(records, self.config.quorum, network)
        newest = max(self.held, default=-1)
        if target is None or target.round <= newest:
            return None
        fetched = await self._fetch(target.infohash, target.round, target.infohash_v2)
        if fetched is None:
            return None
        before: list[tuple[HeldRound, int]] = []
        if not fetched[0].checkpoint:
            if self.state is not None and newest < target.round - 1:
                before = await self._fetch_missed(target, newest)
            if self.state is None or (newest < target.round - 1 and not before):
                before = await self._start_from_checkpoint(records, network, target)
        chain = [*before, fetched]
        rounds = [held for held, _ in chain]
        joined = self.state if rounds[0].round == newest + 1 else None
        try:
            state = await asyncio.to_thread(_checked_state, rounds, joined, target.state_root)
        except RemoteError as error:  # FetchFailed, MalformedInput: the swarm's data is wrong
            self.fetches["refused"] += 1
            log.warning("round %d refused: %s", target.round, error)
            for held in rounds:
                await self._drop(held)
            return None
        if state is None:
            log.info("round %d seeded unchecked: no checkpoint before it here", target.round)
        self.fetches["ok"] += len(rounds)
        self.last_fetch_bytes = sum(downloaded for _, downloaded in chain)
        self.held.update((held.round, held) for held in rounds)
        self.state = state
        log.info(
            "round %d fetched (%d bytes downloaded%s), seeding",
            target.round,
            self.last_fetch_bytes,
            f", with {len(rounds) - 1} missed before it" if len(rounds) > 1 else "",
        )
        await self.prune()
        return target.round

    async def _fetch(
        self, infohash: bytes, number: int, infohash_v2: bytes | None
    ) -> tuple[HeldRound, int] | None:
        """Round ``number`` from the swarm (a checkpoint's reusing the pieces of the newest
        checkpoint held): the round and the bytes downloaded, or None (logged, counted)."""
        checkpoints = [h for _, h in sorted(self.held.items()) if h.checkpoint]
        try:
            result = await self.swarm.fetch(
                infohash,
                self.config.directory,
                reuse_from=checkpoints[-1].path if checkpoints else None,
                expect_name=snapshot.round_dir_name(number),
                expect_infohash_v2=infohash_v2,
                timeout_s=self.config.fetch_timeout_s,
            )
        except FetchFailed as error:
            self.fetches["refused"] += 1
            log.warning("round %d refused: %s", number, error)
            return None
        except NotAvailable as error:
            self.fetches["not_available"] += 1
            log.warning("round %d not fetched yet: %s", number, error)
            return None
        checkpoint = any(path.name == snapshot.BALANCES for path in result.files)
        held = HeldRound(number, infohash, result.round_dir, checkpoint)
        return held, result.payload_bytes_downloaded

    async def _fetch_missed(
        self, target: PointerRecord, newest: int
    ) -> list[tuple[HeldRound, int]]:
        """Rounds ``newest`` + 1 .. ``target.round`` - 1 under the pointer's ``recent``
        infohashes (newest first: the i-th taken as round ``target.round`` - 1 - i, checked by
        name), all or none; the caller checks them with the target's state root."""
        missed = range(newest + 1, target.round)
        if len(missed) > len(target.recent):
            log.warning("rounds %d..%d missed: too many to fetch", missed[0], missed[-1])
            return []
        fetched = await asyncio.gather(
            *(self._fetch(target.recent[target.round - 1 - n], n, None) for n in missed)
        )
        found = [f for f in fetched if f is not None]
        if len(found) < len(missed):
            for held, _ in found:
                await self._drop(held)
            return []
        return found

    async def _start_from_checkpoint(
        self, records: dict[bytes, PointerRecord], network: bytes, target: PointerRecord
    ) -> list[tuple[HeldRound, int]]:
        """The newest certified checkpoint before ``target`` and every round after it up to
        ``target.round`` - 1, as the servers' ``GET /rounds`` list them (their addresses from
        the verified pointers; each entry checked against its own certificate, protocol
        §8.4), so a new seeder serves full syncs (a checkpoint and the ``changes`` since,
        §4.4.7) at once; [] (logged) if they cannot all be had. Rounds held already are
        taken as they are."""
        apis = pointer_apis(records.values(), self.swarm.config.network)
        first = max(0, target.round - LISTED_ROUNDS_MAX)
        listing = await servers.round_listing(apis, first, target.round - 1)
        checked: dict[int, ListedRound] = {}
        for number, entry in listing.items():
            try:
                checked[number] = certified_round(entry, network, self.config.quorum)
            except RemoteError as error:  # a server's fault: its entry is not used
                log.warning("listed round %d refused: %s", number, error)
        listed = [n for n in checked if listing[n].get("checkpoint") is True]
        if not listed:
            log.info("no server lists a checkpoint before round %d", target.round)
            return []
        wanted = range(max(listed), target.round)
        if any(n not in checked for n in wanted):
            log.info("rounds %d..%d are not all listed", wanted[0], wanted[-1])
            return []
        limit = asyncio.Semaphore(FETCHES_PARALLEL_MAX)

        async def fetch(number: int) -> tuple[HeldRound, int] | None:
            if number in self.held:
                return self.held[number], 0
            async with limit:
                entry = checked[number]
                return await self._fetch(entry.infohash, number, entry.infohash_v2)

        found = [f for f in await asyncio.gather(*(fetch(n) for n in wanted)) if f is not None]
        if len(found) < len(wanted) or not found[0][0].checkpoint:
            for held, _ in found:
                if held.round not in self.held:
                    await self._drop(held)
            return []
        return found

    async def _drop(self, held: HeldRound) -> None:
        await self.swarm.remove(held.infohash)
        await asyncio.to_thread(shutil.rmtree, held.path, True)

    async def prune(self) -> None:
        """Drop the rounds older than both the newest checkpoint and the last K rounds."""
        checkpoints = {number: held.checkpoint for number, held in self.held.items()}
        oldest = kept_from(checkpoints, self.config.rounds_kept)
        for number in sorted(n for n in self.held if n < oldest):
            await self._drop(self.held.pop(number))
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
    parser.add_argument(
        "--rounds-kept",
        type=int,
        default=3,
        help="seed at least the last K rounds (and the newest checkpoint and every round since)",
    )
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
