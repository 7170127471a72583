"""A short coverage-guided run (atheris) of every fuzz target, in a process of its own.

The long runs (1,000,000 inputs a target) are ``tools/fuzz``'s, recorded in
docs/RELIABILITY.md; this keeps every harness working and catches what a few thousand
guided inputs find. A crash's input is printed and kept under the test's temporary directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
RUNS = {"wal_replay": 2_000, "round_directory": 2_000}  # these write files per input
RUNS_DEFAULT = 20_000


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_short_run(name: str, tmp_path: Path) -> None:
    runs = RUNS.get(name, RUNS_DEFAULT)
    argv = [sys.executable, "-m", "tests.fuzz", name, f"--runs={runs}", f"--artifacts={tmp_path}"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    crashes = sorted(p.name for p in tmp_path.iterdir())
    assert done.returncode == 0, f"{name}: crash {crashes}\n{done.stderr[-3000:]}"
    assert f"Done {runs} runs" in done.stderr, done.stderr[-2000:]
