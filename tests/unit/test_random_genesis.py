"""Random genesis files for test networks (issue 10, protocol §5): canonical, exact supply,
reproducible from a seed, the faucet keeping the rest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.balances import RECORD, TOTAL_SUPPLY, lookup
from scryp.core.genesis import Genesis
from scryp.errors import ConfigError
from scryp.keytool import main as keytool
from scryp.random_genesis import random_balance_max, random_genesis_chunks, write_random_genesis

FAUCET = bytes(range(32))


def genesis_bytes(accounts: int, seed: int, fixed: dict[bytes, int] | None = None) -> bytes:
    return b"".join(random_genesis_chunks(accounts, FAUCET, fixed or {}, seed))


@settings(max_examples=40, deadline=None)
@given(
    accounts=st.integers(0, 3000),
    seed=st.integers(0, 2**64 - 1),
    fixed=st.dictionaries(st.binary(min_size=32, max_size=32), st.integers(1, 10**6), max_size=4),
)
def test_a_random_genesis_is_canonical_sums_to_the_supply_and_keeps_fixed_amounts(
    accounts: int, seed: int, fixed: dict[bytes, int]
) -> None:
    fixed.pop(FAUCET, None)
    data = genesis_bytes(accounts, seed, fixed)
    genesis = Genesis.decode(data)  # canonical (sorted, no zero) and exactly 2**32-1
    assert len(genesis.balances_file) == 36 * (accounts + len(fixed) + 1)
    for account, amount in fixed.items():
        assert lookup(data, account) == amount
    top = random_balance_max(accounts)
    randoms = [b for a, b in RECORD.iter_unpack(data) if a != FAUCET and a not in fixed]
    assert all(1 <= b <= top for b in randoms)
    assert lookup(data, FAUCET) == TOTAL_SUPPLY - sum(randoms) - sum(fixed.values())


def test_the_same_seed_gives_the_same_file_and_another_seed_another() -> None:
    assert genesis_bytes(500, 7) == genesis_bytes(500, 7)
    assert genesis_bytes(500, 7) != genesis_bytes(500, 8)


def test_ids_spread_over_the_whole_id_space_when_cut_into_ranges() -> None:
    data = genesis_bytes(200_000, 1)  # 2 ranges by the first bit (range_bits)
    ids = [a for a, _ in RECORD.iter_unpack(data)]
    low = sum(1 for a in ids if a[0] < 0x80)
    assert 0.45 < low / len(ids) < 0.55
    Genesis.decode(data)


def test_the_faucet_cannot_also_have_a_fixed_allocation() -> None:
    with pytest.raises(ConfigError):
        genesis_bytes(10, 1, {FAUCET: 5})


def test_write_is_atomic_and_returns_the_network_id(tmp_path: Path) -> None:
    path = tmp_path / "genesis"
    size, network_id = write_random_genesis(path, 1000, FAUCET, {}, 3)
    assert size == path.stat().st_size == 36 * 1001
    assert network_id == hashlib.sha256(path.read_bytes()).digest()
    assert [p.name for p in tmp_path.iterdir()] == ["genesis"]  # no temp file left


def test_keytool_random_accounts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "genesis"
    argv = ["genesis", "--random-accounts", "2000", "--faucet", FAUCET.hex(), "--seed", "9"]
    assert keytool([*argv, "--out", str(out)]) == 0
    assert "2001 accounts" in capsys.readouterr().out
    assert out.read_bytes() == genesis_bytes(2000, 9)
    assert keytool(["genesis", "--random-accounts", "5", "--out", str(out)]) == 2  # no faucet
    assert keytool(["genesis", "--seed", "1", f"{FAUCET.hex()}=4294967295"]) == 2
