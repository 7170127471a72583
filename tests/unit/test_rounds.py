"""The round protocol core (scryp/core/rounds.py, protocol §9.4, §8.4): shares, the majority
rule, DIVERGENCE, pending shares, which record is published, seed retries, asks, pruning.

Method: real cores with real ed25519 keys exchange the actions they return by hand; every
certificate is checked with the client's verifier (``verify_certificate``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

import pytest

from scryp.core.certificate import Certificate, Statement, verify_certificate
from scryp.core.pointer import certified
from scryp.core.raft.entries import SnapshotMeta
from scryp.core.rounds import (
    Action,
    Certified,
    Diverged,
    DropTorrent,
    OfferRound,
    PeerSeeds,
    PublishRecord,
    RoundProtocol,
    RoundsConfig,
    SeedRound,
    SendFrame,
    ShareRefused,
    StoreCertificate,
)
from scryp.core.wire import Ask, Share
from scryp.crypto import KeyPair

NETWORK = hashlib.sha256(b"network").digest()
IH = hashlib.sha1(b"torrent").digest()
IH2 = hashlib.sha256(b"torrent").digest()
T = TypeVar("T")


def keys(n: int) -> list[KeyPair]:
    return [KeyPair.from_seed(hashlib.sha256(f"server-{i}".encode()).digest()) for i in range(n)]


def cores(n: int, ahead: int = 4, kept: int = 8) -> list[RoundProtocol]:
    pairs = keys(n)
    quorum = tuple(k.public for k in pairs)
    return [
        RoundProtocol(
            RoundsConfig(NETWORK, i, quorum, f"127.0.0.1:{7000 + i}", 6000 + i, kept, ahead),
            pairs[i],
        )
        for i in range(n)
    ]


def meta(round_number: int, state: bytes = b"") -> SnapshotMeta:
    return SnapshotMeta(round_number, 1, round_number, 0, state or hashlib.sha256(b"s").digest())


def of(actions: Sequence[Action], kind: type[T]) -> list[T]:
    return [a for a in actions if isinstance(a, kind)]


def seal_and_seed(core: RoundProtocol, m: SnapshotMeta) -> list[Action]:
    assert of(core.sealed(m), SeedRound) == [SeedRound(m)]
    return core.seeded(m.round, IH, IH2, 3)


def own_share(actions: Sequence[Action]) -> Share:
    frames = [a.frame for a in of(actions, SendFrame)]
    assert frames and all(isinstance(f, Share) for f in frames)
    share = frames[0]
    assert isinstance(share, Share)
    return share


def test_a_majority_of_shares_makes_a_certificate_a_client_accepts() -> None:
    a, b, c = cores(3)
    m = meta(1)
    share_b = own_share(seal_and_seed(b, m))
    actions = seal_and_seed(a, m)
    assert OfferRound(m) in actions
    assert not of(actions, StoreCertificate)  # alone: 1 of 3
    actions = a.share_received(1, share_b)
    assert of(actions, PeerSeeds) == [PeerSeeds(1, share_b)]
    [stored] = of(actions, StoreCertificate)
    statement = Statement(NETWORK, 1, m.state_root, IH2)
    verify_certificate(Certificate.from_bytes(stored.certificate), statement, a.config.quorum)
    assert of(actions, Certified)[0].signers == (0, 1)
    [published] = [p for p in of(actions, PublishRecord) if p.newest_certified]
    assert certified(published.record, a.config.quorum)
    assert a.certified_round == 1
    # More shares later change nothing stored.
    again = a.share_received(2, own_share(seal_and_seed(c, m)))
    assert not of(again, StoreCertificate) and not of(again, PublishRecord)


def test_five_servers_need_three_distinct_signatures() -> None:
    servers = cores(5)
    m = meta(1)
    shares = [own_share(seal_and_seed(core, m)) for core in servers[1:]]
    first = servers[0]
    seal_and_seed(first, m)
    assert not of(first.share_received(1, shares[0]), StoreCertificate)
    assert not of(first.share_received(1, shares[0]), StoreCertificate)  # a duplicate
    assert of(first.share_received(2, shares[1]), StoreCertificate)


def test_a_share_with_a_bad_signature_is_refused_and_never_counted() -> None:
    # Guards money and trust: without the check the forged share would complete a majority.
    a, b = cores(3)[:2]
    m = meta(1)
    seal_and_seed(a, m)
    good = own_share(seal_and_seed(b, m))
    forged = Share(good.round, good.state_root, good.infohash, good.infohash_v2, bytes(64))
    actions = a.share_received(1, forged)
    assert of(actions, ShareRefused) == [ShareRefused(1, 1, "bad signature")]
    assert not of(actions, StoreCertificate) and a.certified_round is None
    # Another server's genuine share claimed by the wrong sender is refused too.
    assert of(a.share_received(2, good), ShareRefused)
    assert of(a.share_received(0, good), ShareRefused)  # ourselves
    assert of(a.share_received(9, good), ShareRefused)  # outside the quorum
    assert a.certified_round is None


def test_a_validly_signed_share_of_another_state_is_divergence_not_a_vote() -> None:
    a, b = cores(3)[:2]
    seal_and_seed(a, meta(1))
    other = own_share(seal_and_seed(b, meta(1, hashlib.sha256(b"other").digest())))
    actions = a.share_received(1, other)
    assert of(actions, Diverged) and not of(actions, StoreCertificate)
    assert a.certified_round is None


def test_shares_before_seeding_wait_bounded_and_count_once_seeded() -> None:
    a, b = cores(3, ahead=2)[:2]
    seal_and_seed(a, meta(1))
    early = own_share(seal_and_seed(b, meta(3)))
    too_far = own_share(seal_and_seed(b, meta(4)))
    a.share_received(1, early)
    a.share_received(1, too_far)
    assert a.pending_rounds() == [3]
    a.sealed(meta(3))
    actions = a.seeded(3, IH, IH2, 0)
    assert of(actions, StoreCertificate)
    assert a.pending_rounds() == []


def test_the_first_round_is_published_uncertified_then_only_newer_certified_ones() -> None:
    a, b = cores(3)[:2]
    first = seal_and_seed(a, meta(1))
    [uncertified] = of(first, PublishRecord)
    assert not uncertified.newest_certified and not uncertified.record.certificate
    assert not of(seal_and_seed(a, meta(2)), PublishRecord)  # once only (protocol §9.4)
    share2 = own_share(seal_and_seed(b, meta(2)))
    share1 = own_share(seal_and_seed(b, meta(1)))
    assert [p.record.round for p in of(a.share_received(1, share2), PublishRecord)] == [2]
    late = a.share_received(1, share1)
    assert of(late, StoreCertificate) and not of(late, PublishRecord)  # never back to older


def test_a_stored_certificate_is_published_once_the_round_is_seeded_again() -> None:
    a, b = cores(3)[:2]
    m = meta(5)
    seal_and_seed(a, m)
    cert = of(a.share_received(1, own_share(seal_and_seed(b, m))), StoreCertificate)[0]
    restarted = cores(3)[0]
    restarted.sealed(m, cert.certificate)
    actions = restarted.seeded(5, IH, IH2, 0)
    assert not of(actions, StoreCertificate)
    assert [p.newest_certified for p in of(actions, PublishRecord)] == [True]


def test_a_failed_seed_is_retried_after_the_delay() -> None:
    a = cores(3)[0]
    m = meta(1)
    a.sealed(m)
    assert a.sealed(m) == []  # already seeding
    a.seed_failed(1, now_ms=1_000)
    assert a.tick(1_000 + a.config.seed_retry_ms - 1) == []
    assert a.tick(1_000 + a.config.seed_retry_ms) == [SeedRound(m)]
    assert a.tick(10_000) == []  # once


def test_asks_are_answered_with_our_share_of_a_seeded_round() -> None:
    a = cores(3)[0]
    assert a.ask_received(1, 1) == []
    a.sealed(meta(1))
    assert a.ask_received(1, 1) == []  # its broadcast will answer
    a.seeded(1, IH, IH2, 0)
    [answer] = a.ask_received(2, 1)
    assert isinstance(answer, SendFrame) and answer.peer == 2
    assert isinstance(answer.frame, Share) and answer.frame.round == 1
    assert a.want(7) == [SendFrame(1, Ask(7)), SendFrame(2, Ask(7))]


def test_pruned_rounds_stop_seeding_and_infos_stay_bounded() -> None:
    a = cores(3, kept=3)[0]
    for number in range(1, 6):
        seal_and_seed(a, meta(number))
    assert sorted(a.infos) == [3, 4, 5]
    assert a.pruned([3, 9]) == [DropTorrent(3, IH)]
    assert not a.knows(3)


def test_the_signing_key_must_be_ours() -> None:
    pairs = keys(2)
    config = RoundsConfig(NETWORK, 0, (pairs[0].public, pairs[1].public), "", 0, 4, 4)
    with pytest.raises(ValueError, match="not this server"):
        RoundProtocol(config, pairs[1])
