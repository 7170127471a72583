"""Pointer records and BEP 44 item verification (protocol §8.3, §8.5)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core import bencode
from scryp.core.certificate import Certificate
from scryp.core.pointer import (
    RECORD_MAX_BYTES,
    SALT,
    VALUE_MAX_BYTES,
    PointerRecord,
    SignedItem,
    UnknownKey,
    agreed,
    certificate_signers,
    certified,
    decode_record,
    encode_record,
    signed_bytes,
    verify_item,
)
from scryp.crypto import KeyPair, verify
from scryp.errors import BadSignature, MalformedInput

KEYS = [KeyPair.from_seed(hashlib.sha256(b"server %d" % i).digest()) for i in range(7)]
QUORUM = [k.public for k in KEYS]
NETWORK = hashlib.sha256(b"net").digest()


def record(round_number: int = 9, state: bytes = b"s", **extra: object) -> PointerRecord:
    state_root = hashlib.sha256(state + b"%d" % round_number).digest()
    fields: dict[str, object] = {
        "network": NETWORK,
        "round": round_number,
        "state_root": state_root,
        "infohash": state_root[:20],
        "infohash_v2": hashlib.sha256(state_root).digest(),
        "recent": (b"\x01" * 20, b"\x02" * 20),
        "api": "127.0.0.1:6882",
    }
    fields.update(extra)
    return PointerRecord(**fields)  # type: ignore[arg-type]


def item(key: KeyPair, value: bytes, seq: int = 1, salt: bytes = SALT) -> SignedItem:
    return SignedItem(key.public, salt, seq, value, key.sign(signed_bytes(salt, seq, value)))


def test_signed_bytes_follow_bep44() -> None:
    assert signed_bytes(b"foobar", 4, b"Hello World!") == (
        b"4:salt6:foobar3:seqi4e1:v12:Hello World!"
    )
    assert signed_bytes(b"", 1, b"Hello World!") == b"3:seqi1e1:v12:Hello World!"


def test_bep44_test_vector() -> None:
    """BEP 44's published mutable-item vector (salt "foobar", seq 1) verifies as we sign it."""
    public = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
    signature = bytes.fromhex(
        "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
        "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
    )
    assert verify(public, signed_bytes(b"foobar", 1, b"Hello World!"), signature)
    assert not verify(public, signed_bytes(b"foobar", 2, b"Hello World!"), signature)


def test_record_round_trip_and_layout() -> None:
    rec = record()
    data = encode_record(rec)
    assert decode_record(data) == rec
    fields = bencode.decode(data)
    assert isinstance(fields, dict)
    assert sorted(fields) == [
        b"api",
        b"cert",
        b"ih",
        b"ih2",
        b"net",
        b"recent",
        b"round",
        b"state",
        b"v",
    ]


def test_a_full_seven_server_record_fits() -> None:
    cert = Certificate(tuple((i, bytes([i]) * 64) for i in range(4)))
    rec = record(
        2**40,
        recent=tuple(bytes([i]) * 20 for i in range(4)),
        api="255.255.255.255:65535",
        certificate=cert.to_bytes(),
    )
    data = encode_record(rec)
    assert len(data) <= RECORD_MAX_BYTES
    assert len(bencode.encode(data)) <= VALUE_MAX_BYTES


def test_oversized_records_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        encode_record(record(certificate=bytes(RECORD_MAX_BYTES)))
    with pytest.raises(MalformedInput):
        decode_record(b"d" + b"x" * RECORD_MAX_BYTES)
    big = b"x" * (VALUE_MAX_BYTES - 3)
    with pytest.raises(MalformedInput, match="1000"):
        verify_item(item(KEYS[0], big), QUORUM)


def test_verify_item_accepts_a_quorum_item() -> None:
    rec = record()
    assert verify_item(item(KEYS[3], encode_record(rec), seq=17), QUORUM) == rec


def test_verify_item_refuses_unknown_keys_forgeries_and_wrong_salt() -> None:
    value = encode_record(record())
    outsider = KeyPair.from_seed(bytes(32))
    with pytest.raises(UnknownKey):
        verify_item(item(outsider, value), QUORUM)
    good = item(KEYS[0], value)
    # Signed by server 1, claimed as server 0's item.
    wrong_key = SignedItem(KEYS[0].public, SALT, 1, value, item(KEYS[1], value).signature)
    bad_signature = SignedItem(good.public, SALT, 1, value, bytes(64))
    other_seq = SignedItem(good.public, SALT, 2, value, good.signature)
    other_value = SignedItem(good.public, SALT, 1, encode_record(record(10)), good.signature)
    for forged in (wrong_key, bad_signature, other_seq, other_value):
        with pytest.raises(BadSignature):
            verify_item(forged, QUORUM)
    with pytest.raises(MalformedInput, match="salt"):
        verify_item(item(KEYS[0], value, salt=b"other"), QUORUM)


