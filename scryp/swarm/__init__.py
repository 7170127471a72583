"""The swarm: every use of libtorrent in Scryp (protocol §8).

The only package under ``scryp/`` that imports libtorrent (``tests/test_tidy.py`` checks it,
and ``tests/unit/test_import_boundary.py`` checks that the client's and the core's pure modules
load without it). Its modules:

- ``settings``: ``SwarmConfig``, the server profile, and the settings pack (§8.8, §8.9);
- ``torrent``: a round directory hashed into its torrent, deterministically (§8.2);
- ``session``: the ``Swarm`` object, its alerts on the asyncio loop, seeding (§8.9);
- ``items``: BEP 44 puts and gets of the servers' pointers (§8.3);
- ``fetch``: fetching a round, progress, reuse of a previous round, piece selection (§8.6);
- ``waits``: deadlines (``scryp.errors.TimedOut``).

Keeping a pointer alive is the server's job (``scryp.server.publisher``); the pure helpers
once here live in ``scryp.hostport`` (loopback), ``scryp.core.infohash`` and ``scryp.files``.
"""

from __future__ import annotations

from .fetch import DEFAULT_TIMEOUT_S, PEER_LOOKUP_INTERVAL_S, FetchFailed, FetchResult, Progress
from .items import DHT_GET_TIMEOUT_S, DHT_PUT_TIMEOUT_S, PutResult
from .session import Swarm, SwarmTotals, TorrentStats
from .settings import (
    PUBLIC_ROUTERS,
    SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S,
    SERVER_SEED_PIECE_QUOTA,
    SERVER_UNCHOKE_SLOTS,
    SwarmConfig,
    settings_for,
)
from .torrent import RoundTorrent, build_round_torrent

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DHT_GET_TIMEOUT_S",
    "DHT_PUT_TIMEOUT_S",
    "PEER_LOOKUP_INTERVAL_S",
    "PUBLIC_ROUTERS",
    "SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S",
    "SERVER_SEED_PIECE_QUOTA",
    "SERVER_UNCHOKE_SLOTS",
    "FetchFailed",
    "FetchResult",
    "Progress",
    "PutResult",
    "RoundTorrent",
    "Swarm",
    "SwarmConfig",
    "SwarmTotals",
    "TorrentStats",
    "build_round_torrent",
    "settings_for",
]
