"""Interop with an independent Mainline DHT implementation, btdht (protocol §8.8).

btdht (GPLv3) is used in tests and tools only. Its nodes are confined to loopback by
tools/dht_router's LoopbackDHT, which these tests load from the tool itself.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import re
import socket
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from scryp.core import snapshot
from scryp.core.buckets import state_root
from scryp.swarm import build_round_torrent

from .conftest import PrivateDHT, make_balances, write_round

pytestmark = [
    pytest.mark.slow,
    # btdht 0.3.3 still calls Thread.setName.
    pytest.mark.filterwarnings(r"ignore:setName\(\) is deprecated:DeprecationWarning"),
]

ROUTER = Path(__file__).resolve().parents[2] / "tools" / "dht_router"
LOOKUP_TIMEOUT_S = 30.0
# btdht 0.3.3 truncates IPv4 addresses at a zero byte (127.0.0.1 -> 127.0.0.0), so the
# sessions that talk to it listen on a loopback address without one (tools/dht_router).
HOST = "127.1.1.1"


def load_router() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("dht_router", str(ROUTER))
    spec = importlib.util.spec_from_loader("dht_router", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def get_peers_blocking(node: Any, infohash: bytes, deadline: float) -> list[tuple[str, int]]:
    """Start btdht's get_peers lookup and collect what it finds until the deadline.

    btdht runs lookups in its own threads and offers no event to wait on; this polls its
    peer store, in a worker thread, bounded by the deadline.
    """
    while time.monotonic() < deadline and not node.root.stats()[0]:
        time.sleep(0.05)  # wait for the bootstrap find_node answers
    node.get_peers(infohash, block=False, limit=10)
    peers: list[tuple[str, int]] = []
    while time.monotonic() < deadline and not peers:
        time.sleep(0.05)
        peers = list(node._get_peers(infohash, compact=False) or [])
    return peers


def test_btdht_finds_the_seeders_by_bep5_get_peers(dht: PrivateDHT, tmp_path: Path) -> None:
    router = load_router()
    # btdht's get_peers finds nothing for an infohash holding a 0 byte (seen: 740093b9…
    # never found in 30 s, while ids without one are found in ~1 s; like its transaction ids,
    # test_router_echoes_transaction_ids_that_hold_a_zero_byte): a round whose v1 infohash
    # has none is made here. Generic btdht-based clients share that limit.
    for accounts in range(2000, 2100):
        round_dir = write_round(tmp_path / "seed", 1, make_balances(accounts), b"")
        if 0 not in build_round_torrent(round_dir).infohash:
            break

    async def body() -> None:
        async with dht(8, listen_host=HOST) as swarms:
            seeders = swarms[:2]
            torrents = [await s.seed(round_dir) for s in seeders]
            infohash = torrents[0].infohash
            node = router.LoopbackDHT(bootstrap=[swarms[3].address, swarms[5].address])
            node.start()
            node.bootstarp()
            try:
                deadline = time.monotonic() + LOOKUP_TIMEOUT_S
                peers = await asyncio.to_thread(get_peers_blocking, node, infohash, deadline)
            finally:
                await asyncio.to_thread(node.stop)
            assert peers, "btdht found no peer for the seeded infohash"
            assert all(host == HOST for host, _ in peers)
            assert {port for _, port in peers} & {s.port for s in seeders}

    asyncio.run(body())


def test_router_echoes_transaction_ids_that_hold_a_zero_byte() -> None:
    """btdht alone replies to t = 00 05 with t = 00 00, which libtorrent drops (one query in 256
    lost its bootstrap reply); tools/dht_router puts the asker's id back."""
    router = load_router()
    node = router.LoopbackDHT(bind_ip="127.1.1.2", bind_port=0)
    node.start()
    asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asker.bind((HOST, 0))
    asker.settimeout(LOOKUP_TIMEOUT_S)
    try:
        for t in (b"\x00\x05", b"\x05\x00", b"\x00\x00\x07", b"ab", b"\x00"):
            query = (
                b"d1:ad2:id20:"
                + b"\x11" * 20
                + b"6:target20:"
                + b"\x22" * 20
                + b"e1:q9:find_node1:t"
                + str(len(t)).encode()
                + b":"
                + t
                + b"1:y1:qe"
            )
            asker.sendto(query, ("127.1.1.2", node.bind_port))
            reply, _ = asker.recvfrom(4096)
            span = router.top_level_span(reply, b"t")
            assert span is not None, reply
            assert reply[span[0] : span[1]] == t, reply
            assert router.top_level_span(reply, b"y") is not None
    finally:
        asker.close()
        node.stop()


def test_libtorrent_sessions_meet_through_the_btdht_router(dht: PrivateDHT, tmp_path: Path) -> None:
    """tools/dht_router as the only bootstrap node of a private DHT: peers find each other."""
    balances = make_balances(20_000)
    round_dir = write_round(tmp_path / "seed", 2, balances, b"tx")

    async def body() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROUTER),
            "--host",
            "127.1.1.2",
            "--port",
            "0",
            "--duration-s",
            "120",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 20)
            match = re.search(rb"listening on 127\.1\.1\.2:(\d+)", line)
            assert match, line
            router = ("127.1.1.2", int(match.group(1)))
            from scryp.swarm import Swarm, SwarmConfig

            swarms = [Swarm(SwarmConfig(listen_host=HOST, bootstrap=(router,))) for _ in range(3)]
            try:
                for swarm in swarms:
                    await swarm.wait_listening()
                    await swarm.wait_dht_ready()
                torrent = await swarms[0].seed(round_dir)
                result = await swarms[1].fetch(
                    torrent.infohash,
                    tmp_path / "client",
                    expect_state_root=state_root(balances),
                    timeout_s=60,
                )
                assert (result.round_dir / snapshot.BALANCES).read_bytes() == balances
            finally:
                for swarm in swarms:
                    await swarm.close()
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 40)

    asyncio.run(body())
