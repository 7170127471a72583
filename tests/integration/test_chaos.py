"""The bank test (protocol §11) for 60 s in the test suite: real server processes under a
steady load with double spends, replays and new accounts, killed (SIGKILL) and paused
(SIGSTOP) one at a time, the leader most often; then every check of ``scryp.chaos.checker``
must hold. The long runs (3 and 5 servers, 10 minutes) are in docs/RELIABILITY.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SEED = int(os.environ.get("SCRYP_CHAOS_SEED", "1"))


@pytest.mark.slow
def test_the_ledger_holds_through_kills_and_pauses(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "scryp.chaos", "--duration-s", "60", "--rate", "30"]
    argv += ["--seed", str(SEED), "--dir", str(tmp_path / "chaos")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=400, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "chaos: every check held" in done.stdout
