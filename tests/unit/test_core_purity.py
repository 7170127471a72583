"""The pure core stays sans-IO (protocol §1.4): no clock, network, disk or global randomness.

Method: read every module of ``scryp/core`` (Raft included) as a syntax tree; forbid importing
the IO modules at all, and forbid using ``random`` for anything but the ``random.Random`` type of
the generator the driver passes in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "scryp" / "core"
FORBIDDEN = {"asyncio", "socket", "time", "os", "libtorrent", "aiohttp", "threading", "secrets"}


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_no_io_no_clock_no_global_randomness(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]}
            assert names != {"random"}, f"{path.name}: 'from random import' (use an instance)"
        else:
            names = set()
        assert not names & FORBIDDEN, f"{path.name} imports {names & FORBIDDEN}"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
        ):
            assert node.attr == "Random", f"{path.name}: random.{node.attr} (use the instance)"


def test_the_check_sees_the_modules() -> None:
    assert {"node.py", "log.py", "codec.py", "ledger.py", "tx.py"} <= {
        p.name for p in CORE.rglob("*.py")
    }
