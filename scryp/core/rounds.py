"""The round protocol of one server as a sans-IO core: seal → seed → share → certificate →
pointer (protocol §9.4, §8.3–§8.4).

Owns: what this server knows of each sealed round (``RoundInfo``), its own share (the statement
of §8.4 signed with its key), the check of every peer's share against ``.keys``, shares that
arrive before their round is seeded here (bounded: ``shares_rounds_ahead_max`` rounds ahead),
the majority rule (``⌊n/2⌋ + 1`` distinct valid signatures), DIVERGENCE (a valid share naming
another state root or torrent for a round), which pointer record to publish (the newest
certified round; the first seeded round uncertified while nothing is, §9.4), failed-seed
retries, and forgetting old rounds.

Inputs are method calls (``sealed``, ``seeded``, ``seed_failed``, ``share_received``,
``ask_received``, ``want``, ``pruned``, ``tick``); each returns the actions the driver must
carry out, in order, as frozen dataclasses. Time arrives as ``now_ms``; no IO, no clock, no
logging: decisions worth a log line are returned as reports (``Certified``, ``Diverged``,
``ShareRefused``). ed25519 signing and checking are pure CPU and happen here.

Invariants:
- a round is certified at most once, under the state root this server sealed it with, by
  ``majority(n)`` signatures that each verify against ``.keys`` (an honest server's own
  share included), so ``verify_certificate`` accepts every certificate stored;
- a round's share is sent only once the round is seeded (a peer may fetch it at once);
- the record published never goes back to an older round once one is certified.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scryp.core.certificate import Certificate, Statement, majority
from scryp.core.pointer import RECENT_MAX, PointerRecord
from scryp.core.raft.entries import SnapshotMeta
from scryp.core.wire import Ask, Share
from scryp.crypto import KeyPair, verify

SEED_RETRY_MS = 2_000  # a failed seed (swarm busy, add-torrent timeout) is tried again after


@dataclass(frozen=True, slots=True)
class RoundsConfig:
    network: bytes
    index: int  # this server's position in ``quorum``
    quorum: tuple[bytes, ...]  # the public keys of ``.keys``
    api: str  # this server's API address, for its pointer record
    torrent_port: int  # where this server seeds, sent with its shares (protocol §9.3)
    infos_kept_max: int  # rounds remembered (twice the rounds kept on disk)
    shares_rounds_ahead_max: int  # how far beyond our newest round shares are buffered
    seed_retry_ms: int = SEED_RETRY_MS


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeedRound:
    """Build round ``meta.round``'s torrent from its stored files and seed it; then call
    ``seeded`` (or ``seed_failed``)."""

    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class SendFrame:
    peer: int
    frame: Share | Ask


@dataclass(frozen=True, slots=True)
class OfferRound:
    """The round is stored and seeded: Raft may name it in a catch-up (protocol §9.5)."""

    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class StoreCertificate:
    round: int
    certificate: bytes


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """Put this record as our pointer (§8.3); ``newest_certified`` when it carries the newest
    certificate (the driver may then prune rounds older than it)."""

    record: PointerRecord
    newest_certified: bool


@dataclass(frozen=True, slots=True)
class DropTorrent:
    round: int
    infohash: bytes


@dataclass(frozen=True, slots=True)
class PeerSeeds:
    """A verified share: ``peer`` seeds round ``share.round`` (a catch-up may fetch from it)."""

    peer: int
    share: Share


@dataclass(frozen=True, slots=True)
class Certified:
    """Report: round certified here by these signers."""

    round: int
    state_root: bytes
    signers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Diverged:
    """Report: a validly signed share names another round content than ours. Servers applying
    one log cannot disagree, so this is a bug somewhere (protocol §9.4): log it loudly."""

    peer: int
    round: int
    theirs: bytes
    ours: bytes


@dataclass(frozen=True, slots=True)
class ShareRefused:
    """Report: a share that is the peer's fault (bad signature, impossible sender)."""

    peer: int
    round: int
    reason: str


Action = (
    SeedRound
    | SendFrame
    | OfferRound
    | StoreCertificate
    | PublishRecord
    | DropTorrent
    | PeerSeeds
    | Certified
    | Diverged
    | ShareRefused
)


@dataclass(slots=True)
class RoundInfo:
    """What this server knows of one sealed round."""

    meta: SnapshotMeta
    infohash: bytes = b""  # empty until seeded here
    infohash_v2: bytes = b""
    transactions: int = 0
    shares: dict[int, bytes] = field(default_factory=dict)  # server index -> signature
    certificate: bytes = b""
    seeding: bool = False  # a SeedRound is out and not yet answered
    retry_at_ms: int | None = None
    own_share: Share | None = None

    @property
    def round(self) -> int:
        return self.meta.round

    @property
    def state_root(self) -> bytes:
        return self.meta.state_root

    @property
    def seeded(self) -> bool:
        return bool(self.infohash)


