"""Prometheus metrics of servers and seeders, scraped over HTTP (issue 13).

Method: three real in-process ``ServerNode``s (real libtorrent sessions, peer links, HTTP
APIs on 127.0.0.1, a private DHT) and a real ``Seeder`` following them; each ``/metrics`` is
fetched over HTTP and parsed with prometheus_client's own text parser. Payments are made and
rounds certify between two scrapes, and the figures must move by what happened: the payments
accepted and refused, the latencies of the payments this server queued, the rounds, the swarm
upload a seeder's fetch caused, the DHT puts. Then a real network of processes with
``--log-format json``: every log line is one JSON object, and its seeder serves metrics too.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scryp.core.tx import Transaction, encode_many
from scryp.localnet import LocalNetwork
from scryp.metrics import serve_metrics
from scryp.seeder import Seeder, SeederConfig
from scryp.server.node import ServerNode
from scryp.swarm import Swarm, SwarmConfig

from .inprocess import DEADLINE_S, FAUCET, KEYS, cluster, wait_for

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
PAYMENTS = 5


async def scrape(url: str) -> Samples:
    """Every sample of a /metrics page, by name and labels."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def url_of(node: ServerNode) -> str:
    return f"http://127.0.0.1:{node.config.server_port}/metrics"


async def pay_with_one_refused(via: ServerNode) -> list[Transaction]:
    """PAYMENTS payments from the faucet, and one too old, posted to ``via``'s API."""
    now_ms = int(time.time() * 1000)
    txs = [
        Transaction.create(FAUCET, KEYS[i % 3].public, 10 + i, now_ms + i) for i in range(PAYMENTS)
    ]
    stale = Transaction.create(FAUCET, KEYS[0].public, 1, now_ms - 60_000)
    api = f"http://127.0.0.1:{via.config.server_port}/transact"
    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": "application/octet-stream"}
        async with session.post(api, data=encode_many([*txs, stale]), headers=headers) as r:
            assert r.status == 202, await r.text()
    return txs


async def follow_with_a_seeder(nodes: list[ServerNode], directory: Path) -> tuple[Samples, int]:
    """A real seeder's metrics, scraped over HTTP once it fetched a round; bytes it fetched."""
    swarm = Swarm(SwarmConfig(bootstrap=nodes[0].config.bootstrap))
    try:
        await swarm.wait_listening()
        await swarm.wait_dht_ready()
        quorum = tuple(key.public for key in KEYS)
        seeder = Seeder(swarm, SeederConfig(quorum, directory, poll_s=1))
        deadline = time.monotonic() + DEADLINE_S
        while await seeder.step() is None:
            assert time.monotonic() < deadline, "the seeder fetched nothing"
            await asyncio.sleep(0.2)  # the next poll, as the seeder's loop would
        async with serve_metrics(seeder.registry, 0) as port:
            return await scrape(f"http://127.0.0.1:{port}/metrics"), seeder.last_fetch_bytes
    finally:
        await swarm.close()


