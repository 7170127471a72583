"""``python -m scryp.chaos``: the bank test against a local network of real processes
(protocol §11). Prints the fault log and the verdict; writes ``DIR/chaos-report.json``.
Exit status 0 when every check held, 1 when one did not, 2 for bad options."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from scryp.chaos.checker import Report
from scryp.chaos.run import ChaosOptions, ChaosRun
from scryp.keyfile import atomic_write

DURATION_S_MAX = 3_600.0
RATE_PER_S_MAX = 500.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scryp.chaos", description=__doc__)
    parser.add_argument("--servers", type=int, choices=(3, 5, 7), default=3)
    parser.add_argument("--duration-s", type=float, default=60.0, help="load and faults")
    parser.add_argument("--rate", type=float, default=30.0, help="payments a second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--round-interval", type=float, default=1.0, metavar="S")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=10,
        metavar="ROUNDS",
        help="the servers' checkpoint rounds (the whole balances file, protocol §4.4.4)",
    )
    parser.add_argument("--no-faults", action="store_true", help="load only (a baseline)")
    parser.add_argument("--dir", type=Path, help="keep the network here (default: a temp dir)")
    args = parser.parse_args(argv)
    if not 0 < args.duration_s <= DURATION_S_MAX:
        parser.error(f"--duration-s must be in (0, {DURATION_S_MAX:.0f}]")
    if args.checkpoint_every < 1:
        parser.error("--checkpoint-every must be at least 1")
    if not 0 < args.rate <= RATE_PER_S_MAX:
        parser.error(f"--rate must be in (0, {RATE_PER_S_MAX:.0f}]")
    return args


def summary(report: Report, faults: list[str], seconds: float) -> str:
    lines = [*faults, ""]
    answered = report.posts_answered / max(report.posts, 1)
    lines.append(
        f"{report.payments_sent} payments sent, {report.payments_applied} applied in "
        f"{report.rounds} rounds; {report.double_spend_groups} double-spend groups; "
        f"{answered:.1%} of {report.posts} submissions answered; longest stall "
        f"{report.longest_stall_s:.2f} s (from {report.longest_stall_from_s:.1f} s); "
        f"{report.undecided} undecided; "
        f"{report.unknown_after_catch_up} answers unknown after a catch-up; {seconds:.0f} s"
    )
    for kind, details in report.violations.items():
        lines.append(f"VIOLATION {kind}:")
        lines += [f"  {d}" for d in details]
    lines.append("chaos: every check held" if report.ok else "chaos: FAILED")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace, root: Path) -> int:
    options = ChaosOptions(
        root=root,
        servers=args.servers,
        duration_s=args.duration_s,
        rate_per_s=args.rate,
        seed=args.seed,
        round_interval_s=args.round_interval,
        faults=not args.no_faults,
        checkpoint_every=args.checkpoint_every,
    )
    run = ChaosRun(options)
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await run.run()
    seconds = loop.time() - started
    print(summary(report, run.fault_log, seconds))
    body = {
        "options": {**vars(args), "dir": str(root)},
        "faults": run.fault_log,
        "seconds": seconds,
        "report": dataclasses.asdict(report),
        "ok": report.ok,
    }
    atomic_write(root / "chaos-report.json", json.dumps(body, indent=2).encode())
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"chaos: seed {args.seed} (replay with --seed {args.seed})", flush=True)
    if args.dir is not None:
        return asyncio.run(main_async(args, args.dir))
    root = Path(tempfile.mkdtemp(prefix="scryp-chaos-"))
    try:
        return asyncio.run(main_async(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