class RoundProtocol:
    """One server's round protocol. Create with its config and signing key."""

    def __init__(self, config: RoundsConfig, key: KeyPair) -> None:
        if not 0 <= config.index < len(config.quorum) or config.quorum[config.index] != key.public:
            raise ValueError("the signing key is not this server's entry in .keys")
        self.config = config
        self._key = key
        self.infos: dict[int, RoundInfo] = {}  # ascending by insertion of round numbers
        self._pending: dict[int, dict[int, Share]] = {}  # round -> peer -> share, not seeded yet
        self.certified_round: int | None = None
        self._published_any = False
        self._retries_due_ms: int | None = None  # the earliest failed seed to retry

    # -- reads ---------------------------------------------------------------------------

    def info(self, round_number: int) -> RoundInfo | None:
        return self.infos.get(round_number)

    def knows(self, round_number: int) -> bool:
        return round_number in self.infos

    def certified_info(self) -> RoundInfo | None:
        if self.certified_round is None:
            return None
        return self.infos.get(self.certified_round)

    def pending_rounds(self) -> list[int]:
        return sorted(self._pending)

    # -- inputs --------------------------------------------------------------------------

    def sealed(self, meta: SnapshotMeta, certificate: bytes = b"") -> list[Action]:
        """Round ``meta.round`` is written to disk (sealed now, held at start, or fetched):
        seed it. ``certificate``: one stored earlier for it, trusted as our own disk."""
        info = self.infos.get(meta.round)
        if info is None:
            info = RoundInfo(meta, certificate=certificate)
            self.infos[meta.round] = info
            self.infos = dict(sorted(self.infos.items()))
            self._prune_infos()
            if meta.round not in self.infos:
                return []  # older than every round we keep
        if info.meta != meta:
            # Two seals of one round under different metadata: our own bug, not a peer's.
            raise ValueError(f"round {meta.round} sealed twice differently")
        if info.seeded or info.seeding:
            return []
        info.seeding = True
        return [SeedRound(meta)]

    def seeded(
        self, round_number: int, infohash: bytes, infohash_v2: bytes, transactions: int
    ) -> list[Action]:
        """The swarm seeds the round now: offer it, share our signature, certify if we can."""
        info = self.infos.get(round_number)
        if info is None:
            return []  # forgotten meanwhile
        info.seeding, info.retry_at_ms = False, None
        info.infohash, info.infohash_v2, info.transactions = infohash, infohash_v2, transactions
        actions: list[Action] = [OfferRound(info.meta)]
        if not self._published_any and not info.certificate:
            # Nothing certified yet (a fresh start, or peers unknown): publish this round
            # uncertified, so the other servers can find our address (protocol §9.4, §9.6).
            actions.append(PublishRecord(self._record(info), newest_certified=False))
            self._published_any = True
        share = self._own_share(info)
        info.shares[self.config.index] = share.signature
        for peer in self._peers():
            actions.append(SendFrame(peer, share))
        for peer, pending in sorted(self._pending.pop(round_number, {}).items()):
            actions.extend(self._accept(info, peer, pending))
        actions.extend(self._maybe_certify(info))
        return actions

    def seed_failed(self, round_number: int, now_ms: int) -> list[Action]:
        """Seeding failed (not available now): try again ``seed_retry_ms`` later (``tick``)."""
        info = self.infos.get(round_number)
        if info is not None and not info.seeded:
            info.seeding = False
            info.retry_at_ms = now_ms + self.config.seed_retry_ms
            self._retry_at(info.retry_at_ms)
        return []

    def tick(self, now_ms: int) -> list[Action]:
        actions: list[Action] = []
        if self._retries_due_ms is None or now_ms < self._retries_due_ms:
            return actions
        self._retries_due_ms = None
        for info in self.infos.values():
            due = info.retry_at_ms
            if due is not None and now_ms >= due and not info.seeding and not info.seeded:
                info.retry_at_ms, info.seeding = None, True
                actions.append(SeedRound(info.meta))
            elif due is not None:
                self._retry_at(due)
        return actions

    def _retry_at(self, due_ms: int) -> None:
        if self._retries_due_ms is None or due_ms < self._retries_due_ms:
            self._retries_due_ms = due_ms

    def share_received(self, peer: int, share: Share) -> list[Action]:
        """A peer's share (protocol §9.3): checked against ``.keys``, then counted."""
        if not 0 <= peer < len(self.config.quorum) or peer == self.config.index:
            return [ShareRefused(peer, share.round, "a share from outside the quorum")]
        statement = share.statement(self.config.network)
        if not verify(self.config.quorum[peer], statement.to_bytes(), share.signature):
            return [ShareRefused(peer, share.round, "bad signature")]
        actions: list[Action] = [PeerSeeds(peer, share)]
        info = self.infos.get(share.round)
        if info is None or not info.seeded:
            newest = max(self.infos, default=0)
            oldest = min(self.infos, default=0)
            if oldest <= share.round <= newest + self.config.shares_rounds_ahead_max:
                self._pending.setdefault(share.round, {})[peer] = share
            return actions
        actions.extend(self._accept(info, peer, share))
        actions.extend(self._maybe_certify(info))
        return actions

    def ask_received(self, peer: int, round_number: int) -> list[Action]:
        """Answer with our share if we seed the round; a known round being seeded answers by
        its broadcast; an unknown one the driver may find on disk (``sealed``)."""
        info = self.infos.get(round_number)
        if info is None or not info.seeded or not 0 <= peer < len(self.config.quorum):
            return []
        return [SendFrame(peer, self._own_share(info))]

    def want(self, round_number: int) -> list[Action]:
        """We must catch up from this round: ask every peer for its share (protocol §9.5)."""
        return [SendFrame(peer, Ask(round_number)) for peer in self._peers()]

    def pruned(self, rounds: Iterable[int]) -> list[Action]:
        """These rounds left the disk: stop seeding them and forget them."""
        actions: list[Action] = []
        for number in rounds:
            info = self.infos.pop(number, None)
            if info is not None and info.seeded:
                actions.append(DropTorrent(number, info.infohash))
        self._drop_stale_pending()
        return actions

    # -- internals -----------------------------------------------------------------------

    def _peers(self) -> Sequence[int]:
        return [i for i in range(len(self.config.quorum)) if i != self.config.index]

    def _own_share(self, info: RoundInfo) -> Share:
        if info.own_share is None:
            statement = Statement(
                self.config.network, info.round, info.state_root, info.infohash_v2
            )
            info.own_share = Share(
                info.round,
                info.state_root,
                info.infohash,
                info.infohash_v2,
                statement.sign(self._key),
                torrent_port=self.config.torrent_port,
            )
        return info.own_share

    def _accept(self, info: RoundInfo, peer: int, share: Share) -> list[Action]:
        if (share.state_root, share.infohash_v2) != (info.state_root, info.infohash_v2):
            return [Diverged(peer, share.round, share.state_root, info.state_root)]
        info.shares[peer] = share.signature
        return []

    def _maybe_certify(self, info: RoundInfo) -> list[Action]:
        actions: list[Action] = []
        need = majority(len(self.config.quorum))
        if not info.certificate:
            if len(info.shares) < need:
                return []
            chosen = tuple(sorted(info.shares.items())[:need])
            info.certificate = Certificate(chosen).to_bytes()
            actions.append(StoreCertificate(info.round, info.certificate))
            actions.append(Certified(info.round, info.state_root, tuple(i for i, _ in chosen)))
        if self.certified_round is None or info.round > self.certified_round:
            self.certified_round = info.round
            self._published_any = True
            actions.append(PublishRecord(self._record(info), newest_certified=True))
        return actions

    def _record(self, info: RoundInfo) -> PointerRecord:
        recent = tuple(
            other.infohash
            for number, other in sorted(self.infos.items(), reverse=True)
            if number < info.round and other.seeded
        )[:RECENT_MAX]
        return PointerRecord(
            network=self.config.network,
            round=info.round,
            state_root=info.state_root,
            infohash=info.infohash,
            infohash_v2=info.infohash_v2,
            recent=recent,
            api=self.config.api,
            certificate=info.certificate,
        )

    def _prune_infos(self) -> None:
        keep = self.config.infos_kept_max
        while len(self.infos) > keep:
            oldest = min(self.infos)
            if oldest == self.certified_round:
                # The certified round is what the API serves and the record names: keep it.
                if len(self.infos) <= keep + 1:
                    break
                oldest = sorted(self.infos)[1]
            del self.infos[oldest]
        self._drop_stale_pending()

    def _drop_stale_pending(self) -> None:
        # Shares for rounds we will never hold (pruned, or sealed before we restarted).
        oldest = min(self.infos, default=0)
        for number in [r for r in self._pending if r < oldest]:
            del self._pending[number]
