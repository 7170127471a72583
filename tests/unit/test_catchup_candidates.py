"""Which torrents a server far behind trusts for its catch-up (protocol §9.5): those a
majority of the quorum name, or the leader that asked for it; never a lone other server."""

from __future__ import annotations

import asyncio

from scryp.core.wire import Share
from scryp.server.catchup import Candidates

STATE = b"s" * 32


def share(tag: bytes, round_: int = 7, state: bytes = STATE) -> Share:
    return Share(round_, state, tag * 20, tag * 32, b"\0" * 64)


def torrent(tag: bytes) -> tuple[bytes, bytes]:
    return tag * 20, tag * 32


def test_a_lone_server_that_is_not_the_leader_is_not_trusted() -> None:
    candidates = Candidates(7, STATE, leader=0, majority=3)  # 5 servers
    candidates.offer(1, share(b"x"))
    candidates.offer(2, share(b"x"))
    assert candidates.trusted(set()) == []  # two of five name it: not a majority
    candidates.offer(3, share(b"x"))
    assert [t for t, _ in candidates.trusted(set())] == [torrent(b"x")]


def test_the_leaders_torrent_is_trusted_alone_and_a_majority_first() -> None:
    candidates = Candidates(7, STATE, leader=4, majority=3)
    candidates.offer(4, share(b"l"))
    assert [t for t, _ in candidates.trusted(set())] == [torrent(b"l")]
    for peer in (0, 1, 2):
        candidates.offer(peer, share(b"m"))
    assert [t for t, _ in candidates.trusted(set())] == [torrent(b"m"), torrent(b"l")]
    assert [t for t, _ in candidates.trusted({torrent(b"m")})] == [torrent(b"l")]


def test_one_answer_per_server_and_only_of_the_named_state_and_round() -> None:
    candidates = Candidates(7, STATE, leader=None, majority=2)
    candidates.offer(1, share(b"a"))
    candidates.offer(1, share(b"b"))  # a second torrent from the same server: ignored
    candidates.offer(2, share(b"b", state=b"t" * 32))  # another state
    candidates.offer(3, share(b"b", round_=8))  # another round
    assert candidates.trusted(set()) == []
    candidates.offer(2, share(b"a"))
    assert [t for t, _ in candidates.trusted(set())] == [torrent(b"a")]


def test_next_trusted_waits_for_an_answer_that_makes_one_trusted() -> None:
    async def scenario() -> None:
        candidates = Candidates(7, STATE, leader=0, majority=2)
        candidates.offer(1, share(b"x"))
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, candidates.offer, 0, share(b"y"))
        pick = await candidates.next_trusted(set(), timeout_s=5.0)
        assert pick is not None and pick[0] == torrent(b"y")
        assert await candidates.next_trusted({torrent(b"y")}, timeout_s=0.05) is None

    asyncio.run(scenario())
