"""A round's ``changes`` file (scryp/core/changes.py, protocol §4.4.4) against a naive dict
oracle: the codec, applying it to a balances file, finding one account in it, and the refusal
of every non-canonical file (it may come from an untrusted peer).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core import changes as changes_module
from scryp.core.balances import BALANCE_MAX, RECORD_BYTES, check_balances_file
from scryp.core.changes import (
    apply_changes,
    apply_rounds,
    decode_changes,
    encode_changes,
    find_change,
    merge_changes,
)
from scryp.errors import MalformedInput

# Ids from a few prefixes, so that changes and balances often name the same accounts and
# their neighbours, plus the first and last possible ids.
_PREFIXES = [b"\x00\x00", b"\x00\x01", b"\x7f\xff", b"\xff\xff"]
account_ids = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(_PREFIXES),
    st.binary(min_size=30, max_size=30),
) | st.sampled_from([bytes(32), b"\xff" * 32])
balances = st.sampled_from([0, 1, BALANCE_MAX]) | st.integers(0, BALANCE_MAX)
positive = st.sampled_from([1, BALANCE_MAX]) | st.integers(1, BALANCE_MAX)
changes_dicts = st.dictionaries(account_ids, balances, max_size=20)


def record(account: bytes, balance: int) -> bytes:
    """One 36-byte record (protocol §4.1), written out by hand."""
    return account + balance.to_bytes(4, "big")


def file_of(state: dict[bytes, int]) -> bytes:
    """The canonical balances file of a dict (protocol §4.1): sorted by id, zeros dropped."""
    return b"".join(record(a, b) for a, b in sorted(state.items()) if b)


def changes_of(state: dict[bytes, int]) -> bytes:
    """A ``changes`` file by hand: sorted by id, zeros kept (they mean removed)."""
    return b"".join(record(a, b) for a, b in sorted(state.items()))


@settings(max_examples=100, deadline=None)
@given(changes_dicts)
def test_encode_matches_the_hand_written_file_and_decodes_back(changed: dict[bytes, int]) -> None:
    encoded = encode_changes(changed.items())
    assert encoded == changes_of(changed)
    assert decode_changes(encoded) == sorted(changed.items())
    assert decode_changes(memoryview(encoded)) == decode_changes(bytearray(encoded))


@settings(max_examples=150, deadline=None)
@given(
    old=st.dictionaries(account_ids, positive, max_size=20),
    changed=changes_dicts,
    reuse=st.data(),
)
def test_apply_changes_is_the_dict_update(
    old: dict[bytes, int], changed: dict[bytes, int], reuse: st.DataObject
) -> None:
    """protocol §4.4.4: the previous round's balances, updated with the round's records and
    its zeros removed, are the round's balances."""
    if old:  # change, keep and remove accounts the old file holds, too
        known = reuse.draw(st.lists(st.sampled_from(sorted(old)), unique=True))
        changed.update({a: reuse.draw(balances) for a in known})
    expected = {**old, **changed}
    result = apply_changes(file_of(old), encode_changes(changed.items()))
    assert result == file_of(expected)
    check_balances_file(result)  # canonical: sorted, no zero balance
    assert apply_changes(memoryview(file_of(old)), changes_of(changed)) == result
    assert apply_changes(file_of(old), b"") == file_of(old)


@settings(max_examples=100, deadline=None)
@given(changed=changes_dicts, others=st.lists(account_ids, max_size=10))
def test_find_change_is_the_dict_lookup(changed: dict[bytes, int], others: list[bytes]) -> None:
    encoded = encode_changes(changed.items())
    for account in [*changed, *others]:
        assert find_change(encoded, account) == changed.get(account)
        assert find_change(memoryview(encoded), account) == changed.get(account)


@given(st.binary(max_size=5 * RECORD_BYTES).filter(lambda data: len(data) % RECORD_BYTES))
def test_a_partial_record_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedInput, match="36-byte records"):
        decode_changes(data)
    with pytest.raises(MalformedInput):
        apply_changes(b"", data)


@settings(max_examples=100, deadline=None)
@given(
    changed=st.dictionaries(account_ids, balances, min_size=2, max_size=10),
    swap=st.data(),
)
def test_ids_out_of_order_or_repeated_are_refused(
    changed: dict[bytes, int], swap: st.DataObject
) -> None:
    records = [record(a, b) for a, b in sorted(changed.items())]
    i = swap.draw(st.integers(0, len(records) - 2))
    again = records[i][:32] + swap.draw(balances).to_bytes(4, "big")  # same id, any balance
    unsorted = [*records[:i], records[i + 1], records[i], *records[i + 2 :]]
    repeated = [*records[: i + 1], again, *records[i + 1 :]]
    for bad in (b"".join(unsorted), b"".join(repeated)):
        with pytest.raises(MalformedInput, match="strictly increase"):
            decode_changes(bad)
        with pytest.raises(MalformedInput):
            apply_changes(file_of({a: b for a, b in changed.items() if b}), bad)