def test_metrics_move_with_payments_rounds_and_fetches(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, {}, running=3) as (nodes, runs):

            def certified() -> int:
                return min(n.view.status()["certified_round"] or 0 for n in nodes)

            await wait_for(lambda: certified() >= 2, "round 2 certified everywhere", runs)
            before = [await scrape(url_of(node)) for node in nodes]
            roles = [value(s, "scryp_raft_role", role="leader") for s in before]
            assert sorted(roles) == [0, 0, 1]
            assert len({value(s, "scryp_raft_term") for s in before}) == 1
            assert all(value(s, "scryp_peer_links", direction="out") == 2 for s in before)
            assert all(value(s, "scryp_round_certified") >= 2 for s in before)
            assert all(value(s, "scryp_dht_puts_total") >= 1 for s in before)

            # Payments through server 1 (a follower forwards them), and one it refuses.
            via = nodes[1]
            txs = await pay_with_one_refused(via)
            last = txs[-1].tx_id

            def settled() -> bool:
                return all((found := n.view.tx(last)) and found.certified for n in nodes)

            await wait_for(settled, "the payments certified everywhere", runs)

            # A seeder follows the pointers and fetches a round from the servers.
            seeded, fetched_bytes = await follow_with_a_seeder(nodes, tmp_path / "seeder")
            assert value(seeded, "scryp_seeder_round_held") >= 2
            # A new seeder starts from the newest checkpoint (round 0 here) and fetches every
            # round since (protocol §8.7): each one fetch, each one torrent.
            held = value(seeded, "scryp_seeder_rounds_held")
            assert held == value(seeded, "scryp_seeder_round_held") + 1
            assert value(seeded, "scryp_seeder_fetches_total", result="ok") == held
            assert value(seeded, "scryp_swarm_torrents") == held

            after = [await scrape(url_of(node)) for node in nodes]
            for old, new in zip(before, after, strict=True):
                accepted = value(new, "scryp_payments_applied_total", outcome="accepted")
                assert accepted - value(
                    old, "scryp_payments_applied_total", outcome="accepted"
                ) == (PAYMENTS)
                assert value(new, "scryp_round_certified") > value(old, "scryp_round_certified")
                assert value(new, "scryp_round_seal_seconds_count") > value(
                    old, "scryp_round_seal_seconds_count"
                )
                assert value(new, "scryp_round_certify_seconds_count") > 0
                assert value(new, "scryp_round_interval_seconds_count") > 0
            # Only the server the payments were queued at times them.
            mine, others = after[1], [after[0], after[2]]
            assert value(mine, "scryp_payment_commit_seconds_count") == PAYMENTS
            assert value(mine, "scryp_payment_certify_seconds_count") == PAYMENTS
            assert 0 < value(mine, "scryp_payment_certify_seconds_sum") < PAYMENTS * DEADLINE_S
            assert (
                value(mine, "scryp_payments_refused_total", reason="timestamp_out_of_window") == 1
            )
            assert all(value(s, "scryp_payment_certify_seconds_count") == 0 for s in others)
            # The seeder's fetch was served by the servers' swarms.
            uploaded = sum(
                value(new, "scryp_swarm_upload_bytes_total")
                - value(old, "scryp_swarm_upload_bytes_total")
                for old, new in zip(before, after, strict=True)
            )
            assert uploaded >= fetched_bytes > 0

    asyncio.run(scenario())


def test_a_json_logging_network_serves_metrics(tmp_path: Path) -> None:
    async def scenario() -> None:
        net = LocalNetwork(tmp_path, servers=3, seeders=1, round_interval_s=0.5, log_format="json")
        try:
            await net.start()

            async def seeded() -> bool:
                port = net.seeder_metrics_ports[0]
                try:
                    samples = await scrape(f"http://127.0.0.1:{port}/metrics")
                except aiohttp.ClientError:
                    return False  # not listening yet
                return value(samples, "scryp_seeder_round_held") >= 1

            await net.wait_until(seeded, DEADLINE_S, "the seeder to hold a round")
            samples = await scrape(net.server_processes[0].api + "/metrics")
            assert value(samples, "scryp_round_certified") >= 1
        finally:
            await net.stop()
        described = json.loads((tmp_path / "testnet.json").read_text())
        port = net.seeder_metrics_ports[0]
        assert described["seeders"][0]["metrics"] == f"http://127.0.0.1:{port}/metrics"
        lines = (tmp_path / "logs" / "server-0.log").read_text().splitlines()
        assert len(lines) > 3
        records = [json.loads(line) for line in lines]  # every line one JSON object
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        assert any(r["message"].startswith("sealed round") for r in records)
        seeder_lines = (tmp_path / "logs" / "seeder-0.log").read_text().splitlines()
        messages = [json.loads(line)["message"] for line in seeder_lines]
        assert f"seeder: metrics on http://127.0.0.1:{port}/metrics" in messages

    asyncio.run(scenario())
