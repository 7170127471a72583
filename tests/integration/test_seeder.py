"""The seeder follows the quorum's pointers, verifies, seeds the newest checkpoint round and
every round since, and at least the last K rounds (§8.7, §4.4.4).

The servers here are test code: real libtorrent sessions that seed rounds and put pointers
through scryp.swarm, as the server of a later issue will.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from scryp.core import snapshot
from scryp.core.balances import BALANCE, BALANCE_OFFSET, RECORD
from scryp.core.buckets import state_root
from scryp.core.changes import apply_changes, encode_changes
from scryp.core.pointer import PointerRecord, encode_record
from scryp.crypto import KeyPair
from scryp.keyfile import write_quorum
from scryp.localnet import LocalNetwork
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


def changes_between(old: bytes, new: bytes) -> bytes:
    """The ``changes`` file from ``old`` to ``new`` (the same ids, some balances changed)."""
    size = RECORD.size
    return encode_changes(
        RECORD.unpack_from(new, at)
        for at in range(0, len(new), size)
        if old[at : at + size] != new[at : at + size]
    )


class FakeServer:
    """What a server does for the swarm each round: seed the files, point to them."""

    def __init__(self, swarm: Swarm, key: KeyPair, root: Path) -> None:
        self.swarm = swarm
        self.publisher = Publisher(swarm, key, republish_s=3600)
        self.root = root
        self.torrents: dict[int, RoundTorrent] = {}

    async def publish_round(
        self,
        number: int,
        balances: bytes,
        lie: bool = False,
        changes: bytes | None = None,
    ) -> None:
        """A checkpoint round (all of ``balances``) when ``changes`` is None, else a round of
        ``changes`` only; the pointer names ``balances``' state root (or a lie)."""
        if changes is None:
            round_dir = write_round(self.root, number, balances, b"tx %d" % number)
        else:
            round_dir = write_round(self.root, number, None, b"tx %d" % number, changes=changes)
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


class Scene:
    """Three fake servers, a seeder, and the balances of rounds 3..9: checkpoint rounds 3 and
    6 hold balances, the others only their changes (protocol §4.4.4)."""

    def __init__(self, swarms: list[Swarm], tmp_path: Path) -> None:
        self.swarms = swarms
        self.tmp_path = tmp_path
        self.servers = [
            FakeServer(swarms[1 + i], KEYS[i], tmp_path / f"server-{i}") for i in range(3)
        ]
        self.seeder = Seeder(
            swarms[4], SeederConfig(quorum=QUORUM, directory=tmp_path / "seeder", rounds_kept=2)
        )
        self.balances = {3: make_balances(ACCOUNTS)}
        for number in range(4, 10):
            self.balances[number] = next_balances(self.balances[number - 1], number)

    def changes(self, number: int) -> bytes:
        return changes_between(self.balances[number - 1], self.balances[number])

    async def publish(self, number: int, servers: range = range(3), **lies: Any) -> None:
        """Round ``number`` from ``servers``: a checkpoint's balances for 3 and 6, else the
        round's changes (or ``changes=`` given)."""
        if number not in (3, 6):
            lies.setdefault("changes", self.changes(number))
        await asyncio.gather(
            *(self.servers[i].publish_round(number, self.balances[number], **lies) for i in servers)
        )


async def follow_checkpoint_and_changes(scene: Scene) -> None:
    seeder, balances = scene.seeder, scene.balances
    await seeder.resume()
    assert await seeder.step() is None  # nothing published yet

    await scene.publish(3)
    assert await seeder.step() == 3
    assert seeder.held[3].checkpoint
    assert (seeder.held[3].path / snapshot.BALANCES).read_bytes() == balances[3]
    assert seeder.last_fetch_bytes >= len(balances[3])

    # Round 4 from servers 0 and 1; server 2 (a minority) lies about round 4's state.
    await scene.publish(4, range(2))
    await scene.publish(4, range(2, 3), lie=True)
    assert await seeder.step() == 4
    assert not seeder.held[4].checkpoint
    assert not (seeder.held[4].path / snapshot.BALANCES).exists()
    assert seeder.state == balances[4]  # round 3's balances and round 4's changes
    assert seeder.last_fetch_bytes < 4 * snapshot.PIECE_BYTES

    # Only the liar moves on to "round 5": no majority, not followed.
    await scene.publish(5, range(2, 3))
    assert await seeder.step() is None
    await scene.publish(5, range(2))
    assert await seeder.step() == 5
    assert sorted(seeder.held) == [3, 4, 5]  # the checkpoint and every round since

    # Checkpoint round 6 reuses round 3's pieces: nine changed accounts travel.
    await scene.publish(6, range(2))
    assert await seeder.step() == 6
    assert seeder.last_fetch_bytes < 15 * snapshot.PIECE_BYTES
    assert sorted(seeder.held) == [5, 6]  # rounds_kept=2, and the newest checkpoint
    assert not (scene.tmp_path / "seeder" / snapshot.round_dir_name(3)).exists()


