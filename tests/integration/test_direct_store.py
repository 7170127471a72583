"""Direct DHT stores (protocol §8.3.4) against real libtorrent DHT nodes on loopback: what
scryp.swarm.direct stores on a node is what another libtorrent session reads back, and a
node that never answers (a silent UDP socket) costs one request timeout, not libtorrent's 15 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time

import pytest

from scryp.core.pointer import SALT
from scryp.crypto import KeyPair
from scryp.swarm import Swarm, SwarmConfig
from scryp.swarm.direct import REQUEST_TIMEOUT_S, DirectStore

from .conftest import PrivateDHT

pytestmark = pytest.mark.slow

KEY = KeyPair.from_seed(hashlib.sha256(b"direct store").digest())


def test_direct_put_is_read_back_and_replaces_older(dht: PrivateDHT) -> None:
    async def body() -> None:
        async with dht(3) as swarms:
            store = DirectStore("127.0.0.1")
            nodes = [swarms[0].address, swarms[1].address]
            try:
                assert await store.put(nodes, KEY, b"first", SALT) == 2
                assert await store.put(nodes, KEY, b"second", SALT) == 2
            finally:
                store.close()
            item = await swarms[2].get_item(KEY.public, SALT)
            assert item is not None and item.value == b"second"

    asyncio.run(body())


def test_silent_node_costs_one_timeout(dht: PrivateDHT) -> None:
    async def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))  # receives, never answers (like aria2 to a get)
            async with dht(2) as swarms:
                store = DirectStore("127.0.0.1")
                started = time.monotonic()
                try:
                    nodes = [silent.getsockname(), swarms[0].address]
                    took = await store.put(nodes, KEY, b"v", SALT)
                finally:
                    store.close()
                assert took == 1
                assert time.monotonic() - started < 4 * REQUEST_TIMEOUT_S
                item = await swarms[1].get_item(KEY.public, SALT)
                assert item is not None and item.value == b"v"

    asyncio.run(body())


def test_direct_announce_is_found_by_get_peers(dht: PrivateDHT) -> None:
    infohash = hashlib.sha1(b"a round").digest()

    async def body() -> None:
        async with dht(2) as swarms:
            store = DirectStore("127.0.0.1")
            try:
                assert await store.announce([swarms[0].address], infohash, 6999) == 1
            finally:
                store.close()
            peers = await swarms[1].find_peers(infohash, timeout_s=10.0)
            assert ("127.0.0.1", 6999) in peers

    asyncio.run(body())


def test_the_store_socket_answers_so_no_lookup_waits_for_it(dht: PrivateDHT) -> None:
    """libtorrent puts whoever sent an announce_peer into its routing table: the store's
    socket must answer lookups, or every new session's bootstrap waits out 15 s on it."""

    async def body() -> None:
        async with dht(2) as swarms:
            store = DirectStore("127.0.0.1")
            try:
                infohash = hashlib.sha1(b"another round").digest()
                assert await store.announce([swarms[0].address], infohash, 6999) == 1
                fresh = Swarm(SwarmConfig(bootstrap=(swarms[0].address,)))
                try:
                    await fresh.wait_listening()
                    await fresh.wait_dht_ready(5.0)
                finally:
                    await fresh.close()
            finally:
                store.close()

    asyncio.run(body())
