"""Every fuzz target (tests/fuzz/targets.py) on its seed corpus and on seeded mutations of it.

The coverage-guided runs (atheris) are in tests/integration/test_fuzz_short.py and, long, in
``tools/fuzz``; this tier checks quickly, with no fuzzer, that each target's seeds decode (so
the canonical re-encoding check really runs) and that mutations of them are either decoded
canonically or refused with the protocol's error (protocol §1.1, §1.2). Seed printed on failure.
"""

from __future__ import annotations

import random

import pytest

from scryp.core.ledger import Ledger
from scryp.core.tx import Transaction
from scryp.errors import MalformedInput
from tests.fuzz.targets import TARGETS, NotCanonical, seeds, window

MUTATIONS_PER_TARGET = 400


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random edit: flip a bit, set a byte, cut, insert or duplicate a slice."""
    buffer = bytearray(data)
    edit = rng.randrange(5)
    at = rng.randrange(len(buffer) + 1)
    if edit == 0 and buffer:
        buffer[min(at, len(buffer) - 1)] ^= 1 << rng.randrange(8)
    elif edit == 1 and buffer:
        buffer[min(at, len(buffer) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    elif edit == 2:
        del buffer[at : at + rng.randrange(1, 41)]
    elif edit == 3:
        buffer[at:at] = rng.randbytes(rng.randrange(1, 41))
    else:
        start = rng.randrange(len(buffer) + 1)
        buffer[at:at] = buffer[start : start + rng.randrange(1, 41)]
    return bytes(buffer)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_decode(name: str) -> None:
    corpus = seeds()[name]
    assert corpus, f"{name} has no seed"
    for data in corpus:
        assert TARGETS[name](data), f"{name}: seed {data.hex()[:60]} does not decode"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutations_decode_canonically_or_are_refused(name: str) -> None:
    seed = 20261201
    rng = random.Random(f"{seed}-{name}")
    corpus = seeds()[name]
    for i in range(MUTATIONS_PER_TARGET):
        data = rng.choice(corpus)
        for _ in range(rng.randrange(1, 4)):
            data = mutate(data, rng)
        try:
            TARGETS[name](data)
        except Exception as error:
            pytest.fail(f"{name}, seed {seed}, mutation {i}: {data.hex()} -> {error!r}")


def test_the_canonical_check_catches_a_second_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The round-trip check is real: plant a decoder that tolerates a trailing byte (two
    encodings of one payment) and the transaction target fails."""
    real_decode = Transaction.decode
    monkeypatch.setattr(Transaction, "decode", classmethod(lambda _, data: real_decode(data[:140])))
    good = seeds()["transaction"][0]
    assert TARGETS["transaction"](good)
    with pytest.raises(NotCanonical):
        TARGETS["transaction"](good + b"\x00")


def test_a_window_naming_one_id_twice_is_refused() -> None:
    """Regression (found by atheris): two records of one id with different timestamps decoded
    and re-encoded as one."""
    data = bytes.fromhex("ff2de900e98b01e9") + bytes.fromhex("69ffe9e9e9e9e9e9") + b"\xe9" * 32
    data += bytes.fromhex("e9e9e9e9e9e9e9e9") + b"\xe9" * 32
    with pytest.raises(MalformedInput, match="twice"):
        Ledger.from_checkpoint(seeds()["genesis"][0], data)
    assert window(data) is False


@pytest.mark.parametrize("timestamp_ms", [10_000 - 5_001, 10_000 + 5_001])
def test_a_window_record_outside_the_window_is_refused(timestamp_ms: int) -> None:
    data = (10_000).to_bytes(8, "big") + timestamp_ms.to_bytes(8, "big") + bytes(32)
    with pytest.raises(MalformedInput, match="outside the window"):
        Ledger.from_checkpoint(seeds()["genesis"][0], data, window_ms=5_000)
