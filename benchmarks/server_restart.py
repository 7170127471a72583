"""``bench_server --restart``: one server killed with SIGKILL and started again (issue 10).

The victim (a follower by default, or the leader) is killed with a real SIGKILL while a small
load (``load_per_s`` payments a second, 0: idle) goes to the other servers; after
``down_s`` it is started again with its ports, key and data (``LocalNetwork.restart``). Then
its ``GET /status`` is polled every 50 ms, and so are the others', until the victim has
**certified the current round**: its certified round is at least the lowest certified round
the other servers report in the same poll, and its state root for that round is the one the
others list (in agreement). Times are from the restart (the new process started) and from the
kill. The victim's log (JSON lines) gives where the time went: the genesis and API up, the
ledger loaded from its checkpoint (``resuming at round``), its first seal and certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.server_load import batch, payees
from scryp.core.tx import encode_many
from scryp.localnet import LocalNetwork

RESTART_DEADLINE_S = 300.0
POLL_S = 0.05
LOAD_TICK_S = 0.1

# Log messages that mark a restart's phases (scryp.server), first occurrence after the start.
PHASES = {
    "listening": "listening on",  # genesis read, API up (the driver not yet loaded)
    "resumed": "resuming at round",  # the ledger loaded from Raft's checkpoint
    "first_sealed": "sealed round",
    "first_certified": "certified by servers",
    "caught_up_swarm": "caught up from round",
}


async def light_load(net: LocalNetwork, avoid: int, per_s: int, stop: asyncio.Event) -> int:
    """Payments at ``per_s`` a second to the servers other than ``avoid`` until ``stop``."""
    assert net.faucet is not None
    targets = payees(100)
    others = [i for i in range(net.servers) if i != avoid]
    size = max(1, round(per_s * LOAD_TICK_S))
    sent = tick = 0
    deadline = time.monotonic() + RESTART_DEADLINE_S * 2
    while not stop.is_set() and time.monotonic() < deadline:
        txs = await asyncio.to_thread(batch, net.faucet, 10**6 + sent, size, targets)
        with contextlib.suppress(Exception):  # a refusal here is not what is measured
            await net.post(others[tick % len(others)], "/transact", encode_many(txs))
        sent += size
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LOAD_TICK_S)
    return sent


async def pick_victim(net: LocalNetwork, which: str) -> tuple[int, int]:
    """(victim index, leader index)."""
    statuses = await net.statuses()
    leader = next(int(s["leader"]) for s in statuses if s is not None and s["leader"] is not None)
    if which == "leader":
        return leader, leader
    return max(i for i in range(net.servers) if i != leader), leader


async def listed_root(net: LocalNetwork, index: int, round_number: int) -> str | None:
    code, body = await net.get(index, f"/rounds?from={round_number}", timeout_s=2.0)
    if code != 200:
        return None
    for listed in body["rounds"]:
        if listed["round"] == round_number:
            return str(listed["state_root"])
    return None


async def watch(net: LocalNetwork, victim: int, restarted: float) -> dict[str, Any]:
    """Poll until the victim certifies the current round in agreement; seconds of each step."""
    found: dict[str, Any] = {}
    deadline = restarted + RESTART_DEADLINE_S
    while time.monotonic() < deadline:
        statuses = await net.statuses(timeout_s=1.0)
        now = time.monotonic() - restarted
        mine = statuses[victim]
        others = [int(s["certified_round"] or 0) for s in statuses if s and s is not mine]
        if mine is not None:
            found.setdefault("api_answers_s", now)
            if mine["role"] != "starting":
                found.setdefault("driver_loaded_s", now)
            target = min(others) if others else 0
            if int(mine["round"] or 0) >= target:
                found.setdefault("applied_current_s", now)
            certified = int(mine["certified_round"] or 0)
            if certified >= target and "applied_current_s" in found:
                peer = next(i for i in range(net.servers) if i != victim)
                theirs = await listed_root(net, peer, certified)
                if theirs is not None and theirs == mine["certified_state_root"]:
                    found["certified_current_s"] = now
                    found["round"] = certified
                    found["state_root_agrees"] = True
                    return found
        await asyncio.sleep(POLL_S)
    found["timed_out"] = True
    return found


def log_phases(log_path: Path, since_wall: float) -> dict[str, float]:
    """Seconds from ``since_wall`` to the first log line of each phase after it."""
    phases: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["time"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if at < since_wall:
            continue
        for name, text in PHASES.items():
            if name not in phases and text in str(entry.get("message", "")):
                phases[name] = round(at - since_wall, 3)
    return phases


async def restart_figure(
    net: LocalNetwork, which: str = "follower", down_s: float = 2.0, load_per_s: int = 100
) -> dict[str, Any]:
    victim, leader = await pick_victim(net, which)
    statuses = await net.statuses()
    before = statuses[victim] or {}
    stop = asyncio.Event()
    load = asyncio.create_task(light_load(net, victim, load_per_s, stop)) if load_per_s else None
    try:
        killed = time.monotonic()
        net.kill(victim, signal.SIGKILL)
        await net.server_processes[victim].child.wait(10.0)
        await asyncio.sleep(down_s)
        restarted_wall = time.time()
        restarted = time.monotonic()
        await net.restart(victim)
        found = await watch(net, victim, restarted)
    finally:
        stop.set()
        sent = await load if load is not None else 0
    statuses = await net.statuses()
    found.update(
        victim=victim,
        leader_before=leader,
        killed_at_round=before.get("round"),
        down_s=down_s,
        load_per_s=load_per_s,
        load_payments_sent=sent,
        from_kill_s=(found.get("certified_current_s", 0.0) + restarted - killed),
        log_phases=log_phases(net.server_processes[victim].child.log_path, restarted_wall),
        leaders_after=[s["leader"] if s else None for s in statuses],
    )
    return found
