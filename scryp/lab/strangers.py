"""The strangers scenario (issue 9, item 4): the DHT also holds nodes that are not Scryp's.

Strangers: ``tools/dht_router`` nodes (btdht, a BEP 5 node that knows nothing of BEP 44, run
as a separate program: btdht is GPLv3 and never imported by scryp/) and, where Debian's
``aria2c`` is installed, an aria2 BitTorrent client looking up a torrent nobody has, so that
its DHT node stays alive. Each runs in its own lab host, inside the lab's namespaces only.

The watcher (``scryp.lab.watch``) measures the same things twice, first on Scryp's nodes
alone, then with the strangers in the DHT: how far the pointers lag the newest certified
round, how long a pointer read takes, and how soon after a round's certification a BEP 5
get_peers finds its peers; the servers' logs give the pointer puts that timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from scryp.keyfile import atomic_write
from scryp.lab import names, report
from scryp.lab.lab import Lab
from scryp.lab.scenarios import Outcome, start
from scryp.lab.testbed import Plan, Testbed, bootstrap

BTDHT_NODES = 2
STRANGER_PORT = 6881
PHASE_S = 40.0
JOIN_S = 5.0  # strangers bootstrap and get into the routing tables
WATCH_PERIOD_S = 0.5
WATCH_SLACK_S = 90.0
PUT_TIMEOUT_LINE = "no DHT put within"
ROUTER = "tools/dht_router"
REPO = Path(__file__).resolve().parents[2]


def aria2c() -> str | None:
    return shutil.which("aria2c")


def plan(args: argparse.Namespace) -> Plan:
    strangers = BTDHT_NODES + (1 if aria2c() else 0)
    return Plan(servers=args.servers, clients=strangers)


def start_strangers(testbed: Testbed) -> list[str]:
    lab, hosts = testbed.lab, list(testbed.plan.client_hosts)
    started = []
    router = str(REPO / ROUTER)
    for number in range(BTDHT_NODES):
        host = hosts[number]
        argv = [
            lab.python,
            router,
            "--host",
            names.host_address(host),
            "--port",
            str(STRANGER_PORT),
            "--bootstrap",
            bootstrap(),
            "--allow-net",
            str(names.SUBNET),
            "--duration-s",
            "900",
        ]
        lab.start(f"stranger-btdht-{number}", host, argv)
        started.append(f"btdht {names.host_address(host)}")
    path = aria2c()
    if path is not None:
        host = hosts[BTDHT_NODES]
        work = lab.run_dir / "strangers" / "aria2"
        work.mkdir(parents=True, exist_ok=True)
        nobody = secrets.token_hex(20)  # a torrent nobody has: aria2 keeps looking it up
        argv = [
            path,
            "--enable-dht=true",
            f"--dht-listen-port={STRANGER_PORT}",
            f"--dht-entry-point={bootstrap()}",
            f"--dht-file-path={work / 'dht.dat'}",
            "--enable-dht6=false",
            "--disable-ipv6=true",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            f"--listen-port={STRANGER_PORT + 1}",
            f"--dir={work}",
            "--bt-stop-timeout=900",
            "--quiet=true",
            f"magnet:?xt=urn:btih:{nobody}",
        ]
        lab.start("stranger-aria2", host, argv)
        started.append(f"aria2 {names.host_address(host)}")
    return started


async def watch(testbed: Testbed, tag: str, duration_s: float) -> dict[str, Any]:
    lab = testbed.lab
    host = testbed.plan.observer_host
    spec = {
        "quorum": str(testbed.files.quorum),
        "bootstrap": bootstrap(),
        "address": names.host_address(host),
        "apis": [testbed.api(i) for i in range(testbed.plan.servers)],
        "data": str(lab.run_dir / "clients" / f"watch-{tag}"),
        "duration_s": duration_s,
        "period_s": WATCH_PERIOD_S,
    }
    path = lab.run_dir / f"watch-{tag}.json"
    atomic_write(path, json.dumps(spec).encode())
    argv = lab.python_argv("scryp.lab.watch", str(path))
    done = await lab.run(f"watch-{tag}", host, argv, duration_s + WATCH_SLACK_S)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"watch-{tag}: exit {done.returncode} (log: {lab.log_path('watch-' + tag)})"
        )
    seen: dict[str, Any] = json.loads(lines[-1])
    return seen


def put_timeouts(lab: Lab, servers: int) -> int:
    total = 0
    for index in range(servers):
        text = lab.log_path(f"server-{index}").read_text(errors="replace")
        total += text.count(PUT_TIMEOUT_LINE)
    return total


def summarize(seen: dict[str, Any], put_timeouts_n: int) -> dict[str, Any]:
    pointers, peers = seen["pointers"], seen["peers"]
    lags = pointers["lags"]
    return {
        "dht_bootstrap_s": round(seen["bootstrap_s"], 3),
        "pointer_read": report.summary(pointers["reads_s"]),
        "reads_without_majority": pointers["reads_without_majority"],
        "lag_rounds_p50": sorted(lags)[len(lags) // 2] if lags else None,
        "lag_rounds_max": max(lags) if lags else None,
        "peers_found": report.summary(peers["peer_found_s"]),
        "rounds_looked_up": peers["rounds_looked_up"],
        "peers_not_found": peers["not_found"],
        "put_timeouts": put_timeouts_n,
    }


async def run(lab: Lab, args: argparse.Namespace) -> Outcome:
    the_plan = plan(args)
    testbed = await start(lab, the_plan)
    await testbed.wait_certified(2)
    seen_alone = await watch(testbed, "alone", PHASE_S)
    alone = summarize(seen_alone, put_timeouts(lab, args.servers))
    strangers = start_strangers(testbed)
    await asyncio.sleep(JOIN_S)  # a stranger cannot signal that it joined: give it time
    before = put_timeouts(lab, args.servers)
    seen = await watch(testbed, "strangers", PHASE_S)
    among = summarize(seen, put_timeouts(lab, args.servers) - before)
    results = {
        "servers": args.servers,
        "strangers": strangers,
        "phase_s": PHASE_S,
        "alone": alone,
        "with_strangers": among,
    }
    rows = [_row("Scryp's nodes only", alone), _row(", ".join(strangers), among)]
    times = {
        "peers found, Scryp's nodes only": seen_alone["peers"]["peer_found_s"],
        "peers found, with strangers": seen["peers"]["peer_found_s"],
    }
    return Outcome(results, rows, times)


def _row(label: str, s: dict[str, Any]) -> dict[str, Any]:
    return {
        "DHT holds": label,
        "bootstrap s (≤ 3)": s["dht_bootstrap_s"],
        "pointer read p50 s": s["pointer_read"]["p50_s"],
        "pointer read p99 s": s["pointer_read"]["p99_s"],
        "lag p50 / max rounds": f"{s['lag_rounds_p50']} / {s['lag_rounds_max']}",
        "peers found p50 s": s["peers_found"]["p50_s"],
        "peers found p99 s": s["peers_found"]["p99_s"],
        "not found in 30 s": s["peers_not_found"],
        "put timeouts": s["put_timeouts"],
    }