async def fill_missed_rounds_and_refuse_wrong_changes(scene: Scene) -> None:
    seeder, balances = scene.seeder, scene.balances
    # Rounds 7 and 8 while the seeder sleeps: round 7 from the pointer's recent list.
    await scene.publish(7, range(2))
    await scene.publish(8, range(2))
    assert await seeder.step() == 8
    assert sorted(seeder.held) == [6, 7, 8]
    assert seeder.state == balances[8]
    assert await seeder.step() is None  # nothing new

    # A majority points to a round 9 whose changes do not give its state: refused.
    refused = seeder.fetches["refused"]
    await scene.publish(9, range(2), changes=scene.changes(9)[: -RECORD.size])
    assert await seeder.step() is None
    assert seeder.fetches["refused"] == refused + 1
    assert sorted(seeder.held) == [6, 7, 8]


async def serve_a_late_client_and_restart(scene: Scene) -> None:
    seeder, servers = scene.seeder, scene.servers
    # The servers stop seeding rounds 6..8; a new client still gets them, from the seeder:
    # the checkpoint, then the changes since.
    late = scene.tmp_path / "late-client"
    for number in (6, 7, 8):
        torrent = servers[0].torrents[number]
        for server in servers:
            if number in server.torrents:
                await server.swarm.remove(server.torrents[number].infohash)
        result = await scene.swarms[5].fetch(
            torrent.infohash, late, expect_infohash_v2=torrent.infohash_v2, timeout_s=60
        )
        assert result.round_dir.name == snapshot.round_dir_name(number)
    state = (late / snapshot.round_dir_name(6) / snapshot.BALANCES).read_bytes()
    for number in (7, 8):
        changes = late / snapshot.round_dir_name(number) / snapshot.CHANGES
        state = apply_changes(state, changes.read_bytes())
    assert state == scene.balances[8]
    stats = seeder.swarm.stats(servers[0].torrents[6].infohash)
    assert stats is not None and stats.payload_bytes_uploaded >= len(scene.balances[6])

    # A restarted seeder seeds what it holds again, and knows the state.
    again = Seeder(scene.swarms[6], seeder.config)
    await again.resume()
    assert sorted(again.held) == [6, 7, 8]
    assert again.held[6].checkpoint and not again.held[8].checkpoint
    assert again.held[8].infohash == servers[0].torrents[8].infohash
    assert again.state == scene.balances[8]


def test_seeder_follows_verifies_and_keeps_the_newest_checkpoint_on(
    dht: PrivateDHT, tmp_path: Path
) -> None:
    async def body() -> None:
        async with dht(8) as swarms:
            scene = Scene(swarms, tmp_path)
            await follow_checkpoint_and_changes(scene)
            await fill_missed_rounds_and_refuse_wrong_changes(scene)
            await serve_a_late_client_and_restart(scene)

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


def test_a_new_seeder_starts_from_the_servers_newest_checkpoint(tmp_path: Path) -> None:
    """Started when the newest certified round is not a checkpoint, a seeder fetches the
    newest checkpoint the servers list (checked against its certificate) and every round
    since, so the first round it seeds is already checked against its state root and a
    client's full sync (protocol §4.4.7) finds every file it needs on the seeder."""

    async def scenario() -> None:
        every = ["--checkpoint-every", "20"]  # the seeder joins ~10 rounds after round 0
        net = LocalNetwork(tmp_path / "net", servers=3, round_interval_s=0.5, server_args=every)
        await net.start()
        try:
            held = tmp_path / "net" / "seeders" / "seeder-0"

            async def certified_past_a_checkpoint() -> bool:
                code, body = await net.get(0, "/record")
                return code == 200 and body["round"] >= 5

            await net.wait_until(certified_past_a_checkpoint, 60.0, "round 5 certified")
            # Started only now: it joins between two checkpoints.
            argv = [*net._seeder_argv(0, metrics=False), "-v"]
            child = net._started("seeder-0", argv)
            net.seeder_children.append(child)

            def checked() -> bool:
                text = (tmp_path / "net" / "logs" / "seeder-0.log").read_text()
                return "missed before it" in text

            await net.wait_until(
                lambda: asyncio.to_thread(checked), 60.0, "the seeder to chain a checkpoint"
            )
            log_text = (tmp_path / "net" / "logs" / "seeder-0.log").read_text()
            assert "seeded unchecked" not in log_text, log_text[-2000:]
            checkpoints = [
                n
                for path in held.iterdir()
                if (n := snapshot.parse_round_dir_name(path.name)) is not None
                and (path / snapshot.BALANCES).is_file()
            ]
            assert checkpoints and all(n % 20 == 0 for n in checkpoints), checkpoints
        finally:
            await net.stop()

    asyncio.run(scenario())
