"""The BlockChat experiment's command runs end to end (``benchmarks.bench_blockchat``).

A real run, made small: 3 server processes, each with its sender replaying a file of 6
payments in requests of 4 (the last one short), then the report and the plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_the_command_reports_every_payment_committed(tmp_path: Path) -> None:
    plot = tmp_path / "blockchat.png"
    command = ["--servers", "3", "--payments", "6", "--batch", "4", "--round-interval", "0.3"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_blockchat", *command, "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "committed 18 of 18 payments" in lines
    row = next(line for line in lines if line.startswith("| 3 | 3 × 6 | 4 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3] == "18"  # committed
    assert float(cells[4].replace(",", "")) > 0  # payments/s
    assert plot.read_bytes().startswith(b"\x89PNG")