def raw_record(**changes: bencode.Value) -> bytes:
    """A well-formed record's bencoded fields, with ``changes`` applied (key: field name)."""
    fields: dict[bytes, bencode.Value] = {
        b"api": b"",
        b"cert": b"",
        b"ih": bytes(20),
        b"ih2": bytes(32),
        b"net": bytes(32),
        b"recent": [],
        b"round": 1,
        b"state": bytes(32),
        b"v": 1,
    }
    fields.update({name.encode(): value for name, value in changes.items()})
    return bencode.encode(fields)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"le",
        b"de",
        b"d1:vi1ee",
        encode_record(record()).replace(b"1:vi1e", b"1:vi2e"),  # unknown version
        encode_record(record()).replace(b"5:roundi9e", b"5:round1:9"),  # wrong type
        encode_record(record())[:-1],
        encode_record(record()) + b"e",
        raw_record(ih=b"x" * 19),
        raw_record(api=b"a b"),
        raw_record(recent=[1]),
        raw_record(round=-1),
        raw_record(extra=b""),
    ],
)
def test_malformed_records_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        decode_record(data)


def test_the_unchanged_raw_record_decodes() -> None:
    """The base of the malformed cases above is well formed: each case breaks one field."""
    assert decode_record(raw_record()).round == 1


@given(st.binary(max_size=200))
def test_record_decoding_only_raises_malformed_input(data: bytes) -> None:
    try:
        rec = decode_record(data)
    except MalformedInput:
        return
    assert encode_record(rec) == data


def test_agreed_needs_a_majority_or_a_certificate() -> None:
    quorum = QUORUM[:3]
    r7, r8 = record(7), record(8)
    assert agreed({quorum[0]: r7, quorum[1]: r7, quorum[2]: r8}, quorum, NETWORK) == r7
    # One server alone ahead is not followed; two agreeing on 8 are.
    assert agreed({quorum[0]: r8, quorum[1]: r8, quorum[2]: r7}, quorum, NETWORK) == r8
    assert agreed({quorum[0]: r8}, quorum, NETWORK) is None
    # A lying server: same round, another state. The majority wins.
    liar = record(8, state=b"lie")
    assert agreed({quorum[0]: r8, quorum[1]: r8, quorum[2]: liar}, quorum, NETWORK) == r8
    # A single pointer carrying a majority certificate is enough.
    cert = Certificate(tuple((i, r8.statement.sign(KEYS[i])) for i in range(2)))
    certified = record(8, certificate=cert.to_bytes())
    assert agreed({quorum[2]: certified}, quorum, NETWORK) == certified
    # ... unless it is forged, or the pointer is of another network.
    forged = record(8, certificate=Certificate(((0, bytes(64)), (1, bytes(64)))).to_bytes())
    assert agreed({quorum[2]: forged}, quorum, NETWORK) is None
    assert agreed({quorum[0]: r8, quorum[1]: r8}, quorum, bytes(32)) is None
    # Keys outside the quorum do not vote.
    assert agreed({QUORUM[5]: r8, QUORUM[6]: r8, quorum[0]: r8}, quorum, NETWORK) is None


def test_certificate_signers_are_those_of_a_valid_majority_certificate() -> None:
    """protocol §8.4, §10.2: what a client shows as "verified by k of n servers"."""
    quorum = QUORUM[:5]
    r8 = record(8)

    def signed_by(indices: list[int], keys: list[KeyPair] = KEYS, of: PointerRecord = r8) -> bytes:
        return Certificate(tuple((i, of.statement.sign(keys[i])) for i in indices)).to_bytes()

    three = record(8, certificate=signed_by([0, 2, 4]))
    assert certificate_signers(three, quorum) == (0, 2, 4) and certified(three, quorum)
    assert certificate_signers(record(8), quorum) == () and not certified(record(8), quorum)
    # Two of five is a minority, however valid its signatures.
    minority = record(8, certificate=signed_by([0, 1]))
    assert certificate_signers(minority, quorum) == () and not certified(minority, quorum)
    # A certificate for another statement (round 7) does not vouch for round 8.
    other = record(8, certificate=signed_by([0, 1, 2], of=record(7)))
    assert certificate_signers(other, quorum) == ()
    # Signatures by keys outside the quorum, and one bad signature among good ones.
    strangers = [KeyPair.from_seed(hashlib.sha256(b"stranger %d" % i).digest()) for i in range(5)]
    assert certificate_signers(record(8, certificate=signed_by([0, 1, 2], strangers)), quorum) == ()
    good = Certificate.from_bytes(signed_by([0, 1, 2])).signatures
    one_bad = Certificate((*good[:2], (2, bytes(64)))).to_bytes()
    assert certificate_signers(record(8, certificate=one_bad), quorum) == ()
    assert certificate_signers(record(8, certificate=b"\x03junk"), quorum) == ()
