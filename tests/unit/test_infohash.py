"""Infohashes as users type them (scryp/core/infohash.py, protocol §8.6)."""

from __future__ import annotations

import pytest

from scryp.core.infohash import parse_infohash
from scryp.errors import MalformedInput


def test_parse_infohash() -> None:
    one, two = "ab" * 20, "CD" * 20
    assert parse_infohash(one) == bytes.fromhex(one)
    assert parse_infohash(one + two) == bytes.fromhex(two)  # a run means the last one
    assert parse_infohash(f" {one}\n{two} ") == bytes.fromhex(two)


@pytest.mark.parametrize("bad", ["", "ab" * 19, "ab" * 21, "zz" * 20, "ab" * 19 + "a "])
def test_parse_infohash_refuses_what_is_not_one(bad: str) -> None:
    with pytest.raises(MalformedInput):
        parse_infohash(bad)
