"""Running the archive: ``python -m scryp.seeder --archive`` (protocol §10.8).

One libtorrent session (seeding every archived round), one aiohttp API on 127.0.0.1, and the
follow loop, in one TaskGroup; SIGINT/SIGTERM stop them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from aiohttp import web

from scryp import netmode
from scryp.archive.api import make_app
from scryp.archive.follow import Archive, ArchiveConfig
from scryp.archive.store import ArchiveStore
from scryp.client.network import api_url
from scryp.errors import TimedOut
from scryp.hostport import LOOPBACK
from scryp.stopping import stop_event
from scryp.swarm import Swarm, SwarmConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("archive (history from the genesis, protocol §10.8)")
    group.add_argument(
        "--archive",
        action="store_true",
        help="keep every round's transactions and certificate (and the state every K rounds)",
    )
    group.add_argument("--checkpoint-every", type=int, default=100, metavar="K")
    group.add_argument("--api-port", type=int, default=0, help="archive HTTP port (0: any)")
    group.add_argument(
        "--server", action="append", default=[], metavar="URL", help="a server's API to list"
    )


def swarm_config(args: argparse.Namespace) -> SwarmConfig:
    """The session of a seeder or an archive: its network mode, and the DHT node cache in
    its directory (protocol §8.8)."""
    mode: netmode.NetMode = args.netmode
    return SwarmConfig(
        listen_host=mode.listen,
        listen_port=args.port,
        bootstrap=mode.bootstrap,
        network=mode.mode,
        dht_state_file=args.dir / netmode.DHT_STATE_FILE,
    )


async def serve(args: argparse.Namespace, quorum: list[bytes]) -> int:
    config = swarm_config(args)
    archive_config = ArchiveConfig(
        quorum=tuple(quorum),
        checkpoint_every=max(1, args.checkpoint_every),
        network=bytes.fromhex(args.network_id) if args.network_id else None,
        servers=tuple(api_url(s) for s in args.server),
        poll_s=args.poll_s,
        fetch_timeout_s=min(args.fetch_timeout_s, 60.0),
    )
    async with Swarm.start(config) as swarm:
        if config.bootstrap:
            with contextlib.suppress(TimedOut):  # the DHT node cache may do instead
                await swarm.wait_dht_ready()
        archive = Archive(swarm, ArchiveStore(args.dir), archive_config)
        await archive.resume()
        runner = web.AppRunner(make_app(archive), access_log=None)
        await runner.setup()
        # Clients on other machines ask it too in private mode: it binds --listen there.
        host = LOOPBACK if config.network is netmode.Mode.LOOPBACK else config.listen_host
        site = web.TCPSite(runner, host, args.api_port)
        await site.start()
        port = runner.addresses[0][1]
        print(f"archive: api http://{host}:{port} torrents {swarm.port}", flush=True)
        stop = stop_event(args.duration_s)
        try:
            async with asyncio.TaskGroup() as tasks:
                saver = tasks.create_task(swarm.keep_dht_state())
                await archive.run(stop)
                saver.cancel()
        finally:
            await runner.cleanup()
    return 0
