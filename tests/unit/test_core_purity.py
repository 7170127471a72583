"""The round protocol and proposal queue cores stay sans-IO, like the Raft core: the same
syntax-tree check as ``test_raft_purity`` (no clock, network, disk or global randomness)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_raft_purity import test_no_io_no_clock_no_global_randomness as check

CORE = Path(__file__).resolve().parents[2] / "scryp" / "core"
MODULES = [CORE / "rounds.py", CORE / "proposals.py"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_no_clock_no_global_randomness(path: Path) -> None:
    assert path.is_file()
    check(path)
