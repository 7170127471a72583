"""A lab run's results: ``DIR/report.json``, ``DIR/report.md`` (a markdown table) and
``DIR/time_to_balance.png`` (the distribution of time to a verified balance) (issue 9).

Owns: percentiles (nearest rank, so a p99 is a time some client really took), the files'
layout. Only measured figures go in; a figure nobody measured is absent, not zero.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scryp.keyfile import atomic_write


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """count, p50, p99 and max of a list of seconds (rounded to the millisecond)."""

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "count": len(values),
        "p50_s": ms(percentile(values, 0.50)),
        "p99_s": ms(percentile(values, 0.99)),
        "max_s": ms(max(values) if values else None),
    }


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write(
    run_dir: Path,
    scenario: str,
    command: str,
    results: dict[str, Any],
    rows: list[dict[str, Any]],
    *,
    times_s: dict[str, list[float]] | None = None,
) -> Path:
    """The three files; returns the markdown's path. ``rows``: one dict per table row."""
    report = {
        "scenario": scenario,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "command": command,
        "results": results,
        "rows": rows,
    }
    atomic_write(run_dir / "report.json", json.dumps(report, indent=2).encode())
    lines = [f"### lab: {scenario}", "", f"{report['date']}, {report['machine']}", ""]
    lines += [f"    {command}", "", *markdown_table(rows)]
    markdown = run_dir / "report.md"
    atomic_write(markdown, ("\n".join(lines) + "\n").encode())
    if times_s and any(times_s.values()):
        plot(run_dir / "time_to_balance.png", scenario, times_s)
    return markdown


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def plot(path: Path, scenario: str, times_s: dict[str, list[float]]) -> None:
    """Empirical CDFs of time to a verified balance, one line per kind of client."""
    import matplotlib  # noqa: PLC0415 (the bench extra; only the plot needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(7, 4))
    for label, values in times_s.items():
        if values:
            ordered = sorted(values)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axes.step(ordered, fractions, where="post", label=f"{label} (n={len(ordered)})")
    axes.set_xlabel("time to a verified balance (s)")
    axes.set_ylabel("fraction of clients")
    axes.set_title(f"Scryp lab: {scenario}")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
