"""``python -m scryp.lab SCENARIO [--dir DIR] ...``: run a scenario on a virtual network of
namespaces, write ``DIR/report.json``, ``DIR/report.md`` and a plot, and remove everything
the lab made, however it ends (issue 9).

Scenarios: ``small``, ``deploy``, ``partition``, ``crowd``, ``strangers``; ``clean`` removes a
crashed run's leftovers (every namespace and link named ``scryplab-*``); ``check`` says whether
this machine can make the lab. Needs root and iproute2; exit status 2 with one line where it cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path

from scryp.lab import crowd, names, netns, report, scenarios, strangers, testbed
from scryp.lab.lab import Lab
from scryp.lab.scenarios import Outcome

SCENARIO_TIMEOUT_S = 1800.0
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scryp.lab", description=__doc__)
    parser.add_argument(
        "scenario", choices=["small", "deploy", "partition", "crowd", "strangers", "clean", "check"]
    )
    parser.add_argument("--dir", type=Path, default=None, help="run directory (default: new)")
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=200, help="crowd: client hosts")
    parser.add_argument("--seeders", type=int, default=0, help="crowd: seeder hosts")
    parser.add_argument("--accounts", type=int, default=1_000_000, help="crowd: genesis size")
    parser.add_argument("--agents", type=int, default=4, help="crowd: client processes")
    parser.add_argument("--arrival-s", type=float, default=10.0, help="crowd: arrival window")
    parser.add_argument(
        "--full-every", type=int, default=crowd.FULL_EVERY, help="crowd: every Nth syncs fully"
    )
    parser.add_argument("--cap-bytes-per-s", type=int, default=10_000_000)
    parser.add_argument("--cut-s", type=float, default=20.0, help="partition: cut length")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the hosts' data directories (removed at the end by default; logs stay)",
    )
    return parser


def hosts_for(args: argparse.Namespace) -> int:
    if args.scenario == "crowd":
        return crowd.plan(args).hosts
    if args.scenario == "deploy":
        return testbed.Plan(args.servers, clients=11).hosts
    if args.scenario == "strangers":
        return strangers.plan(args).hosts
    return testbed.Plan(args.servers, clients=5).hosts


async def run_scenario(lab: Lab, args: argparse.Namespace) -> Outcome:
    if args.scenario == "small":
        return await scenarios.small(lab)
    if args.scenario == "deploy":
        return await scenarios.deploy(lab, args.servers)
    if args.scenario == "partition":
        return await scenarios.partition(lab, args.servers, args.cut_s)
    if args.scenario == "strangers":
        return await strangers.run(lab, args)
    return await crowd.run(lab, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hosts_for(args) > names.BRIDGE_PORTS_MAX:
        print(netns.too_many_hosts(hosts_for(args)), file=sys.stderr)
        return EXIT_USAGE
    reason = netns.unavailable_reason()
    if args.scenario == "check" or reason is not None:
        print(reason or "this machine can make the lab", file=sys.stderr)
        return EXIT_USAGE if reason else 0
    if args.scenario == "clean":
        netns.take_lock()  # held until this process ends
        namespaces, links = netns.clear()
        print(f"removed {namespaces} namespace(s) and {links} link(s)")
        return 0
    run_dir = args.dir or Path(f"lab-runs/{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}")
    command = "python -m scryp.lab " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        with Lab(run_dir.resolve(), hosts_for(args), keep_data=args.keep_data) as lab:
            outcome = asyncio.run(asyncio.wait_for(run_scenario(lab, args), SCENARIO_TIMEOUT_S))
    except Exception as error:  # the run failed: its report says how, then the error is raised
        failed = {"error": f"{type(error).__name__}: {error}", "logs": str(run_dir / "logs")}
        report.write(run_dir, args.scenario, command, failed, [failed])
        raise
    markdown = report.write(
        run_dir, args.scenario, command, outcome.results, outcome.rows, times_s=outcome.times_s
    )
    print(markdown.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
