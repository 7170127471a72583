"""Lab clients: the issue's client command lines on a fresh host, and crowds of clients in
shared processes (``scryp.lab.agent``) (issue 9).

Owns: the agent's spec, splitting a crowd over a few agent processes, collecting their JSON
lines, and the CPU each client cost. Invariant: every client runs on its own host (its own
namespace and address); an agent process only shares Python and the CPU among them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scryp.keyfile import atomic_write
from scryp.lab import names
from scryp.lab.testbed import Testbed, bootstrap

AGENT_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class ClientJob:
    host: int
    mode: str  # "light" or "full"
    account: str | None
    start_s: float = 0.0
    reads: int = 0


@dataclass
class CrowdResult:
    clients: list[dict[str, Any]] = field(default_factory=list)
    cpu_s: float = 0.0
    agents: int = 0

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.clients if not c.get("ok")]

    def seconds(self, mode: str) -> list[float]:
        return [c["seconds"] for c in self.clients if c.get("ok") and c["mode"] == mode]

    @property
    def cpu_per_client_s(self) -> float | None:
        return self.cpu_s / len(self.clients) if self.clients else None


async def run_crowd(
    testbed: Testbed, jobs: list[ClientJob], agents: int, timeout_s: float, tag: str
) -> CrowdResult:
    """Run ``jobs`` in ``agents`` processes at once; every client ends by ``timeout_s``."""
    lab = testbed.lab
    groups = deal(jobs, agents)
    runs = []
    for number, group in enumerate(g for g in groups if g):
        spec = {
            "quorum": str(testbed.files.quorum),
            "bootstrap": bootstrap(),
            "timeout_s": timeout_s,
            "clients": [_client_spec(lab.run_dir, tag, job) for job in group],
        }
        path = lab.run_dir / f"{tag}-agent-{number}.json"
        atomic_write(path, json.dumps(spec).encode())
        argv = lab.python_argv("scryp.lab.agent", str(path))
        latest = max(job.start_s for job in group)
        runs.append(
            lab.run(
                f"{tag}-agent-{number}",
                testbed.plan.observer_host,
                argv,
                timeout_s + latest + AGENT_SLACK_S,
            )
        )
    result = CrowdResult(agents=len(runs))
    for completed in await asyncio.gather(*runs):
        for line in completed.stdout.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if "agent" in item:
                result.cpu_s += item["agent"]["user_s"] + item["agent"]["system_s"]
            else:
                result.clients.append(item)
    missing = len(jobs) - len(result.clients)
    result.clients += [{"ok": False, "error": "agent ended without a result"}] * missing
    return result


def deal(jobs: list[ClientJob], agents: int) -> list[list[ClientJob]]:
    """``jobs`` dealt to ``agents`` processes, each mode dealt on its own so that every agent
    holds its share of each. Dealing the crowd's jobs in one pass put every full sync in one
    process (one job in four is full, one agent in four got jobs 3, 7, 11...), where the 50
    state roots queued for one interpreter lock: 2-17 s each, most of a full sync's time."""
    groups: list[list[ClientJob]] = [[] for _ in range(agents)]
    dealt = 0
    for mode in dict.fromkeys(job.mode for job in jobs):
        for job in (j for j in jobs if j.mode == mode):
            groups[dealt % agents].append(job)
            dealt += 1
    return groups


def _client_spec(run_dir: Path, tag: str, job: ClientJob) -> dict[str, Any]:
    name = f"{tag}-client-{job.host}"
    return {
        "name": name,
        "ns": names.host_name(job.host),
        "address": names.host_address(job.host),
        "mode": job.mode,
        "account": job.account,
        "data": str(run_dir / "clients" / name),
        "start_s": job.start_s,
        "reads": job.reads,
    }


async def cli(
    testbed: Testbed, host: int, name: str, command: str, *args: str, timeout_s: float = 120.0
) -> tuple[dict[str, Any], float]:
    """One ``python -m scryp.client COMMAND ... --json`` on ``host``: (its JSON, seconds).
    A failure (exit status not 0) is raised with the client's own words."""
    data = testbed.lab.run_dir / "clients" / f"host-{host}"
    argv = testbed.client_argv(command, data, *args)
    completed = await testbed.lab.run(name, host, argv, timeout_s)
    lines = completed.stdout.strip().splitlines()
    body: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if completed.returncode != 0:
        raise RuntimeError(f"{name}: exit {completed.returncode}: {body or completed.stdout}")
    return body, completed.seconds
