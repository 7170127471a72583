"""``python -m scryp.dhtnode [--network MODE] [--listen ADDR] [--port P]``: a DHT node for others
to bootstrap from.

A libtorrent session with no torrents, on 127.0.0.1 by default (loopback mode): the first node
of a private DHT (the local test network's, protocol §9.1). ``--network private --listen IP``
serves a network of several machines (protocol §8.8); ``--bootstrap`` joins other nodes, and
``--data DIR`` keeps its DHT node cache there. Prints ``listening HOST:PORT`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from scryp import netmode
from scryp.stopping import stop_event
from scryp.swarm import Swarm, SwarmConfig


async def run(config: SwarmConfig) -> None:
    swarm = Swarm(config)
    try:
        bound = await swarm.wait_listening()
        print(f"listening {config.listen_host}:{bound}", flush=True)
        stop = stop_event()
        async with asyncio.TaskGroup() as tasks:
            saver = tasks.create_task(swarm.keep_dht_state())
            await stop.wait()
            saver.cancel()
    finally:
        await swarm.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scryp.dhtnode", description=__doc__)
    netmode.add_arguments(parser, listen=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="keep the DHT node cache here")
    args = parser.parse_args(argv)
    mode = netmode.parse_or_exit(parser, args)  # the first node of a DHT needs no other
    config = SwarmConfig(
        listen_host=mode.listen,
        listen_port=args.port,
        bootstrap=mode.bootstrap,
        network=mode.mode,
        dht_state_file=args.data / netmode.DHT_STATE_FILE if args.data else None,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
