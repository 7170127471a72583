"""``python -m scryp.dhtnode [--port P]``: a DHT node for others to bootstrap from.

A libtorrent session with no torrents, on 127.0.0.1 by default: the first node of a private
DHT (the local test network's, protocol §9.1). Prints ``listening HOST:PORT`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from scryp.swarm import Swarm, SwarmConfig


async def run(host: str, port: int) -> None:
    swarm = Swarm(SwarmConfig(listen_host=host, listen_port=port))
    try:
        bound = await swarm.wait_listening()
        print(f"listening {host}:{bound}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await swarm.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scryp.dhtnode", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
