"""The servers' round tracker (protocol §8.6.1): announces parsed strictly, a bounded table
that forgets, and BEP 23 compact answers; against a naive model with Hypothesis."""

from __future__ import annotations

import random
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core import bencode
from scryp.core.tracker import (
    ANSWER_PEERS_MAX,
    Announce,
    PeerTable,
    encode_answer,
    parse_announce,
)
from scryp.errors import MalformedInput

IH = bytes(range(20))


def query(infohash: bytes = IH, port: str = "6881", extra: str = "") -> str:
    return f"info_hash={quote_from_bytes(infohash, safe='')}&peer_id=x&port={port}{extra}"


def test_an_announce_is_parsed_from_the_raw_query() -> None:
    got = parse_announce(query(extra="&event=started&numwant=5&compact=1"))
    assert got == Announce(IH, 6881, "started", 5)
    assert parse_announce(query()).numwant == ANSWER_PEERS_MAX


@pytest.mark.parametrize(
    "raw",
    [
        "",
        query(infohash=IH[:19]),
        query(port="0"),
        query(port="70000"),
        query(port="-1"),
        query(port="x"),
        query(extra="&event=bogus"),
        query(extra="&port=7"),
        query() + "&x=" + "a" * 3000,
    ],
)
def test_bad_announces_are_refused(raw: str) -> None:
    with pytest.raises(MalformedInput):
        parse_announce(raw)


def test_peers_meet_newest_first_and_never_see_themselves() -> None:
    table = PeerTable()
    assert table.announce(Announce(IH, 1, "started", 50), "10.0.0.1", 0.0) == []
    assert table.announce(Announce(IH, 2, "started", 50), "10.0.0.2", 1.0) == [("10.0.0.1", 1)]
    assert table.announce(Announce(IH, 3, "", 50), "10.0.0.3", 2.0) == [
        ("10.0.0.2", 2),
        ("10.0.0.1", 1),
    ]
    assert table.announce(Announce(IH, 1, "stopped", 50), "10.0.0.1", 3.0) == [
        ("10.0.0.3", 3),
        ("10.0.0.2", 2),
    ]
    assert table.count(IH) == 2


def test_peers_are_forgotten_after_the_ttl_and_bounded() -> None:
    table = PeerTable(ttl_s=10.0, peers_per_torrent_max=3, torrents_max=2)
    for i in range(5):
        table.announce(Announce(IH, 1000 + i, "", 50), "10.0.0.1", float(i))
    assert table.count(IH) == 3
    assert table.announce(Announce(IH, 9, "", 50), "10.0.0.9", 100.0) == []
    for n in range(3):
        table.announce(Announce(bytes([n]) * 20, 1, "", 50), "10.0.0.1", 100.0)
    assert table.count(IH) == 0  # the least recently announced torrent went first


def test_the_answer_is_compact() -> None:
    answer = bencode.decode(encode_answer([("10.0.0.1", 6881), ("::1", 7)]))
    assert isinstance(answer, dict)
    assert answer[b"peers"] == bytes([10, 0, 0, 1]) + (6881).to_bytes(2, "big")
    assert answer[b"peers6"] == bytes(15) + b"\x01" + (7).to_bytes(2, "big")


events = st.tuples(
    st.integers(0, 5),  # host
    st.integers(1, 3),  # port
    st.sampled_from(["", "started", "stopped"]),
    st.floats(0, 5),  # time step
)


@given(st.lists(events, max_size=60), st.integers(1, 3))
def test_the_table_matches_a_naive_model(
    steps: list[tuple[int, int, str, float]], per_host: int
) -> None:
    """Newest first, without the asker; expired after the TTL; at most ``per_host`` entries
    of one address, its oldest going first."""
    table, now = PeerTable(ttl_s=4.0, peers_per_host_max=per_host), 0.0
    model: dict[tuple[str, int], float] = {}
    for host_n, port, event, step in steps:
        now += step
        host = f"10.0.0.{host_n}"
        got = table.announce(Announce(IH, port, event, 50), host, now)
        # The model's order is the order of the last announces (a dict keeps insertion order).
        alive = {p: t for p, t in model.items() if t >= now - 4.0 and p != (host, port)}
        want = list(reversed(alive))[:50]
        assert got == want and (host, port) not in got
        model = dict(alive)
        if event != "stopped":
            mine = [p for p in model if p[0] == host]  # oldest first
            for old in mine[: max(0, len(mine) - per_host + 1)]:
                del model[old]
            model[(host, port)] = now


def test_one_host_announcing_many_ports_cannot_push_the_others_out() -> None:
    table = PeerTable(peers_per_torrent_max=10, peers_per_host_max=2)
    for n in range(8):
        table.announce(Announce(IH, 6881, "", 50), f"10.0.0.{n}", 0.0)
    for port in range(1, 1000):
        table.announce(Announce(IH, port, "", 50), "10.9.9.9", 1.0)
    got = table.announce(Announce(IH, 6881, "", 50), "10.0.0.99", 2.0)
    assert {("10.9.9.9", 999), ("10.9.9.9", 998)} <= set(got)
    assert sum(1 for host, _ in got if host == "10.9.9.9") == 2
    assert len(got) == 10  # all 8 others, and the flooder's newest 2


@given(st.lists(st.integers(1, 60), min_size=1, max_size=60, unique=True), st.integers(0, 60))
def test_a_servers_answer_is_a_random_choice_of_the_others(ports: list[int], want: int) -> None:
    """With ``rng`` (a server's table), newcomers do not draw every connection: the answer is
    a random choice of the other recent peers, as many as asked for and there are."""
    table = PeerTable(rng=random.Random(7))
    for port in ports:
        table.announce(Announce(IH, port, "", 50), f"10.0.1.{port}", 0.0)
    got = table.announce(Announce(IH, 61, "", want), "10.0.0.2", 1.0)
    others = {(f"10.0.1.{port}", port) for port in ports}
    assert len(got) == min(want, len(ports)) == len(set(got)) and set(got) <= others
