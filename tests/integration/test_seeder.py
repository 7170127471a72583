"""The seeder follows the quorum's pointers, verifies, seeds the last K rounds (§8.7).

The servers here are test code: real libtorrent sessions that seed rounds and put pointers
through scryp.swarm, as the server of a later issue will.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from pathlib import Path

import pytest

from scryp.core import snapshot
from scryp.core.balances import BALANCE, BALANCE_OFFSET, RECORD
from scryp.core.buckets import state_root
from scryp.core.pointer import PointerRecord, encode_record
from scryp.crypto import KeyPair
from scryp.keyfile import write_quorum
from scryp.seeder import Seeder, SeederConfig
from scryp.server.publisher import Publisher
from scryp.swarm import PutResult, RoundTorrent, Swarm

from .conftest import PrivateDHT, make_balances, write_round

pytestmark = pytest.mark.slow

NETWORK = hashlib.sha256(b"seeder test network").digest()
KEYS = [KeyPair.from_seed(hashlib.sha256(b"seeder server %d" % i).digest()) for i in range(3)]
QUORUM = tuple(k.public for k in KEYS)
ACCOUNTS = 50_000


def next_balances(previous: bytes, round_number: int) -> bytes:
    """The previous balances with three accounts' balances changed."""
    changed = bytearray(previous)
    for index in (round_number, 20_000 + round_number, ACCOUNTS - 1 - round_number):
        BALANCE.pack_into(changed, index * RECORD.size + BALANCE_OFFSET, 1_000_000 + round_number)
    return bytes(changed)


class FakeServer:
    """What a server does for the swarm each round: seed the files, point to them."""

    def __init__(self, swarm: Swarm, key: KeyPair, root: Path) -> None:
        self.swarm = swarm
        self.publisher = Publisher(swarm, key, republish_s=3600)
        self.root = root
        self.torrents: dict[int, RoundTorrent] = {}

    async def publish_round(self, number: int, balances: bytes, lie: bool = False) -> None:
        round_dir = write_round(self.root, number, balances, b"tx %d" % number)
        torrent = await self.swarm.seed(round_dir)
        self.torrents[number] = torrent
        state = state_root(balances)
        record = PointerRecord(
            network=NETWORK,
            round=number,
            state_root=bytes(32) if lie else state,
            infohash=torrent.infohash,
            infohash_v2=torrent.infohash_v2,
            recent=tuple(self.torrents[n].infohash for n in sorted(self.torrents)[-2::-1][:4]),
            api="127.0.0.1:6882",
        )
        put = await self.publisher.publish(encode_record(record))
        assert put.num_success > 0


def test_seeder_follows_verifies_and_keeps_the_last_k_rounds(
    dht: PrivateDHT, tmp_path: Path
) -> None:
    async def body() -> None:
        async with dht(8) as swarms:
            servers = [
                FakeServer(swarms[1 + i], KEYS[i], tmp_path / f"server-{i}") for i in range(3)
            ]
            seeder = Seeder(
                swarms[4],
                SeederConfig(quorum=QUORUM, directory=tmp_path / "seeder", rounds_kept=2),
            )
            await seeder.resume()
            assert await seeder.step() is None  # nothing published yet

            balances = {1: make_balances(ACCOUNTS)}
            for number in (2, 3):
                balances[number] = next_balances(balances[number - 1], number)

            await asyncio.gather(*(s.publish_round(1, balances[1]) for s in servers))
            assert await seeder.step() == 1
            held = seeder.held[1].path / snapshot.BALANCES
            assert held.read_bytes() == balances[1]
            assert seeder.last_fetch_bytes >= len(balances[1])

            # Round 2 from servers 0 and 1; server 2 (a minority) lies about round 2's state.
            await asyncio.gather(
                servers[0].publish_round(2, balances[2]),
                servers[1].publish_round(2, balances[2]),
                servers[2].publish_round(2, balances[2], lie=True),
            )
            assert await seeder.step() == 2
            # Reused round 1's pieces: three changed accounts, not 1.8 MB, travelled.
            assert seeder.last_fetch_bytes < 10 * snapshot.PIECE_BYTES

            # Only the liar moves on to "round 3": no majority, not followed.
            await servers[2].publish_round(3, balances[3])
            assert await seeder.step() is None

            await asyncio.gather(*(s.publish_round(3, balances[3]) for s in servers[:2]))
            assert await seeder.step() == 3
            assert sorted(seeder.held) == [2, 3]  # rounds_kept=2: round 1 dropped
            assert not (tmp_path / "seeder" / snapshot.round_dir_name(1)).exists()
            assert await seeder.step() is None  # nothing new

            # The servers stop seeding round 3; a new client still gets it, from the seeder.
            infohash = servers[0].torrents[3].infohash
            for server in servers:
                await server.swarm.remove(infohash)
            result = await swarms[5].fetch(
                infohash,
                tmp_path / "late-client",
                expect_state_root=state_root(balances[3]),
                timeout_s=60,
            )
            assert (result.round_dir / snapshot.BALANCES).read_bytes() == balances[3]
            stats = seeder.swarm.stats(infohash)
            assert stats is not None and stats.payload_bytes_uploaded >= len(balances[3])

            # A restarted seeder seeds what it holds again.
            again = Seeder(swarms[6], seeder.config)
            await again.resume()
            assert sorted(again.held) == [2, 3]
            assert again.held[3].infohash == infohash

    asyncio.run(body())


def test_publisher_republishes_on_its_timer(dht: PrivateDHT) -> None:
    async def body() -> None:
        async with dht(4) as swarms:
            republished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def on_put(_: PutResult) -> None:
                if publisher.puts >= 3 and not republished.done():
                    republished.set_result(None)

            publisher = Publisher(swarms[1], KEYS[0], republish_s=0.2, on_put=on_put)
            first = await publisher.publish(b"pointer")
            task = asyncio.create_task(publisher.run())
            try:
                await asyncio.wait_for(republished, 10)  # two republications by the timer
            finally:
                task.cancel()
            assert publisher.last is not None
            assert publisher.last.seq >= first.seq + 2
            item = await swarms[3].get_item(KEYS[0].public)
            assert item is not None and item.value == b"pointer"

    asyncio.run(body())


def test_seeder_command_once(dht: PrivateDHT, tmp_path: Path) -> None:
    keys_file = tmp_path / ".keys"
    write_quorum(keys_file, list(QUORUM))

    async def body() -> None:
        async with dht(4) as swarms:
            servers = [FakeServer(swarms[1 + i], KEYS[i], tmp_path / f"s{i}") for i in range(3)]
            balances = make_balances(5_000)
            await asyncio.gather(*(s.publish_round(7, balances) for s in servers))
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "scryp.seeder",
                "--keys",
                str(keys_file),
                "--bootstrap",
                "{}:{}".format(*swarms[0].address),
                "--dir",
                str(tmp_path / "seeder"),
                "--once",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
            assert "seeder: round 7" in out.decode()
            held = tmp_path / "seeder" / snapshot.round_dir_name(7) / snapshot.BALANCES
            assert held.read_bytes() == balances

    asyncio.run(body())
    shutil.rmtree(tmp_path / "seeder")
