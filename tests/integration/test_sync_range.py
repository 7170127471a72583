"""A full sync late in a checkpoint interval takes the net ``changes`` of the rounds since the
checkpoint from one server's ``GET /changes`` (protocol §10.4.1), and refuses a forged one.

Rounds as servers write them (``build_checkpoint_rounds``: checkpoint round 10, delta rounds
11..16, payments in every round), seeded by one real libtorrent session on 127.0.0.1, with
pointers certified for round 16; stand-in server APIs (``tests.support.standin``) answer
``/rounds`` truly and ``/changes`` truly, forged (one unit moved from the payer to another
account: canonical, same supply, a wrong state) or garbled (not canonical). The answer is
untrusted: only the certified state root of round 16, checked after applying it to the
checkpoint's balances, binds it. So:
- an honest answer: the true balance with one torrent fetched (the checkpoint's ``balances``)
  and the body's bytes counted;
- a forged or garbled answer only: refused, then each round's ``changes`` torrent, and the
  true balance;
- a forged answer first, an honest one next: the next server's answer, still one torrent.
Planted bug: this test FAILS if the client's state-root check of a range answer is removed
(verified by hand, once in ``_applied`` and once by applying the body unchecked in
``Client._changes_by_range``: the forged answer is taken, payer 0's balance is one unit
short, 3,971,838,081 against 3,971,838,082).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from scryp.client.network import Network
from scryp.client.session import open_client
from scryp.client.sync import Synced
from scryp.core import snapshot
from scryp.core.balances import lookup
from scryp.core.buckets import state_root
from scryp.core.certificate import majority
from scryp.core.changes import apply_rounds, decode_changes, encode_changes
from scryp.swarm import Swarm, SwarmConfig, build_round_torrent
from tests.support.fetches import count_fetches
from tests.support.standin import StandIn
from tests.support.synthetic import (
    SyntheticRound,
    build_checkpoint_rounds,
    payer_keys,
    publish,
    server_keys,
)

pytestmark = pytest.mark.slow

NETWORK_ID = bytes(range(32))
KEYS = server_keys(3)
PAYERS = payer_keys(4)
EVERY, DELTAS = 10, 6
DEADLINE_S = 60.0


def forged(body: bytes) -> bytes:
    """The true net changes with one unit moved from payer 0 to payer 1: still canonical and
    the same supply, so only the state root tells it from the truth."""
    records = dict(decode_changes(body))
    records[PAYERS[0].public] -= 1
    records[PAYERS[1].public] += 1
    return encode_changes(records.items())


def garbled(body: bytes) -> bytes:
    return body + b"\x00"  # a partial record: not canonical (protocol §4.4.4)


def make_rounds(root: Path) -> tuple[list[SyntheticRound], int]:
    """The rounds, and payer 0's true balance at the last one (checked against its root)."""
    rounds = build_checkpoint_rounds(
        root,
        2_000,
        PAYERS,
        20,
        build_round_torrent,
        checkpoint_every=EVERY,
        delta_rounds=DELTAS,
        new_account_every=5,
    )
    balances = (rounds[0].round_dir / snapshot.BALANCES).read_bytes()
    changes = [(r.round_dir / snapshot.CHANGES).read_bytes() for r in rounds[1:]]
    assert all(changes), "every delta round changes something"
    last = apply_rounds(balances, changes)
    assert state_root(last) == rounds[-1].state_root
    return rounds, lookup(last, PAYERS[0].public)


@asynccontextmanager
async def network(rounds: list[SyntheticRound]) -> AsyncIterator[tuple[Swarm, Network]]:
    """A private DHT's boot node and a session seeding every round, pointers at the last."""
    async with (
        Swarm.start(SwarmConfig()) as boot,
        Swarm.start(SwarmConfig(bootstrap=(boot.address,))) as server,
    ):
        boot.add_dht_node(*server.address)
        await server.wait_dht_ready()
        for chosen in rounds:
            await server.seed(chosen.round_dir, chosen.torrent)
        await publish(server, NETWORK_ID, rounds, KEYS, upto=len(rounds))
        yield (
            server,
            Network(
                quorum=tuple(k.public for k in KEYS),
                bootstrap=(boot.address,),
                torrent_peers=(server.address,),
                network_id=NETWORK_ID,
            ),
        )


async def full_sync(net: Network, apis: tuple[str, ...], data: Path) -> tuple[Synced, list[Any]]:
    """A fresh client's full sync of the certified round through ``apis``: (the result, the
    files of every torrent it fetched)."""
    async with open_client(dataclasses.replace(net, apis=apis), data) as client:
        verified = await client.latest()
        assert verified.round == EVERY + DELTAS
        fetched = count_fetches(client)
        synced = await asyncio.wait_for(client.sync(verified, "full", PAYERS[0].public), DEADLINE_S)
    return synced, fetched


def test_a_range_answer_is_used_and_a_forged_one_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        rounds, true_balance = await asyncio.to_thread(make_rounds, tmp_path / "server")
        checkpoint_bytes = (rounds[0].round_dir / snapshot.BALANCES).stat().st_size

        def stand_in(tamper: Callable[[bytes], bytes] | None) -> StandIn:
            signers = majority(len(KEYS))
            return StandIn(rounds, KEYS, EVERY, signers, network=NETWORK_ID, tamper=tamper)

        honest, liar, broken = stand_in(None), stand_in(forged), stand_in(garbled)
        async with AsyncExitStack() as stack:
            _, net = await stack.enter_async_context(network(rounds))
            urls = [await stack.enter_async_context(s.serving()) for s in (honest, liar, broken)]
            honest_url, liar_url, broken_url = urls
            only_balances = [[snapshot.BALANCES]]
            every_round = only_balances + [[snapshot.CHANGES]] * DELTAS

            synced, fetched = await full_sync(net, (honest_url,), tmp_path / "honest")
            assert (synced.mode, synced.balance) == ("full", true_balance)
            assert fetched == only_balances, fetched
            assert [s[:2] for s in honest.served] == [(EVERY, EVERY + DELTAS)]
            body_bytes = honest.served[0][2]
            assert checkpoint_bytes <= synced.bytes_downloaded - body_bytes  # pieces, whole
            assert synced.bytes_downloaded - body_bytes < checkpoint_bytes + snapshot.PIECE_BYTES

            for url, name in ((liar_url, "liar"), (broken_url, "broken")):
                synced, fetched = await full_sync(net, (url,), tmp_path / name)
                assert (synced.mode, synced.balance) == ("full", true_balance), name
                assert fetched == every_round, (name, fetched)
            assert len(liar.served) == len(broken.served) == 1

            synced, fetched = await full_sync(net, (liar_url, honest_url), tmp_path / "both")
            assert synced.balance == true_balance
            assert fetched == only_balances, fetched
            assert len(liar.served) == 2 and len(honest.served) == 2

    asyncio.run(scenario())
