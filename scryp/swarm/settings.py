"""How a session talks to the network: ``SwarmConfig``, the server profile, and the complete
libtorrent settings pack a session is constructed with (protocol §8.6, §8.8, §8.9).

Owns: every libtorrent setting Scryp changes, and why. Invariant: a session's settings go in
at construction and come only from ``settings_for``; every address in them is one the
network mode allows (``scryp.netmode``; in loopback mode, the default, 127.0.0.0/8 only; checked
when the config is made), and libtorrent's default DHT routers, which are public hosts, are used
only in public mode with no bootstrap node given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from scryp.errors import LocalError
from scryp.hostport import LOOPBACK
from scryp.netmode import Mode, check_address, host_allowed, listen_problem, unspecified

# The Mainline routers libtorrent would use by default; only ever used in public mode.
PUBLIC_ROUTERS = "router.bittorrent.com:6881,dht.transmissionbt.com:6881,router.utorrent.com:6881"
SERVER_UNCHOKE_SLOTS = 1
# With a quota of 20 pieces (320 KiB) the lone unchoked peer is choked and re-unchoked over
# and over, which stalls a single client; 1000 pieces (16 MiB) per turn does not.
SERVER_SEED_PIECE_QUOTA = 1000
# With one unchoke slot libtorrent's regular unchoke round (every unchoke_interval) keeps that
# slot for an optimistic unchoke: it chokes the peer holding it and unchokes nobody, so the
# seed then serves only through optimistic unchokes (every optimistic_unchoke_interval, 30 s
# by default), which stalled a fetch for ~30 s whenever a round fell inside it. Rotating the
# optimistic unchoke every second hands the slot on at once, to the peer that has waited
# longest (a newcomer such as a light client first) (docs/BENCHMARKS.md, "Swarm").
SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S = 1
# A client (read-only session) keeps at most this many peers per torrent. Each connection costs
# a client CPU for every piece (a HAVE in, a HAVE out, interest updates): in one process, 20
# clients trading a 36 MB round spent 10-13 CPU s with libtorrent's 200 and 6.8-7.7 s with 8,
# in the same time (protocol §8.6.1; docs/BENCHMARKS.md, crowd).
CLIENT_TORRENT_CONNECTIONS_MAX = 8
# Disk threads of a client session (libtorrent's default: 10): a client fetches one round at a
# time, and the lab's agents hold dozens of sessions in one process.
CLIENT_DISK_THREADS = 1


@dataclass(frozen=True, slots=True)
class SwarmConfig:
    """How a session talks to the network. The defaults are loopback-only."""

    listen_host: str = LOOPBACK
    listen_port: int = 0  # 0: the OS picks; read it back from Swarm.port
    bootstrap: tuple[tuple[str, int], ...] = ()
    network: Mode = Mode.LOOPBACK
    # The DHT node cache (protocol §8.8): loaded at construction, saved by save_dht_state.
    dht_state_file: Path | None = None
    upload_rate_limit_bytes_per_s: int = 0  # 0: unlimited
    # libtorrent puts loopback peers in its "local" peer class, which rate limits do not
    # touch; benchmarks map every address to the global class to cap loopback.
    rate_limit_loopback: bool = False
    # Peers uploaded to at once, and pieces a peer gets before the seed moves on to the next
    # (round-robin seed choking); libtorrent's defaults are 8 and 20. A server whose upload is
    # the scarce resource does best with SERVER_UNCHOKE_SLOTS and SERVER_SEED_PIECE_QUOTA:
    # it feeds one peer at a time with unique pieces and the peers spread the copies
    # (protocol §8.9; benchmarks/bench_swarm.py: 20 clients, server capped at 10 MB/s, 1.0x
    # the snapshot uploaded instead of 2.5x, and sooner).
    unchoke_slots: int = 8
    seed_piece_quota: int = 20
    # Seconds between optimistic unchokes (libtorrent's default: 30); a server with one
    # unchoke slot needs SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S (see there).
    optimistic_unchoke_interval_s: int = 30
    alert_queue_size: int = 100_000
    # BEP 43 read-only DHT node: it queries but others keep it out of their routing tables,
    # for short-lived clients, whose departed nodes would otherwise stall others' lookups.
    # Such a session also never announces the torrents it fetches (protocol §8.6): libtorrent
    # puts any node whose announce_peer carries a valid token into its routing table.
    dht_read_only: bool = False
    # A BEP 44 get answers with the newest item once no newer one has come for this long:
    # the traversal itself ends only when every queried node has answered or timed out, and
    # one departed node costs it libtorrent's full 15 s request timeout. 0.5 s: with the
    # servers' direct stores (protocol §8.3.4) the nodes first asked already hold the newest
    # pointer; the lab's strangers scenario read p99 1.01 s with 1 s.
    dht_get_settle_s: float = 0.5

    def __post_init__(self) -> None:
        problem = listen_problem(self.network, self.listen_host)
        if problem:
            raise LocalError(f"{problem} (protocol §8.8)")
        for host, port in self.bootstrap:
            check_address(self.network, host, port, "bootstrap node")

    @property
    def production(self) -> bool:
        """libtorrent's own DHT defences (private and public mode), not the loopback ones."""
        return self.network is not Mode.LOOPBACK

    def allows(self, host: str) -> bool:
        """Whether this session may dial ``host`` (protocol §8.8)."""
        return host_allowed(self.network, host)


