"""Light sync's extra proof check (protocol §4.4.6, stage A): checked only when the fetched
pieces hold the whole bucket; an untrusted proof that does not verify is ignored; certified
data that disagree are an error."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from scryp.client.lightproof import StateDisagrees, balance_from_proof, check
from scryp.core.balances import encode_balances
from scryp.core.buckets import BUCKET_BITS, MerkleTree, bucket_of, bucket_range, state_root
from scryp.core.snapshot import PIECE_BYTES, piece_range

ACCOUNTS = [hashlib.sha256(b"light %d" % i).digest() for i in range(3_000)]  # 108 KB: 7 pieces
FLAT = encode_balances((a, i + 1) for i, a in enumerate(ACCOUNTS))
ROOT = state_root(FLAT)
TREE = MerkleTree.of_file(FLAT)
ALL_PIECES = set(range(-(-len(FLAT) // PIECE_BYTES)))


def proof_of(account: bytes, round_number: int = 9) -> dict[str, Any]:
    index = bucket_of(account, BUCKET_BITS)
    start, end = bucket_range(FLAT, index, BUCKET_BITS)
    siblings = [s.hex() for s in TREE.proof(index)]
    return {
        "round": round_number,
        "bucket": index,
        "siblings": siblings,
        "start": start,
        "end": end,
    }


def read(offset: int, length: int) -> bytes:
    return FLAT[offset : offset + length]


def run(proof: Any, account: bytes, balance: int, have: set[int] = ALL_PIECES) -> bool:
    return check(
        proof, root=ROOT, round_number=9, account=account, balance=balance, have=have, read=read
    )


def test_a_true_proof_over_fetched_pieces_is_checked() -> None:
    account = ACCOUNTS[1_234]
    proof = proof_of(account)
    pieces = set(piece_range(proof["start"], proof["end"] - proof["start"]))
    assert len(pieces) <= 2 and run(proof, account, 1_235, pieces)
    stranger = hashlib.sha256(b"nobody").digest()  # absent: its bucket proves balance 0
    assert run(proof_of(stranger), stranger, 0)


def test_nothing_to_check_is_not_an_error() -> None:
    account = ACCOUNTS[7]
    proof = proof_of(account)
    assert not run(proof, account, 8, have=set())  # the bucket's pieces were not fetched
    assert not run(None, account, 8)
    assert not run(proof_of(account, round_number=8), account, 8)  # another round's proof
    assert not run({**proof, "siblings": proof["siblings"][:-1]}, account, 8)
    assert not run({**proof, "start": "0"}, account, 8)
    assert not run(proof_of(ACCOUNTS[8]), account, 8)  # another bucket (almost surely)


def test_a_tampered_sibling_or_range_is_ignored_not_believed() -> None:
    account = ACCOUNTS[42]
    proof = proof_of(account)
    for level in (0, 5, BUCKET_BITS - 1):
        siblings = list(proof["siblings"])
        siblings[level] = "00" * 32
        # The balance given is wrong too: only a verifying proof could be believed.
        assert not run({**proof, "siblings": siblings}, account, 999)
    assert not run({**proof, "end": proof["end"] + 36}, account, 43)


def test_certified_data_that_disagree_are_an_error() -> None:
    account = ACCOUNTS[42]
    with pytest.raises(StateDisagrees):
        run(proof_of(account), account, 44)  # the torrent's search said 44, the root says 43


# -- the balance from the proof alone (no piece) -----------------------------------------------


def with_records(account: bytes, round_number: int = 9) -> dict[str, Any]:
    proof = proof_of(account, round_number)
    proof["records"] = FLAT[proof["start"] : proof["end"]].hex()
    return proof


def test_a_proof_with_records_gives_the_balance() -> None:
    for number in (0, 1_234, 2_999):
        account = ACCOUNTS[number]
        proved = balance_from_proof(
            with_records(account), root=ROOT, round_number=9, account=account
        )
        assert proved == number + 1
    absent = hashlib.sha256(b"nobody").digest()
    assert balance_from_proof(with_records(absent), root=ROOT, round_number=9, account=absent) == 0


def _tampered_records(proof: dict[str, Any]) -> None:
    records = bytearray.fromhex(proof["records"])
    records[-1] ^= 1  # the last record's balance, one bit
    proof["records"] = records.hex()


def _tampered_sibling(proof: dict[str, Any]) -> None:
    proof["siblings"][3] = "00" * 32


def _no_records(proof: dict[str, Any]) -> None:
    del proof["records"]


def _records_not_hex(proof: dict[str, Any]) -> None:
    proof["records"] = "zz"


def _another_round(proof: dict[str, Any]) -> None:
    proof["round"] = 8


@pytest.mark.parametrize(
    "spoil", [_tampered_records, _tampered_sibling, _no_records, _records_not_hex, _another_round]
)
def test_a_proof_that_does_not_verify_gives_nothing(spoil: Any) -> None:
    """A lying helper never yields a balance: the light sync then reads the pieces."""
    account = ACCOUNTS[1_234]
    proof = with_records(account)
    spoil(proof)
    assert balance_from_proof(proof, root=ROOT, round_number=9, account=account) is None


def test_another_state_root_gives_nothing() -> None:
    account = ACCOUNTS[7]
    other = state_root(FLAT[:-36])
    assert (
        balance_from_proof(with_records(account), root=other, round_number=9, account=account)
        is None
    )
