"""The direct store's KRPC messages (protocol §8.3.4): replies read with limits, and the
answers of a node that stores nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core import bencode, krpc
from scryp.errors import MalformedInput

NODE = bytes(range(20))


def test_signed_buffer_is_bep44s() -> None:
    assert krpc.signed_buffer(b"foobar", 4, b"Hello World!") == (
        b"4:salt6:foobar3:seqi4e1:v12:Hello World!"
    )
    assert krpc.signed_buffer(b"", 1, b"v") == b"3:seqi1e1:v1:v"


def test_reply_token_and_seq_are_read() -> None:
    reply = bencode.encode(
        {b"t": b"ab", b"y": b"r", b"r": {b"id": NODE, b"token": b"tok", b"seq": 9}}
    )
    assert krpc.read_reply(reply) == krpc.Reply(b"ab", b"tok", 9)


@pytest.mark.parametrize(
    "datagram",
    [
        b"garbage",
        bencode.encode({b"t": b"ab", b"y": b"e", b"e": [201, b"generic"]}),
        bencode.encode({b"t": b"ab", b"y": b"r"}),
        bencode.encode([1, 2]),
        b"d1:t2:ab1:y1:r1:rd2:id20:" + NODE + b"e" + b"x" * 2000 + b"e",
    ],
)
def test_errors_and_garbage_are_refused(datagram: bytes) -> None:
    with pytest.raises(MalformedInput):
        krpc.read_reply(datagram)


def test_answers_lookups_with_nothing_and_acknowledges_stores() -> None:
    for method, keys in [
        (b"ping", {b"id"}),
        (b"find_node", {b"id", b"nodes"}),
        (b"get_peers", {b"id", b"nodes", b"token"}),
        (b"announce_peer", {b"id"}),
    ]:
        query = bencode.encode({b"t": b"xy", b"y": b"q", b"q": method, b"a": {b"id": NODE}})
        answer = krpc.answer(query, NODE, b"token")
        assert answer is not None
        decoded = bencode.decode(answer)
        assert isinstance(decoded, dict) and decoded[b"t"] == b"xy" and decoded[b"y"] == b"r"
        body = decoded[b"r"]
        assert isinstance(body, dict) and set(body) == keys


@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer_or_none_never_an_exception(data: bytes) -> None:
    krpc.answer(data, NODE, b"t")