def test_an_id_out_of_order_is_refused_before_it_moves_money() -> None:
    """Planted bug (protocol §4.4.4): a changes file whose ids go back is refused. Applied
    anyway, the bisection from the cursor would skip the old record of the late id and write
    it a second time: two records of one account, money created out of nothing.
    This test FAILS if the strictly-increasing check in ``decode_changes`` is removed
    (verified by removing it by hand: ``apply_changes`` then returns a file holding ``low``
    twice: records (low 7, high 1_002, low 5), 1_014 units from a ledger of 1_007)."""
    low, high = b"\x10" * 32, b"\x20" * 32
    old = file_of({low: 7, high: 1_000})
    bad = record(high, 1_002) + record(low, 5)  # both right, but in the wrong order
    with pytest.raises(MalformedInput, match="strictly increase"):
        decode_changes(bad)
    with pytest.raises(MalformedInput, match="strictly increase"):
        apply_changes(old, bad)
    # The same records in order are fine.
    assert apply_changes(old, record(low, 5) + record(high, 1_002)) == file_of(
        {low: 5, high: 1_002}
    )


@given(account=account_ids, first=balances, second=balances)
def test_encode_refuses_an_account_changed_twice(account: bytes, first: int, second: int) -> None:
    with pytest.raises(ValueError, match="twice"):
        encode_changes([(account, first), (b"\x42" * 32, 1), (account, second)])


def test_too_many_records_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changes_module, "CHANGES_RECORDS_MAX", 2)
    two = record(bytes(32), 1) + record(b"\x01" * 32, 0)
    assert len(decode_changes(two)) == 2
    with pytest.raises(MalformedInput, match="at most 2"):
        decode_changes(two + record(b"\x02" * 32, 3))


def test_empty_and_edge_cases() -> None:
    assert encode_changes([]) == b"" and decode_changes(b"") == []
    assert find_change(b"", bytes(32)) is None
    assert apply_changes(b"", b"") == b""
    # Removing an account nobody holds leaves the file as it is.
    held = file_of({b"\x05" * 32: 9})
    assert apply_changes(held, record(b"\x04" * 32, 0) + record(b"\x06" * 32, 0)) == held
    assert apply_changes(held, record(b"\x05" * 32, 0)) == b""


@given(
    state=st.dictionaries(account_ids, positive, max_size=20),
    rounds=st.lists(changes_dicts, max_size=5),
)
def test_apply_rounds_is_applying_each_round_in_turn(
    state: dict[bytes, int], rounds: list[dict[bytes, int]]
) -> None:
    """One merge of several rounds' changes (a later round wins) gives what applying them one
    after the other gives (protocol §4.4.7: full sync, the seeder, the server's rebuild)."""
    one_by_one = file_of(state)
    for changed in rounds:
        one_by_one = apply_changes(one_by_one, changes_of(changed))
    assert apply_rounds(file_of(state), [changes_of(c) for c in rounds]) == one_by_one


@given(
    state=st.dictionaries(account_ids, positive, max_size=20),
    rounds=st.lists(changes_dicts, max_size=6),
    cut=st.data(),
)
def test_merge_changes_is_applying_each_round_in_turn(
    state: dict[bytes, int], rounds: list[dict[bytes, int]], cut: st.DataObject
) -> None:
    """protocol §10.4.1: the net ``changes`` of rounds C+1..R (what ``GET /changes``
    answers) is one canonical ``changes`` file, and applying it to any balances gives what
    applying each round's file in turn gives (the naive oracle); merging is associative, so
    a range answer can be built from sub-ranges."""
    files = [changes_of(c) for c in rounds]
    merged = merge_changes(files)
    assert encode_changes(decode_changes(merged)) == merged  # canonical: decodes, re-encodes
    one_by_one = file_of(state)
    for data in files:
        one_by_one = apply_changes(one_by_one, data)
    assert apply_changes(file_of(state), merged) == one_by_one
    oracle: dict[bytes, int] = {}
    for changed in rounds:
        oracle.update(changed)
    assert merged == changes_of(oracle)  # a later round's record wins
    at = cut.draw(st.integers(0, len(files)))
    assert merge_changes([merge_changes(files[:at]), merge_changes(files[at:])]) == merged
    assert merge_changes([]) == b"" and merge_changes([merged]) == merged


@settings(max_examples=50, deadline=None)
@given(rounds=st.lists(changes_dicts, min_size=1, max_size=4), where=st.data())
def test_merge_changes_refuses_a_file_that_is_not_canonical(
    rounds: list[dict[bytes, int]], where: st.DataObject
) -> None:
    """An input file from a peer or a damaged disk is refused, not merged into a canonical
    answer that would hide the fault."""
    files = [changes_of(c) for c in rounds]
    index = where.draw(st.integers(0, len(files) - 1))
    bad = files[index] + b"\x00"  # a partial record
    with pytest.raises(MalformedInput):
        merge_changes([*files[:index], bad, *files[index + 1 :]])
    backwards = record(b"\x20" * 32, 1) + record(b"\x10" * 32, 2)
    with pytest.raises(MalformedInput, match="strictly increase"):
        merge_changes([*files, backwards])
