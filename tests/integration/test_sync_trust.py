"""What binds the data a client fetches to the certificate it trusts (protocol §10.2–§10.4).

The certificate covers (network, round, state root, v2 infohash); a pointer's v1 infohash and
its list of recent rounds are not covered, so one lying quorum member can point readers at
other torrents. These tests publish such pointers and require that no sync ever reports a
balance the certificate does not vouch for:
- light sync fetches the v1 torrent and must check it is the certified v2 torrent (a forged
  torrent giving the payer ten times its balance is refused);
- incremental sync fetches earlier rounds by infohashes nobody certified and must check the
  replayed result against the certified state root (a forged round in between is caught and
  the client falls back to a full sync, which gets the true balance).
Real libtorrent sessions and the real client on 127.0.0.1; rounds made with test server keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from scryp.client.network import Network
from scryp.client.session import open_client
from scryp.core import snapshot
from scryp.core.balances import decode_balances, encode_balances, lookup
from scryp.core.buckets import state_root
from scryp.core.certificate import Statement, majority
from scryp.core.pointer import encode_record
from scryp.core.replay import replay
from scryp.core.tx import Transaction
from scryp.errors import NotAvailable, RemoteError
from scryp.swarm import RoundTorrent, Swarm, SwarmConfig, build_round_torrent
from tests.support.synthetic import (
    TIMESTAMP_MS,
    SyntheticRound,
    build_rounds,
    certified_record,
    payer_keys,
    server_keys,
    write_round,
)

pytestmark = pytest.mark.slow

NETWORK_ID = bytes(range(32))
KEYS = server_keys(3)
PAYERS = payer_keys(4)
DEADLINE_S = 60.0


def forged_round(root: Path, number: int, balances: bytes, txs: list[Transaction]) -> RoundTorrent:
    round_dir = write_round(root, number, balances, b"".join(tx.raw for tx in txs))
    return build_round_torrent(round_dir)


async def put_pointers(
    swarm: Swarm,
    number: int,
    state: bytes,
    v2: bytes,
    *,
    v1: bytes | list[bytes],
    recent: tuple[bytes, ...],
) -> None:
    """Every server's pointer names round ``number`` with a true majority certificate of
    (state, v2), and whatever v1 infohash (one for all, or one per server) and recent list
    the caller says."""
    statement = Statement(NETWORK_ID, number, state, v2)
    named = v1 if isinstance(v1, list) else [v1] * len(KEYS)
    for key, infohash in zip(KEYS, named, strict=True):
        record = certified_record(statement, infohash, KEYS, range(majority(len(KEYS))), recent)
        await swarm.put_pointer(key, encode_record(record))


async def balance(network: Network, data: Path, mode: str) -> tuple[int | None, str, str]:
    async with open_client(network, data) as client:
        verified = await client.latest()
        synced = await asyncio.wait_for(client.sync(verified, mode, PAYERS[0].public), DEADLINE_S)
        return synced.balance, synced.mode, synced.fell_back


@dataclass(frozen=True)
class Rounds:
    """Rounds 1 and 2 (true), round 3 (true), and two forgeries: round 2 with other
    (validly signed) payments, and round 3 where payer 0 also holds payer 1's balance."""

    r1: SyntheticRound
    r2: SyntheticRound
    true_3: RoundTorrent
    balances_3: bytes
    forged_2: RoundTorrent
    forged_3: RoundTorrent


def make_rounds(server_dir: Path, forged_dir: Path) -> Rounds:
    r1, r2 = build_rounds(server_dir, 2_000, PAYERS, 20, build_round_torrent)
    payer = PAYERS[0].public
    balances_2 = (r2.round_dir / snapshot.BALANCES).read_bytes()
    txs_3 = [Transaction.create(PAYERS[0], PAYERS[1].public, 7, TIMESTAMP_MS + 100)]
    balances_3 = replay(balances_2, txs_3)
    true_3 = forged_round(server_dir, 3, balances_3, txs_3)
    txs_2f = [Transaction.create(PAYERS[1], payer, 1_000, TIMESTAMP_MS + 50)]
    balances_1 = (r1.round_dir / snapshot.BALANCES).read_bytes()
    forged_2 = forged_round(forged_dir, 2, replay(balances_1, txs_2f), txs_2f)
    rich = dict(decode_balances(balances_3))
    rich[payer] += rich.pop(PAYERS[1].public)  # payer 1's whole balance, moved
    rich_file = encode_balances(sorted((a, b) for a, b in rich.items() if b))
    forged_3 = forged_round(forged_dir / "light", 3, rich_file, txs_3)
    return Rounds(r1, r2, true_3, balances_3, forged_2, forged_3)


def test_a_pointer_naming_another_torrent_cannot_change_a_balance(tmp_path: Path) -> None:
    async def scenario() -> None:
        server_dir, forged_dir = tmp_path / "server", tmp_path / "forged"
        made = await asyncio.to_thread(make_rounds, server_dir, forged_dir)
        r1, r2, true_3, balances_3 = made.r1, made.r2, made.true_3, made.balances_3
        forged_2, forged_3 = made.forged_2, made.forged_3
        true_balance = lookup(balances_3, PAYERS[0].public)

        async with (
            Swarm.start(SwarmConfig()) as boot,
            Swarm.start(SwarmConfig(bootstrap=(boot.address,))) as server,
        ):
            boot.add_dht_node(*server.address)
            await server.wait_dht_ready()
            for round_dir, torrent in [
                (r1.round_dir, r1.torrent),
                (r2.round_dir, r2.torrent),
                (server_dir / snapshot.round_dir_name(3), true_3),
                (forged_dir / snapshot.round_dir_name(2), forged_2),
                (forged_dir / "light" / snapshot.round_dir_name(3), forged_3),
            ]:
                await server.seed(round_dir, torrent)
            network = Network(
                quorum=tuple(k.public for k in KEYS),
                bootstrap=(boot.address,),
                torrent_peers=(server.address,),
                network_id=NETWORK_ID,
            )
            # The client holds round 1.
            await put_pointers(
                server, 1, r1.state_root, r1.torrent.infohash_v2, v1=r1.torrent.infohash, recent=()
            )
            await balance(network, tmp_path / "client", "full")
            # Light: the certified statement of round 3, the v1 infohash of the forged torrent.
            v2_3 = true_3.infohash_v2
            await put_pointers(
                server, 3, state_root(balances_3), v2_3, v1=forged_3.infohash, recent=()
            )
            with pytest.raises((RemoteError, NotAvailable)):
                await balance(network, tmp_path / "light", "light")
            # One server per torrent: the first in .keys order lies; the client tries the
            # next server's record and reads the true balance (protocol §10.2).
            each = [forged_3.infohash, true_3.infohash, r1.torrent.infohash]
            await put_pointers(server, 3, state_root(balances_3), v2_3, v1=each, recent=())
            got, mode, _ = await balance(network, tmp_path / "light-2", "light")
            assert (got, mode) == (true_balance, "light")
            # Incremental: the true round 3, but "recent" names the forged round 2.
            recent = (forged_2.infohash, r1.torrent.infohash)
            await put_pointers(
                server, 3, state_root(balances_3), v2_3, v1=true_3.infohash, recent=recent
            )
            got, mode, fell_back = await balance(network, tmp_path / "client", "incremental")
            assert got == true_balance
            assert mode == "full" and "incremental failed" in fell_back, (mode, fell_back)

    asyncio.run(scenario())
