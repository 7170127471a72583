"""Syncs at a round that is not a checkpoint, when the servers cannot help in time (protocol
§4.4.7). A light sync whose round's proof is gone (servers keep the trees of their newest few sealed
rounds, protocol §4.4.6) at a round that is not a checkpoint: ``sync`` alone falls back to a
full sync, while ``sync_latest`` reads the pointers again and proves the balance at a newer
round with no piece, as the CLI's ``balance`` and the lab's crowd do. A full sync that no
server lists rounds for is "not available now" (retried by ``sync_latest``), not a fetch of the
round's own torrent, which holds no ``balances`` to build on (the lab's 1,000-client crowd,
whose busy servers let listings time out, failed a full sync so)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from scryp.client.network import load_testnet
from scryp.client.session import open_client
from scryp.errors import NotAvailable
from scryp.localnet import LocalNetwork
from scryp.server.view import PROOF_TREES_KEPT

pytestmark = pytest.mark.slow

DEADLINE_S = 60.0


def test_a_light_sync_past_its_proof_reads_a_newer_round_not_the_whole_state(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # Only round 0 is a checkpoint: every other round's torrent has no balances to probe.
        net = LocalNetwork(
            tmp_path / "net",
            servers=1,
            round_interval_s=0.5,
            server_args=["--checkpoint-every", "100000"],
        )
        await net.start()
        try:
            assert net.faucet is not None
            faucet = net.faucet.public
            async with open_client(load_testnet(net.root), tmp_path / "client") as client:
                old = await client.latest(min_round=1)

                async def newer() -> bool:
                    code, record = await net.get(0, "/record")
                    return code == 200 and record["round"] > old.round + PROOF_TREES_KEPT + 1

                await net.wait_until(newer, DEADLINE_S, "the old round's tree gone")
                code, _ = await net.get(0, f"/proof/{faucet.hex()}?round={old.round}")
                assert code == 404  # the premise: the old round can no longer be proved

                retried = await client.sync_latest("light", faucet, verified=old)
                assert retried.mode == "light", retried.fell_back
                assert retried.round.round > old.round
                assert retried.bytes_downloaded == 0 and retried.balance is not None

                fell = await client.sync(old, "light", faucet)  # the documented last resort
                assert fell.mode == "full" and "light failed" in fell.fell_back
                assert fell.balance is not None and fell.bytes_downloaded > 0

                newest = await client.latest(min_round=old.round + 1)
                with socket.socket() as unused:  # an API address where nobody answers
                    unused.bind(("127.0.0.1", 0))
                    dead = f"http://127.0.0.1:{unused.getsockname()[1]}"
                client.network = dataclasses.replace(client.network, apis=(dead,))
                client.pointer_apis = ()
                with pytest.raises(NotAvailable, match="listed no rounds"):
                    await client.sync(newest, "full", faucet)
        finally:
            await net.stop()

    asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S * 2))
