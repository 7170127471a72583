"""The servers' BitTorrent tracker (BEP 3, compact peers BEP 23): who is fetching a round
now, so that clients fetching the same round find each other (protocol §8.6.1). Pure: the
time is passed in.

Owns: parsing an announce's raw query string (``parse_announce``), the table of recent
peers per torrent (``PeerTable``) and the bencoded answers. Randomness, when wanted, is passed
in (``rng``). Invariants: every dimension is
bounded (torrents, peers per torrent, entries per host in a torrent, peers per answer), so
one host announcing many ports cannot push the others out; a peer is forgotten ``ttl_s`` after
its last announce, or at once when it says ``stopped``; an answer never names the asker
itself; the peer's address is the one its request came from, never one it claims.
"""

from __future__ import annotations

import ipaddress
import random
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from scryp.core import bencode
from scryp.errors import MalformedInput

INFOHASH_BYTES = 20
QUERY_BYTES_MAX = 2048
ANNOUNCE_INTERVAL_S = 30
PEER_TTL_S = 120.0
PEERS_PER_TORRENT_MAX = 200
# Entries one address may hold in one torrent (several clients behind one NAT are normal;
# 200 ports from one host would push every other peer out of the list).
PEERS_PER_HOST_MAX = 4
TORRENTS_MAX = 4096
ANSWER_PEERS_MAX = 50
EVENTS = ("", "started", "completed", "stopped", "paused")

Peer = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Announce:
    infohash: bytes
    port: int
    event: str
    numwant: int


def parse_announce(raw_query: str) -> Announce:
    """The fields we use of an announce's query string (``info_hash`` is percent-encoded raw
    bytes, so it is read from the raw string, not a decoded one)."""
    if len(raw_query) > QUERY_BYTES_MAX:
        raise MalformedInput(f"announce query of {len(raw_query)} bytes")
    fields: dict[str, bytes] = {}
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if name in ("info_hash", "port", "event", "numwant"):
            if name in fields:
                raise MalformedInput(f"announce repeats {name}")
            fields[name] = unquote_to_bytes(value.replace("+", " "))
    infohash = fields.get("info_hash", b"")
    if len(infohash) != INFOHASH_BYTES:
        raise MalformedInput("announce needs a 20-byte info_hash")
    port = _number(fields.get("port"), "port")
    if not 1 <= port <= 65535:
        raise MalformedInput(f"announce port {port} is not 1-65535")
    event = fields.get("event", b"").decode("ascii", "replace")
    if event not in EVENTS:
        raise MalformedInput(f"unknown announce event {event[:20]!r}")
    numwant = ANSWER_PEERS_MAX if "numwant" not in fields else _number(fields["numwant"], "n")
    return Announce(infohash, port, event, max(0, min(numwant, ANSWER_PEERS_MAX)))


def _number(text: bytes | None, what: str) -> int:
    if text is None or not text.isdigit() or len(text) > 6:
        raise MalformedInput(f"announce needs a decimal {what}")
    return int(text)


class PeerTable:
    """Recent peers per torrent, oldest first; torrents least recently announced first."""

    def __init__(
        self,
        ttl_s: float = PEER_TTL_S,
        peers_per_torrent_max: int = PEERS_PER_TORRENT_MAX,
        torrents_max: int = TORRENTS_MAX,
        peers_per_host_max: int = PEERS_PER_HOST_MAX,
        rng: random.Random | None = None,
    ) -> None:
        # With ``rng``, an answer is a random choice of the recent peers (a server's: so that
        # newcomers, who hold least, do not draw every connection); without, newest first.
        self.rng = rng
        self.ttl_s = ttl_s
        self.peers_per_torrent_max = peers_per_torrent_max
        self.peers_per_host_max = peers_per_host_max
        self.torrents_max = torrents_max
        self._torrents: OrderedDict[bytes, OrderedDict[Peer, float]] = OrderedDict()

    def announce(self, request: Announce, host: str, now_s: float) -> list[Peer]:
        """Record (or, on ``stopped``, forget) ``host:port``; the other recent peers, at most
        ``request.numwant``: chosen by ``rng`` if given, else newest first."""
        peers = self._torrents.pop(request.infohash, None) or OrderedDict()
        self._torrents[request.infohash] = peers
        me = (host, request.port)
        peers.pop(me, None)
        while peers and next(iter(peers.values())) < now_s - self.ttl_s:
            peers.popitem(last=False)
        if self.rng is not None:
            answer = self.rng.sample(list(peers), min(request.numwant, len(peers)))
        else:
            answer = [p for p, _ in zip(reversed(peers), range(request.numwant), strict=False)]
        if request.event != "stopped":
            same_host = [peer for peer in peers if peer[0] == host]  # oldest first
            for old in same_host[: max(0, len(same_host) - self.peers_per_host_max + 1)]:
                del peers[old]
            peers[me] = now_s
            while len(peers) > self.peers_per_torrent_max:
                peers.popitem(last=False)
        if not peers:
            del self._torrents[request.infohash]
        while len(self._torrents) > self.torrents_max:
            self._torrents.popitem(last=False)
        return answer

    def count(self, infohash: bytes) -> int:
        return len(self._torrents.get(infohash, ()))


def encode_answer(peers: list[Peer], interval_s: int = ANNOUNCE_INTERVAL_S) -> bytes:
    """BEP 23 compact answer: IPv4 peers in ``peers`` (6 bytes each), IPv6 in ``peers6``."""
    four, six = bytearray(), bytearray()
    for host, port in peers:
        address = ipaddress.ip_address(host)
        (four if address.version == 4 else six).extend(address.packed + port.to_bytes(2, "big"))
    return bencode.encode(
        {
            b"interval": interval_s,
            b"min interval": interval_s,
            b"peers": bytes(four),
            b"peers6": bytes(six),
        }
    )


def encode_failure(reason: str) -> bytes:
    return bencode.encode({b"failure reason": reason.encode()[:200]})
