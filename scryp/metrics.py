"""Prometheus metrics shared by the server and the seeder: the swarm's figures and serving.

Owns: ``swarm_families`` (a libtorrent session's upload, peers and torrents as metric families,
read when scraped) and ``serve_metrics``, the seeder's own small ``/metrics`` listener. The
server serves its metrics on its API port instead (``scryp.server.api``).

Invariants: every process keeps its metrics in a ``CollectorRegistry`` owned by the object
that runs it (a server, a seeder), never in prometheus_client's global registry, so several
servers in one process (the tests) never mix their figures. Values that other objects already
keep (Raft's term, the newest round, the swarm's upload) are read at scrape time by a
collector, not copied on every change. The standalone listener binds loopback only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from scryp.errors import NotAvailable
from scryp.hostport import LOOPBACK
from scryp.swarm import Swarm

if TYPE_CHECKING:
    from scryp.seeder import Seeder

METRICS_PATH = "/metrics"
# Seconds, for latencies from a payment's submission to its round's certificate: rounds are
# 0.3 s to 10 s long, and a catch-up can take a minute.
# 0.1 s apart around a round of 1 s, so quantiles read from them are meaningful.
LATENCY_BUCKETS_S = (
    *(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2),
    *(1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0),
)


def swarm_families(swarm: Swarm | None) -> Iterator[Metric]:
    """The session's upload total, peer connections and torrents (nothing before it runs)."""
    if swarm is None:
        return
    try:
        totals = swarm.totals()
    except NotAvailable:  # closing
        return
    yield CounterMetricFamily(
        "scryp_swarm_upload_bytes",
        "Payload bytes this process uploaded to BitTorrent peers since it started.",
        value=totals.payload_bytes_uploaded,
    )
    yield GaugeMetricFamily(
        "scryp_swarm_peer_connections",
        "BitTorrent peer connections, summed over the torrents held.",
        value=totals.num_peers,
    )
    yield GaugeMetricFamily(
        "scryp_swarm_torrents", "Round torrents this process seeds or fetches.", totals.torrents
    )


@asynccontextmanager
async def serve_metrics(registry: CollectorRegistry, port: int) -> AsyncIterator[int]:
    """Serve ``registry`` on http://127.0.0.1:PORT/metrics while inside; yields the port
    bound (``port`` 0: any free one)."""
    app = web.Application()
    app.router.add_get(METRICS_PATH, make_aiohttp_handler(registry))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, port).start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


class SeederCollector:
    """An always-on seeder's figures (``scryp.seeder``), read when scraped."""

    def __init__(self, seeder: Seeder) -> None:
        self._seeder = seeder

    def collect(self) -> Iterator[Metric]:
        seeder = self._seeder
        yield GaugeMetricFamily(
            "scryp_seeder_round_held",
            "The newest round this seeder fetched, verified and seeds (-1: none).",
            max(seeder.held, default=-1),
        )
        yield GaugeMetricFamily(
            "scryp_seeder_rounds_held", "Rounds this seeder seeds.", len(seeder.held)
        )
        fetches = CounterMetricFamily(
            "scryp_seeder_fetches",
            "Round fetches by result: ok, refused (failed verification), not_available.",
            labels=["result"],
        )
        for result in ("ok", "refused", "not_available"):
            fetches.add_metric([result], seeder.fetches[result])
        yield fetches
        refused = CounterMetricFamily(
            "scryp_seeder_pointers_refused",
            "Server pointers read from the DHT that failed verification, by error.",
            labels=["error"],
        )
        for error, count in sorted(seeder.refused.items()):
            refused.add_metric([error], count)
        yield refused
        yield from swarm_families(seeder.swarm)