def settings_for(config: SwarmConfig) -> dict[str, Any]:
    """The complete settings pack a session is constructed with (never defaults first)."""
    return {**_network_settings(config), **_transfer_settings(config)}


def _network_settings(config: SwarmConfig) -> dict[str, Any]:
    """Where the session listens and which DHT it joins (protocol §8.8)."""
    nodes = ",".join(_node(host, port) for host, port in config.bootstrap)
    if config.network is Mode.PUBLIC and not nodes:
        nodes = PUBLIC_ROUTERS
    production = config.production
    # Outgoing connections leave from the bound address, unless bound to "any" (then the
    # routing table picks) or public (libtorrent's default).
    bound = not unspecified(config.listen_host) and config.network is not Mode.PUBLIC
    return {
        "listen_interfaces": f"{_node(config.listen_host, config.listen_port)}",
        "outgoing_interfaces": config.listen_host if bound else "",
        "enable_dht": True,
        "dht_read_only": config.dht_read_only,
        "dht_bootstrap_nodes": nodes,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        # Many nodes share one address on loopback (protocol §8.8); private and public mode
        # keep libtorrent's defences (its production settings, its defaults).
        "dht_restrict_routing_ips": production,
        "dht_restrict_search_ips": production,
        "dht_enforce_node_id": production,
        "dht_prefer_verified_node_ids": production,
        "allow_multiple_connections_per_ip": not production,
        # Every node of a loopback DHT shares 127.0.0.1: the per-IP flood guard (5 packets/s,
        # then a 5-minute block) would cut nodes off from each other mid-lookup. In a private
        # DHT of a few nodes each server sends more than that to the same few nodes (a put
        # and the others' pointers every round): the lab showed every server's put timing
        # out ("no DHT put within 15.0 s" every 15 s) and fresh clients finding 0 pointers
        # with the guard on, and none of it with the guard off (issue 9, scryp.lab small).
        "dht_block_ratelimit": 5 if config.network is Mode.PUBLIC else 1_000_000,
        # A loopback DHT's nodes are few, so each is among the closest to every target, and a
        # lookup waits out every dead one in its table; loopback loses no packets, so three
        # failed requests in a row (not 20) mean the node is gone.
        "dht_max_fail_count": 20 if production else 3,
        # libtorrent drops the requests whose answers pass this cap (8,000 B/s by default),
        # a node's share of a DHT of millions. In a private DHT our few nodes ARE the DHT:
        # every client's pointer read is answered by them, and the lab showed 6 of 10 fresh
        # clients started together finding 0 pointers for 10 s under the default (issue 9,
        # deploy). Still bounded, so a node cannot be made an amplifier at any rate.
        "dht_upload_rate_limit": 8_000 if config.network is Mode.PUBLIC else 10_000_000,
    }


def _node(host: str, port: int) -> str:
    """``host:port`` as libtorrent's address lists spell it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _transfer_settings(config: SwarmConfig) -> dict[str, Any]:
    """How pieces travel, how the seed chokes, and which alerts come (protocol §8.6, §8.9)."""
    return {
        # Plain TCP: uTP's delay-based congestion control crawls on loopback.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # A fetch starts in upload mode (a seed then drops us as redundant) and may recheck
        # files (which drops every peer); libtorrent then waits min_reconnect_time (60 s by
        # default) before dialling the same seed again. In our own networks (loopback and
        # private mode: these are not DHT settings), 1 s.
        "min_reconnect_time": 60 if config.network is Mode.PUBLIC else 1,
        # A client that holds all it wants so far is "upload only", and so is a seed: libtorrent
        # closes such connections as redundant, and the client's next want (the pieces after
        # the metadata, a light sync's next probe) then waited min_reconnect_time. Clients
        # (read-only sessions) keep them; servers and seeders keep libtorrent's default, which
        # measured 0.7 s faster for a capped full fetch (docs/BENCHMARKS.md).
        "close_redundant_connections": not config.dht_read_only,
        # Peers given by connect_peer are dialled on the next tick; 500 ms by default.
        "tick_interval": 500 if config.network is Mode.PUBLIC else 100,
        "upload_rate_limit": config.upload_rate_limit_bytes_per_s,
        "unchoke_slots_limit": config.unchoke_slots,
        "seeding_piece_quota": config.seed_piece_quota,
        "optimistic_unchoke_interval": config.optimistic_unchoke_interval_s,
        # Announce new torrents to the DHT at once rather than on the 15-minute cycle.
        "dht_announce_interval": 60,
        # Every server's tracker hears every client (protocol §8.6.1), not only the first.
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "aio_threads": CLIENT_DISK_THREADS if config.dht_read_only else 10,
        # A client tells a peer it has a piece only if that peer lacks it: the HAVEs to
        # peers that already hold the piece cost both sides a message per piece for nothing.
        "send_redundant_have": not config.dht_read_only,
        # Rounds are seeded side by side; do not let the queue stop old ones.
        "active_seeds": -1,
        "active_downloads": -1,
        "active_limit": -1,
        "alert_queue_size": config.alert_queue_size,
        "alert_mask": (
            lt.alert_category.error
            | lt.alert_category.status
            | lt.alert_category.storage
            | lt.alert_category.dht
            | lt.alert_category.dht_operation
            | lt.alert_category.piece_progress
        ),
    }
