"""A server's Prometheus metrics (``GET /metrics`` on its API port, docs/api.md).

Owns: ``ServerMetrics``, one per ``ServerNode`` with its own ``CollectorRegistry`` (no global
state: servers in one process keep separate figures). It is told of three things by the
node, each in one line: payments queued by this server's API (``submitted``), entries applied
(``applied``) and the driver's reports (``report``: seals, certificates). Everything else (Raft
role and term, rounds, peer links, the swarm, DHT puts) is read from the node when scraped.

Timings, from ``time.monotonic`` on this server:
- a round's **seal**: from the entry sealing it applied to its files written durably here;
- a round's **certify**: from sealed here to certified here (torrent, seeding, signatures);
- the **round interval**: between two seals here (BlockChat's "block time");
- a payment's **commit** and **certify** latency: from queued by this server's API to applied
  here, and to its round certified here. Only payments submitted to this server are timed
  (the others' start is elsewhere); at most ``PENDING_TXS_MAX`` are tracked at once, the
  oldest forgotten first (a payment that never commits must not grow memory).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from scryp.core.ledger import Reason
from scryp.core.raft import Role
from scryp.core.raft.apply import EntryApplied
from scryp.core.rounds import Certified
from scryp.metrics import LATENCY_BUCKETS_S, swarm_families
from scryp.server.driver import Report, Sealed

if TYPE_CHECKING:
    from scryp.server.node import ServerNode

PENDING_TXS_MAX = 100_000
ROUNDS_TRACKED_MAX = 1_000


class ServerMetrics:
    def __init__(self, node: ServerNode) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.seal_s = Histogram(
            "scryp_round_seal_seconds",
            "From the entry sealing a round applied to the round's files written durably.",
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.certify_s = Histogram(
            "scryp_round_certify_seconds",
            "From a round sealed here to its majority certificate here.",
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.interval_s = Histogram(
            "scryp_round_interval_seconds",
            "Between two rounds sealed here.",
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.commit_s = Histogram(
            "scryp_payment_commit_seconds",
            "From a payment queued by this server's API to its entry applied here.",
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.certified_s = Histogram(
            "scryp_payment_certify_seconds",
            "From a payment queued by this server's API to its round certified here.",
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.payments = Counter(
            "scryp_payments_applied",
            "Payments applied here, by outcome: accepted, or why the ledger rejected them.",
            ["outcome"],
            registry=r,
        )
        self.refused = Counter(
            "scryp_payments_refused",
            "Payments the API refused before queueing them (signature, window, replay).",
            ["reason"],
            registry=r,
        )
        r.register(_NodeCollector(node))
        self._queued: OrderedDict[bytes, float] = OrderedDict()  # tx id -> when queued
        self._committed: list[float] = []  # when queued, of those applied in the open round
        self._sealing: OrderedDict[int, float] = OrderedDict()  # round -> seal entry applied
        self._awaiting: OrderedDict[int, tuple[float, list[float]]] = OrderedDict()
        self._last_seal: float | None = None

    def submitted(self, txs: Iterable[bytes]) -> None:
        now = time.monotonic()
        for raw in txs:
            self._queued[hashlib.sha256(raw).digest()] = now
        while len(self._queued) > PENDING_TXS_MAX:
            self._queued.popitem(last=False)

    def refused_payment(self, reason: Reason) -> None:
        self.refused.labels(reason.name.lower()).inc()

    def applied(self, applied: EntryApplied) -> None:
        now = time.monotonic()
        for tx, outcome in zip(applied.txs, applied.outcomes, strict=True):
            reason = outcome.reason
            self.payments.labels(reason.name.lower() if reason is not None else "accepted").inc()
            queued = self._queued.pop(tx.tx_id, None)
            if queued is not None:
                self.commit_s.observe(now - queued)
                self._committed.append(queued)
        if applied.sealed_round is not None:
            self._sealing[applied.sealed_round] = now
            # A rejected payment is decided in this round too: its certificate settles it.
            self._awaiting[applied.sealed_round] = (now, self._committed)
            self._committed = []
            _bound(self._sealing)
            _bound(self._awaiting)

    def report(self, report: Report) -> None:
        now = time.monotonic()
        match report:
            case Sealed(meta=meta):
                if meta.round in self._awaiting:  # its certify time starts now
                    self._awaiting[meta.round] = (now, self._awaiting[meta.round][1])
                started = self._sealing.pop(meta.round, None)
                if started is not None:
                    self.seal_s.observe(now - started)
                if self._last_seal is not None:
                    self.interval_s.observe(now - self._last_seal)
                self._last_seal = now
            case Certified(round=certified):
                # Certifying a round settles it and every earlier one still waiting here.
                while self._awaiting and next(iter(self._awaiting)) <= certified:
                    number, (sealed, queued) = self._awaiting.popitem(last=False)
                    if number == certified:
                        self.certify_s.observe(now - sealed)
                    for started in queued:
                        self.certified_s.observe(now - started)
            case _:
                pass


def _bound(rounds: OrderedDict[int, Any]) -> None:
    while len(rounds) > ROUNDS_TRACKED_MAX:
        rounds.popitem(last=False)


class _NodeCollector:
    """What the node already knows, read when scraped."""

    def __init__(self, node: ServerNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        driver = node.driver
        if driver is not None:
            raft = driver.raft
            role = GaugeMetricFamily(
                "scryp_raft_role", "1 for this server's Raft role now.", labels=["role"]
            )
            for each in Role:
                role.add_metric([each.value], 1 if raft.role is each else 0)
            yield role
            yield GaugeMetricFamily("scryp_raft_term", "Raft's current term.", raft.term)
            yield GaugeMetricFamily(
                "scryp_round_sealed", "The newest round sealed here.", driver.newest_sealed.round
            )
            info = driver.rounds.certified_info()
            yield GaugeMetricFamily(
                "scryp_round_certified",
                "The newest round with a majority certificate here (-1: none yet).",
                info.round if info is not None else -1,
            )
            yield GaugeMetricFamily(
                "scryp_proposals_queued", "Payments waiting for the leader.", len(driver.proposals)
            )
        links = GaugeMetricFamily(
            "scryp_peer_links", "Authenticated links to other servers.", labels=["direction"]
        )
        links.add_metric(["out"], len(node.hub.connected_out))
        links.add_metric(["in"], len(node.hub.connected_in))
        yield links
        yield GaugeMetricFamily("scryp_quorum_servers", "Servers in .keys.", len(node.quorum))
        publisher = node.publisher
        if publisher is not None:
            yield CounterMetricFamily(
                "scryp_dht_puts", "BEP 44 pointer puts that returned.", value=publisher.puts
            )
            yield CounterMetricFamily(
                "scryp_dht_put_failures",
                "Pointer puts that timed out or reached no DHT node.",
                value=publisher.put_failures,
            )
            yield CounterMetricFamily(
                "scryp_dht_direct_puts",
                "Pointer records stored at once on known DHT nodes (protocol §8.3.4).",
                value=publisher.direct_puts,
            )
        yield from swarm_families(node.swarm)
