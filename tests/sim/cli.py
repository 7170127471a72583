"""Command line of the simulator; ``tools/sim`` runs it (see that script for usage)."""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from .cluster import replay_command, run_seed, trace_seed


def main() -> int:
    parser = argparse.ArgumentParser(description="seeded Raft simulator")
    parser.add_argument("--seeds", type=int, help="how many seeds to run")
    parser.add_argument("--seed", type=int, help="replay this one seed with its trace")
    parser.add_argument("--start", type=int, default=0, help="first seed of --seeds")
    parser.add_argument(
        "--servers",
        type=int,
        choices=(3, 5, 7),
        action="append",
        help="quorum size (repeatable; default: 3, 5 and 7 in turn)",
    )
    args = parser.parse_args()
    sizes = args.servers or [3, 5, 7]
    if args.seed is not None:
        failed = False
        for servers in sizes:
            for line in trace_seed(args.seed, servers):
                print(line)
                failed = failed or line.startswith("FAILED")
        return 1 if failed else 0
    if args.seeds is None:
        parser.error("give --seeds N or --seed S")
    started_s = time.monotonic()
    cpu_started_s = time.process_time()
    runs = 0
    totals = {
        "rounds": 0,
        "entries": 0,
        "elections": 0,
        "crashes": 0,
        "catch_ups": 0,
        "certificates": 0,
        "forged_shares": 0,
        "shares_refused": 0,
        "seed_failures": 0,
        "recovery_ms_max": 0,
    }
    for seed in range(args.start, args.start + args.seeds):
        for servers in sizes:
            try:
                result = run_seed(seed, servers)
            except Exception:
                traceback.print_exc()
                replay = replay_command(seed, servers)
                print(f"FAILED seed {seed}, {servers} servers; replay: {replay}")
                return 1
            runs += 1
            totals["rounds"] += result.rounds_sealed
            totals["entries"] += result.entries_applied
            totals["elections"] += result.elections
            totals["crashes"] += result.crashes
            totals["catch_ups"] += result.catch_ups
            totals["certificates"] += result.certificates
            totals["forged_shares"] += result.forged_shares
            totals["shares_refused"] += result.shares_refused
            totals["seed_failures"] += result.seed_failures
            totals["recovery_ms_max"] = max(totals["recovery_ms_max"], result.recovery_ms)
        if (seed - args.start + 1) % 100 == 0:
            print(
                f"... {seed - args.start + 1} seeds, {time.monotonic() - started_s:.1f} s",
                flush=True,
            )
    print(
        f"ok: {runs} runs (seeds {args.start}..{args.start + args.seeds - 1}, servers {sizes}) "
        f"in {time.monotonic() - started_s:.1f} s wall, "
        f"{time.process_time() - cpu_started_s:.1f} s CPU; "
        + ", ".join(f"{key} {value}" for key, value in totals.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
